/**
 * Reading tar streams we did not write (what `docker save` gives, and the layers inside it),
 * byte-exactly and defensively.
 *
 * Our own reader rather than tar-stream's: tar-stream decodes PAX records as UTF-8, so a file
 * name that is not UTF-8, or a binary xattr such as security.capability, would not come out as
 * it went in. And input from a daemon is input: every header's checksum is verified, sizes are
 * bounded, a truncated stream is an error, and names are returned as bytes for the caller to
 * vet; nothing here ever touches the host filesystem.
 */
import { DflattenError } from './errors.js'

const BLOCK = 512
/** PAX and GNU long-name records larger than this are not a name or an xattr: refuse them. */
const MAX_META = 16 * 1024 * 1024
/** No layer holds a file this large; a header that says so is corrupt or hostile. */
const MAX_SIZE = 2 ** 50

export interface TarHeader {
  name: Buffer
  /** The ustar type flag: '0' file, '1' hardlink, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo. */
  type: string
  mode: number
  uid: number
  gid: number
  size: number
  /** Whole seconds. */
  mtime: number
  linkname: Buffer
  devmajor: number
  devminor: number
  /** `SCHILY.xattr.*` records, names without the prefix, sorted. */
  xattrs: Array<[string, Buffer]>
}

export interface TarEntry extends TarHeader {
  /** The entry's content (what is left of it); the reader skips any rest before the next entry. */
  body(): AsyncGenerator<Buffer>
  skip(): Promise<void>
}

function corrupt(what: string): DflattenError {
  return new DflattenError('bad-data', `malformed archive from the daemon: ${what}`)
}

// Shared by every header without them: the save method keeps a header per path it merges.
const NO_LINK = Buffer.alloc(0)
const NO_XATTRS: Array<[string, Buffer]> = []

/** Exact reads from a stream of chunks. */
class ByteReader {
  private buf: Buffer = Buffer.alloc(0)
  private ended = false
  constructor(private readonly it: AsyncIterator<Buffer>) {}

  private async more(): Promise<boolean> {
    if (this.ended) return false
    const r = await this.it.next()
    if (r.done) {
      this.ended = true
      return false
    }
    const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value)
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk
    return true
  }

  /**
   * Exactly n bytes, or null at a clean end of stream; a partial read is truncation, reported as
   * the stream ending `where`.
   */
  async take(n: number, where = 'in the middle of a block'): Promise<Buffer | null> {
    while (this.buf.length < n) {
      if (!(await this.more())) {
        if (this.buf.length === 0) return null
        throw corrupt(`the stream ends ${where}`)
      }
    }
    const out = this.buf.subarray(0, n)
    this.buf = this.buf.subarray(n)
    return out
  }

  async *chunks(n: number): AsyncGenerator<Buffer> {
    let left = n
    while (left > 0) {
      if (this.buf.length === 0 && !(await this.more())) throw corrupt('the stream ends in the middle of a file')
      const take = Math.min(left, this.buf.length)
      const out = this.buf.subarray(0, take)
      this.buf = this.buf.subarray(take)
      left -= take
      yield out
    }
  }

  async drain(): Promise<void> {
    this.buf = Buffer.alloc(0)
    while (await this.more()) this.buf = Buffer.alloc(0)
  }
}

function cstring(b: Buffer): Buffer {
  const nul = b.indexOf(0)
  return nul === -1 ? b : b.subarray(0, nul)
}

/** What String.prototype.trim removes, of the latin1 range. */
function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d) || c === 0xa0
}

function number(b: Buffer, field: string): number {
  if (b[0] & 0x80) {
    // GNU base-256: big-endian two's complement; only non-negative values make sense here.
    if (b[0] === 0xff) throw corrupt(`negative ${field}`)
    let v = b[0] & 0x7f
    for (let i = 1; i < b.length; i++) v = v * 256 + b[i]
    return v
  }
  // Octal digits between optional spaces, ended by NUL, space or the field's end. Read by hand:
  // every header has eight of these, and a layer can hold hundreds of thousands of headers.
  let i = 0
  while (i < b.length && isSpace(b[i])) i++
  let v = 0
  for (; i < b.length; i++) {
    const c = b[i]
    if (c < 0x30 || c > 0x37) break
    v = v * 8 + (c - 0x30)
  }
  while (i < b.length && isSpace(b[i])) i++
  if (i < b.length && b[i] !== 0) {
    throw corrupt(`bad ${field} ${JSON.stringify(cstring(b).toString('latin1').trim())}`)
  }
  return v
}

