/**
 * Stage 2, mount: a read-only view of the whole image, and either a read-only view of the base
 * (default method) or a writable stack of the base's layers over an empty upper dir
 * (overlay-copy). Docker's layer dirs are only ever lower dirs: overlayfs never writes to those.
 */
import type { Transform } from 'node:stream'
import { join } from 'node:path'
import { createWorkspace, mountOverlay } from '../workspace.js'
import { destroy, track } from '../cleanup.js'
import type { Mounted } from '../plan.js'
import { objectStage, type StageContext } from './stream.js'
import { expectDoc } from '../plan.js'

export async function mount(doc: unknown, ctx: StageContext = {}): Promise<Mounted> {
  const plan = expectDoc(doc, 'plan', 'dflatten mount')
  ctx.signal?.throwIfAborted()
  const ws = await createWorkspace(track)
  try {
    // overlayfs lists lower dirs top first; the plan keeps them base first.
    const all = [...plan.layerDirs].reverse()
    const base = plan.layerDirs.slice(0, plan.base.layers.length).reverse()
    // save mounts nothing: its work dir only holds the entries file.
    if (plan.method !== 'save') await mountOverlay(ws, ws.sourceView, all)
    if (plan.method === 'overlay-copy') {
      await mountOverlay(ws, ws.stack, base, { upper: ws.upper, work: ws.work })
    } else if (plan.method === 'overlay') {
      // overlayfs wants two lower dirs without an upper one; an empty base is the empty dir.
      if (base.length) await mountOverlay(ws, ws.baseView, base)
      else ws.baseView = join(ws.dir, 'empty')
    }
  } catch (e) {
    await destroy(ws.dir)
    throw e
  }
  return { ...plan, dflatten: 'mounted', workspace: ws }
}

export function mountStage(ctx: StageContext = {}): Transform {
  return objectStage(mount, ctx)
}
