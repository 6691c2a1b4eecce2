/**
 * Stage 4, pack: stream the image archive: the new layer (from the entries diff wrote, content
 * read as it goes), its config, the manifests. The layer's size is known before any content is
 * read, so the archive needs no temp file.
 */
import { Duplex, type Readable } from 'node:stream'
import { readEntries } from '../entry.js'
import { dockerSave } from '../docker.js'
import { SaveContent } from '../methods/save.js'
import { imageArchive, layerStream, type ImageArchiveResult } from '../archive.js'
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
  return imageArchive({
    baseLayers: d.baseDescriptors,
    layer: { size, stream: d.method === 'save' ? savedLayerStream(d, opts.signal) : layerStream(readEntries(d.entries)) },
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
  const { child, stdout } = dockerSave(d.source.id, signal)
  const content = new SaveContent(stdout, new Map(Object.entries(d.saveMembers ?? {})))
  const stream = layerStream(
    readEntries(d.entries),
    (e) => {
      if (!e.from) throw new Error(`entry ${e.path.toString()} has no content in the save stream`)
      return content.body(e.from)
    },
    async () => {
      await content.finish()
      await child
    },
  )
  stream.on('close', () => {
    if (child.exitCode === null) child.kill()
  })
  return stream
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
