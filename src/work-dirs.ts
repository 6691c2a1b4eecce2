/**
 * Which dirs are dflatten's work dirs, who holds each, and which of them a cleanup removes.
 *
 * A work dir is `<work root>/dflatten-XXXXXX` (a real dir, not a symlink) with an `owner` record:
 * the pid and start time of the process responsible for it (a run, or the shell running a chain
 * by hand, to which `dflatten mount` hands it). Nothing else is ever taken for one, so no
 * cleanup can remove a dir that dflatten did not make.
 *
 * Cleanup removes a work dir whose owner is gone (the pid ended or was reused, which the start
 * time tells), and an empty dir of that name that never got its owner record (a run killed right
 * after making it) once it is a minute old. It keeps the others
 * and says why; `force` also removes those, except a dir a dflatten run still owns (that run is
 * working in it). Naming a dir removes it whoever owns it.
 */
import { lstat, readFile, readdir, realpath, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import { DflattenError } from './errors.js'
import type { Settings } from './settings.js'

export const WORKSPACE_PREFIX = 'dflatten-'
/** mkdtemp's six random characters: nothing else under the work root is taken for ours. */
export const WORKSPACE_NAME = /^dflatten-[A-Za-z0-9]{6}$/

export interface Owner {
  pid: number
  /** /proc/<pid>/stat start time, so a recycled pid is not mistaken for the owner. */
  startTime: string
}

/**
 * Where work dirs go: `settings.workRoot`, else os.tmpdir(). The writable stack's upper dir
 * lives here and holds the whole difference, so it needs that much free space.
 */
export function workRoot(settings: Settings = {}): string {
  return settings.workRoot || tmpdir()
}

/** What cleanup asks of the host's processes; tests pass their own. */
export interface ProcessProbe {
  /** The process's start time (field 22 of /proc/PID/stat), or null when there is none. */
  startTime(pid: number): Promise<string | null>
  /** Its command line, or null when it cannot be read. */
  cmdline(pid: number): Promise<string[] | null>
}

export const hostProcesses: ProcessProbe = {
  async startTime(pid) {
    try {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
      // Counted after the parenthesised command name, which may itself hold spaces.
      return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null
    } catch {
      return null
    }
  },
  async cmdline(pid) {
    try {
      const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8')
      return raw.split('\0').filter((a, i, all) => a !== '' || i < all.length - 1)
    } catch {
      return null
    }
  },
}

/** Record `pid` as the process responsible for the work dir (stages hand it on). */
export async function writeOwner(dir: string, pid: number, probe: ProcessProbe = hostProcesses): Promise<void> {
  const owner: Owner = { pid, startTime: (await probe.startTime(pid)) ?? '' }
  await writeFile(join(dir, 'owner'), JSON.stringify(owner) + '\n')
}

async function readOwner(dir: string): Promise<Owner | null> {
  try {
    const owner = JSON.parse(await readFile(join(dir, 'owner'), 'utf8')) as Partial<Owner>
    return Number.isInteger(owner.pid) && typeof owner.startTime === 'string' ? (owner as Owner) : null
  } catch {
    return null
  }
}

/** Who holds a work dir. */
export type Holder =
  | { state: 'gone'; pid: number }
  | { state: 'running'; pid: number; command: string[]; dflatten: boolean }
  | { state: 'unrecorded'; ageMs: number; empty: boolean }

/** Is this command line a dflatten command (the bin run directly or by node)? */
export function isDflattenCommand(argv: string[]): boolean {
  const names = ['dflatten', 'dflatten.js']
  if (names.includes(basename(argv[0] ?? ''))) return true
  if (!/^node(js)?\d*$/.test(basename(argv[0] ?? ''))) return false
  const script = argv.slice(1).find((a) => !a.startsWith('-'))
  return script !== undefined && names.includes(basename(script))
}

export async function holderOf(dir: string, probe: ProcessProbe = hostProcesses, now = Date.now()): Promise<Holder> {
  const owner = await readOwner(dir)
  if (!owner) return { state: 'unrecorded', ageMs: now - (await stat(dir)).mtimeMs, empty: (await readdir(dir)).length === 0 }
  const start = await probe.startTime(owner.pid)
  if (start === null || start !== owner.startTime) return { state: 'gone', pid: owner.pid }
  const command = (await probe.cmdline(owner.pid)) ?? []
  return { state: 'running', pid: owner.pid, command, dflatten: isDflattenCommand(command) }
}

/** A run writes its owner record right after creating the dir; give it that long. */
export const OWNERLESS_GRACE_MS = 60_000

export interface Verdict {
  remove: boolean
  /** Why it is kept, for the user; empty when it goes. */
  why: string
}

function shown(command: string[]): string {
  const line = command.join(' ') || '?'
  return line.length > 60 ? `${line.slice(0, 57)}...` : line
}

/** Whether cleanup removes a work dir with this holder, and if not, why not. */
export function verdict(holder: Holder, force = false): Verdict {
  if (holder.state === 'gone') return { remove: true, why: '' }
  if (holder.state === 'unrecorded') {
    // A run writes the record before it puts anything in the dir: one with content is not ours.
    if (!holder.empty) return { remove: false, why: 'no owner record, and not empty: not a dflatten work dir, left as it is' }
    if (force || holder.ageMs > OWNERLESS_GRACE_MS) return { remove: true, why: '' }
    return { remove: false, why: `no owner record yet (made ${Math.round(holder.ageMs / 1000)} s ago: a run may be starting); --force removes it` }
  }
  const who = `pid ${holder.pid} (${shown(holder.command)})`
  if (holder.dflatten) return { remove: false, why: `a dflatten run still works in it, ${who}; name the dir to remove it anyway` }
  if (force) return { remove: true, why: '' }
  return { remove: false, why: `its owner, ${who}, is still running; --force removes it` }
}

export interface Surveyed {
  dir: string
  holder: Holder
  verdict: Verdict
}

/** Every work dir directly under the work root, with who holds it and what cleanup does. */
export async function surveyWorkDirs(settings: Settings = {}, force = false, probe: ProcessProbe = hostProcesses): Promise<Surveyed[]> {
  const root = workRoot(settings)
  let names: string[]
  try {
    names = await readdir(root)
  } catch {
    return []
  }
  const out: Surveyed[] = []
  for (const n of names.sort()) {
    if (!WORKSPACE_NAME.test(n)) continue
    const dir = join(root, n)
    // Removed meanwhile by another cleanup, or a symlink: not ours to look into.
    const st = await lstat(dir).catch(() => null)
    if (!st?.isDirectory()) continue
    const holder = await holderOf(dir, probe).catch(() => null)
    if (holder) out.push({ dir, holder, verdict: verdict(holder, force) })
  }
  return out
}

/** The work dirs whose owner is gone: what every run removes before it starts. */
export async function abandonedWorkspaces(settings: Settings = {}): Promise<string[]> {
  return (await surveyWorkDirs(settings)).filter((s) => s.verdict.remove).map((s) => s.dir)
}

/**
 * `path` if it is a dflatten work dir (see the top of this file), as the path under the work
 * root; otherwise a one-line refusal that says what it is not.
 */
export async function checkWorkDir(path: string, settings: Settings = {}): Promise<string> {
  const refuse = (why: string): DflattenError => new DflattenError('usage', `${path} is not a dflatten work dir (${why}); left as it is`)
  const st = await lstat(path).catch(() => null)
  if (!st) throw refuse('no such file or directory')
  if (st.isSymbolicLink()) throw refuse('a symlink')
  if (!st.isDirectory()) throw refuse('not a directory')
  const name = basename(resolve(path))
  if (!WORKSPACE_NAME.test(name)) throw refuse(`not named ${WORKSPACE_PREFIX}XXXXXX`)
  const root = await realpath(workRoot(settings)).catch(() => resolve(workRoot(settings)))
  if ((await realpath(dirname(resolve(path)))) !== root) throw refuse(`not directly under the work root ${root}`)
  if (!(await readOwner(path))) throw refuse('no owner record')
  return join(root, name)
}

/** Whether the process that owns a work dir is still the one that wrote its record. */
export async function ownerAlive(dir: string, probe: ProcessProbe = hostProcesses): Promise<boolean> {
  return (await holderOf(dir, probe)).state === 'running'
}
