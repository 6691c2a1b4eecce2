/**
 * Header decoding: one header block, read in the light of the PAX and GNU records before it.
 *
 * Input from a daemon is input: every checksum is verified, sizes are bounded, and names come
 * out as bytes for the caller to vet. Our own rather than tar-stream's: tar-stream decodes PAX
 * records as UTF-8, so a name that is not UTF-8, or a binary xattr such as security.capability,
 * would not come out as it went in.
 */
import { checksum, corrupt, FIELDS, isZeroBlock, signedChecksum, TYPE, USTAR_MAGIC, XATTR_PREFIX, type TarHeader } from './format.js'
import { readNumber } from './numbers.js'
import { cstring } from './names.js'
import { parsePax } from './pax.js'

/** PAX and GNU long-name records larger than this are not a name or an xattr: refuse them. */
const MAX_META = 16 * 1024 * 1024
/** No layer holds a file this large; a header that says so is corrupt or hostile. */
const MAX_SIZE = 2 ** 50

// Shared by every header without them: the save method keeps a header per path it merges.
const NOTHING = Buffer.alloc(0)
const NO_XATTRS: Array<[string, Buffer]> = []
const NO_EXT = new Map<string, Buffer>()
const SLASH = Buffer.from('/')

const F = FIELDS

function checksumOk(block: Buffer): boolean {
  const stored = readNumber(block, F.checksum, 'checksum')
  return stored === checksum(block) || stored === signedChecksum(block)
}

function field(block: Buffer, f: { offset: number; width: number }): Buffer {
  return cstring(block.subarray(f.offset, f.offset + f.width))
}

/** What one header block says. */
export type Header =
  /** End of archive: the rest of the stream is padding. */
  | { kind: 'end' }
  /** A PAX or GNU long-name record of `size` bytes (plus padding) follows; hand it to `meta`. */
  | { kind: 'meta'; type: string; size: number }
  /** An entry, with `content` bytes (plus padding) of content following. */
  | { kind: 'entry'; header: TarHeader; content: number }

export class HeaderDecoder {
  private globalPax = NO_EXT
  private pax: Map<string, Buffer> | null = null
  private longName: Buffer | null = null
  private longLink: Buffer | null = null

  block(block: Buffer): Header {
    if (block[0] === 0 && isZeroBlock(block)) return { kind: 'end' }
    if (!checksumOk(block)) throw corrupt('a header checksum does not match')
    const flag = block[F.typeflag.offset]
    const type = flag === 0 ? TYPE.file : String.fromCharCode(flag)
    const size = readNumber(block, F.size, 'size')
    if (size > MAX_SIZE) throw corrupt(`an entry of ${size} bytes`)
    if (type === TYPE.pax || type === TYPE.paxGlobal) {
      if (size > MAX_META) throw corrupt(`a PAX header of ${size} bytes`)
      return { kind: 'meta', type, size }
    }
    if (type === TYPE.gnuLongName || type === TYPE.gnuLongLink) {
      if (size > MAX_META) throw corrupt(`a GNU long name of ${size} bytes`)
      return { kind: 'meta', type, size }
    }

    const ext = this.pax ? new Map([...this.globalPax, ...this.pax]) : this.globalPax
    this.pax = null
    let name = field(block, F.name)
    const ustar = block.toString('latin1', F.magic.offset, F.magic.offset + USTAR_MAGIC.length) === USTAR_MAGIC
    const prefix = ustar ? field(block, F.prefix) : NOTHING
    if (prefix.length) name = Buffer.concat([prefix, SLASH, name])
    name = ext.get('path') ?? this.longName ?? name
    const linkname = ext.get('linkpath') ?? this.longLink ?? field(block, F.linkname)
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
    const found = ext.size ? [...ext].filter(([k]) => k.startsWith(XATTR_PREFIX)) : NO_XATTRS
    const xattrs: Array<[string, Buffer]> = !found.length ? NO_XATTRS : found
      .map(([k, v]): [string, Buffer] => [k.slice(XATTR_PREFIX.length), Buffer.from(v)])
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))

    // Only regular files carry content; for the others a size field is metadata at most.
    const isFile = type === TYPE.file || type === TYPE.contiguous
    const content = isFile ? entrySize : 0
    // Copies: views into the stream's chunks would keep whole chunks alive as long as the
    // caller keeps the header (the save method keeps every header of the layers it merges).
    const header: TarHeader = {
      name: Buffer.from(name),
      type: isFile ? TYPE.file : type,
      mode: readNumber(block, F.mode, 'mode') & 0o7777,
      uid: paxNumber('uid', readNumber(block, F.uid, 'uid')),
      gid: paxNumber('gid', readNumber(block, F.gid, 'gid')),
      size: content,
      mtime: paxNumber('mtime', readNumber(block, F.mtime, 'mtime')),
      linkname: linkname.length ? Buffer.from(linkname) : NOTHING,
      devmajor: readNumber(block, F.devmajor, 'devmajor'),
      devminor: readNumber(block, F.devminor, 'devminor'),
      xattrs,
    }
    return { kind: 'entry', header, content }
  }

  /** The record a 'meta' header announced, without its padding. */
  meta(type: string, record: Buffer): void {
    // A copy: the records outlive the buffer they were gathered in.
    const data = Buffer.from(record)
    if (type === TYPE.pax || type === TYPE.paxGlobal) {
      const records = parsePax(data)
      if (type === TYPE.paxGlobal) this.globalPax = new Map([...this.globalPax, ...records])
      else this.pax = records
    } else if (type === TYPE.gnuLongName) this.longName = cstring(data)
    else this.longLink = cstring(data)
  }
}
