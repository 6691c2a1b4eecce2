// Which dirs are dflatten work dirs, who holds each and why cleanup keeps one: decided from the
// owner record and a fake process table, in a temp work root (no root, no daemon).
import t from 'tap'
import { mkdir, mkdtemp, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  checkWorkDir,
  holderOf,
  isDflattenCommand,
  surveyWorkDirs,
  verdict,
  writeOwner,
  type ProcessProbe,
} from '../../src/work-dirs.js'
import { DflattenError } from '../../src/errors.js'

/** A process table: pid -> [start time, command line]. */
function fakeProcesses(table: Partial<Record<number, [string, string[]]>>): ProcessProbe {
  return {
    startTime: (pid) => Promise.resolve(table[pid]?.[0] ?? null),
    cmdline: (pid) => Promise.resolve(table[pid]?.[1] ?? null),
  }
}

const SHELL = 4001
const RUN = 4002
const DEAD = 4003
const procs = fakeProcesses({
  [SHELL]: ['111', ['-bash']],
  [RUN]: ['222', ['/usr/bin/node', '--optimize-for-size', '/usr/lib/node_modules/dflatten/bin/dflatten.js', 'app:1']],
})

const root = await mkdtemp(join(tmpdir(), 'dft-unit-workdirs-'))
t.teardown(() => rm(root, { recursive: true, force: true }))

async function workDir(name: string, owner?: number): Promise<string> {
  const dir = join(root, name)
  await mkdir(dir)
  if (owner !== undefined) await writeOwner(dir, owner, procs)
  return dir
}

t.test('a dflatten command is told from others by its command line', async (t) => {
  t.ok(isDflattenCommand(['/usr/bin/node', '--optimize-for-size', '/x/bin/dflatten.js', 'diff']), 'node running the bin')
  t.ok(isDflattenCommand(['node', '/usr/local/bin/dflatten', 'cleanup']), 'node running the linked bin')
  t.ok(isDflattenCommand(['/usr/local/bin/dflatten', 'app:1']))
  t.notOk(isDflattenCommand(['-bash']), 'a login shell')
  t.notOk(isDflattenCommand(['bash', '-c', '/x/bin/dflatten.js resolve app | /x/bin/dflatten.js mount']), 'the shell running a chain')
  t.notOk(isDflattenCommand(['node', 'server.js']))
  t.notOk(isDflattenCommand([]))
})

t.test('who holds a work dir', async (t) => {
  t.same(await holderOf(await workDir('dflatten-shell1', SHELL), procs), { state: 'running', pid: SHELL, command: ['-bash'], dflatten: false })
  const run = await holderOf(await workDir('dflatten-runnn1', RUN), procs)
  t.match(run, { state: 'running', pid: RUN, dflatten: true })
  t.same(await holderOf(await workDir('dflatten-dead01', DEAD), procs), { state: 'gone', pid: DEAD }, 'the owner ended')
  const reused = await workDir('dflatten-reuse1', SHELL)
  await writeFile(join(reused, 'owner'), JSON.stringify({ pid: SHELL, startTime: '99' }))
  t.same(await holderOf(reused, procs), { state: 'gone', pid: SHELL }, 'the pid now belongs to another process')
  const bad = await workDir('dflatten-badow1')
  await writeFile(join(bad, 'owner'), '{"pid": "x"')
  t.match(await holderOf(bad, procs), { state: 'unrecorded', empty: false }, 'a damaged owner record is none')
  const empty = await workDir('dflatten-empty1')
  t.match(await holderOf(empty, procs), { state: 'unrecorded', empty: true })
})

t.test('why cleanup keeps a work dir, and what --force changes', async (t) => {
  t.same(verdict({ state: 'gone', pid: DEAD }), { remove: true, why: '' })
  const shell = verdict({ state: 'running', pid: SHELL, command: ['-bash'], dflatten: false })
  t.equal(shell.remove, false)
  t.equal(shell.why, `its owner, pid ${SHELL} (-bash), is still running; --force removes it`)
  t.equal(verdict({ state: 'running', pid: SHELL, command: ['-bash'], dflatten: false }, true).remove, true, '--force removes it')
  const run = verdict({ state: 'running', pid: RUN, command: ['dflatten', 'x'.repeat(100)], dflatten: true }, true)
  t.equal(run.remove, false, 'not even --force takes a live run\'s work dir')
  t.match(run.why, /^a dflatten run still works in it, pid 4002 \(dflatten x+\.\.\.\); name the dir to remove it anyway$/)
  t.ok(run.why.length < 150, 'a long command line is cut short')
  const young = verdict({ state: 'unrecorded', ageMs: 5_000, empty: true })
  t.same(young, { remove: false, why: 'no owner record yet (made 5 s ago: a run may be starting); --force removes it' })
  t.equal(verdict({ state: 'unrecorded', ageMs: 5_000, empty: true }, true).remove, true)
  t.equal(verdict({ state: 'unrecorded', ageMs: 61_000, empty: true }).remove, true, 'an old empty dir with no owner record goes')
  const full = { state: 'unrecorded', ageMs: 3_600_000, empty: false } as const
  t.same(verdict(full), { remove: false, why: 'no owner record, and not empty: not a dflatten work dir, left as it is' })
  t.equal(verdict(full, true).remove, false, 'not even --force removes a dir with content and no owner record')
})

