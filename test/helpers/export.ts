// What an image's filesystem looks like from outside: `docker export` of a created (never
// started) container, read with tar-stream, and a comparer that says how two of them differ.
//
// Keys and names are "binary" strings: one char per byte (latin1), so names that are not
// valid UTF-8 survive. Use key('/path/é') to build one from a JS (UTF-8) path.
import { createHash } from 'node:crypto'
import tar from 'tar-stream'
import { execa } from 'execa'
import { docker, inspect } from './docker.js'

export type FsType = 'file' | 'directory' | 'symlink' | 'character-device' | 'block-device' | 'fifo'

export interface FsEntry {
  /** Absolute, binary string ('/' + the name in the tar, no trailing slash). */
  path: string
  type: FsType
  /** Permission bits with setuid/setgid/sticky (& 0o7777). */
  mode: number
  uid: number
  gid: number
  size: number
  /** Whole seconds: Docker truncates mtimes when it writes the tar. */
  mtime: number
  /** sha256 hex of the content, regular files only. */
  sha256: string | null
  /** Symlink target, binary string. */
  linkname: string | null
  devmajor: number | null
  devminor: number | null
  /** xattr name -> value as hex. Docker's archiver only ever writes security.capability. */
  xattrs: Record<string, string>
  /** Sorted paths of every name of this inode (itself included), or null when it has one name. */
  hardlinks: string[] | null
}

export type FsMap = Map<string, FsEntry>

/** Paths that Docker's init layer creates or touches in every container: their mtime is the
 *  container's creation time, so it says nothing about the image. */
export const INIT_LAYER_PATHS: ReadonlySet<string> = new Set([
  '/.dockerenv',
  '/dev',
  '/dev/console',
  '/dev/pts',
  '/dev/shm',
  '/etc',
  '/etc/hostname',
  '/etc/hosts',
  '/etc/mtab',
  '/etc/resolv.conf',
  '/proc',
  '/sys',
])

/** The map key of a path given as a JS string (encoded UTF-8) or as raw bytes. */
export function key(path: string | Buffer): string {
  return typeof path === 'string' ? Buffer.from(path, 'utf8').toString('latin1') : path.toString('latin1')
}

