/**
 * Pass 1's headers, packed. Which layer a blob of `docker save` is shows only when manifest.json
 * arrives, last, so every header of every blob waits until then; as one object and one Buffer a
 * header that cost about as much as the merge and the rest of pass 1 together. Here a header is a
 * few bytes in a shared buffer, and the merge reads them back as headers one at a time.
 */
import type { TarHeader } from '../../tar/index.js'

/** A header as pass 1 keeps it, read back: names cleaned, a regular file's content hashed. */
export interface IndexedEntry extends TarHeader {
  /** Position of the entry in its layer tar, counted from 0. */
  index: number
  /** A regular file's content digest (base64 sha256), so content read elsewhere can be checked. */
  sha256?: string
  /** Where a packed store holds it (PackedHeaders.header reads it back). */
  at?: number
}

const FIRST_CHUNK = 4 * 1024
const MAX_CHUNK = 1024 * 1024
const SHA256_BYTES = 32

const HAS_LINK = 1
const HAS_DEVICE = 2
const HAS_XATTRS = 4
const HAS_SHA256 = 8

/** Fixed part: type, flags, mode, uid, gid (u32 each), size, mtime (doubles), name length. */
const FIXED = 1 + 1 + 4 * 3 + 8 * 2 + 4

/** Where a file's digest goes once its content has passed. */
export interface DigestSlot {
  chunk: Buffer
  offset: number
}

/** The headers of one layer blob, in tar order; `index` is the position in the blob. */
export class PackedHeaders implements Iterable<IndexedEntry> {
  private readonly chunks: Buffer[] = []
  /** Where each chunk starts in the store's bytes: `at` counts from the first. */
  private readonly starts: number[] = []
  private current = Buffer.alloc(0)
  private used = 0
  private sealed = false
  /** How many headers it holds. */
  length = 0

  /** Add a header; a regular file gets room for its digest, filled by `setDigest`. */
  add(h: TarHeader): DigestSlot | null {
    if (this.sealed) throw new Error('packed headers: add after seal')
    const file = h.type === '0'
    const link = h.linkname.length > 0
    const device = h.devmajor !== 0 || h.devminor !== 0
    const xattrs = h.xattrs.length > 0
    let need = FIXED + h.name.length
    if (link) need += 4 + h.linkname.length
    if (device) need += 8
    if (xattrs) {
      need += 2
      for (const [k, v] of h.xattrs) need += 2 + Buffer.byteLength(k, 'utf8') + 4 + v.length
    }
    if (file) need += SHA256_BYTES
    const b = this.room(need)
    let o = this.used
    o = b.writeUInt8(h.type.charCodeAt(0), o)
    o = b.writeUInt8((link ? HAS_LINK : 0) | (device ? HAS_DEVICE : 0) | (xattrs ? HAS_XATTRS : 0) | (file ? HAS_SHA256 : 0), o)
    o = b.writeUInt32LE(h.mode, o)
    o = b.writeUInt32LE(h.uid, o)
    o = b.writeUInt32LE(h.gid, o)
    o = b.writeDoubleLE(h.size, o)
    o = b.writeDoubleLE(h.mtime, o)
    o = b.writeUInt32LE(h.name.length, o)
    o += h.name.copy(b, o)
    if (link) {
      o = b.writeUInt32LE(h.linkname.length, o)
      o += h.linkname.copy(b, o)
    }
    if (device) {
      o = b.writeUInt32LE(h.devmajor, o)
      o = b.writeUInt32LE(h.devminor, o)
    }
    if (xattrs) {
      o = b.writeUInt16LE(h.xattrs.length, o)
      for (const [k, v] of h.xattrs) {
        o = b.writeUInt16LE(Buffer.byteLength(k, 'utf8'), o)
        o += b.write(k, o, 'utf8')
        o = b.writeUInt32LE(v.length, o)
        o += v.copy(b, o)
      }
    }
    const slot = file ? { chunk: b, offset: o } : null
    if (file) o += SHA256_BYTES
    this.used = o
    this.length++
    return slot
  }

  /** Record a file's content digest (base64 sha256, as `LayerEntry.sha256` holds it). */
  static setDigest(slot: DigestSlot, sha256: string): void {
    slot.chunk.write(sha256, slot.offset, SHA256_BYTES, 'base64')
  }

  /** No more headers: the last chunk shrinks to what it holds. */
  seal(): this {
    if (!this.sealed && this.used > 0) this.push(Buffer.from(this.current.subarray(0, this.used)))
    this.current = Buffer.alloc(0)
    this.used = 0
    this.sealed = true
    return this
  }

  [Symbol.iterator](): Generator<IndexedEntry> {
    return this.select(null)
  }

  /**
   * The headers whose name is a whiteout's or opaque marker's (`whiteouts` true), or those whose
   * name is not (false); null: all. Those left out are skipped without being read back.
   */
  select(whiteouts: boolean | null): Generator<IndexedEntry> {
    if (whiteouts === null) return this.scan(() => true)
    return this.scan((b, o) => isWhiteoutName(b, o + FIXED, o + FIXED + b.readUInt32LE(o + 30)) === whiteouts)
  }

