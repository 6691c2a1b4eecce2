/**
 * Stage 4, pack: stream the image archive: the new layer (entries and content as the method
 * gives them), its config, the manifests. The layer's size is known before any content is read,
 * so the archive needs no temp file.
 */
import { Duplex, type Readable } from 'node:stream'
import { DflattenError } from '../errors.js'
import { layerStream } from '../layer-tar.js'
import { imageArchive, type ImageArchiveResult } from '../image-archive.js'
import { expectDoc, type Diffed } from '../plan.js'
import { destroy } from '../cleanup.js'
import { getMethod } from '../methods/index.js'
import { entryFacts, newLayerEntry } from '../history.js'
import type { Settings } from '../settings.js'
import { methodContext } from './stream.js'

export interface PackOptions {
  /** Leave the workspace mounted after packing (for debugging with the stage commands). */
  keep?: boolean
  /** Extra names the loaded image gets, besides the plan's target. */
  tags?: string[]
  onDone?: (result: PackResult) => void
  /** Told the layer's size before its bytes start to flow (for progress). */
  onSize?: (bytes: number) => void
  /** Stops what the method reads content from (a docker export, a second docker save). */
  signal?: AbortSignal
  settings?: Settings
}

export type PackResult = ImageArchiveResult

/** The new image's config: the original's, on the base's layers plus the new one. */
export function flattenedConfig(d: Diffed, diffId: string): object {
  const created = (d.image.config.created as string | undefined) ?? d.source.created
  return {
    ...d.image.config,
    rootfs: { type: 'layers', diff_ids: [...d.base.layers, diffId] },
    history: [...d.image.baseHistory, newLayerEntry(entryFacts(d), created)],
  }
}

/**
 * The image archive for a diffed workspace, as a stream. diff worked out the layer's exact size;
 * imageArchive checks that the bytes streamed match it.
 */
// eslint-disable-next-line @typescript-eslint/require-await -- async so that a failure anywhere below reaches the caller as a rejection, not a throw
export async function pack(d: Diffed, opts: PackOptions = {}): Promise<Readable> {
  const size = d.layerSize
  if (size === null) {
    throw new DflattenError('usage', `the ${d.method.name} method learns the layer's size only as it streams, and the image archive needs it first`)
  }
  opts.onSize?.(size)
  const source = getMethod(d.method.name).layer(d, methodContext(opts))
  const stream = layerStream(source.entries, source.content, source.finish)
  if (source.close) stream.on('close', source.close)
  return imageArchive({
    baseLayers: d.image.baseDescriptors,
    layer: { size, stream },
    config: (diffId) => flattenedConfig(d, diffId),
    tags: [d.target, ...(opts.tags ?? [])],
    onDone: opts.onDone,
  })
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