function checksumOk(block: Buffer): boolean {
  const stored = number(block.subarray(148, 156), 'checksum')
  let unsigned = 8 * 0x20 // the checksum field itself counts as spaces
  for (let i = 0; i < 148; i++) unsigned += block[i]
  for (let i = 156; i < BLOCK; i++) unsigned += block[i]
  if (stored === unsigned) return true
  // Some old writers summed signed bytes.
  let signed = 8 * 0x20
  for (let i = 0; i < BLOCK; i++) if (i < 148 || i >= 156) signed += block[i] > 127 ? block[i] - 256 : block[i]
  return stored === signed
}

/** An end-of-archive block: 512 zero bytes (of a longer buffer, the first 512). */
export function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false
  return true
}

/** PAX records: `<len> <key>=<value>\n`, values as raw bytes. */
export function parsePax(data: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>()
  let pos = 0
  while (pos < data.length) {
    if (data[pos] === 0) break
    const space = data.indexOf(0x20, pos)
    if (space === -1) throw corrupt('a PAX record without a length')
    const len = Number(data.toString('latin1', pos, space))
    if (!Number.isInteger(len) || len <= space - pos + 1 || pos + len > data.length || data[pos + len - 1] !== 0x0a) {
      throw corrupt('a PAX record with a bad length')
    }
    const rec = data.subarray(space + 1, pos + len - 1)
    const eq = rec.indexOf(0x3d)
    if (eq === -1) throw corrupt('a PAX record without "="')
    out.set(rec.subarray(0, eq).toString('utf8'), rec.subarray(eq + 1))
    pos += len
  }
  return out
}

function padding(n: number): number {
  return (BLOCK - (n % BLOCK)) % BLOCK
}

const NO_EXT = new Map<string, Buffer>()
const INSIDE_META = 'inside an extended header'
const INSIDE_PADDING = 'inside padding'

/** What one header block says, read in the light of the extended records before it. */
type Header =
  /** End of archive: the rest of the stream is padding. */
  | { kind: 'end' }
  /** A PAX or GNU long-name record of `size` bytes (plus padding) follows; hand it to `meta`. */
  | { kind: 'meta'; type: string; size: number }
  /** An entry, with `content` bytes (plus padding) of content following. */
  | { kind: 'entry'; header: TarHeader; content: number }

/**
 * Header blocks and the PAX and GNU records that extend them: the tar format itself, shared by
 * the pull reader (readTar) and the push one (TarParser), which differ only in how bytes come.
 */
class HeaderDecoder {
  private globalPax = NO_EXT
  private pax: Map<string, Buffer> | null = null
  private longName: Buffer | null = null
  private longLink: Buffer | null = null

