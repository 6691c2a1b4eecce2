// Faults and odd input against the real daemon. After each: a one-line message, a non-zero exit
// (where it is an error), no dflatten mount, no work dir, nothing tagged, the original intact.
// Failures of `docker load` and of mount(8) are injected by stand-ins for those commands
// (test/fixtures); everything else is real.
import t, { type Test } from 'tap'
import { execa } from 'execa'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'
import { tmpdir } from 'node:os'
import { buildBulk, buildCorner, buildSimple } from '../helpers/images.js'
import { docker, imageExists, inspect, removeImage } from '../helpers/docker.js'
import { compareFs, exportFs } from '../helpers/export.js'
import { dflatten, leftovers, spawnDflatten, waitFor } from '../helpers/cli.js'

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '../fixtures')
const simple = await buildSimple()
const corner = await buildCorner()
const bulk = await buildBulk()
const target = 'dft-result-fault:1'
const originalId = (await inspect(simple)).Id

async function fine(t: Test, r?: { stderr: string }): Promise<void> {
  t.same(await leftovers(), { mounts: [], dirs: [], containers: [] }, 'no mount and no work dir left')
  t.notOk(await imageExists(target), 'nothing tagged')
  t.equal((await inspect(simple)).Id, originalId, 'the original is untouched')
  if (r) t.equal(r.stderr.trim().split('\n').filter((l) => !l.startsWith('dflatten: flattening')).length, 1, 'one line')
}

t.beforeEach(async () => {
  await removeImage(target)
})

t.test('the daemon is not running', async (t) => {
  const r = await dflatten([simple, '-t', target], { env: { DOCKER_HOST: 'unix:///tmp/dft-no-daemon.sock' } })
  t.equal(r.exitCode, 1)
  t.match(r.stderr, /^dflatten: the Docker daemon is not reachable/)
  await fine(t, r)
})

t.test('docker load rejects the archive', async (t) => {
  const r = await dflatten([simple, '-t', target, '--no-cache'], { env: { DFLATTEN_DOCKER: join(FIXTURES, 'fake-docker.sh'), FAKE_LOAD: 'reject' } })
  t.equal(r.exitCode, 1)
  t.match(r.stderr, /docker load failed: Error processing tar file/)
  await fine(t)
})

t.test('the daemon goes away in the middle of docker load', async (t) => {
  const r = await dflatten([bulk, '-t', target, '--no-cache'], { env: { DFLATTEN_DOCKER: join(FIXTURES, 'fake-docker.sh'), FAKE_LOAD: 'daemon-dies' } })
  t.equal(r.exitCode, 1)
  t.match(r.stderr, /the Docker daemon is not reachable/)
  await fine(t)
})

t.test('docker export fails part way (save method)', async (t) => {
  const r = await dflatten([bulk, '-t', target, '--no-cache', '-m', 'save'], { env: { DFLATTEN_DOCKER: join(FIXTURES, 'fake-docker.sh'), FAKE_EXPORT: 'fail' } })
  t.equal(r.exitCode, 1)
  t.match(r.stderr, /docker export failed: Error response from daemon: stand-in failure/)
  await fine(t)
})

t.test('docker save fails part way (save method, first and second read)', async (t) => {
  const env = { DFLATTEN_DOCKER: join(FIXTURES, 'fake-docker.sh') }
  const first = await dflatten([bulk, '-t', target, '--no-cache', '-m', 'save'], { env: { ...env, FAKE_SAVE: 'fail' } })
  t.equal(first.exitCode, 1)
  t.match(first.stderr, /^dflatten: docker save failed: Error response from daemon: stand-in save failure$/m)
  t.notMatch(first.stderr, /malformed|internal error/, 'what docker said, not what was cut short')
  await fine(t)

  const count = join(await mkdtemp(join(tmpdir(), 'dft-count-')), 'n')
  const second = await dflatten([bulk, '-t', target, '--no-cache', '-m', 'save'], {
    env: { ...env, FAKE_SAVE: 'fail-second', FAKE_COUNT: count, DFLATTEN_SAVE_CONTENT: 'save' },
  })
  await rm(dirname(count), { recursive: true })
  t.equal(second.exitCode, 1)
  t.match(second.stderr, /^dflatten: docker save failed: Error response from daemon: stand-in save failure$/m)
  t.notMatch(second.stderr, /malformed|internal error/, 'what docker said, not what was cut short')
  await fine(t)
})

