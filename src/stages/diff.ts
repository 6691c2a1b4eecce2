/**
 * Stage 3, diff: work out the new layer's entries and write them, in layer order, to the
 * workspace's entries file. Each method finds them its own way (see src/methods); all write the
 * same kind of entries, so pack and load are the same for every method.
 */
import { join } from 'node:path'
import type { Transform } from 'node:stream'
import { writeEntries } from '../entry.js'
import { expectDoc, type Diffed } from '../plan.js'
import { directEntries } from '../methods/overlay.js'
import { copyDifference, upperDirEntries } from '../methods/overlay-copy.js'
import { objectStage, type StageContext } from './stream.js'

export async function diff(doc: unknown, ctx: StageContext = {}): Promise<Diffed> {
  const m = expectDoc(doc, 'mounted', 'dflatten diff')
  const layersAbove = m.layerDirs.slice(m.base.layers.length)
  const ws = m.workspace
  let entries
  if (m.method === 'overlay-copy') {
    await copyDifference(ws, layersAbove, ctx.signal)
    entries = upperDirEntries(ws.upper)
  } else {
    entries = directEntries(ws, layersAbove)
  }
  const file = join(ws.dir, 'entries')
  const counts = await writeEntries(file, entries, ctx.signal)
  return { ...m, dflatten: 'diffed', diff: counts, entries: file }
}

export function diffStage(ctx: StageContext = {}): Transform {
  return objectStage(diff, ctx)
}
