// Work dir bookkeeping, with no root and no mounts: where work dirs go, who owns them, and which
// ones a later run may take for abandoned.
import t from 'tap'
import { mkdir, mkdtemp, readFile, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { abandonedWorkspaces, createWorkspace, ownerAlive, workRoot, writeOwner } from '../../src/workspace.js'

const outer = await mkdtemp(join(tmpdir(), 'dflatten-test-ws-'))
const saved = { TMPDIR: process.env.TMPDIR, DFLATTEN_TMPDIR: process.env.DFLATTEN_TMPDIR }
delete process.env.DFLATTEN_TMPDIR
t.teardown(async () => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) Reflect.deleteProperty(process.env, k)
    else process.env[k] = v
  }
  await rm(outer, { recursive: true, force: true })
})

/** A pid no process has: above the kernel's largest pid_max. */
const DEAD_PID = 4_194_304 + 1

let n = 0
/** A fresh, empty work root, set as $TMPDIR. */
async function freshRoot(): Promise<string> {
  const root = join(outer, `root${n++}`)
  await mkdir(root)
  process.env.TMPDIR = root
  return root
}

t.test('work dirs go under $TMPDIR', async (t) => {
  const root = await freshRoot()
  t.equal(workRoot(), root)
})

t.test('a new workspace: a private dir with its mount points, its creator told first', async (t) => {
  const root = await freshRoot()
  let told = ''
  const ws = await createWorkspace((dir) => (told = dir))
  t.equal(told, ws.dir, 'onCreated hears of the dir')
  t.match(ws.dir, new RegExp(`^${root}/dflatten-[A-Za-z0-9]{6}$`))
  t.same((await readdir(ws.dir)).sort(), ['base', 'empty', 'l', 'owner', 'source', 'stack', 'upper', 'work'])
  for (const d of [ws.sourceView, ws.baseView, ws.stack, ws.upper, ws.work]) t.equal((await stat(d)).mode & 0o777, 0o700, d)
  const owner = JSON.parse(await readFile(join(ws.dir, 'owner'), 'utf8')) as { pid: number; startTime: string }
  t.equal(owner.pid, process.pid)
  t.match(owner.startTime, /^\d+$/, 'with the start time, against a reused pid')
  t.ok(await ownerAlive(ws.dir), 'its owner, this process, is alive')
})

t.test('an owner that is gone, or whose pid was reused, is not alive', async (t) => {
  const root = await freshRoot()
  const dir = join(root, 'dflatten-abcdef')
  await mkdir(dir)
  t.notOk(await ownerAlive(dir), 'no owner file')
  await writeOwner(dir, DEAD_PID)
  t.notOk(await ownerAlive(dir), 'a pid no process has')
  await writeFile(join(dir, 'owner'), JSON.stringify({ pid: process.pid, startTime: '1' }))
  t.notOk(await ownerAlive(dir), 'this pid, but another start time')
  await writeFile(join(dir, 'owner'), 'not json')
  t.notOk(await ownerAlive(dir), 'an owner file that is garbage')
})

t.test('abandoned workspaces: dead owners, and ownerless ones over a minute old', async (t) => {
  const root = await freshRoot()
  const make = async (name: string, pid?: number, ageMs = 0): Promise<string> => {
    const dir = join(root, name)
    await mkdir(dir)
    if (pid !== undefined) await writeOwner(dir, pid)
    if (ageMs) {
      const then = new Date(Date.now() - ageMs)
      await utimes(dir, then, then)
    }
    return dir
  }
  const dead = await make('dflatten-AAAAAA', DEAD_PID)
  await make('dflatten-BBBBBB', process.pid)
  await make('dflatten-CCCCCC')
  const old = await make('dflatten-DDDDDD', undefined, 120_000)
  await make('dflatten-EEEEEEE', DEAD_PID)
  await make('other-FFFFFF', DEAD_PID)
  await writeFile(join(root, 'dflatten-GGGGG'), '')
  t.same(await abandonedWorkspaces(), [dead, old], 'names that are not mkdtemp\'s are never taken for ours')
})

t.test('a work root that does not exist has nothing abandoned', async (t) => {
  process.env.TMPDIR = join(outer, 'nonexistent')
  t.same(await abandonedWorkspaces(), [])
})
