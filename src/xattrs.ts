/**
 * Extended attributes of a whole tree, read with one `getfattr -R` run (Node has no xattr API).
 * getfattr prints names with control bytes and backslashes as `\ooo` octal escapes and every
 * other byte as is, so names that are not UTF-8 survive the round trip.
 */
import { execa } from 'execa'
import type { LayerEntry } from './entry.js'
import { keptXattrs } from './methods/stat.js'
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

const GETFATTR = ['-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names']

async function getfattr(file: string, args: string[], root: string, input?: Buffer): Promise<XattrMap> {
  const r = await execa(file, args, {
    encoding: 'buffer',
    env: { LC_ALL: 'C' },
    input,
    maxBuffer: 1024 * 1024 * 1024,
    reject: false,
  })
  if ((r as { code?: string }).code === 'ENOENT') throw new DflattenError('tool-missing', MISSING)
  if (r.exitCode !== 0) {
    if (r.exitCode === 127) throw new DflattenError('tool-missing', MISSING) // xargs: the command is not there
    throw new DflattenError('tool-failed', `getfattr failed on ${root}: ${Buffer.from(r.stderr).toString().trim().split('\n')[0]}`)
  }
  return parseGetfattr(Buffer.from(r.stdout), root)
}

/** Every xattr of every file under `root`, in one walk. */
export async function readTreeXattrs(root: string): Promise<XattrMap> {
  return getfattr('getfattr', ['-R', ...GETFATTR, root], root)
}

/**
 * The xattrs of some files under `root`, by relative path. The names go through xargs on stdin,
 * NUL-separated, since a command line cannot carry names that are not valid UTF-8.
 */
export async function readXattrsOf(root: string, paths: Buffer[]): Promise<XattrMap> {
  if (!paths.length) return new Map()
  const prefix = Buffer.from(root.endsWith('/') ? root : root + '/')
  const list = Buffer.concat(paths.flatMap((p) => [prefix, p, NUL]))
  return getfattr('xargs', ['-0', '-r', 'getfattr', ...GETFATTR, '--'], root, list)
}

const NUL = Buffer.from([0])
/** Entries a getfattr run is asked about at once: few spawns, small output to hold. */
const BATCH = 2048

/**
 * Entries with the xattrs `root` shows for them, in batches: one batch is read while the next
 * is gathered, so the reading runs beside whatever produces the entries.
 */
export async function* withXattrs(entries: AsyncIterable<LayerEntry>, root: string): AsyncGenerator<LayerEntry> {
  // A hardlink's xattrs are its target's; markers have none.
  const asks = (e: LayerEntry): boolean => e.kind !== 'whiteout' && e.kind !== 'opaque' && e.kind !== 'hardlink'
  const attach = async (batch: LayerEntry[]): Promise<LayerEntry[]> => {
    const found = await readXattrsOf(root, batch.filter(asks).map((e) => e.path))
    if (!found.size) return batch
    return batch.map((e) => {
      const x = asks(e) ? keptXattrs(found.get(e.path.toString('latin1'))) : undefined
      return x ? { ...e, xattrs: x } : e
    })
  }
  let pending: Promise<LayerEntry[]> | null = null
  let batch: LayerEntry[] = []
  try {
    for await (const e of entries) {
      batch.push(e)
      if (batch.length < BATCH) continue
      const next = attach(batch)
      next.catch(() => undefined) // awaited below; only keeps an early failure from going unhandled
      batch = []
      if (pending) yield* await pending
      pending = next
    }
    if (pending) yield* await pending
    pending = null
    yield* await attach(batch)
  } finally {
    await pending?.catch(() => undefined)
  }
}
