/**
 * Extended attributes of a whole tree, read with one `getfattr -R` run (Node has no xattr API).
 * getfattr prints names with control bytes and backslashes as `\ooo` octal escapes and every
 * other byte as is, so names that are not UTF-8 survive the round trip.
 */
import { execa } from 'execa'
import { DflattenError } from './errors.js'

/** Relative path (latin1, so bytes map 1:1) -> attribute name -> value. */
export type XattrMap = Map<string, Map<string, Buffer>>

function unescapeOctal(b: Buffer): Buffer {
  const out: number[] = []
  for (let i = 0; i < b.length; i++) {
    if (b[i] === 0x5c && i + 3 < b.length && /^[0-7]{3}$/.test(b.toString('latin1', i + 1, i + 4))) {
      out.push(parseInt(b.toString('latin1', i + 1, i + 4), 8))
      i += 3
    } else {
      out.push(b[i])
    }
  }
  return Buffer.from(out)
}

function parseValue(v: string): Buffer {
  if (v.startsWith('0x')) return Buffer.from(v.slice(2), 'hex')
  if (v.startsWith('0s')) return Buffer.from(v.slice(2), 'base64')
  if (v.startsWith('"') && v.endsWith('"')) return unescapeOctal(Buffer.from(v.slice(1, -1), 'latin1'))
  return Buffer.from(v, 'latin1')
}

export function parseGetfattr(out: Buffer, root: string): XattrMap {
  const map: XattrMap = new Map()
  const prefix = Buffer.from(root.endsWith('/') ? root : root + '/')
  let current: Map<string, Buffer> | null = null
  let start = 0
  while (start < out.length) {
    let end = out.indexOf(0x0a, start)
    if (end === -1) end = out.length
    const line = out.subarray(start, end)
    start = end + 1
    if (line.length === 0) continue
    if (line.toString('latin1', 0, 8) === '# file: ') {
      const path = unescapeOctal(line.subarray(8))
      if (path.subarray(0, prefix.length).equals(prefix)) {
        current = new Map()
        map.set(path.subarray(prefix.length).toString('latin1'), current)
      } else {
        current = null // the root itself
      }
      continue
    }
    if (!current) continue
    const text = line.toString('latin1')
    const eq = text.indexOf('=')
    const name = unescapeOctal(Buffer.from(eq === -1 ? text : text.slice(0, eq), 'latin1')).toString('utf8')
    current.set(name, eq === -1 ? Buffer.alloc(0) : parseValue(text.slice(eq + 1)))
  }
  return map
}

const MISSING = 'getfattr is not installed; dflatten needs it to read xattrs (apt-get install attr)'

export async function readTreeXattrs(root: string): Promise<XattrMap> {
  const r = await execa('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root], {
    encoding: 'buffer',
    env: { LC_ALL: 'C' },
    maxBuffer: 1024 * 1024 * 1024,
    reject: false,
  })
  if ((r as { code?: string }).code === 'ENOENT') throw new DflattenError(MISSING)
  if (r.exitCode !== 0) {
    throw new DflattenError(`getfattr failed on ${root}: ${Buffer.from(r.stderr).toString().trim().split('\n')[0]}`)
  }
  return parseGetfattr(Buffer.from(r.stdout), root)
}
