/**
 * What the kernel methods share: they read Docker's overlay2 store directly, so they need root,
 * a local overlay2 daemon, and its layer dirs on this host; and they read the exact configs and
 * the base's layer descriptors from the daemon's store at resolve.
 */
import { access } from 'node:fs/promises'
import { DflattenError } from '../errors.js'
import type { DaemonInfo, ImageInspect } from '../docker.js'
import { chainIds, layerTarSize, readImageConfig } from '../docker-store.js'
import { MEDIA_TYPES, type LayerDescriptor } from '../image-archive.js'
import type { Diffed, Plan } from '../plan.js'
import { readEntries } from '../entry.js'
import { mountOverlay, workspaceDir, type Workspace } from '../workspace.js'
import { historyUpToLayer, type HistoryEntry } from '../history.js'
import type { Availability, ImageParts, LayerSource, PlanFacts, Probe } from './method.js'

/** What resolve reads for a kernel method. */
export interface StoreState extends ImageParts {
  /** Every layer's diff dir on the host, base first, one per `source.layers`. */
  layerDirs: string[]
}

/** Whether the overlay methods can work here, and why not. */
export async function overlay2Available({ info, source }: Probe): Promise<Availability> {
  if (info.driver !== 'overlay2' || source.GraphDriver?.Name !== 'overlay2') {
    const store = info.containerdStore ? 'the containerd image store' : `the ${info.driver} storage driver`
    return { ok: false, reason: `it needs the overlay2 storage driver; this daemon uses ${store}` }
  }
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return { ok: false, reason: "it must run as root (it mounts overlays and reads Docker's layer dirs)" }
  }
  if (info.remote) return { ok: false, reason: `the daemon is remote (DOCKER_HOST=${process.env.DOCKER_HOST}) and its layer dirs are not here` }
  const top = source.GraphDriver.Data?.UpperDir
  if (top && !(await access(top).then(() => true, () => false))) {
    return { ok: false, reason: `the daemon's layer dirs (${top}) are not on this host` }
  }
  return { ok: true, reason: 'root, and a local overlay2 daemon' }
}

/** Every layer's diff dir, base first, from the overlay2 driver's data. */
function layerDirs(img: ImageInspect): string[] {
  const data = img.GraphDriver?.Data ?? {}
  const dirs = [data.UpperDir, ...(data.LowerDir ? data.LowerDir.split(':') : [])].filter(Boolean)
  const layers = img.RootFS.Layers ?? []
  if (dirs.length !== layers.length) {
    throw new DflattenError('refused-driver', `cannot map the layers of ${img.Id.slice(7, 19)} to their dirs (${layers.length} layers, ${dirs.length} dirs); is the daemon on this host?`,
    )
  }
  return dirs.reverse()
}

async function baseDescriptors(info: DaemonInfo, layers: string[]): Promise<LayerDescriptor[]> {
  const chains = chainIds(layers)
  return Promise.all(
    layers.map(async (diffId, i) => ({
      mediaType: MEDIA_TYPES.layer,
      digest: diffId,
      size: (await layerTarSize(info, chains[i])) ?? 0,
      diffId,
    })),
  )
}

/** The exact configs, read from the daemon's image store, and where every layer lives. */
export async function planFromStore({ info, source, base, kept }: PlanFacts): Promise<StoreState> {
  const config = JSON.parse(await readImageConfig(info, source.Id)) as Record<string, unknown>
  const baseConfig = base ? (JSON.parse(await readImageConfig(info, base.Id)) as { history?: unknown[] }) : null
  const dirs = layerDirs(source)
  // With no base image (--layers), the kept layers' history is the source's own, cut after them.
  const history = (config.history ?? []) as HistoryEntry[]
  return {
    config,
    baseHistory: baseConfig ? (baseConfig.history ?? []) : historyUpToLayer(history, kept),
    layerDirs: dirs,
    baseDescriptors: await baseDescriptors(info, (source.RootFS.Layers ?? []).slice(0, kept)),
  }
}

/** The image parts of a kernel method's state. */
export function storeParts(s: StoreState): ImageParts {
  return { config: s.config, baseHistory: s.baseHistory, baseDescriptors: s.baseDescriptors }
}

/**
 * The read-only overlay of the whole image, as both overlay methods mount it first; with the
 * base's layer dirs in the order overlayfs takes them, for the view each builds over the base.
 */
export async function mountSourceView(plan: Plan<StoreState>, ws: Workspace): Promise<{ sourceView: string; baseLowers: string[] }> {
  const dirs = plan.method.state.layerDirs
  // overlayfs lists lower dirs top first; the plan keeps them base first.
  const baseLowers = dirs.slice(0, plan.base.layers.length).reverse()
  const sourceView = await workspaceDir(ws, 'source')
  await mountOverlay(ws, sourceView, [...dirs].reverse())
  return { sourceView, baseLowers }
}

/** pack: the entries diff recorded, their content read from the host paths they name. */
export function storeLayer(d: Diffed<StoreState>): LayerSource {
  if (d.entries === null) throw new DflattenError('bad-input', `dflatten pack: the ${d.method.name} method's diffed document lacks its entries`)
  return { entries: readEntries(d.entries) }
}
