/**
 * The seed's method (copy.ts): mount makes a read-only overlay of the whole image and a writable
 * stack of the base's layers over an empty upper dir; diff rsyncs the one into the other and
 * reads the difference the kernel recorded in the upper dir; pack reads content from there.
 */
import { join } from 'node:path'
import { mountOverlay, workspaceDir } from '../../workspace.js'
import { DflattenError } from '../../errors.js'
import type { Method } from '../method.js'
import { classicTarBytes, reclaimedInDirs } from '../overlay2-reclaim.js'
import { mountSourceView, overlay2Available, planFromStore, storeLayer, storeParts, type StoreState } from '../overlay2.js'
import { copyDifference, upperDirEntries, type CopyViews } from './copy.js'

export interface OverlayCopyState extends StoreState {
  /** mount: the image's view, and the writable stack with its upper dir. */
  views?: CopyViews
}

export const overlayCopy: Method<OverlayCopyState> = {
  name: 'overlay-copy',
  summary: "rsync into a writable overlay stack and pack its upper dir (the 2014 script's way; slower)",
  largeHeap: false,
  available: overlay2Available,
  cacheKey: () => 'overlay-copy',
  plan: (facts) => planFromStore(facts),
  async prepare(plan, ws) {
    const { sourceView, baseLowers: base } = await mountSourceView(plan, ws)
    const [stack, upper, work] = [join(ws.dir, 'stack'), join(ws.dir, 'upper'), join(ws.dir, 'work')]
    for (const d of ['stack', 'upper', 'work']) await workspaceDir(ws, d)
    await mountOverlay(ws, stack, base, { upper, work })
    return { ...plan.method.state, views: { sourceView, stack, upper } }
  },
  async entries(m, ctx) {
    const { views, layerDirs } = m.method.state
    if (!views) throw new DflattenError('bad-input', 'dflatten diff: the mounted document lacks its overlay stack')
    await copyDifference(views, layerDirs.slice(m.base.layers.length), ctx.signal, ctx.settings.rsync)
    return { entries: upperDirEntries(views.upper), image: storeParts(m.method.state), state: m.method.state }
  },
  layer: storeLayer,
  async reclaimed(d, ctx) {
    const { views, layerDirs } = d.method.state
    if (!views) throw new DflattenError('bad-input', 'dflatten: the diffed document lacks its overlay views')
    const kept = d.base.layers.length
    return reclaimedInDirs(layerDirs, kept, views.sourceView, await classicTarBytes(d.daemon, d.source.layers, kept), ctx.reclaimTop)
  },
}
