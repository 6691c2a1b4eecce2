// Work dir bookkeeping, with no root and no mounts: where work dirs go, who owns them, and which
// ones a later run may take for abandoned.
import t from 'tap'
import { mkdir, mkdtemp, readFile, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { abandonedWorkspaces, createWorkspace, ownerAlive, workRoot, workspaceDir, writeOwner } from '../../src/workspace.js'

const outer = await mkdtemp(join(tmpdir(), 'dflatten-test-ws-'))
t.teardown(() => rm(outer, { recursive: true, force: true }))

/** A pid no process has: above the kernel's largest pid_max. */
const DEAD_PID = 4_194_304 + 1

let n = 0
/** A fresh, empty work root. */
async function freshRoot(): Promise<string> {
  const root = join(outer, `root${n++}`)
  await mkdir(root)
  return root
}

t.test('work dirs go under the work root the settings name, else the temp dir', async (t) => {
  t.equal(workRoot({ workRoot: '/srv/scratch' }), '/srv/scratch')
  t.equal(workRoot({}), tmpdir())
  t.equal(workRoot(), tmpdir())
})

t.test('a new workspace: a private dir, its creator told first, its owner recorded', async (t) => {
  const root = await freshRoot()
  let told = ''
  const ws = await createWorkspace((dir) => (told = dir), { workRoot: join(root, 'made/on/demand') })
  t.equal(told, ws.dir, 'onCreated hears of the dir')
  t.match(ws.dir, new RegExp(`^${root}/made/on/demand/dflatten-[A-Za-z0-9]{6}$`), 'the work root is made if need be')
  t.same(await readdir(ws.dir), ['owner'])
  const owner = JSON.parse(await readFile(join(ws.dir, 'owner'), 'utf8')) as { pid: number; startTime: string }
  t.equal(owner.pid, process.pid)
  t.match(owner.startTime, /^\d+$/, 'with the start time, against a reused pid')
  t.ok(await ownerAlive(ws.dir), 'its owner, this process, is alive')
  const view = await workspaceDir(ws, 'source')
  t.equal(view, join(ws.dir, 'source'))
  t.equal((await stat(view)).mode & 0o777, 0o700, 'its dirs are private')
  t.equal(await workspaceDir(ws, 'source'), view, 'asking again is fine')
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
  t.same(await abandonedWorkspaces({ workRoot: root }), [dead, old], "names that are not mkdtemp's are never taken for ours")
})

t.test('a work root that does not exist has nothing abandoned', async (t) => {
  t.same(await abandonedWorkspaces({ workRoot: join(outer, 'nonexistent') }), [])
})
