/**
 * Stage 3, diff: work out the new layer's entries and write them, in layer order, to the
 * workspace's entries file. Each method finds them its own way (see src/methods); all write the
 * same kind of entries, so pack and load are the same for every method.
 */
import { join } from 'node:path'
import type { Transform } from 'node:stream'
import { writeEntries, type LayerEntry } from '../entry.js'
import { expectDoc, type Diffed, type Mounted } from '../plan.js'
import { directEntries } from '../methods/overlay.js'
import { copyDifference, upperDirEntries } from '../methods/overlay-copy.js'
import { indexSave, mergeLayers, savedImage } from '../methods/save.js'
import { exportCanSupply, secondSaveAsked } from '../methods/export-content.js'
import { exportLeaks } from '../methods/export-leak.js'
import { dockerSave, explainFailure, finished } from '../docker.js'
import { EMPTY_LAYER_BYTES, entryTarBytes } from '../archive.js'
import { DflattenError } from '../errors.js'
import { objectStage, type StageContext } from './stream.js'

/** Pass 1 of the save method: index `docker save`, merge the layers above the base. */
async function savedDifference(
  m: Mounted,
  signal?: AbortSignal,
): Promise<{ doc: Mounted; entries: LayerEntry[]; members: Record<string, string>; content: Diffed['saveContent'] }> {
  const above = new Set(m.source.layers.slice(m.base.layers.length))
  const save = dockerSave(m.source.id, signal)
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
  return {
    doc: {
      ...m,
      config,
      base: { ...m.base, history: baseHistory(config.history ?? [], m.base.historyLength, k) },
      baseDescriptors: image.layers.slice(0, k).map((l) => l.descriptor),
    },
    entries,
    members: Object.fromEntries(image.layers.slice(k).map((l) => [l.member, l.diffId])),
    content: saveContentSource(entries, m.daemon),
  }
}

/**
 * Where pass 2 reads content: the export where it can supply it all (see export-content.ts) and
 * leaves the daemon as it found it (see export-leak.ts).
 */
function saveContentSource(entries: LayerEntry[], daemon: Mounted['daemon']): NonNullable<Diffed['saveContent']> {
  if (secondSaveAsked()) {
    return { from: 'save', reason: 'DFLATTEN_SAVE_CONTENT=save asks for a second docker save' }
  }
  const leak = exportLeaks(daemon)
  if (leak) return { from: 'save', reason: `a second docker save: ${leak}` }
  const can = exportCanSupply(entries)
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
  let seen = 0
  const cut = history.findIndex((e) => !e.empty_layer && ++seen === k)
  return k === 0 ? [] : history.slice(0, cut + 1)
}

export async function diff(doc: unknown, ctx: StageContext = {}): Promise<Diffed> {
  let m = expectDoc(doc, 'mounted', 'dflatten diff')
  const layersAbove = m.layerDirs.slice(m.base.layers.length)
  const ws = m.workspace
  let entries: Iterable<LayerEntry> | AsyncIterable<LayerEntry>
  let saveMembers: Record<string, string> | undefined
  let saveContent: Diffed['saveContent']
  if (m.method === 'save') {
    const saved = await savedDifference(m, ctx.signal)
    m = saved.doc
    entries = saved.entries
    saveMembers = saved.members
    saveContent = saved.content
  } else if (m.method === 'overlay-copy') {
    await copyDifference(ws, layersAbove, ctx.signal)
    entries = upperDirEntries(ws.upper)
  } else {
    entries = directEntries(ws, layersAbove)
  }
  // The layer's size is summed on the way, so pack can stream without reading the entries twice.
  let layerSize = EMPTY_LAYER_BYTES
  const sized = (async function* () {
    for await (const e of entries) {
      layerSize += entryTarBytes(e)
      yield e
    }
  })()
  const file = join(ws.dir, 'entries')
  const counts = await writeEntries(file, sized, ctx.signal)
  return { ...m, dflatten: 'diffed', diff: counts, entries: file, layerSize, ...(saveMembers ? { saveMembers, saveContent } : {}) }
}

export function diffStage(ctx: StageContext = {}): Transform {
  return objectStage(diff, ctx)
}
