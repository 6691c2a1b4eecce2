/**
 * Header encoding: a ustar block, preceded by a PAX extended header when a field does not fit
 * ustar (long or non-ASCII names and link targets, large ids, sizes or times, xattrs).
 *
 * Our own rather than tar-stream's because tar-stream writes PAX records as UTF-8 strings: file
 * names that are not UTF-8 and binary xattr values (security.capability) would not survive.
 */
import { BLOCK, checksum, FIELDS, maxOctal, padding, TYPE, USTAR_MAGIC, USTAR_VERSION, XATTR_PREFIX, type TarHeader } from './format.js'
import { writeOctal } from './numbers.js'
import { isPlainAscii, placeholder, splitUstarName } from './names.js'
import { paxRecord } from './pax.js'

interface UstarFields {
  name: Buffer
  prefix: Buffer
  mode: number
  uid: number
  gid: number
  size: number
  mtime: number
  typeflag: string
  linkname: Buffer
  devmajor: number
  devminor: number
}

const NOTHING = Buffer.alloc(0)

function ustarBlock(f: UstarFields): Buffer {
  const b = Buffer.alloc(BLOCK)
  f.name.copy(b, FIELDS.name.offset, 0, FIELDS.name.width)
  writeOctal(b, FIELDS.mode, f.mode)
  writeOctal(b, FIELDS.uid, f.uid)
  writeOctal(b, FIELDS.gid, f.gid)
  writeOctal(b, FIELDS.size, f.size)
  writeOctal(b, FIELDS.mtime, f.mtime)
  b.write(f.typeflag, FIELDS.typeflag.offset, 1, 'ascii')
  f.linkname.copy(b, FIELDS.linkname.offset, 0, FIELDS.linkname.width)
  b.write(USTAR_MAGIC, FIELDS.magic.offset, FIELDS.magic.width, 'ascii') // NUL-terminated by the alloc
  b.write(USTAR_VERSION, FIELDS.version.offset, FIELDS.version.width, 'ascii')
  writeOctal(b, FIELDS.devmajor, f.devmajor)
  writeOctal(b, FIELDS.devminor, f.devminor)
  f.prefix.copy(b, FIELDS.prefix.offset, 0, FIELDS.prefix.width)
  // Six digits, NUL, space: what GNU tar writes.
  const at = FIELDS.checksum.offset
  b.write(checksum(b).toString(8).padStart(6, '0'), at, 6, 'ascii')
  b[at + 6] = 0
  b[at + 7] = 0x20
  return b
}

/** The header blocks of one entry, extended records first when it needs them. */
export function encodeTarHeader(h: TarHeader): Buffer {
  const records: Buffer[] = []

  let split = isPlainAscii(h.name) ? splitUstarName(h.name) : null
  if (!split) {
    records.push(paxRecord('path', h.name))
    split = [NOTHING, placeholder(h.name)]
  }
  let ustarLink = h.linkname
  if (h.linkname.length > FIELDS.linkname.width || !isPlainAscii(h.linkname)) {
    records.push(paxRecord('linkpath', h.linkname))
    ustarLink = placeholder(h.linkname)
  }
  const numeric = (key: 'uid' | 'gid' | 'size' | 'mtime', value: number): number => {
    if (value >= 0 && value <= maxOctal(FIELDS[key])) return value
    records.push(paxRecord(key, Buffer.from(String(value))))
    return 0
  }
  const uid = numeric('uid', h.uid)
  const gid = numeric('gid', h.gid)
  const size = numeric('size', h.size)
  const mtime = numeric('mtime', h.mtime)
  for (const [k, v] of h.xattrs) records.push(paxRecord(XATTR_PREFIX + k, v))

  const ustar = ustarBlock({
    name: split[1],
    prefix: split[0],
    mode: h.mode & 0o7777,
    uid,
    gid,
    size,
    mtime,
    typeflag: h.type,
    linkname: ustarLink,
    devmajor: h.devmajor,
    devminor: h.devminor,
  })
  if (records.length === 0) return ustar

  const pax = Buffer.concat(records)
  const paxHeader = ustarBlock({
    name: placeholder(Buffer.concat([Buffer.from('PaxHeaders/'), split[1]])),
    prefix: NOTHING,
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: pax.length,
    mtime,
    typeflag: TYPE.pax,
    linkname: NOTHING,
    devmajor: 0,
    devminor: 0,
  })
  return Buffer.concat([paxHeader, pax, Buffer.alloc(padding(pax.length)), ustar])
}
