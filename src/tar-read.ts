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
  return new DflattenError(`malformed archive from the daemon: ${what}`)
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

  /** Exactly n bytes, or null at a clean end of stream; a partial block is truncation. */
  async take(n: number): Promise<Buffer | null> {
    while (this.buf.length < n) {
      if (!(await this.more())) {
        if (this.buf.length === 0) return null
        throw corrupt('the stream ends in the middle of a block')
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

function number(b: Buffer, field: string): number {
  if (b[0] & 0x80) {
    // GNU base-256: big-endian two's complement; only non-negative values make sense here.
    if (b[0] === 0xff) throw corrupt(`negative ${field}`)
    let v = b[0] & 0x7f
    for (let i = 1; i < b.length; i++) v = v * 256 + b[i]
    return v
  }
  const s = cstring(b).toString('latin1').trim()
  if (s === '') return 0
  if (!/^[0-7]+$/.test(s)) throw corrupt(`bad ${field} ${JSON.stringify(s)}`)
  return parseInt(s, 8)
}

function checksumOk(block: Buffer): boolean {
  const stored = number(block.subarray(148, 156), 'checksum')
  let unsigned = 0
  let signed = 0
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : block[i]
    unsigned += c
    signed += c > 127 ? c - 256 : c
  }
  return stored === unsigned || stored === signed
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

/** The entries of a tar stream, in order. Each entry's body must be consumed before the next. */
export async function* readTar(source: AsyncIterable<Buffer>): AsyncGenerator<TarEntry> {
  const r = new ByteReader(source[Symbol.asyncIterator]())
  let globalPax = new Map<string, Buffer>()
  let pax: Map<string, Buffer> | null = null
  let longName: Buffer | null = null
  let longLink: Buffer | null = null

  const readMeta = async (size: number, what: string): Promise<Buffer> => {
    if (size > MAX_META) throw corrupt(`${what} of ${size} bytes`)
    const data = await r.take(size + padding(size))
    if (!data) throw corrupt(`the stream ends inside ${what}`)
    return data.subarray(0, size)
  }

  for (;;) {
    const block = await r.take(BLOCK)
    if (!block) return // no end-of-archive blocks: tolerated, as GNU tar does
    if (block.every((b) => b === 0)) {
      await r.drain() // end of archive; the rest is padding
      return
    }
    if (!checksumOk(block)) throw corrupt('a header checksum does not match')
    const type = block[156] === 0 ? '0' : String.fromCharCode(block[156])
    const size = number(block.subarray(124, 136), 'size')
    if (size > MAX_SIZE) throw corrupt(`an entry of ${size} bytes`)

    if (type === 'x' || type === 'g') {
      const records = parsePax(await readMeta(size, 'a PAX header'))
      if (type === 'g') globalPax = new Map([...globalPax, ...records])
      else pax = records
      continue
    }
    if (type === 'L' || type === 'K') {
      const value = cstring(await readMeta(size, 'a GNU long name'))
      if (type === 'L') longName = value
      else longLink = value
      continue
    }

    const ext = new Map([...globalPax, ...(pax ?? [])])
    pax = null
    let name = cstring(block.subarray(0, 100))
    const ustar = block.toString('latin1', 257, 262) === 'ustar'
    const prefix = ustar ? cstring(block.subarray(345, 500)) : Buffer.alloc(0)
    if (prefix.length) name = Buffer.concat([prefix, Buffer.from('/'), name])
    name = ext.get('path') ?? longName ?? name
    const linkname = ext.get('linkpath') ?? longLink ?? cstring(block.subarray(157, 257))
    longName = longLink = null

    const paxNumber = (key: string, fallback: number): number => {
      const v = ext.get(key)
      if (v === undefined) return fallback
      const n = Number(v.toString('latin1'))
      if (!Number.isFinite(n)) throw corrupt(`bad PAX ${key}`)
      return Math.floor(n)
    }
    const entrySize = paxNumber('size', size)
    if (entrySize > MAX_SIZE || entrySize < 0) throw corrupt(`an entry of ${entrySize} bytes`)
    const found = [...ext].filter(([k]) => k.startsWith('SCHILY.xattr.'))
    const xattrs: Array<[string, Buffer]> = !found.length ? NO_XATTRS : found
      .map(([k, v]): [string, Buffer] => [k.slice('SCHILY.xattr.'.length), Buffer.from(v)])
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))

    // Only regular files carry content; for the others a size field is metadata at most.
    const content = type === '0' || type === '7' ? entrySize : 0
    let left = content
    const rest = async function* (): AsyncGenerator<Buffer> {
      for await (const c of r.chunks(left)) {
        left -= c.length
        yield c
      }
    }
    // Copies: views into the stream's chunks would keep whole chunks alive as long as the
    // caller keeps the header (the save method keeps every header of the layers it merges).
    const entry: TarEntry = {
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
      body: rest,
      // Whatever the reader left of the content, then the padding to the next header.
      skip: async () => {
        for await (const _ of rest()) void _
        const pad = padding(content)
        if (pad && !(await r.take(pad))) throw corrupt('the stream ends inside padding')
      },
    }
    yield entry
    await entry.skip()
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
