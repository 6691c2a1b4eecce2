/**
 * The portable method: no root, no mounts, any daemon (remote, rootless, containerd store).
 *
 * `docker save` streams the image, and the layer's size must be known before its bytes with
 * nothing spooled to disk, so the image is read twice:
 *  1. diff: `docker save` is indexed as it streams (first-pass.ts): metadata, and a sha256 of
 *     every file; the layers above the base are merged with OCI whiteout rules (merge.ts).
 *  2. pack: content by default from `docker export` of a container of the image, which is far
 *     cheaper for the daemon than a save (export.ts), each file checked against its hash from
 *     pass 1; where a container cannot show a file, a second `docker save` streams past again
 *     and each kept file's content is taken as it goes by (second-save.ts).
 * Content-bearing entries are ordered as their source delivers them, which is fixed for a given
 * daemon and image. Nothing is written but the entries file.
 */
import { DflattenError } from '../../errors.js'
import { apiAtLeast, type DaemonInfo, dockerSave, explainFailure, finished, historyLength, serverApiVersion } from '../../docker.js'
import { removeWorkspaceContainer } from '../../workspace.js'
import type { Settings } from '../../settings.js'
import type { Mounted } from '../../plan.js'
import type { Method } from '../method.js'
import { historyUpToLayer } from '../../history.js'
import { fromLayerListings, ReclaimTally, type Reclaimed } from '../../reclaim.js'
import { indexSave, savedImage } from './first-pass.js'
import { mergeLayers, type MergedLayer } from './merge.js'
import { exportCanSupply, exportedLayer } from './export.js'
import { savedLayer } from './second-save.js'
import { exportLeaks } from './export-leak.js'

export interface SaveState {
  /** The base's history length as `docker history` counts it (resolve). */
  baseHistoryLength: number
  /** --platform, when it asks for another platform than docker's default: docker save takes it. */
  platform?: string
  /** diff: the layer blobs pack reads content from, member name -> diff id. */
  members?: Record<string, string>
  /**
   * diff: where pack reads the files' content: `docker export` of a container of the image, or a
   * second `docker save` when the export cannot supply it all; and why.
   */
  content?: { from: 'export' | 'save'; reason: string }
  /** diff, on a dry run only: what flattening reclaims, from the first pass's headers. */
  reclaimed?: Reclaimed
}

/** Whether pass 2 reads a second save whatever the layers hold: asked for, or export leaks here. */
function secondSaveReason(settings: Settings, daemon: DaemonInfo): string | null {
  if (settings.saveContent === 'save') return 'DFLATTEN_SAVE_CONTENT=save asks for a second docker save'
  const leak = exportLeaks(daemon)
  return leak ? `a second docker save: ${leak}` : null
}

/**
 * Where pass 2 reads content: the export where it can supply it all (see export.ts) and leaves
 * the daemon as it found it (see export-leak.ts).
 */
function contentSource(merged: MergedLayer, settings: Settings, daemon: DaemonInfo): NonNullable<SaveState['content']> {
  const second = secondSaveReason(settings, daemon)
  if (second) return { from: 'save', reason: second }
  const can = exportCanSupply(merged.withContent())
  if (!can.ok) {
    return {
      from: 'save',
      reason: `a second docker save: the layers change /${can.path.toString()}, which containers cover with a file of Docker's own`,
    }
  }
  return { from: 'export', reason: 'docker export of a container of the image (created, never started)' }
}

/**
 * The base's history is the first entries of the image's (an image's history starts with its
 * parent's). `length` is the base's own count; where the image was not built on that base, cut
 * after its k-th layer entry instead.
 */
export function baseHistory(history: Array<{ empty_layer?: boolean }>, length: number, k: number): unknown[] {
  const layersIn = (h: typeof history): number => h.filter((e) => !e.empty_layer).length
  if (length <= history.length && layersIn(history.slice(0, length)) === k) return history.slice(0, length)
  return historyUpToLayer(history, k)
}

