/**
 * The kernel method on the containerd image store: the overlay method's walk (overlay/), run on
 * the layer dirs of containerd's overlayfs snapshotter instead of overlay2's. Everything is asked
 * of containerd through `ctr` (src/containerd.ts): the exact manifest and config bytes from its
 * content store, and the layers' dirs from the mounts of a view snapshot of the top layer, made
 * at mount and removed with the work dir (view.ts). Nothing is written under containerd's root.
 */
import { DflattenError, isDflattenError } from '../../errors.js'
import { containerdFor, snapshotParents, storedImage, unreachable, type Containerd, type Descriptor, type StoredImage } from '../../containerd.js'
import { historyUpToLayer, type HistoryEntry } from '../../history.js'
import { platformOf } from '../../platform.js'
import type { DaemonInfo, ImageInspect } from '../../docker.js'
import type { Settings } from '../../settings.js'
import type { Availability, Method, Probe } from '../method.js'
import { overlay, type OverlayState } from '../overlay/index.js'
import { storeParts } from '../overlay2.js'
import { layerDirsOf, walkChain } from './chain.js'
import { makeView, removeView } from './view.js'
import { blobTarSize } from './tar-size.js'
import { reclaimedInDirs } from '../overlay2-reclaim.js'

export interface SnapshotsState extends OverlayState {
  containerd: Containerd
  /** containerd's snapshotter, as `docker info` names the driver (overlayfs). */
  snapshotter: string
  /** mount: how many snapshots between the layers are not layers (containers' -init ones). */
  skipped?: number
  /** The squashed layers' blobs in the content store, lowest first: a dry run counts their tars. */
  squashedBlobs: Array<Pick<Descriptor, 'mediaType' | 'digest'>>
}

/** The daemon's containerd, checked: it answers and holds this very image, unpacked. */
async function inStore(info: DaemonInfo, source: ImageInspect, settings: Settings | undefined) {
  const c = containerdFor(info, settings)
  const why = await unreachable(c)
  if (why) return { ok: false as const, reason: why }
  let stored: StoredImage
  try {
    stored = await storedImage(c, source.Id, platformOf(source))
  } catch (e) {
    if (!isDflattenError(e, 'tool-failed')) throw e
    return { ok: false as const, reason: `the containerd at ${c.address} (namespace ${c.namespace}) does not hold ${source.Id.slice(0, 19)}: is it this daemon's? (${e.message}; set DFLATTEN_CONTAINERD_ADDRESS and DFLATTEN_CONTAINERD_NAMESPACE)` }
  }
  const diffIds = stored.config.rootfs?.diff_ids ?? []
  if (diffIds.join() !== (source.RootFS.Layers ?? []).join()) {
    return { ok: false as const, reason: `containerd's config of ${source.Id.slice(0, 19)} lists other layers than docker inspect` }
  }
  const walk = walkChain(await snapshotParents(c, info.driver), diffIds)
  return walk.ok ? { ok: true as const, c, stored, walk } : { ok: false as const, reason: walk.reason }
}

async function snapshotsAvailable({ info, source, settings }: Probe): Promise<Availability> {
  if (!info.containerdStore) return { ok: false, reason: `it needs the containerd image store; this daemon uses the ${info.driver} storage driver` }
  if (info.driver !== 'overlayfs') return { ok: false, reason: `it needs containerd's overlayfs snapshotter; this daemon uses ${info.driver}` }
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return { ok: false, reason: "it must run as root (it mounts overlays and talks to the daemon's containerd)" }
  }
  if (info.remote) return { ok: false, reason: `the daemon is remote (DOCKER_HOST=${process.env.DOCKER_HOST ?? ''}) and its snapshots are not here` }
  const found = await inStore(info, source, settings)
  if (!found.ok) return found
  return { ok: true, reason: 'root, a local daemon on the containerd image store, its layers unpacked as overlayfs snapshots' }
}

export const snapshots: Method<SnapshotsState> = {
  name: 'snapshots',
  summary: "the overlay method on containerd's overlayfs snapshots (root, local daemon on the containerd image store)",
  largeHeap: false,
  available: snapshotsAvailable,
  cacheKey: () => 'snapshots',
  async plan({ info, source, base, kept }, ctx) {
    const found = await inStore(info, source, ctx.settings)
    if (!found.ok) throw new DflattenError('refused-driver', `--method snapshots cannot work here: ${found.reason}`)
    const { c, stored } = found
    const diffIds = source.RootFS.Layers ?? []
    // The kept layers as this store keeps them (gzip blobs, as pulled): their real digests.
    const baseDescriptors = stored.manifest.layers.slice(0, kept).map((d, i) => ({ mediaType: d.mediaType, digest: d.digest, size: d.size, diffId: diffIds[i] }))
    // With no base image (--layers), the kept layers' history is the source's own, cut after them.
    const baseHistory = base
      ? ((await storedImage(c, base.Id, platformOf(base))).config.history ?? [])
      : historyUpToLayer((stored.config.history ?? []) as HistoryEntry[], kept)
    const squashedBlobs = stored.manifest.layers.slice(kept).map((d) => ({ mediaType: d.mediaType, digest: d.digest }))
    return { config: stored.config, baseHistory, baseDescriptors, layerDirs: [], containerd: c, snapshotter: info.driver, squashedBlobs }
  },
  async prepare(plan, ws, ctx) {
    const state = plan.method.state
    const walk = walkChain(await snapshotParents(state.containerd, state.snapshotter), plan.source.layers)
    if (!walk.ok) throw new DflattenError('refused-driver', `cannot read the layers of ${plan.source.ref}: ${walk.reason}`)
    const lowers = walk.chain.length ? await makeView(ws.dir, state.containerd, state.snapshotter, walk.keys[0]) : []
    const layerDirs = layerDirsOf(walk, lowers)
    if (!layerDirs) throw new DflattenError('refused-driver', `containerd's view of ${plan.source.ref} shows ${lowers.length} dirs for ${walk.keys.length} snapshots`)
    const withDirs = { ...state, layerDirs, skipped: walk.skipped }
    return { ...withDirs, ...(await overlay.prepare({ ...plan, method: { ...plan.method, state: withDirs } }, ws, ctx)) }
  },
  async entries(m, ctx) {
    const d = await overlay.entries(m, ctx)
    const skipped = m.method.state.skipped ?? 0
    const detail = `layer dirs from containerd's view of the top layer${skipped ? `; ${skipped} container init snapshots between the layers left out` : ''}`
    return { ...d, image: storeParts(m.method.state), state: m.method.state, detail }
  },
  layer: (d, ctx) => overlay.layer(d, ctx),
  // The overlay methods' report, on containerd's layer dirs; the tar sizes from the store's blobs.
  async reclaimed(d, ctx) {
    const { views, layerDirs, containerd, squashedBlobs } = d.method.state
    if (!views) throw new DflattenError('bad-input', 'dflatten: the diffed document lacks its overlay views')
    const tarBytes: number[] = []
    for (const blob of squashedBlobs) tarBytes.push(await blobTarSize(containerd, blob, ctx.signal))
    return reclaimedInDirs(layerDirs, d.base.layers.length, views.sourceView, tarBytes, ctx.reclaimTop)
  },
  cleanup: removeView,
}
