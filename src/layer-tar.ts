/**
 * The layer tar dflatten writes: ustar + PAX (src/tar), its exact size known from metadata alone
 * before any content is read, which lets the layer stream into the image archive with no temp
 * file; and the digest taken of it on the way.
 */
import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import { closeSync, openSync, readSync } from 'node:fs'
import { Readable, Transform, type TransformCallback } from 'node:stream'
import type { LayerEntry } from './entry.js'
import { opaquePath, whiteoutPath } from './whiteout.js'
import { DflattenError } from './errors.js'
import { encodeTarHeader, END_OF_ARCHIVE, padding, TYPE, ZERO_BLOCK } from './tar/index.js'

const READ_CHUNK = 1024 * 1024
const NOTHING = Buffer.alloc(0)
const ONE_BYTE = Buffer.alloc(1)
const NO_XATTRS: Array<[string, Buffer]> = []

const TYPEFLAG: Record<LayerEntry['kind'], string> = {
  file: TYPE.file,
  whiteout: TYPE.file,
  opaque: TYPE.file,
  hardlink: TYPE.hardlink,
  symlink: TYPE.symlink,
  char: TYPE.char,
  block: TYPE.block,
  dir: TYPE.dir,
  fifo: TYPE.fifo,
}

/** The name an entry has in the layer tar. */
export function tarName(e: LayerEntry): Buffer {
  switch (e.kind) {
    case 'whiteout':
      return whiteoutPath(e.path)
    case 'opaque':
      return opaquePath(e.path)
    case 'dir':
      return Buffer.concat([e.path, Buffer.from('/')])
    default:
      return e.path
  }
}

/** The header blocks of one entry (see src/tar/encode.ts for when PAX records come first). */
export function encodeHeader(e: LayerEntry): Buffer {
  return encodeTarHeader({
    name: tarName(e),
    type: TYPEFLAG[e.kind],
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    size: e.size,
    mtime: e.mtime,
    linkname: e.linkname ?? NOTHING,
    devmajor: e.devmajor ?? 0,
    devminor: e.devminor ?? 0,
    xattrs: e.xattrs ?? NO_XATTRS,
  })
}

/** Bytes of content an entry carries in the tar. */
function contentSize(e: LayerEntry): number {
  return e.kind === 'file' ? e.size : 0
}

/** The bytes one entry takes in the layer tar: header blocks, content, padding. */
export function entryTarBytes(e: LayerEntry): number {
  const n = contentSize(e)
  return encodeHeader(e).length + n + padding(n)
}

/** The exact byte size of the layer tar, from metadata alone. */
export async function layerSize(entries: Iterable<LayerEntry> | AsyncIterable<LayerEntry>): Promise<number> {
  let total = END_OF_ARCHIVE
  for await (const e of entries) total += entryTarBytes(e)
  return total
}

/** Bytes of an empty layer tar: just the end-of-archive blocks. */
export const EMPTY_LAYER_BYTES = END_OF_ARCHIVE

/** Where pack gets a file's bytes: by default from the path in `entry.source`. */
export type ContentSource = (e: LayerEntry) => Promise<AsyncIterable<Buffer>> | AsyncIterable<Buffer>

/** A file's content from the host, read up to its recorded size (more is caught below). */
export async function* fileContent(e: LayerEntry): AsyncGenerator<Buffer> {
  if (e.source === undefined) throw new Error(`entry ${e.path.toString()} has no content source`)
  const fh = await open(e.source, 'r')
  try {
    let position = 0
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.min(READ_CHUNK, Math.max(e.size - position, 1)))
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, position)
      if (bytesRead === 0) return
      position += bytesRead
      yield chunk.subarray(0, bytesRead)
    }
  } finally {
    await fh.close()
  }
}

async function* exactly(e: LayerEntry, content: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let got = 0
  for await (const chunk of content) {
    got += chunk.length
    if (got > e.size) break
    yield chunk
  }
  if (got !== e.size) {
    throw new DflattenError('bad-data', `${e.path.toString()} changed size while being packed (expected ${e.size} bytes)`)
  }
}

/** Output is handed on in chunks of about this size, whatever the size of the files. */
const OUT_CHUNK = 1024 * 1024
/** Files up to this size are copied into the output chunk (from the host: read whole, synchronously). */
const SMALL_FILE = 256 * 1024

