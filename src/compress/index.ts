/**
 * How the new layer is stored where blobs are kept (the containerd image store, registries, OCI
 * dirs): gzip, zstd or as it is. A compressed blob's size is not known before it is made, and an
 * archive entry needs its size before its bytes; since both codecs here are deterministic, a
 * first pass measures the blob (size and digest) and a second streams the very same bytes.
 */
import { createHash } from 'node:crypto'
import { gzip } from './gzip.js'
import { zstd } from './zstd.js'
import { DflattenError } from '../errors.js'

export const COMPRESSIONS = ['gzip', 'zstd', 'none'] as const
export type Compression = (typeof COMPRESSIONS)[number]

export interface CompressionChoice {
  kind: Compression
  /** The codec's level; default DEFAULT_LEVEL[kind]. */
  level?: number
}

/** The levels the benchmark chose (bench/compress.ts measures them). */
export const DEFAULT_LEVEL: Record<Compression, number> = { gzip: 3, zstd: 3, none: 0 }
const LEVELS: Record<Compression, [number, number]> = { gzip: [1, 9], zstd: [1, 19], none: [0, 0] }

/** Parse `gzip`, `zstd`, `none`, or `gzip:LEVEL`/`zstd:LEVEL`. */
export function parseCompression(text: string): CompressionChoice {
  // split gives at least one piece; a level may not follow.
  const [kind, level, ...rest] = text.split(':') as [string, string?, ...string[]]
  if (!(COMPRESSIONS as readonly string[]).includes(kind) || rest.length) {
    throw new DflattenError('usage', `unknown compression ${JSON.stringify(text)}; use ${COMPRESSIONS.join(', ')} (gzip and zstd take :LEVEL)`)
  }
  const k = kind as Compression
  if (level === undefined) return { kind: k }
  const n = Number(level)
  const [lo, hi] = LEVELS[k]
  if (!/^\d+$/.test(level) || n < lo || n > hi || k === 'none') {
    throw new DflattenError('usage', k === 'none' ? 'compression none takes no level' : `${k} levels go from ${lo} to ${hi}, not ${level}`)
  }
  return { kind: k, level: n }
}

/** The suffix the OCI layer media type takes for this compression. */
export function mediaTypeSuffix(kind: Compression): '' | '+gzip' | '+zstd' {
  return kind === 'none' ? '' : kind === 'gzip' ? '+gzip' : '+zstd'
}

export interface CompressOptions {
  signal?: AbortSignal
  /** The zstd program, for zstd. */
  zstdCommand?: string
}

/** The blob for `source` under `choice`: always the same bytes for the same input. */
export function compress(source: AsyncIterable<Buffer>, choice: CompressionChoice, opts: CompressOptions = {}): AsyncIterable<Buffer> {
  const level = choice.level ?? DEFAULT_LEVEL[choice.kind]
  if (choice.kind === 'gzip') return gzip(source, { level })
  if (choice.kind === 'zstd') return zstd(source, { level, command: opts.zstdCommand, signal: opts.signal })
  return source
}

export interface Measured {
  /** Bytes and sha256 of the stream as it came (the layer tar: its diff id). */
  raw: { size: number; digest: string }
  /** Bytes and sha256 of the blob. */
  blob: { size: number; digest: string }
}

/** The first pass: compress `source` and keep only the sizes and digests of both sides. */
export async function measure(source: AsyncIterable<Buffer>, choice: CompressionChoice, opts: CompressOptions = {}): Promise<Measured> {
  const raw = { hash: createHash('sha256'), size: 0 }
  async function* counted(): AsyncGenerator<Buffer> {
    for await (const c of source) {
      raw.hash.update(c)
      raw.size += c.length
      yield c
    }
  }
  const blobHash = createHash('sha256')
  let blobSize = 0
  for await (const c of compress(counted(), choice, opts)) {
    blobHash.update(c)
    blobSize += c.length
  }
  return {
    raw: { size: raw.size, digest: `sha256:${raw.hash.digest('hex')}` },
    blob: { size: blobSize, digest: `sha256:${blobHash.digest('hex')}` },
  }
}
