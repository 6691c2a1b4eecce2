/**
 * Stage 4, pack: stream the image archive: the new layer (from the entries diff wrote, content
 * read as it goes), its config, the manifests. The layer's size is known before any content is
 * read, so the archive needs no temp file.
 */
import { Duplex, type Readable } from 'node:stream'
import { readEntries, type LayerEntry } from '../entry.js'
import { createContainer, dockerExport, dockerSave, explainFailure, finished, type Streamed } from '../docker.js'
import { SaveContent } from '../methods/save.js'
import { ExportContent, SECOND_SAVE_HINT } from '../methods/export-content.js'
import { DflattenError } from '../errors.js'
import { claimContainerName, removeWorkspaceContainer } from '../workspace.js'
import { imageArchive, type ImageArchiveResult } from '../image-archive.js'
import { layerStream } from '../layer-tar.js'
import { expectDoc, type Diffed } from '../plan.js'
import { destroy } from '../cleanup.js'

export interface PackOptions {
  /** Leave the workspace mounted after packing (for debugging with the stage commands). */
  keep?: boolean
  /** Extra names the loaded image gets, besides the plan's target. */
  tags?: string[]
  onDone?: (result: PackResult) => void
  /** Told the layer's size before its bytes start to flow (for progress). */
  onSize?: (bytes: number) => void
  /** Stops the second docker save of the save method. */
  signal?: AbortSignal
}

export type PackResult = ImageArchiveResult

/** The new image's config: the original's, on the base's layers plus the new one. */
export function flattenedConfig(d: Diffed, diffId: string): object {
  const created = (d.config.created as string | undefined) ?? d.source.created
  return {
    ...d.config,
    rootfs: { type: 'layers', diff_ids: [...d.base.layers, diffId] },
    history: [
      ...d.base.history,
      {
        created,
        created_by: `dflatten: ${d.source.layers.length - d.base.layers.length} layers squashed into one`,
        comment: d.marker,
      },
    ],
  }
}

/**
 * The image archive for a diffed workspace, as a stream. diff worked out the layer's exact size;
 * imageArchive checks that the bytes streamed match it.
 */
export async function pack(d: Diffed, opts: PackOptions = {}): Promise<Readable> {
  const size = d.layerSize
  opts.onSize?.(size)
  let stream: Readable
  if (d.method !== 'save') stream = layerStream(readEntries(d.entries))
  else if (d.saveContent?.from === 'export') stream = exportedLayerStream(d, opts.signal)
  else stream = savedLayerStream(d, opts.signal)
  return imageArchive({
    baseLayers: d.baseDescriptors,
    layer: { size, stream },
    config: (diffId) => flattenedConfig(d, diffId),
    tags: [d.target, ...(opts.tags ?? [])],
    onDone: opts.onDone,
  })
}

/**
 * The save method's layer: content comes from a second `docker save`, read forward only, in the
 * order the entries file lists it; every layer read is checked against pass 1's diff id.
 */
function savedLayerStream(d: Diffed, signal?: AbortSignal): Readable {
  const save = dockerSave(d.source.id, signal)
  const content = new SaveContent(save.stdout, new Map(Object.entries(d.saveMembers ?? {})))
  async function* body(e: LayerEntry): AsyncGenerator<Buffer> {
    if (!e.from) throw new Error(`entry ${e.path.toString()} has no content in the save stream`)
    try {
      yield* await content.body(e.from)
    } catch (err) {
      // A failed save ends its output early: say why it failed rather than what was cut short.
      throw await explainFailure(save, err)
    }
  }
  const stream = layerStream(readEntries(d.entries), body, async () => {
    try {
      await content.finish()
    } catch (err) {
      throw await explainFailure(save, err)
    }
    await finished(save)
  })
  stream.on('close', () => {
    if (save.child.exitCode === null) save.child.kill()
  })
  return stream
}

/**
 * The save method's layer with content from `docker export` of a container of the image (see
 * export-content.ts): entries without content first, in the entries file's order; then the files
 * as the export delivers them; then the extra names of hardlinked files. The export is read only
 * as far as the last file it must supply. The container belongs to the workspace, which removes
 * it.
 */
function exportedLayerStream(d: Diffed, signal?: AbortSignal): Readable {
  let run: Streamed | null = null
  let content: ExportContent | null = null
  // A failed export ends its output early: say why it failed rather than what was cut short.
  const explained = async (e: unknown): Promise<unknown> => (run ? explainFailure(run, e) : e)
  async function start(): Promise<NonNullable<typeof run>> {
    const name = await claimContainerName(d.workspace.dir)
    await createContainer(name, d.source.id, d.source.platform, signal).catch((e: unknown) => {
      if (!(e instanceof DflattenError)) throw e
      throw new DflattenError('tool-failed', `cannot make a container to read ${d.source.ref} through docker export (${e.message}); ${SECOND_SAVE_HINT}`)
    })
    return (run = dockerExport(name, signal))
  }
  async function stop(): Promise<void> {
    if (run && run.child.exitCode === null) run.child.kill()
    await run?.child.catch(() => undefined)
    // Done with it; should this fail, removing the workspace tries again and reports.
    await removeWorkspaceContainer(d.workspace.dir).catch(() => undefined)
  }
  async function* ordered(): AsyncGenerator<LayerEntry> {
    // Started before the entries are read, so the daemon creates the container and begins its
    // walk while the entries without content go out (on the large benchmark image, 1.5 s).
    const started = start()
    started.catch(() => undefined) // awaited below; until then a failure must not go unhandled
    try {
      // The entries file lists them as diff wrote them: no content, content, then hardlinks.
      const wanted = new Map<string, LayerEntry>()
      for await (const e of readEntries(d.entries)) {
        if (e.from) wanted.set(e.path.toString('latin1'), e)
        else if (!wanted.size) yield e
      }
      if (wanted.size) {
        content = new ExportContent((await started).stdout)
        try {
          yield* content.entries(wanted)
        } catch (e) {
          throw await explained(e)
        }
      }
    } finally {
      await started.catch(() => undefined)
      await stop()
    }
    let after = false
    for await (const e of readEntries(d.entries)) {
      if (e.from) after = true
      else if (after) yield e
    }
  }
  async function* body(e: LayerEntry): AsyncGenerator<Buffer> {
    try {
      yield* content!.body(e)
    } catch (err) {
      throw await explained(err)
    }
  }
  return layerStream(ordered(), body)
}

/** The stage: a diffed document in, the archive's bytes out; the workspace goes when done. */
export function packStage(opts: PackOptions = {}): Duplex {
  return Duplex.from(async function* (docs: AsyncIterable<unknown>) {
    for await (const doc of docs) {
      const d = expectDoc(doc, 'diffed', 'dflatten pack')
      try {
        yield* await pack(d, opts)
      } finally {
        if (!opts.keep) await destroy(d.workspace.dir)
      }
    }
  })
}