t.test('rsync exits non-zero', async (t) => {
  const r = await dflatten([simple, '-t', target, '--no-cache', '-m', 'overlay-copy'], { env: { DFLATTEN_RSYNC: 'false' } })
  t.equal(r.exitCode, 1)
  t.match(r.stderr, /rsync failed \(exit 1\)/)
  await fine(t)
})

t.test('rsync is missing', async (t) => {
  const r = await dflatten([simple, '-t', target, '--no-cache', '-m', 'overlay-copy'], { env: { DFLATTEN_RSYNC: '/nonexistent/rsync' } })
  t.equal(r.exitCode, 1)
  t.match(r.stderr, /rsync is not installed/)
  await fine(t)
})

t.test('mount is refused', async (t) => {
  const bin = await mkdtemp(join(tmpdir(), 'dft-fakebin-'))
  await execa('ln', ['-s', join(FIXTURES, 'fake-mount.sh'), join(bin, 'mount')])
  const r = await dflatten([simple, '-t', target, '--no-cache', '-m', 'overlay'], { env: { PATH: `${bin}:${process.env.PATH}` } })
  await rm(bin, { recursive: true })
  t.equal(r.exitCode, 1)
  t.match(r.stderr, /cannot mount the overlay at .*permission denied/)
  await fine(t)
})

t.test('the work dir filesystem fills up', async (t) => {
  const small = await mkdtemp(join(tmpdir(), 'dft-small-'))
  await execa('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', small])
  try {
    const r = await dflatten([bulk, '-t', target, '--no-cache', '-m', 'overlay-copy'], { env: { TMPDIR: small } })
    t.equal(r.exitCode, 1, 'overlay-copy writes the whole difference, and fails')
    t.match(r.stderr, /No space left on device/)
    t.same(await readdir(small), [], 'its work dir is gone')
    t.notOk((await readFile('/proc/mounts', 'utf8')).includes(`${small}/`), 'no mount left in it')
    t.notOk(await imageExists(target))

    const ok = await dflatten([bulk, '-t', target, '--no-cache'], { env: { TMPDIR: small } })
    t.equal(ok.exitCode, 0, 'the default method writes nothing big, and succeeds in the same 4 MB')
    t.same(await readdir(small), [])
    await removeImage(target)
  } finally {
    await execa('umount', [small])
    await rm(small, { recursive: true })
  }
})

t.test('kill -9 during docker load: the next run cleans up and succeeds', async (t) => {
  const child = spawnDflatten([bulk, '-t', target, '--no-cache'])
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
  t.ok(await waitFor(async () => stderr.includes('difference:')), 'it reached pack and load')
  await new Promise((r) => setTimeout(r, 300))
  child.kill('SIGKILL')
  await child
  t.notOk(await imageExists(target), 'a killed load tags nothing')
  const r = await dflatten([bulk, '-t', target, '--no-cache'])
  t.equal(r.exitCode, 0, r.stderr)
  t.match(r.stderr, /removed .*dflatten-\w+, left behind by an interrupted run/)
  t.same(await leftovers(), { mounts: [], dirs: [], containers: [] })
  await removeImage(target)
})

t.test('SIGINT right at the start (resolve)', async (t) => {
  const child = spawnDflatten([bulk, '-t', target, '--no-cache'])
  await new Promise((r) => setTimeout(r, 150))
  child.kill('SIGINT')
  const r = await child
  // Before Node has set its handlers a SIGINT simply ends it: nothing exists yet to clean up.
  t.ok(r.exitCode === 130 || r.signal === 'SIGINT', `stopped (exit ${String(r.exitCode)}, signal ${String(r.signal)})`)
  await removeImage(target)
  t.same(await leftovers(), { mounts: [], dirs: [], containers: [] })
})

