// Interrupting a flatten at each point leaves the host as it was: no mounts, no work dirs, no
// result tagged. After kill -9, `dflatten cleanup` removes what was left, and only that.
import t from 'tap'
import { buildBulk, buildLarge } from '../helpers/images.js'
import { imageExists, removeImage } from '../helpers/docker.js'
import { chain, dflatten, leftovers, spawnDflatten, waitFor, WORK_DIR } from '../helpers/cli.js'
import { readFile } from 'node:fs/promises'

const bulk = await buildBulk()
const large = await buildLarge()
const target = 'dft-result-signal:1'

async function mountCount(): Promise<number> {
  return (await readFile('/proc/mounts', 'utf8')).split('\n').filter((l) => WORK_DIR.test(l)).length
}

/** The containers the save method makes to read the image through docker export. */
async function exportContainers(): Promise<string[]> {
  return (await leftovers()).containers
}

/** Start a flatten and return it once `ready` holds. */
async function startUntil(args: string[], ready: (stderr: string) => Promise<boolean> | boolean) {
  const child = spawnDflatten(args)
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
  const ok = await waitFor(async () => (await ready(stderr)) || child.exitCode !== null, 60_000)
  return { child, ok: ok && child.exitCode === null, stderr: () => stderr }
}

t.beforeEach(async () => {
  await removeImage(target)
})

const points: Array<[string, string[], (stderr: string) => Promise<boolean> | boolean]> = [
  ['while rsync copies (overlay-copy diff)', ['--method', 'overlay-copy'], async () => (await mountCount()) >= 2],
  ['while the layer streams into docker load', [], (e) => e.includes('difference:')],
  ['while docker export streams (save method)', ['--method', 'save'], async () => (await exportContainers()).length > 0],
]
for (const [when, extra, ready] of points) {
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    t.test(`${signal} ${when}`, async (t) => {
      const run = await startUntil([bulk, '-t', target, '--no-cache', ...extra], ready)
      t.ok(run.ok, 'the run reached that point')
      run.child.kill(signal)
      const r = await run.child
      t.equal(r.exitCode, code, `exit code ${code}`)
      t.match(run.stderr(), /interrupted by/)
      t.same(await leftovers(), { mounts: [], dirs: [], containers: [] }, 'no mount and no work dir left')
      t.notOk(await imageExists(target), 'nothing tagged')
    })
  }
}

t.test('kill -9 in the middle of diff, then dflatten cleanup, beside a live run', async (t) => {
  // The victim copies 2 GB, so it is still in diff while the live run starts and mounts.
  const victim = await startUntil([large, '-t', target, '--no-cache', '--method', 'overlay-copy'], async () => (await mountCount()) >= 2)
  t.ok(victim.ok, 'the victim is in diff')
  const live = await startUntil([bulk, '-t', 'dft-result-live:1', '--no-cache', '--method', 'overlay-copy'], async () => (await mountCount()) >= 4)
  t.ok(live.ok, 'a second run is mounted beside it')
  victim.child.kill('SIGKILL')
  await victim.child
  t.ok((await leftovers()).mounts.length >= 2, 'kill -9 leaves mounts (nothing can catch it)')

  const c = await dflatten(['cleanup'])
  t.equal(c.exitCode, 0)
  t.match(c.stdout, /removing .*dflatten-\w+ \(2 mounts\)/, 'cleanup says what it removes')
  t.equal((c.stdout.match(/removing/g) ?? []).length, 1, 'exactly the dead run is removed')
  const r = await live.child
  t.equal(r.exitCode, 0, 'the live run finishes normally')
  t.ok(await imageExists('dft-result-live:1'))
  t.same(await leftovers(), { mounts: [], dirs: [], containers: [] }, 'nothing left after both')
  t.notOk(await imageExists(target), 'the killed run tagged nothing')
  await removeImage('dft-result-live:1')
  t.match((await dflatten(['cleanup'])).stdout, /nothing to clean up/)
})

t.test('kill -9 while the save method exports, then dflatten cleanup removes its container', async (t) => {
  const victim = await startUntil([bulk, '-t', target, '--no-cache', '--method', 'save'], async () => (await exportContainers()).length > 0)
  t.ok(victim.ok, 'the victim has made its container')
  victim.child.kill('SIGKILL')
  await victim.child
  const [name] = await exportContainers()
  t.ok(name, 'kill -9 leaves the container')
  const c = await dflatten(['cleanup'])
  t.equal(c.exitCode, 0, c.stderr)
  t.match(c.stdout, new RegExp(`removing .*dflatten-\\w+ \\(container ${name}\\)`), 'cleanup says it removes the container')
  t.same(await leftovers(), { mounts: [], dirs: [], containers: [] }, 'nothing left')
  t.notOk(await imageExists(target), 'the killed run tagged nothing')
})

t.test('a stage fed the wrong input fails clearly and leaves nothing behind', async (t) => {
  const garbage = await chain([`resolve ${bulk}`, 'diff'])
  t.not(garbage.exitCode, 0)
  t.match(garbage.stderr, /dflatten diff reads the output of `dflatten mount`; got the output of `dflatten resolve`/)
  const notJson = await chain(['cleanup --dry-run', 'mount'])
  t.not(notJson.exitCode, 0)
  t.match(notJson.stderr, /not JSON/)

  // diff fails after mount succeeded: the workspace it was handed goes with it.
  const rsyncMissing = await chain([`resolve ${bulk} -m overlay-copy`, 'mount', 'diff'], {
    DFLATTEN_RSYNC: '/nonexistent/rsync',
  })
  t.not(rsyncMissing.exitCode, 0)
  t.match(rsyncMissing.stderr, /rsync is not installed/)
  t.same(await leftovers(), { mounts: [], dirs: [], containers: [] })
})
