/** PAX extended header records, `<len> <key>=<value>\n`, with values as raw bytes both ways. */
import { corrupt } from './format.js'

/** One record; its length counts the whole record, its own digits included. */
export function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.byteLength(key) + value.length + 3 // space, '=', newline
  let len = body + String(body).length
  if (String(len).length !== String(body).length) len = body + String(len).length
  return Buffer.concat([Buffer.from(`${len} ${key}=`), value, Buffer.from('\n')])
}

/** The records of one extended header. */
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
