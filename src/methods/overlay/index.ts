/**
 * The default method: the kernel merges, dflatten only looks (entries.ts). mount makes a
 * read-only overlay of the whole image and one of the base; diff compares them where the layers
 * above the base touch; pack reads content once, from the image's view.
 */
import { mountOverlay, workspaceDir } from '../../workspace.js'
import { DflattenError } from '../../errors.js'
import type { Method } from '../method.js'
import { classicTarBytes, reclaimedInDirs } from '../overlay2-reclaim.js'
import { mountSourceView, overlay2Available, planFromStore, storeLayer, storeParts, type StoreState } from '../overlay2.js'
import { directEntries, type DirectViews } from './entries.js'

export interface OverlayState extends StoreState {
  /** mount: the read-only views. */
  views?: DirectViews
}

export const overlay: Method<OverlayState> = {
  name: 'overlay',
  summary: 'read it from read-only overlay views, content read once, nothing copied (root, local overlay2 daemon)',
  largeHeap: false,
  available: overlay2Available,
  cacheKey: () => 'overlay',
  plan: (facts) => planFromStore(facts),
  async prepare(plan, ws) {
    const { sourceView, baseLowers: base } = await mountSourceView(plan, ws)
    // overlayfs wants two lower dirs without an upper one; an empty base is the empty dir.
    let baseView: string
    if (base.length) await mountOverlay(ws, (baseView = await workspaceDir(ws, 'base')), base)
    else baseView = await workspaceDir(ws, 'empty')
    return { ...plan.method.state, views: { sourceView, baseView } }
  },
  entries(m) {
    const { views, layerDirs } = m.method.state
    if (!views) return Promise.reject(new DflattenError('bad-input', 'dflatten diff: the mounted document lacks its overlay views'))
    return Promise.resolve({ entries: directEntries(views, layerDirs.slice(m.base.layers.length)), image: storeParts(m.method.state), state: m.method.state })
  },
  layer: storeLayer,
  async reclaimed(d, ctx) {
    const { views, layerDirs } = d.method.state
    if (!views) throw new DflattenError('bad-input', 'dflatten: the diffed document lacks its overlay views')
    const kept = d.base.layers.length
    return reclaimedInDirs(layerDirs, kept, views.sourceView, await classicTarBytes(d.daemon, d.source.layers, kept), ctx.reclaimTop)
  },
}
