/**
 * Member names: how a long name fits ustar's two fields or goes to PAX when written, where a
 * NUL-terminated field ends when read, and what a name read from the daemon may be.
 */
import { corrupt, FIELDS } from './format.js'

/** A NUL-terminated field's bytes (all of it when it has no NUL). */
export function cstring(b: Buffer): Buffer {
  const nul = b.indexOf(0)
  return nul === -1 ? b : b.subarray(0, nul)
}

/** Printable ASCII only: what a ustar field carries without help from PAX. */
export function isPlainAscii(b: Buffer): boolean {
  for (const c of b) if (c < 0x20 || c > 0x7e) return false
  return true
}

/** Split a name into ustar's prefix and name fields, or null if it cannot be. */
export function splitUstarName(name: Buffer): [Buffer, Buffer] | null {
  const nameWidth = FIELDS.name.width
  if (name.length <= nameWidth) return [Buffer.alloc(0), name]
  // The split must fall on a slash; the slash itself is dropped.
  for (let i = Math.min(name.length - 1, FIELDS.prefix.width); i > 0; i--) {
    if (name[i] === 0x2f && name.length - i - 1 <= nameWidth && name.length - i - 1 > 0) {
      return [name.subarray(0, i), name.subarray(i + 1)]
    }
  }
  return null
}

/** A deterministic ASCII stand-in for a name that lives in a PAX record. */
export function placeholder(name: Buffer): Buffer {
  const width = FIELDS.name.width
  const tail = name.length > width ? name.subarray(name.length - width) : Buffer.from(name)
  const out = Buffer.from(tail)
  for (let i = 0; i < out.length; i++) if (out[i] < 0x20 || out[i] > 0x7e) out[i] = 0x5f
  return out
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