t.test('flattens at the same time: one image twice, and two images sharing a base', async (t) => {
  const [a, b] = await Promise.all([
    dflatten([simple, '-t', 'dft-result-twice-a:1', '--no-cache']),
    dflatten([simple, '-t', 'dft-result-twice-b:1', '--no-cache']),
  ])
  t.equal(a.exitCode, 0, a.stderr)
  t.equal(b.exitCode, 0, b.stderr)
  t.equal((await inspect('dft-result-twice-a:1')).Id, (await inspect('dft-result-twice-b:1')).Id, 'same image')
  const [c, d] = await Promise.all([
    dflatten([simple, '-t', 'dft-result-pair-s:1', '--no-cache']),
    dflatten([corner, '-t', 'dft-result-pair-c:1', '--no-cache']),
  ])
  t.equal(c.exitCode, 0, c.stderr)
  t.equal(d.exitCode, 0, d.stderr)
  t.same(compareFs(await exportFs(simple), await exportFs('dft-result-pair-s:1')), [])
  t.same(compareFs(await exportFs(corner), await exportFs('dft-result-pair-c:1')), [])
  for (const n of ['twice-a', 'twice-b', 'pair-s', 'pair-c']) await removeImage(`dft-result-${n}:1`)
  t.same(await leftovers(), { mounts: [], dirs: [], containers: [] })
})

/** A copy of `ref` whose config says another platform (made through save, edit, load). */
async function retargeted(ref: string, name: string, os: string, arch: string): Promise<boolean> {
  const dir = await mkdtemp(join(tmpdir(), 'dft-retarget-'))
  try {
    await execa('bash', ['-c', `docker save ${ref} | tar -x -C ${dir}`])
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Array<{ Config: string; RepoTags: string[] }>
    const config = JSON.parse(await readFile(join(dir, manifest[0].Config), 'utf8')) as Record<string, unknown>
    const text = JSON.stringify({ ...config, os, architecture: arch })
    const { createHash } = await import('node:crypto')
    const id = createHash('sha256').update(text).digest('hex')
    await rm(join(dir, manifest[0].Config))
    await writeFile(join(dir, `${id}.json`), text)
    await writeFile(join(dir, 'manifest.json'), JSON.stringify([{ ...manifest[0], Config: `${id}.json`, RepoTags: [name] }]))
    await rm(join(dir, 'repositories'), { force: true })
    const r = await execa('bash', ['-c', `tar -C ${dir} -c . | docker load`], { reject: false })
    return r.exitCode === 0
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

t.test('another platform', async (t) => {
  t.ok(await retargeted(simple, 'dft-arm64:1', 'linux', 'arm64'), 'an arm64 copy loads')
  // save too: its container, made only to be exported, must be of the image's platform.
  for (const method of ['auto', 'save']) {
    const r = await dflatten(['dft-arm64:1', '-t', target, '--no-cache', '-m', method])
    t.equal(r.exitCode, 0, `${method}: a Linux image of another architecture flattens: nothing of it runs. ${r.stderr}`)
    t.equal((await inspect(target)).Architecture, 'arm64', 'and stays arm64')
    t.same(compareFs(await exportFs(simple), await exportFs(target)), [])
    await removeImage(target)
  }
  await removeImage('dft-arm64:1')

  if (await retargeted(simple, 'dft-windows:1', 'windows', 'amd64')) {
    const w = await dflatten(['dft-windows:1', '-t', target])
    t.equal(w.exitCode, 1)
    t.match(w.stderr, /is a windows\/amd64 image; dflatten flattens Linux images/)
    await removeImage('dft-windows:1')
  } else {
    t.comment('this daemon refuses to load a Windows image at all; nothing to flatten')
  }
  await fine(t)
})

t.test('bad references', async (t) => {
  const r = await dflatten(['Not A Ref!', '-t', target])
  t.equal(r.exitCode, 1)
  t.match(r.stderr, /"Not A Ref!" is not a valid image reference/)
  const b = await dflatten([simple, '--base', 'UPPER:case', '-t', target])
  t.match(b.stderr, /the base "UPPER:case" is not a valid image reference/)
  const force = await dflatten([simple, '-t', simple, '--force', '--no-cache'])
  t.equal(force.exitCode, 0, '--force lets the result take the original name')
  await docker(['tag', originalId, simple]) // give the original its name back
  await fine(t)
})