/**
 * Read a small file of the host into `into` at `at`. Synchronous on purpose: for the many small
 * files of a typical image, the thread-pool round trips of open, read and close cost more than
 * the read.
 */
function readSmallFile(e: LayerEntry, into: Buffer, at: number): void {
  if (e.source === undefined) throw new Error(`entry ${e.path.toString()} has no content source`)
  const fd = openSync(e.source, 'r')
  try {
    let got = 0
    while (got < e.size) {
      const n = readSync(fd, into, at + got, e.size - got, got)
      if (n === 0) break
      got += n
    }
    if (got !== e.size || readSync(fd, ONE_BYTE, 0, 1, e.size) !== 0) {
      throw new DflattenError('bad-data', `${e.path.toString()} changed size while being packed (expected ${e.size} bytes)`)
    }
  } finally {
    closeSync(fd)
  }
}

/**
 * The output chunk being filled: headers, small files and padding are copied straight into it,
 * so each byte of them is copied once and each chunk is one allocation, which keeps the garbage
 * (and so the resident size) low.
 */
class Chunk {
  private buf = Buffer.allocUnsafe(OUT_CHUNK)
  private used = 0

  get size(): number {
    return this.used
  }
  /** Whether `n` more bytes fit without a flush. */
  fits(n: number): boolean {
    return this.used + n <= OUT_CHUNK
  }
  /** `n` bytes of room at the end, to be filled by the caller. */
  claim(n: number): [Buffer, number] {
    const at = this.used
    this.used += n
    return [this.buf, at]
  }
  /** Copy `b` in; the chunks it fills are returned to be handed on. */
  *put(b: Buffer): Generator<Buffer> {
    let from = 0
    while (from < b.length) {
      const n = Math.min(b.length - from, OUT_CHUNK - this.used)
      b.copy(this.buf, this.used, from, from + n)
      this.used += n
      from += n
      if (this.used === OUT_CHUNK) yield this.take()
    }
  }
  /**
   * What has been filled, handed on. A chunk mostly full takes the buffer along (the next bytes
   * go into a new one); a small one, such as the header before a large file, is copied out,
   * or every such header would hold a whole buffer while it travels.
   */
  take(): Buffer {
    let out = this.buf.subarray(0, this.used)
    if (this.used < OUT_CHUNK / 4) out = Buffer.from(out)
    else this.buf = Buffer.allocUnsafe(OUT_CHUNK)
    this.used = 0
    return out
  }
}

/**
 * Stream the layer tar for `entries`, which must be in their final order. Headers, small files
 * and padding are gathered into chunks of 1 MiB: every chunk passes several stream stages on
 * its way to its destination, and per-chunk costs would otherwise dominate for small files.
 * Larger files' content is handed on as it comes.
 */
export function layerStream(
  entries: Iterable<LayerEntry> | AsyncIterable<LayerEntry>,
  content: ContentSource = fileContent,
  /** Runs after the last entry, before the end-of-archive blocks: a failure fails the layer. */
  finish?: () => Promise<void>,
): Readable {
  async function* generate(): AsyncGenerator<Buffer> {
    const out = new Chunk()
    for await (const e of entries) {
      yield* out.put(encodeHeader(e))
      const n = contentSize(e)
      if (n > 0) {
        if (n <= SMALL_FILE) {
          if (!out.fits(n)) yield out.take()
          if (content === fileContent) readSmallFile(e, ...out.claim(n))
          // Copied, not kept as views: a source may reuse the memory it handed out.
          else for await (const c of exactly(e, await content(e))) yield* out.put(c)
        } else {
          if (out.size) yield out.take()
          yield* exactly(e, await content(e))
        }
        yield* out.put(ZERO_BLOCK.subarray(0, padding(n)))
      }
    }
    await finish?.()
    yield* out.put(Buffer.alloc(END_OF_ARCHIVE))
    if (out.size) yield out.take()
  }
  return Readable.from(generate(), { objectMode: false, highWaterMark: OUT_CHUNK })
}

/** A pass-through that computes the sha256 and byte count of what flows through it. */
export class Digester extends Transform {
  private hash = createHash('sha256')
  bytes = 0
  digest = ''
  _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk)
    this.bytes += chunk.length
    cb(null, chunk)
  }
  _flush(cb: TransformCallback): void {
    this.digest = 'sha256:' + this.hash.digest('hex')
    cb()
  }
}

export function sha256(data: Buffer | string): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex')
}
