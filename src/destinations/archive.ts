/**
 * The image archive as a destination: what `docker load` reads, written to a file or a stream
 * (`--output`). By default a complete image, the base's blobs streamed in from their source as
 * they come, so it loads on a daemon that lacks the base; `layerOnly` keeps the small form
 * that loads only where the base already is. The daemon destination (daemon.ts) streams the
 * same archive into `docker load`.
 *
 * An archive entry needs its size before its bytes, and a compressed blob's size is known only
 * once it is made: a compressed layer is read twice, measured, then streamed again (the codecs
 * are deterministic, see src/compress).
 */
import { Transform, type Readable, type Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { imageArchive, type ImageArchiveInput, type ImageArchiveResult, type MeasuredBlob } from '../image-archive.js'
import { DflattenError } from '../errors.js'
import { COMPRESSIONS, type Compression, type CompressionChoice } from '../compress/index.js'
import { eachBlob } from './blobs.js'
import { layerBlob, layerMediaType, measureLayer } from './layer.js'
import type { Destination, NewLayer, ResultImage, WriteOptions, WriteResult } from './destination.js'

/** Which destinations take zstd, for the messages that refuse it. */
export const ZSTD_TAKERS =
  'zstd layers go to a registry (-t docker://...), an OCI dir (-t oci:DIR) or a Docker 26 daemon; Docker 20.10 cannot load them'

/** The compression a write uses: the one asked for, else gzip where blobs are kept and none elsewhere; refused where it cannot work. */
export function compressionFor(dest: Pick<Destination, 'label' | 'keepsBlobs' | 'needsSize' | 'accepts'>, asked: CompressionChoice | undefined, layer?: NewLayer): CompressionChoice {
  const choice: CompressionChoice = asked ?? { kind: dest.keepsBlobs ? 'gzip' : 'none' }
  if (!dest.accepts.includes(choice.kind)) {
    throw new DflattenError('usage', `${dest.label} does not take ${choice.kind} layers; ${choice.kind === 'zstd' ? ZSTD_TAKERS : `use --compress ${dest.accepts.join(' or ')}`}`)
  }
  if (layer && dest.needsSize) {
    if (layer.size === null) {
      throw new DflattenError('usage', `this method learns the layer's size only as it streams, and ${dest.label} needs it first; push to a registry (-t docker://...) or an OCI dir (-t oci:DIR) instead`)
    }
    if (choice.kind !== 'none' && !layer.reopenable) {
      throw new DflattenError('usage', `a compressed layer for ${dest.label} is read twice, and this method reads it once; use --compress none, or push to a registry (-t docker://...) or an OCI dir (-t oci:DIR)`)
    }
  }
  return choice
}

/** An archive file may go anywhere, so it takes every compression (zstd: see ZSTD_TAKERS). */
export const ARCHIVE_COMPRESSIONS: readonly Compression[] = COMPRESSIONS

export interface ArchiveOptions {
  /** Leave the base's blobs out: the archive then loads only where the base already is. */
  layerOnly?: boolean
  /** The new layer's blob is already in the daemon's store: the archive names it, carries none. */
  stored?: MeasuredBlob
}

/** The archive for `image`, as a stream, and what it held once it has ended. */
export async function archiveStream(image: ResultImage, opts: WriteOptions & ArchiveOptions): Promise<{ stream: Readable; result: () => ImageArchiveResult }> {
  const choice = opts.compression
  let layer: ImageArchiveInput['layer']
  if (opts.stored) {
    layer = { stored: opts.stored }
  } else if (image.layer.size === null) {
    throw new DflattenError('usage', 'this method learns the layer\'s size only as it streams, and an image archive needs it first; push to a registry (-t docker://...) or an OCI dir (-t oci:DIR) instead')
  } else if (choice.kind === 'none') {
    layer = { size: image.layer.size, stream: progressed(image.layer, opts) }
  } else {
    const m = await measureLayer(image.layer, choice, opts)
    const second = layerBlob(image.layer, choice, { ...opts, stage: 'pack' })
    const blob = { mediaType: layerMediaType('oci', choice.kind), digest: m.blob.digest, size: m.blob.size, diffId: m.raw.digest, tarSize: m.raw.size }
    layer = { size: blob.size, stream: second.stream, blob }
  }
  let done: ImageArchiveResult | null = null
  const stream = imageArchive({
    baseLayers: image.baseLayers,
    baseBlobs: opts.layerOnly ? undefined : eachBlob(image.base, image.baseLayers, opts.signal),
    layer,
    config: image.config,
    tags: image.tags,
    onDone: (r) => (done = r),
  })
  return {
    stream,
    result: () => {
      if (!done) throw new DflattenError('tool-failed', 'the archive was not completed')
      return done
    },
  }
}

/** The plain layer with its bytes counted for progress. */
function progressed(layer: NewLayer, opts: WriteOptions): Readable {
  const source = layer.open()
  if (!opts.onProgress) return source
  let done = 0
  const total = layer.size ?? 0
  const counter = new Transform({
    highWaterMark: 1024 * 1024,
    transform(c: Buffer, _enc, cb) {
      done += c.length
      opts.onProgress?.('pack', done, total)
      cb(null, c)
    },
  })
  source.on('error', (e) => counter.destroy(e))
  counter.on('close', () => source.destroy())
  return source.pipe(counter)
}

export function toResult(r: ImageArchiveResult): WriteResult {
  return { imageId: r.imageId, manifestDigest: r.manifestDigest, layer: r.layer }
}

/**
 * An archive written to `sink` (a file, stdout). `keepsBlobs` follows the store of the daemon it
 * came from, so the default compression is what that daemon would keep.
 */
export function archiveDestination(sink: Writable, opts: ArchiveOptions & { keepsBlobs: boolean; label?: string }): Destination {
  return {
    label: opts.label ?? 'the image archive',
    keepsBlobs: opts.keepsBlobs,
    needsSize: true,
    accepts: ARCHIVE_COMPRESSIONS,
    async write(image, w) {
      const { stream, result } = await archiveStream(image, { ...w, layerOnly: opts.layerOnly })
      await pipeline(stream, sink, { signal: w.signal })
      return toResult(result())
    },
  }
}
