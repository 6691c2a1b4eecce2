/**
 * The tar format's layout, as both directions use it: block size, where each header field sits,
 * the type flags, the checksum. The encoder (encode.ts) and the decoder (decode.ts) read their
 * offsets and widths from here, so the two cannot drift apart.
 */
import { DflattenError } from '../errors.js'

export const BLOCK = 512
/** Two zero blocks end an archive. */
export const END_OF_ARCHIVE = 2 * BLOCK
export const ZERO_BLOCK = Buffer.alloc(BLOCK)

/** Bytes of padding that round `n` up to a whole block. */
export function padding(n: number): number {
  return (BLOCK - (n % BLOCK)) % BLOCK
}

export interface Field {
  offset: number
  width: number
}

/** The ustar header block (POSIX.1-1988 plus the ustar prefix field). */
export const FIELDS = {
  name: { offset: 0, width: 100 },
  mode: { offset: 100, width: 8 },
  uid: { offset: 108, width: 8 },
  gid: { offset: 116, width: 8 },
  size: { offset: 124, width: 12 },
  mtime: { offset: 136, width: 12 },
  checksum: { offset: 148, width: 8 },
  typeflag: { offset: 156, width: 1 },
  linkname: { offset: 157, width: 100 },
  /** `ustar\0`, then the version `00` in the next field. */
  magic: { offset: 257, width: 6 },
  version: { offset: 263, width: 2 },
  uname: { offset: 265, width: 32 },
  gname: { offset: 297, width: 32 },
  devmajor: { offset: 329, width: 8 },
  devminor: { offset: 337, width: 8 },
  prefix: { offset: 345, width: 155 },
} as const satisfies Record<string, Field>

export const USTAR_MAGIC = 'ustar'
export const USTAR_VERSION = '00'

/** Type flags: the entry kinds, then the records that extend the next header. */
export const TYPE = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
  /** A regular file to writers of the 1980s; read as '0'. */
  contiguous: '7',
  pax: 'x',
  paxGlobal: 'g',
  gnuLongName: 'L',
  gnuLongLink: 'K',
} as const

/** PAX keys of extended attributes, as GNU tar and Docker write them. */
export const XATTR_PREFIX = 'SCHILY.xattr.'

/** The largest value an octal field of `width` bytes holds, one byte kept for the NUL. */
export function maxOctal(f: Field): number {
  return 8 ** (f.width - 1) - 1
}

/** One entry's header, whatever records it took: what the decoder gives and the encoder takes. */
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
  /** `SCHILY.xattr.*` records, names without the prefix (sorted, as read). */
  xattrs: Array<[string, Buffer]>
}

const CHECKSUM_END = FIELDS.checksum.offset + FIELDS.checksum.width

/** The header's checksum: the sum of its bytes, the checksum field counted as spaces. */
export function checksum(block: Buffer): number {
  let sum = FIELDS.checksum.width * 0x20
  for (let i = 0; i < FIELDS.checksum.offset; i++) sum += block[i]
  for (let i = CHECKSUM_END; i < BLOCK; i++) sum += block[i]
  return sum
}

/** The same with bytes taken as signed, as some old writers summed them. */
export function signedChecksum(block: Buffer): number {
  let sum = FIELDS.checksum.width * 0x20
  for (let i = 0; i < BLOCK; i++) {
    if (i < FIELDS.checksum.offset || i >= CHECKSUM_END) sum += block[i] > 127 ? block[i] - 256 : block[i]
  }
  return sum
}

/** An end-of-archive block: 512 zero bytes (of a longer buffer, the first 512). */
export function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false
  return true
}

/** Everything the decoder refuses: what the daemon sent is not a tar we can trust. */
export function corrupt(what: string): DflattenError {
  return new DflattenError('bad-data', `malformed archive from the daemon: ${what}`)
}
