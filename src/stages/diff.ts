/**
 * Stage 3, diff: the method works out the new layer's entries; this writes them, in layer order,
 * to the workspace's entries file, summing the layer's size on the way. All methods give the same
 * kind of entries, so pack and load are the same for every method.
 */
import { join } from 'node:path'
import type { Transform } from 'node:stream'
import { writeEntries } from '../entry.js'
import { expectDoc, type Diffed } from '../plan.js'
import { getMethod } from '../methods/index.js'
import { EMPTY_LAYER_BYTES, entryTarBytes } from '../layer-tar.js'
import { methodContext, objectStage, type StageContext } from './stream.js'

export async function diff(doc: unknown, ctx: StageContext = {}): Promise<Diffed> {
  const m = expectDoc(doc, 'mounted', 'dflatten diff')
  const found = await getMethod(m.method.name).entries(m, methodContext(ctx))
  const method = { ...m.method, state: found.state, ...(found.detail ? { detail: found.detail } : {}) }
  const base = { ...m, dflatten: 'diffed' as const, method, image: found.image }
  // A one-pass method gives its entries only with their content, in pack.
  if (!found.entries) return { ...base, diff: null, entries: null, layerSize: null }
  const entries = found.entries
  // The layer's size is summed on the way, so pack can stream without reading the entries twice.
  let layerSize = EMPTY_LAYER_BYTES
  const sized = (async function* () {
    for await (const e of entries) {
      layerSize += entryTarBytes(e)
      yield e
    }
  })()
  const file = join(m.workspace.dir, 'entries')
  const counts = await writeEntries(file, sized, ctx.signal)
  return { ...base, diff: counts, entries: file, layerSize }
}

export function diffStage(ctx: StageContext = {}): Transform {
  return objectStage(diff, ctx)
}
