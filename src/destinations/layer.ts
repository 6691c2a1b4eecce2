/**
 * The new layer's blob: the uncompressed tar pack makes, compressed as chosen, with the tar's own
 * digest (the diff id) and size taken on the way; and the media types a manifest names layers
 * by, in the OCI and the Docker v2 families.
 */
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { compress, measure, mediaTypeSuffix, type Compression, type CompressionChoice, type Measured } from '../compress/index.js'
import { DflattenError } from '../errors.js'
import { pieces } from '../pieces.js'
import type { ManifestFormat, NewLayer, WriteOptions } from './destination.js'

export const OCI = {
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  index: 'application/vnd.oci.image.index.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
} as const

export const DOCKER = {
  manifest: 'application/vnd.docker.distribution.manifest.v2+json',
  config: 'application/vnd.docker.container.image.v1+json',
  layer: 'application/vnd.docker.image.rootfs.diff.tar',
  layerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const

/** How a layer media type says its blob is compressed. */
export function compressionOf(mediaType: string): Compression {
  if (/[+.]gzip$/.test(mediaType)) return 'gzip'
  if (/[+.]zstd$/.test(mediaType)) return 'zstd'
  return 'none'
}

/** Docker v2 manifests have no zstd layers: a zstd result is an OCI image whatever the source's. */
export function formatFor(format: ManifestFormat | undefined, kind: Compression): ManifestFormat {
  return format === 'docker' && kind !== 'zstd' ? 'docker' : 'oci'
}

/** A layer's media type in a family, for a blob compressed as `kind`. */
export function layerMediaType(format: ManifestFormat, kind: Compression): string {
  if (format === 'oci') return OCI.layer + mediaTypeSuffix(kind)
  return kind === 'gzip' ? DOCKER.layerGzip : DOCKER.layer
}

/**
 * A base layer's media type in the manifest's family. Only the plain layer types are
 * translated; anything else (foreign or non-distributable layers) keeps its own.
 */
export function baseMediaType(mediaType: string, format: ManifestFormat): string {
  const plain = [OCI.layer, `${OCI.layer}+gzip`, `${OCI.layer}+zstd`, DOCKER.layer, DOCKER.layerGzip]
  if (!plain.includes(mediaType)) return mediaType
  const kind = compressionOf(mediaType)
  return layerMediaType(kind === 'zstd' ? 'oci' : format, kind)
}

/** The tar's digest and size, valid once the blob stream has ended. */
export interface TarFacts {
  readonly size: number
  readonly digest: string
}

/** Bytes of the uncompressed tar, counted and hashed, progress told per chunk. */
function counted(layer: NewLayer, stage: string, opts: Pick<WriteOptions, 'onProgress'>, facts: { hash?: ReturnType<typeof createHash>; size: number }) {
  const total = layer.size ?? 0
  return (async function* () {
    for await (const c of pieces(layer.open())) {
      facts.hash?.update(c)
      facts.size += c.length
      opts.onProgress?.(stage, facts.size, total)
      yield c
    }
    if (layer.size !== null && facts.size !== layer.size) {
      throw new DflattenError('bad-data', `layer size mismatch: computed ${layer.size}, wrote ${facts.size}`)
    }
  })()
}

/**
 * One read of the layer as a blob: the stream of its (compressed) bytes, and the tar's digest
 * and size once that stream has ended.
 */
export function layerBlob(
  layer: NewLayer,
  choice: CompressionChoice,
  opts: Pick<WriteOptions, 'onProgress' | 'signal'> & { stage: string },
): { stream: Readable; tar: () => TarFacts } {
  const hash = createHash('sha256')
  const facts = { hash, size: 0 }
  let digest: string | null = null
  const source = counted(layer, opts.stage, opts, facts)
  const stream = Readable.from(compress(source, choice, { signal: opts.signal }), { objectMode: false, highWaterMark: 1024 * 1024 })
  return {
    stream,
    tar: () => ({ size: facts.size, digest: (digest ??= `sha256:${hash.digest('hex')}`) }),
  }
}

/** The first of two reads: the blob's size and digest, and the tar's, with nothing kept. */
export async function measureLayer(layer: NewLayer, choice: CompressionChoice, opts: Pick<WriteOptions, 'onProgress' | 'signal'>): Promise<Measured> {
  // measure hashes the tar itself.
  const facts = { size: 0 }
  return measure(counted(layer, 'measure', opts, facts), choice, { signal: opts.signal })
}