t.test('the survey lists the work dirs under the root, and nothing else', async (t) => {
  const survey = await surveyWorkDirs({ workRoot: root }, false, procs)
  const names = survey.map((s) => s.dir.slice(root.length + 1))
  t.same(names, ['dflatten-badow1', 'dflatten-dead01', 'dflatten-empty1', 'dflatten-reuse1', 'dflatten-runnn1', 'dflatten-shell1'])
  await symlink(join(root, 'dflatten-shell1'), join(root, 'dflatten-link01'))
  await writeFile(join(root, 'dflatten-file01'), 'a file')
  await mkdir(join(root, 'dflatten-toolong'))
  await mkdir(join(root, 'other'))
  t.same((await surveyWorkDirs({ workRoot: root }, false, procs)).map((s) => s.dir.slice(root.length + 1)), names, 'not a symlink, a file or another name')
  const removed = survey.filter((s) => s.verdict.remove).map((s) => s.dir.slice(root.length + 1))
  t.same(removed, ['dflatten-dead01', 'dflatten-reuse1'], 'without --force: the dead owners (the empty dir is too young)')
  const hourAgo = new Date(Date.now() - 3_600_000)
  await utimes(join(root, 'dflatten-empty1'), hourAgo, hourAgo)
  await utimes(join(root, 'dflatten-badow1'), hourAgo, hourAgo)
  const later = (await surveyWorkDirs({ workRoot: root }, false, procs)).filter((s) => s.verdict.remove).map((s) => s.dir.slice(root.length + 1))
  t.same(later, ['dflatten-dead01', 'dflatten-empty1', 'dflatten-reuse1'], 'an hour on, the empty one too, never the one with content')
  const forced = (await surveyWorkDirs({ workRoot: root }, true, procs)).filter((s) => s.verdict.remove).map((s) => s.dir.slice(root.length + 1))
  t.same(forced, ['dflatten-dead01', 'dflatten-empty1', 'dflatten-reuse1', 'dflatten-shell1'], '--force: all but the live run and the one with content')
  t.same(await surveyWorkDirs({ workRoot: join(root, 'missing') }, false, procs), [], 'no work root, no work dirs')
})

t.test('a dir named on the command line must be a work dir under the work root', async (t) => {
  const settings = { workRoot: root }
  t.equal(await checkWorkDir(join(root, 'dflatten-shell1'), settings), join(root, 'dflatten-shell1'))
  t.equal(await checkWorkDir(join(root, 'other', '..', 'dflatten-shell1'), settings), join(root, 'dflatten-shell1'), 'any spelling of it')
  const decoy = join(root, 'dflatten-decoy1')
  await mkdir(decoy)
  await writeFile(join(decoy, 'precious'), 'keep me')
  const elsewhere = await mkdtemp(join(tmpdir(), 'dft-unit-elsewhere-'))
  t.teardown(() => rm(elsewhere, { recursive: true, force: true }))
  const outside = join(elsewhere, 'dflatten-out001')
  await mkdir(outside)
  await writeOwner(outside, DEAD, procs)
  const cases: Array<[string, string, RegExp]> = [
    ['no owner record', decoy, /^\S+dflatten-decoy1 is not a dflatten work dir \(no owner record\); left as it is$/],
    ['a symlink', join(root, 'dflatten-link01'), /\(a symlink\)/],
    ['a file', join(root, 'dflatten-file01'), /\(not a directory\)/],
    ['another name', join(root, 'other'), /\(not named dflatten-XXXXXX\)/],
    ['not under the work root', outside, /\(not directly under the work root /],
    ['missing', join(root, 'dflatten-nosuch'), /\(no such file or directory\)/],
    ['the work root itself', root, /not named dflatten-XXXXXX/],
  ]
  for (const [what, path, message] of cases) {
    const e = await checkWorkDir(path, settings).then(() => null, (e: unknown) => e)
    t.ok(e instanceof DflattenError && e.code === 'usage', `${what}: refused`)
    t.match((e as Error).message, message, `${what}: says why, in one line`)
  }
  t.equal(await readFile(join(decoy, 'precious'), 'utf8'), 'keep me', 'the decoy is untouched')
})