  /** The hardlinks, the others skipped unread. */
  links(): Generator<IndexedEntry> {
    return this.scan((b, o) => b[o] === HARDLINK)
  }

  /** The headers `pick` accepts, given the chunk and where a header starts in it. */
  private *scan(pick: (b: Buffer, o: number) => boolean): Generator<IndexedEntry> {
    if (!this.sealed) throw new Error('packed headers: read before seal')
    let index = 0
    for (const [c, b] of this.chunks.entries()) {
      for (let o = 0; o < b.length; index++) {
        const end = endOf(b, o)
        if (pick(b, o)) {
          const entry = decode(b, o, index)
          entry.at = this.starts[c] + o
          yield entry
        }
        o = end
      }
    }
  }

  /** The header the iterator gave with this `at` and `index`, read again. */
  header(at: number, index: number): IndexedEntry {
    // The last chunk that starts at or before `at`.
    let lo = 0
    let hi = this.starts.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (this.starts[mid] <= at) lo = mid
      else hi = mid - 1
    }
    return decode(this.chunks[lo], at - this.starts[lo], index)
  }

  private push(chunk: Buffer): void {
    const last = this.chunks.length - 1
    const start = last < 0 ? 0 : this.starts[last] + this.chunks[last].length
    // `at` stays a small integer (V8 keeps it unboxed), which a merge holding one a path needs.
    if (start + chunk.length > MAX_AT) throw new Error('packed headers: more than 1 GiB of headers in one layer')
    this.chunks.push(chunk)
    this.starts.push(start)
  }

  /** A chunk with room for `need` more bytes; a full one is kept at its used size. */
  private room(need: number): Buffer {
    if (this.used + need <= this.current.length) return this.current
    if (this.used > 0) this.push(this.current.subarray(0, this.used))
    const grown = Math.min(MAX_CHUNK, Math.max(FIRST_CHUNK, this.current.length * 2))
    this.current = Buffer.allocUnsafeSlow(Math.max(grown, need))
    this.used = 0
    return this.current
  }
}

const NOTHING: Buffer = Buffer.alloc(0)

const MAX_AT = 2 ** 30

const SLASH = 0x2f
const HARDLINK = '1'.charCodeAt(0)
const WHITEOUT = Buffer.from('.wh.', 'latin1')

/** Does the last part of the name in b[start, end) begin with `.wh.`? */
export function isWhiteoutName(b: Buffer, start: number, end: number): boolean {
  let from = end
  while (from > start && b[from - 1] !== SLASH) from--
  return end - from >= WHITEOUT.length && b.compare(WHITEOUT, 0, WHITEOUT.length, from, from + WHITEOUT.length) === 0
}

/** Where the header packed at `o` ends, read from its lengths alone. */
function endOf(b: Buffer, o: number): number {
  const flags = b[o + 1]
  let end = o + FIXED + b.readUInt32LE(o + 30)
  if (flags & HAS_LINK) end += 4 + b.readUInt32LE(end)
  if (flags & HAS_DEVICE) end += 8
  if (flags & HAS_XATTRS) {
    const count = b.readUInt16LE(end)
    end += 2
    for (let i = 0; i < count; i++) {
      end += 2 + b.readUInt16LE(end)
      end += 4 + b.readUInt32LE(end)
    }
  }
  if (flags & HAS_SHA256) end += SHA256_BYTES
  return end
}

/** The header packed at `o`; its Buffers are views of the chunk. */
function decode(b: Buffer, o: number, index: number): IndexedEntry {
  const type = String.fromCharCode(b[o])
  const flags = b[o + 1]
  const mode = b.readUInt32LE(o + 2)
  const uid = b.readUInt32LE(o + 6)
  const gid = b.readUInt32LE(o + 10)
  const size = b.readDoubleLE(o + 14)
  const mtime = b.readDoubleLE(o + 22)
  const nameLength = b.readUInt32LE(o + 30)
  o += FIXED
  const name = b.subarray(o, (o += nameLength))
  let linkname: Buffer = NOTHING
  if (flags & HAS_LINK) {
    const n = b.readUInt32LE(o)
    linkname = b.subarray(o + 4, (o += 4 + n))
  }
  let devmajor = 0
  let devminor = 0
  if (flags & HAS_DEVICE) {
    devmajor = b.readUInt32LE(o)
    devminor = b.readUInt32LE(o + 4)
    o += 8
  }
  const xattrs: Array<[string, Buffer]> = []
  if (flags & HAS_XATTRS) {
    const count = b.readUInt16LE(o)
    o += 2
    for (let i = 0; i < count; i++) {
      const kl = b.readUInt16LE(o)
      const k = b.toString('utf8', o + 2, (o += 2 + kl))
      const vl = b.readUInt32LE(o)
      xattrs.push([k, b.subarray(o + 4, (o += 4 + vl))])
    }
  }
  const entry: IndexedEntry = { name, type, mode, uid, gid, size, mtime, linkname, devmajor, devminor, xattrs, index }
  if (flags & HAS_SHA256) entry.sha256 = b.toString('base64', o, o + SHA256_BYTES)
  return entry
}
