// A command that succeeded, run again, succeeds and changes nothing: on an image with nothing
// above its base (whose result is the original itself), on a normal image (the cache), and on an
// image flattened in place with --force. A result name that really is the original's own is
// still refused, by the flatten and by `dflatten resolve`.
import t, { type Test } from 'tap'
import { buildBase, buildSimple } from '../helpers/images.js'
import { docker, imageExists, inspect, removeImage } from '../helpers/docker.js'
import { dflatten, leftovers } from '../helpers/cli.js'

const base = await buildBase()
const simple = await buildSimple()
const META = 'dft-rerun-meta:1'
const mine = [META, 'dft-rerun-meta_flatten:1', 'dft-rerun-meta-flat:1', 'dft-rerun-copy:1', 'dft-rerun-copy_flatten:1', 'dft-rerun-inplace:1', 'dft-rerun-alias:1', 'dft-rerun-err:1']

async function removeMine(): Promise<void> {
  for (const ref of mine) await removeImage(ref)
}

async function clean(t: Test): Promise<void> {
  t.same(await leftovers(), { mounts: [], dirs: [], containers: [] }, 'nothing left behind')
}

/** Run `args` twice: both succeed, and the second says it changed nothing. */
async function twice(t: Test, args: string[], outcome: RegExp): Promise<string> {
  const first = await dflatten(args)
  t.equal(first.exitCode, 0, `first dflatten ${args.join(' ')}: ${first.stderr}`)
  const again = await dflatten(args)
  t.equal(again.exitCode, 0, `again dflatten ${args.join(' ')}: ${again.stderr}`)
  t.match(again.stdout, outcome, 'the repeat says what it found')
  t.match(again.stderr, /already was that image: nothing changed/, 'the repeat says it changed nothing')
  await clean(t)
  return again.stdout
}

function refused(t: Test, r: { exitCode: number; stderr: string }, what: string): void {
  t.not(r.exitCode, 0, `${what}: refused`)
  t.match(r.stderr, /^dflatten: the result's name \S+ is the image's own name; pick another with -t, or pass --force$/, `${what}: in one line`)
}

t.before(async () => {
  await removeMine()
  await docker(['build', '-q', '-t', META, '-'], { input: `FROM ${base}\nLABEL rerun=metadata-only\n`, env: { DOCKER_BUILDKIT: '0' } })
})
t.teardown(removeMine)

t.test('nothing above the base: the same command twice', async (t) => {
  const id = (await inspect(META)).Id
  await twice(t, [META], /no layers above the base/)
  t.equal((await inspect('dft-rerun-meta_flatten:1')).Id, id, 'the default name is the original')
  await twice(t, [META, '-t', 'dft-rerun-meta-flat:1'], /no layers above the base/)
  t.equal((await inspect('dft-rerun-meta-flat:1')).Id, id, 'and so is -t')
  const resolved = await dflatten(['resolve', META])
  t.equal(resolved.exitCode, 0, `dflatten resolve agrees: ${resolved.stderr}`)
  t.equal((JSON.parse(resolved.stdout) as { target: string }).target, 'dft-rerun-meta_flatten:1')
})

t.test("nothing above the base: the image's own name is still refused without --force", async (t) => {
  refused(t, await dflatten([META, '-t', META]), 'flatten')
  refused(t, await dflatten(['resolve', META, '-t', META]), 'resolve')
  const forced = await dflatten([META, '-t', META, '--force'])
  t.equal(forced.exitCode, 0, forced.stderr)
  t.match(forced.stderr, /nothing changed/)
  await clean(t)
})

t.test('a normal image: the same command twice comes from the cache', async (t) => {
  await docker(['tag', simple, 'dft-rerun-copy:1'])
  await twice(t, ['dft-rerun-copy:1'], /from an earlier run \(cache\)/)
  const flat = await inspect('dft-rerun-copy_flatten:1')
  t.equal(flat.RootFS.Layers?.length, ((await inspect(base)).RootFS.Layers?.length ?? 0) + 1, 'the result is flat')
})

t.test('flattened in place with --force: the same command again changes nothing', async (t) => {
  await docker(['tag', simple, 'dft-rerun-inplace:1'])
  const args = ['dft-rerun-inplace:1', '-t', 'dft-rerun-inplace:1', '--force']
  await twice(t, args, /from an earlier run \(cache\)/)
  const id = (await inspect('dft-rerun-inplace:1')).Id
  t.not(id, (await inspect(simple)).Id, 'the name now holds the flattened image')
  // The image now is this flatten's result: its name was given by the earlier run, not the user.
  const plain = await dflatten(['dft-rerun-inplace:1', '-t', 'dft-rerun-inplace:1'])
  t.equal(plain.exitCode, 0, `without --force too: ${plain.stderr}`)
  const noCache = await dflatten(['dft-rerun-inplace:1', '-t', 'dft-rerun-inplace:1', '--no-cache'])
  t.equal(noCache.exitCode, 0, noCache.stderr)
  t.equal((await inspect('dft-rerun-inplace:1')).Id, id, 'no run moved the name')
  const resolved = await dflatten(['resolve', 'dft-rerun-inplace:1', '-t', 'dft-rerun-inplace:1'])
  t.equal(resolved.exitCode, 0, `dflatten resolve agrees: ${resolved.stderr}`)
  await clean(t)
})

t.test("a real clash is still refused: the original's own name, or another it would lose", async (t) => {
  const before = (await inspect(simple)).Id
  refused(t, await dflatten([simple, '-t', simple]), 'the typed name')
  refused(t, await dflatten(['resolve', simple, '-t', simple]), 'resolve, the typed name')
  await docker(['tag', simple, 'dft-rerun-alias:1'])
  refused(t, await dflatten([simple, '-t', 'dft-rerun-alias:1']), 'another name of the original')
  refused(t, await dflatten(['dft-rerun-alias:1', '-t', simple]), 'typed by its other name')
  t.equal((await inspect('dft-rerun-alias:1')).Id, before, 'the original keeps its names')
  t.equal((await inspect(simple)).Id, before)
  t.notOk(await imageExists('dft-rerun-err:1'))
  await clean(t)
})