  block(block: Buffer): Header {
    if (block[0] === 0 && isZeroBlock(block)) return { kind: 'end' }
    if (!checksumOk(block)) throw corrupt('a header checksum does not match')
    const type = block[156] === 0 ? '0' : String.fromCharCode(block[156])
    const size = number(block.subarray(124, 136), 'size')
    if (size > MAX_SIZE) throw corrupt(`an entry of ${size} bytes`)
    if (type === 'x' || type === 'g') {
      if (size > MAX_META) throw corrupt(`a PAX header of ${size} bytes`)
      return { kind: 'meta', type, size }
    }
    if (type === 'L' || type === 'K') {
      if (size > MAX_META) throw corrupt(`a GNU long name of ${size} bytes`)
      return { kind: 'meta', type, size }
    }

    const ext = this.pax ? new Map([...this.globalPax, ...this.pax]) : this.globalPax
    this.pax = null
    let name = cstring(block.subarray(0, 100))
    const ustar = block.toString('latin1', 257, 262) === 'ustar'
    const prefix = ustar ? cstring(block.subarray(345, 500)) : NO_LINK
    if (prefix.length) name = Buffer.concat([prefix, Buffer.from('/'), name])
    name = ext.get('path') ?? this.longName ?? name
    const linkname = ext.get('linkpath') ?? this.longLink ?? cstring(block.subarray(157, 257))
    this.longName = this.longLink = null

    const paxNumber = (key: string, fallback: number): number => {
      const v = ext.size ? ext.get(key) : undefined
      if (v === undefined) return fallback
      const n = Number(v.toString('latin1'))
      if (!Number.isFinite(n)) throw corrupt(`bad PAX ${key}`)
      return Math.floor(n)
    }
    const entrySize = paxNumber('size', size)
    if (entrySize > MAX_SIZE || entrySize < 0) throw corrupt(`an entry of ${entrySize} bytes`)
    const found = ext.size ? [...ext].filter(([k]) => k.startsWith('SCHILY.xattr.')) : NO_XATTRS
    const xattrs: Array<[string, Buffer]> = !found.length ? NO_XATTRS : found
      .map(([k, v]): [string, Buffer] => [k.slice('SCHILY.xattr.'.length), Buffer.from(v)])
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))

    // Only regular files carry content; for the others a size field is metadata at most.
    const content = type === '0' || type === '7' ? entrySize : 0
    // Copies: views into the stream's chunks would keep whole chunks alive as long as the
    // caller keeps the header (the save method keeps every header of the layers it merges).
    const header: TarHeader = {
      name: Buffer.from(name),
      type: type === '7' ? '0' : type,
      mode: number(block.subarray(100, 108), 'mode') & 0o7777,
      uid: paxNumber('uid', number(block.subarray(108, 116), 'uid')),
      gid: paxNumber('gid', number(block.subarray(116, 124), 'gid')),
      size: content,
      mtime: paxNumber('mtime', number(block.subarray(136, 148), 'mtime')),
      linkname: linkname.length ? Buffer.from(linkname) : NO_LINK,
      devmajor: number(block.subarray(329, 337), 'devmajor'),
      devminor: number(block.subarray(337, 345), 'devminor'),
      xattrs,
    }
    return { kind: 'entry', header, content }
  }

  /** The record a 'meta' header announced, without its padding. */
  meta(type: string, record: Buffer): void {
    // A copy: the records outlive the buffer they were gathered in.
    const data = Buffer.from(record)
    if (type === 'x' || type === 'g') {
      const records = parsePax(data)
      if (type === 'g') this.globalPax = new Map([...this.globalPax, ...records])
      else this.pax = records
    } else if (type === 'L') this.longName = cstring(data)
    else this.longLink = cstring(data)
  }
}

/** The entries of a tar stream, in order. Each entry's body must be consumed before the next. */
export async function* readTar(source: AsyncIterable<Buffer>): AsyncGenerator<TarEntry> {
  const r = new ByteReader(source[Symbol.asyncIterator]())
  const decoder = new HeaderDecoder()
  for (;;) {
    const block = await r.take(BLOCK)
    if (!block) return // no end-of-archive blocks: tolerated, as GNU tar does
    const h = decoder.block(block)
    if (h.kind === 'end') {
      await r.drain()
      return
    }
    if (h.kind === 'meta') {
      const data = await r.take(h.size + padding(h.size), INSIDE_META)
      if (!data) throw corrupt(`the stream ends ${INSIDE_META}`)
      decoder.meta(h.type, data.subarray(0, h.size))
      continue
    }
    const { header, content } = h
    let left = content
    const rest = async function* (): AsyncGenerator<Buffer> {
      for await (const c of r.chunks(left)) {
        left -= c.length
        yield c
      }
    }
    const entry: TarEntry = Object.assign(header, {
      body: rest,
      // Whatever the reader left of the content, then the padding to the next header.
      skip: async () => {
        for await (const _ of rest()) void _
        const pad = padding(content)
        if (pad && !(await r.take(pad, INSIDE_PADDING))) throw corrupt(`the stream ends ${INSIDE_PADDING}`)
      },
    })
    yield entry
    await entry.skip()
  }
}

/** What a TarParser hands its entries to, in stream order. */
export interface TarSink {
  entry(header: TarHeader): void
  /** The current entry's content, in pieces (views into the input: copy what is kept). */
  data(chunk: Buffer): void
  /** The current entry's content is complete (called for every entry, with content or not). */
  end(): void
}

/**
 * The same format as readTar, pushed rather than pulled: bytes go in with `write`, entries come
 * out synchronously. For a pass that only looks (the save method's index), this costs no promise
 * per entry or per piece of content, where readTar costs several.
 */