/** A binary path for humans: as-is when it is printable UTF-8, else JSON-quoted with \xNN. */
export function display(path: string): string {
  const bytes = Buffer.from(path, 'latin1')
  let text: string | null
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    text = null
  }
  // eslint-disable-next-line no-control-regex -- control characters are exactly what this looks for
  if (text !== null && !/[\u0000-\u001f\u007f]/.test(text) && text.trim() === text) return text
  if (text !== null) return JSON.stringify(text)
  let out = ''
  for (const b of bytes) out += b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`
  return `"${out}"`
}

function normalise(name: string): string {
  let p = name
  while (p.startsWith('./')) p = p.slice(2)
  p = p.replace(/^\/+/, '').replace(/\/+$/, '')
  return p === '' || p === '.' ? '/' : '/' + p
}

// tar-stream decodes PAX records as UTF-8 whatever filenameEncoding says, and Docker writes
// every non-ASCII or long name as a PAX `path`: a 0xff byte would come out as U+FFFD, and a
// binary xattr value would be mangled. So, on this one extractor only, PAX records are decoded
// byte for byte. This overrides a private method of tar-stream 3.x (checked against 3.2.2).
function decodePaxBinary(buf: Buffer): Record<string, string> {
  const result: Record<string, string> = {}
  let rest = buf
  while (rest.length > 0) {
    const space = rest.indexOf(0x20)
    if (space <= 0) break
    const len = parseInt(rest.subarray(0, space).toString('latin1'), 10)
    if (!(len > space + 1) || len > rest.length) break
    const record = rest.subarray(space + 1, len - 1).toString('latin1')
    const eq = record.indexOf('=')
    if (eq === -1) break
    result[record.slice(0, eq)] = record.slice(eq + 1)
    rest = rest.subarray(len)
  }
  return result
}

interface ExtractInternals {
  _header: { type: string } | null
  _pax: Record<string, string> | null
  _paxGlobal: Record<string, string> | null
  _decodeLongHeader: (buf: Buffer) => void
}

function binaryExtract(): tar.Extract {
  // filenameEncoding is read by tar-stream but missing from its type
  const ex = tar.extract({ filenameEncoding: 'binary' } as Parameters<typeof tar.extract>[0])
  const internals = ex as unknown as ExtractInternals
  const original = internals._decodeLongHeader
  if (typeof original !== 'function' || !('_paxGlobal' in internals)) {
    throw new Error('tar-stream internals changed: cannot read PAX records as bytes (test/helpers/export.ts)')
  }
  internals._decodeLongHeader = function (this: ExtractInternals, buf: Buffer): void {
    const type = this._header?.type
    if (type === 'pax-global-header') {
      this._paxGlobal = decodePaxBinary(buf)
    } else if (type === 'pax-header') {
      this._pax = { ...(this._paxGlobal ?? {}), ...decodePaxBinary(buf) }
    } else {
      original.call(this, buf)
    }
  }
  return ex
}

interface RawHeader extends Omit<tar.Header, 'pax' | 'linkname'> {
  linkname: string | null
  pax?: Record<string, string> | null
}

function entryType(t: string): FsType | 'link' {
  switch (t) {
    case 'file':
    case 'contiguous-file':
      return 'file'
    case 'link':
    case 'symlink':
    case 'directory':
    case 'character-device':
    case 'block-device':
    case 'fifo':
      return t
    default:
      throw new Error(`unexpected tar entry type ${t}`)
  }
}

function paxNumber(pax: Record<string, string> | null | undefined, name: string, fallback: number): number {
  const v = pax?.[name]
  return v === undefined ? fallback : Math.floor(Number(v))
}

/** Reads a tar stream (as `docker export` writes it) into a map keyed by binary path. */
export async function readTar(stream: NodeJS.ReadableStream): Promise<FsMap> {
  const map: FsMap = new Map()
  const links: Array<{ path: string; target: string }> = []
  const ex = binaryExtract()
  stream.on('error', (err: Error) => ex.destroy(err))
  stream.pipe(ex)
  for await (const entry of ex) {
    const h = entry.header as unknown as RawHeader
    const path = normalise(h.name)
    const type = entryType(h.type)
    const hash = createHash('sha256')
    for await (const chunk of entry) hash.update(chunk as Buffer)
    if (type === 'link') {
      links.push({ path, target: normalise(h.linkname ?? '') })
      continue
    }
    const xattrs: Record<string, string> = {}
    for (const [k, v] of Object.entries(h.pax ?? {})) {
      if (k.startsWith('SCHILY.xattr.')) xattrs[k.slice('SCHILY.xattr.'.length)] = Buffer.from(v, 'latin1').toString('hex')
    }
    const isDevice = type === 'character-device' || type === 'block-device'
    map.set(path, {
      path,
      type,
      mode: h.mode & 0o7777,
      uid: paxNumber(h.pax, 'uid', h.uid),
      gid: paxNumber(h.pax, 'gid', h.gid),
      size: type === 'file' ? h.size : 0,
      mtime: paxNumber(h.pax, 'mtime', Math.floor(h.mtime.getTime() / 1000)),
      sha256: type === 'file' ? hash.digest('hex') : null,
      linkname: type === 'symlink' ? (h.linkname ?? '') : null,
      devmajor: isDevice ? h.devmajor : null,
      devminor: isDevice ? h.devminor : null,
      xattrs,
      hardlinks: null,
    })
  }

  // Which name of an inode comes first (and so is the regular entry) depends on the walk
  // order, which can differ between two images with the same files: store every member as
  // the same inode plus its sorted group.
  const linkTargets = new Map(links.map(({ path, target }) => [path, target]))
  const groups = new Map<string, string[]>()
  for (const { path, target } of links) {
    let inode = target
    for (let hops = 0; linkTargets.has(inode) && hops < links.length; hops++) inode = linkTargets.get(inode) as string
    if (!map.has(inode)) throw new Error(`hardlink ${display(path)} points at ${display(target)}, which is not in the archive`)
    const group = groups.get(inode) ?? [inode]
    group.push(path)
    groups.set(inode, group)
  }
  for (const [target, names] of groups) {
    const primary = map.get(target) as FsEntry
    const sorted = [...names].sort()
    for (const name of sorted) map.set(name, { ...primary, path: name, xattrs: { ...primary.xattrs }, hardlinks: sorted })
  }
  return map
}

const leaking = new Map<string, Promise<boolean>>()

/**
 * Whether `docker export` on the daemon DOCKER_HOST names leaves the container's layer mounted
 * and on disk until the daemon restarts (moby #48516, README): the classic store of Docker 24.0
 * to 27.x. Worked out here, not by src/, which the tests check.
 */
function exportLeaks(): Promise<boolean> {
  const host = process.env.DOCKER_HOST ?? ''
  let leaks = leaking.get(host)
  if (!leaks) {
    leaks = docker(['info', '--format', '{{.ServerVersion}}|{{.Driver}}|{{json .DriverStatus}}']).then((out) => {
      const [version, driver, status] = out.split('|')
      if (driver.includes('snapshotter') || status.includes('"driver-type"')) return false
      const major = /^v?(\d+)\./.exec(version)?.[1]
      return major === undefined || (Number(major) >= 24 && Number(major) < 28)
    })
    leaking.set(host, leaks)
  }
  return leaks
}

/**
 * The filesystem of an image as `docker export` of a created container shows it. Where the
 * export leaks (exportLeaks), it is read with `docker cp CONTAINER:/ -`, which does not: the
 * same entries with the same metadata, xattrs included, but for two things fixed up here. cp
 * also sends the root dir, and it reads a VOLUME from the anonymous volume made at create,
 * whose content is the image's but whose own mtime is the volume's creation time: on that
 * daemon the mtime of a volume's dir is not compared. Elsewhere the export stays, which shows
 * the image's own dir.
 */
export async function exportFs(ref: string): Promise<FsMap> {
  // --workdir / keeps `docker create` from making the image's WORKDIR in the container layer;
  // the command is never run but an image without CMD needs one to be created.
  const id = await docker(['create', '--network', 'none', '--workdir', '/', ref, 'true'])
  try {
    const copy = await exportLeaks()
    const args = copy ? ['cp', `${id}:/`, '-'] : ['export', id]
    const proc = execa('docker', args, { buffer: false, stdout: 'pipe', stderr: 'pipe' })
    let stderr = ''
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const [map] = await Promise.all([
      readTar(proc.stdout as NodeJS.ReadableStream),
      proc.catch((err: unknown) => {
        throw new Error(`docker ${args[0]} ${ref}: ${stderr || String(err)}`)
      }),
    ])
    if (copy) {
      map.delete('/')
      for (const v of Object.keys((await inspect(ref)).Config?.Volumes ?? {})) {
        const e = map.get(normalise(key(v)))
        if (e) map.set(e.path, { ...e, mtime: 0 })
      }
    }
    return map
  } finally {
    // -v: a VOLUME in the image gets an anonymous volume at create time
    await docker(['rm', '-v', id])
  }
}

export interface CompareOptions {
  /** Names for the two sides in messages (default 'a' and 'b'). */
  labels?: [string, string]
  /** Compare mtimes (default true). Those of INIT_LAYER_PATHS are never compared. */
  mtime?: boolean
  /** Leave these paths out entirely. */
  ignore?: (path: string) => boolean
}

function octal(n: number): string {
  return '0' + n.toString(8).padStart(3, '0')
}

function fmtXattrs(x: Record<string, string>): string {
  const keys = Object.keys(x).sort()
  return keys.length === 0 ? '{}' : '{' + keys.map((k) => `${k}=0x${x[k]}`).join(', ') + '}'
}

function under(path: string, dir: string): boolean {
  return dir === '/' ? path !== '/' : path.startsWith(dir + '/')
}

/** Human-readable differences between two exported filesystems; empty when they are the same. */
export function compareFs(a: FsMap, b: FsMap, opts: CompareOptions = {}): string[] {
  const [la, lb] = opts.labels ?? ['a', 'b']
  const compareMtime = opts.mtime ?? true
  const out: string[] = []
  const paths = [...new Set([...a.keys(), ...b.keys()])].filter((p) => opts.ignore?.(p) !== true).sort()
  // When a whole directory exists on one side only, report it once with a count.
  let skipUnder: string | null = null
  for (let i = 0; i < paths.length; i++) {
    const p = paths[i]
    if (skipUnder !== null && under(p, skipUnder)) continue
    skipUnder = null
    const x = a.get(p)
    const y = b.get(p)
    if (x === undefined || y === undefined) {
      const e = (x ?? y) as FsEntry
      const side = x === undefined ? lb : la
      let below = 0
      if (e.type === 'directory') {
        const inOther = x === undefined ? a : b
        for (let j = i + 1; j < paths.length && under(paths[j], p); j++) {
          if (!inOther.has(paths[j])) below++
        }
        skipUnder = p
      }
      out.push(`only in ${side}: ${display(p)} (${e.type}${below > 0 ? `, ${below} entries below` : ''})`)
      continue
    }
    const d = display(p)
    if (x.type !== y.type) {
      out.push(`${d}: type ${x.type} in ${la}, ${y.type} in ${lb}`)
      continue
    }
    const diff = (what: string, u: string, v: string): void => {
      if (u !== v) out.push(`${d}: ${what} ${u} in ${la}, ${v} in ${lb}`)
    }
    diff('mode', octal(x.mode), octal(y.mode))
    diff('owner', `${x.uid}:${x.gid}`, `${y.uid}:${y.gid}`)
    if (x.type === 'file') {
      diff('size', String(x.size), String(y.size))
      if (x.size === y.size) diff('content sha256', String(x.sha256), String(y.sha256))
    }
    if (x.type === 'symlink') diff('target', display(x.linkname ?? ''), display(y.linkname ?? ''))
    if (x.devmajor !== null || y.devmajor !== null) {
      diff('device', `${x.devmajor},${x.devminor}`, `${y.devmajor},${y.devminor}`)
    }
    if (compareMtime && !INIT_LAYER_PATHS.has(p)) diff('mtime', String(x.mtime), String(y.mtime))
    diff('xattrs', fmtXattrs(x.xattrs), fmtXattrs(y.xattrs))
    diff(
      'hardlinks',
      x.hardlinks === null ? 'none' : '[' + x.hardlinks.map(display).join(', ') + ']',
      y.hardlinks === null ? 'none' : '[' + y.hardlinks.map(display).join(', ') + ']',
    )
  }
  return out
}

export interface ComparableConfig {
  Env: string[] | null
  Cmd: string[] | null
  Entrypoint: string[] | null
  WorkingDir: string
  User: string
  Labels: Record<string, string> | null
  ExposedPorts: Record<string, object> | null
  Volumes: Record<string, object> | null
  Healthcheck: Record<string, unknown> | null
  StopSignal: string
  StopTimeout: number | null
  OnBuild: string[] | null
  Shell: string[] | null
  ArgsEscaped: boolean
  Author: string
  Os: string
  Architecture: string
  Variant: string
}

// Docker writes an empty list or map and a missing one interchangeably (`[]`, `{}`, `null`,
// absent) and treats them alike, so they compare as null.
function orNull<T>(v: T | null | undefined): T | null {
  if (v === undefined || v === null) return null
  if (Array.isArray(v) && v.length === 0) return null
  if (typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0) return null
  return v
}

/** The part of an image's config that a flattened image must keep: no ids, dates or history. */
export async function configOf(ref: string): Promise<ComparableConfig> {
  const img = await inspect(ref)
  const c = img.Config ?? {}
  return {
    Env: orNull(c.Env),
    Cmd: orNull(c.Cmd),
    Entrypoint: orNull(c.Entrypoint),
    WorkingDir: c.WorkingDir ?? '',
    User: c.User ?? '',
    Labels: orNull(c.Labels),
    ExposedPorts: orNull(c.ExposedPorts),
    Volumes: orNull(c.Volumes),
    Healthcheck: orNull(c.Healthcheck),
    StopSignal: c.StopSignal ?? '',
    StopTimeout: c.StopTimeout ?? null,
    OnBuild: orNull(c.OnBuild),
    Shell: orNull(c.Shell),
    ArgsEscaped: c.ArgsEscaped ?? false,
    Author: img.Author ?? '',
    Os: img.Os,
    Architecture: img.Architecture,
    Variant: img.Variant ?? '',
  }
}