/** Pass 1: index `docker save`, merge the layers above the base; on a dry run, what that reclaims. */
async function savedDifference(m: Mounted<SaveState>, signal?: AbortSignal, reclaimTop?: number) {
  const above = new Set(m.source.layers.slice(m.base.layers.length))
  const save = dockerSave(m.source.id, signal, m.method.state.platform)
  const index = await indexSave(save.stdout, above, new Set(m.base.layers)).catch(async (e: unknown) => {
    const why = await explainFailure(save, e)
    save.child.kill()
    await save.child.catch(() => undefined)
    throw why
  })
  await finished(save)
  const image = savedImage(index)
  const diffIds = image.layers.map((l) => l.diffId)
  if (diffIds.join() !== m.source.layers.join()) {
    throw new DflattenError('bad-data', `docker save of ${m.source.ref} does not hold the layers docker inspect lists`)
  }
  const config = JSON.parse(image.config.toString('utf8')) as { history?: Array<{ empty_layer?: boolean }> }
  const k = m.base.layers.length
  const entries = mergeLayers(
    image.layers.slice(k).map((layer) => ({ layer, entries: index.entries.get(layer.diffId) ?? [] })),
    index.base,
  )
  let reclaimed: Reclaimed | undefined
  if (reclaimTop !== undefined) {
    const tally = new ReclaimTally(reclaimTop)
    fromLayerListings(image.layers.slice(k).map((layer, i) => ({ layer: k + i, entries: index.entries.get(layer.diffId) ?? [] })), tally)
    reclaimed = tally.result(image.layers.slice(k).map((l) => l.tarSize ?? l.size))
  }
  return {
    entries,
    reclaimed,
    image: {
      config,
      baseHistory: baseHistory(config.history ?? [], m.method.state.baseHistoryLength, k),
      baseDescriptors: image.layers.slice(0, k).map((l) => l.descriptor),
    },
    members: Object.fromEntries(image.layers.slice(k).map((l) => [l.member, l.diffId])),
  }
}

export const save: Method<SaveState> = {
  name: 'save',
  summary: "merge the layers of 'docker save' in user space (any daemon, no root; reads the image twice: docker save, then docker export)",
  largeHeap: false,
  async available({ info, otherPlatform }) {
    // Before API 1.48 docker save writes the daemon's default platform only (Docker 26 puts
    // every platform's blobs in the archive, but manifest.json names only that one).
    if (otherPlatform) {
      const api = await serverApiVersion()
      if (!apiAtLeast(api, '1.48')) {
        return { ok: false, reason: `docker save of Docker ${info.serverVersion} (API ${api}) cannot pick the platform ${otherPlatform} (API 1.48 can)` }
      }
    }
    return { ok: true, reason: 'it works with any daemon the docker CLI reaches' }
  },
  // A second save orders files differently: its result is another image, cached apart.
  cacheKey: (settings, daemon) => (secondSaveReason(settings, daemon) ? 'save, content from a second save' : 'save'),
  // The configs come from the archive, in diff; docker history counts the base's entries.
  plan: async ({ base, otherPlatform }) => ({
    baseHistoryLength: base ? await historyLength(base.Id) : 0,
    ...(otherPlatform ? { platform: otherPlatform } : {}),
  }),
  // Nothing to mount: the work dir only holds the entries file (and, in pack, a container record).
  prepare: (plan) => Promise.resolve(plan.method.state),
  async entries(m, ctx) {
    if (!m.daemon) throw new DflattenError('refused-driver', 'the save method reads the image from a Docker daemon; this plan has none')
    const found = await savedDifference(m, ctx.signal, ctx.reclaimTop)
    const content = contentSource(found.entries, ctx.settings, m.daemon)
    return {
      entries: found.entries,
      image: found.image,
      state: { ...m.method.state, members: found.members, content, ...(found.reclaimed ? { reclaimed: found.reclaimed } : {}) },
      detail: `content from ${content.reason}`,
    }
  },
  layer(d, ctx) {
    const { members, content } = d.method.state
    if (!d.entries || !members || !content) throw new DflattenError('bad-input', 'dflatten pack: the save method\'s diffed document lacks its entries')
    return content.from === 'export' ? exportedLayer(d, d.entries, ctx.signal) : savedLayer(d, d.entries, members, ctx.signal)
  },
  reclaimed(d) {
    const found = d.method.state.reclaimed
    if (!found) return Promise.reject(new DflattenError('bad-input', 'dflatten: the save method\'s diffed document lacks the dry run\'s findings'))
    return Promise.resolve(found)
  },
  cleanup: removeWorkspaceContainer,
}