export class TarParser {
  private readonly decoder = new HeaderDecoder()
  private state: 'header' | 'meta' | 'body' | 'pad' | 'done' = 'header'
  /** A header or extended record being gathered. */
  private acc: Buffer = Buffer.allocUnsafe(BLOCK)
  private have = 0
  private need = BLOCK
  private metaType = ''
  private metaSize = 0
  private left = 0
  private pad = 0

  constructor(private readonly sink: TarSink) {}

  /** Past the end-of-archive blocks: what follows is padding and is not looked at. */
  get done(): boolean {
    return this.state === 'done'
  }

  write(chunk: Buffer): void {
    let pos = 0
    while (pos < chunk.length && this.state !== 'done') {
      if (this.state === 'body') {
        const n = Math.min(this.left, chunk.length - pos)
        this.sink.data(chunk.subarray(pos, pos + n))
        pos += n
        this.left -= n
        if (this.left === 0) this.entryDone()
      } else if (this.state === 'pad') {
        const n = Math.min(this.pad, chunk.length - pos)
        pos += n
        this.pad -= n
        if (this.pad === 0) this.expect('header', BLOCK)
      } else {
        const n = Math.min(this.need - this.have, chunk.length - pos)
        let whole: Buffer | null = null
        if (this.have === 0 && n === this.need) whole = chunk.subarray(pos, pos + n)
        else chunk.copy(this.acc, this.have, pos, pos + n)
        pos += n
        this.have += n
        if (this.have === this.need) this.gathered(whole ?? this.acc.subarray(0, this.need))
      }
    }
  }

  /** The input has ended: an error unless it ended between entries. */
  finish(): void {
    if (this.state === 'done' || (this.state === 'header' && this.have === 0)) return
    if (this.state === 'body') throw corrupt('the stream ends in the middle of a file')
    if (this.state === 'pad') throw corrupt(`the stream ends ${INSIDE_PADDING}`)
    if (this.state === 'meta') throw corrupt(`the stream ends ${INSIDE_META}`)
    throw corrupt('the stream ends in the middle of a block')
  }

  private expect(state: 'header' | 'meta', n: number): void {
    this.state = state
    this.have = 0
    this.need = n
    if (this.acc.length < n) this.acc = Buffer.allocUnsafe(n)
  }

  private gathered(data: Buffer): void {
    if (this.state === 'meta') {
      this.decoder.meta(this.metaType, data.subarray(0, this.metaSize))
      this.expect('header', BLOCK)
      return
    }
    const h = this.decoder.block(data)
    if (h.kind === 'end') {
      this.state = 'done'
    } else if (h.kind === 'meta') {
      this.metaType = h.type
      this.metaSize = h.size
      this.expect('meta', h.size + padding(h.size))
      if (this.need === 0) this.gathered(this.acc.subarray(0, 0))
    } else {
      this.sink.entry(h.header)
      this.left = h.content
      this.pad = padding(h.content)
      if (this.left === 0) this.entryDone()
      else this.state = 'body'
    }
  }

  private entryDone(): void {
    this.sink.end()
    if (this.pad) this.state = 'pad'
    else this.expect('header', BLOCK)
  }
}

/** No leading, trailing or doubled slash, and no `.` or `..` component: the common case. */
function isClean(name: Buffer): boolean {
  const n = name.length
  if (n === 0 || name[0] === 0x2f || name[n - 1] === 0x2f) return false
  let start = 0
  for (let i = 0; i <= n; i++) {
    if (i < n && name[i] !== 0x2f) continue
    const len = i - start
    if (len === 0) return false
    if (name[start] === 0x2e && (len === 1 || (len === 2 && name[start + 1] === 0x2e))) return false
    start = i + 1
  }
  return true
}

/**
 * A tar member name as a clean relative path, or an error when it is absolute after cleaning,
 * climbs out with `..`, or is empty. Nothing dflatten does writes these paths to the host; the
 * check keeps a hostile layer from describing a filesystem no image can have.
 */
export function cleanMemberName(name: Buffer): Buffer {
  if (isClean(name)) return name
  const parts = name.toString('latin1').split('/')
  const kept: string[] = []
  for (const p of parts) {
    if (p === '' || p === '.') continue
    if (p === '..') throw corrupt(`an entry name that climbs out of the image: ${JSON.stringify(name.toString())}`)
    kept.push(p)
  }
  return Buffer.from(kept.join('/'), 'latin1')
}
