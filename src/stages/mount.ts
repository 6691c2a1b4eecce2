/**
 * Stage 2, mount: a private work dir, and in it what the method needs to read the image
 * (overlay views, a writable stack, or nothing). Whatever it makes is recorded in the work dir,
 * so removing the dir finds it even after kill -9.
 */
import type { Transform } from 'node:stream'
import { createWorkspace } from '../workspace.js'
import { destroy, track } from '../cleanup.js'
import { expectDoc, type Mounted } from '../plan.js'
import { getMethod } from '../methods/index.js'
import { methodContext, objectStage, type StageContext } from './stream.js'

export async function mount(doc: unknown, ctx: StageContext = {}): Promise<Mounted> {
  const plan = expectDoc(doc, 'plan', 'dflatten mount')
  const method = getMethod(plan.method.name)
  ctx.signal?.throwIfAborted()
  const ws = await createWorkspace(track, ctx.settings)
  try {
    const state = await method.prepare(plan, ws, methodContext(ctx))
    return { ...plan, dflatten: 'mounted', workspace: ws, method: { ...plan.method, state } }
  } catch (e) {
    await destroy(ws.dir)
    throw e
  }
}

export function mountStage(ctx: StageContext = {}): Transform {
  return objectStage(mount, ctx)
}
