/**
 * Stage 4, pack: the new layer (entries and content as the method gives them) as a stream a
 * destination consumes (src/destinations), and, as a stage command, the image archive. The
 * layer's size is known before any content is read, so the archive needs no temp file.
 */
import { Duplex, type Readable } from 'node:stream'
import { layerStream } from '../layer-tar.js'
import type { ImageArchiveResult } from '../image-archive.js'
import type { CompressionChoice } from '../compress/index.js'
import { ARCHIVE_COMPRESSIONS, archiveStream, compressionFor } from '../destinations/archive.js'
import { daemonBlobs } from '../destinations/blobs.js'
import type { ResultImage } from '../destinations/destination.js'
import { expectDoc, type Diffed } from '../plan.js'
import type { DaemonInfo } from '../docker.js'
import { DflattenError } from '../errors.js'
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
  /** How the new layer is stored; default: as the plan's daemon keeps layers (see compressionFor). */
  compression?: CompressionChoice
  /** Put the base's blobs in too, so the archive loads where the base is not. */
  complete?: boolean
  /** Told how many bytes of the layer tar were read, per pass. */
  onProgress?: (stage: string, done: number, total: number) => void
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

/** A method with no blob source of its own reads the daemon's: there must be one. */
function daemonOf(d: Diffed): DaemonInfo {
  if (!d.daemon) throw new DflattenError('usage', `the ${d.method.name} method has no daemon to read the base's blobs from`)
  return d.daemon
}

/**
 * The result as a destination takes it: the new layer (re-opened from the entries file for a
 * second read), the base's descriptors and where their blobs are, the config once the diff id
 * is known, the names.
 */
export function packImage(d: Diffed, opts: PackOptions = {}): ResultImage {
  const method = getMethod(d.method.name)
  const ctx = methodContext(opts)
  const open = (): Readable => {
    const source = method.layer(d, ctx)
    const stream = layerStream(source.entries, source.content, source.finish)
    if (source.close) stream.on('close', source.close)
    return stream
  }
  return {
    // A method that has no entries file reads its source once, as it streams.
    layer: { open, size: d.layerSize, reopenable: d.layerSize !== null && d.entries !== null },
    baseLayers: d.image.baseDescriptors,
    base: method.blobSource?.(d, ctx) ?? daemonBlobs(d.base.id, daemonOf(d)),
    config: (diffId) => flattenedConfig(d, diffId),
    tags: [d.target, ...(opts.tags ?? [])],
    format: d.image.manifestFormat,
  }
}

/**
 * The image archive for a diffed workspace, as a stream (what `dflatten pack` writes): only the
 * new layer unless `complete`, compressed as asked or as the plan's daemon keeps layers.
 */
export async function pack(d: Diffed, opts: PackOptions = {}): Promise<Readable> {
  const image = packImage(d, opts)
  const traits = { label: 'an image archive', keepsBlobs: d.daemon?.containerdStore ?? true, needsSize: true, accepts: ARCHIVE_COMPRESSIONS }
  const compression = compressionFor(traits, opts.compression, image.layer)
  if (image.layer.size !== null) opts.onSize?.(image.layer.size)
  const { stream, result } = await archiveStream(image, {
    compression,
    signal: opts.signal,
    layerOnly: !opts.complete,
    onProgress: opts.onProgress,
  })
  stream.on('end', () => opts.onDone?.(result()))
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
