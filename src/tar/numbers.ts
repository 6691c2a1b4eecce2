/** Numeric header fields: octal as ustar writes them, GNU base-256 as large values may come. */
import { corrupt, type Field } from './format.js'
import { cstring } from './names.js'

/** `value` in octal, zero-padded, with a NUL in the field's last byte (as GNU tar writes). */
export function writeOctal(block: Buffer, f: Field, value: number): void {
  const s = value.toString(8).padStart(f.width - 1, '0')
  block.write(s, f.offset, f.width - 1, 'ascii')
  block[f.offset + f.width - 1] = 0
}

/** What String.prototype.trim removes, of the latin1 range. */
function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d) || c === 0xa0
}

/**
 * A numeric field; `what` names it in the error. Read by hand rather than through a string:
 * every header has eight of these, and a layer can hold hundreds of thousands of headers.
 */
export function readNumber(block: Buffer, f: Field, what: string): number {
  const start = f.offset
  const end = f.offset + f.width
  if (block[start] & 0x80) {
    // GNU base-256: big-endian two's complement; only non-negative values make sense here.
    if (block[start] === 0xff) throw corrupt(`negative ${what}`)
    let v = block[start] & 0x7f
    for (let i = start + 1; i < end; i++) v = v * 256 + block[i]
    return v
  }
  // Octal digits between optional spaces, ended by NUL, space or the field's end.
  let i = start
  while (i < end && isSpace(block[i])) i++
  let v = 0
  for (; i < end; i++) {
    const c = block[i]
    if (c < 0x30 || c > 0x37) break
    v = v * 8 + (c - 0x30)
  }
  while (i < end && isSpace(block[i])) i++
  if (i < end && block[i] !== 0) {
    const text = cstring(block.subarray(start, end)).toString('latin1').trim()
    throw corrupt(`bad ${what} ${JSON.stringify(text)}`)
  }
  return v
}
