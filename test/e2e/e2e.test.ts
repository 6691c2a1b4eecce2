// End to end: the real CLI against the real daemon. Every flatten is checked the way a user
// would: `docker export` of the original and of the result hold the same entries, the config is
// the same, the layers are the base's plus one, a second run comes from the cache, and the run
// leaves no mount or work dir behind and Docker's own layer dirs exactly as they were.
import t, { type Test } from 'tap'
import { buildBase, buildCorner, buildHidden, buildManyLayers, buildSimple, HIDDEN_FILES } from '../helpers/images.js'
import { compareFs, configOf, exportFs } from '../helpers/export.js'
import { docker, imageExists, inspect, removeImage } from '../helpers/docker.js'
import { BIN, chain, dflatten, leftovers } from '../helpers/cli.js'
import { execa } from 'execa'
import { lstat, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fingerprint, layerDirs } from '../helpers/storage.js'

const base = await buildBase()
// 119 RUN steps over the one-layer base: 120 layers, close to Docker's limit of 125.
const images = { simple: await buildSimple(), corner: await buildCorner(), many: await buildManyLayers() }

async function clean(t: Test): Promise<void> {
  const left = await leftovers()
  t.same(left.mounts, [], 'no dflatten mount is left')
  t.same(left.dirs, [], 'no work dir is left')
  t.same(left.containers, [], 'no container is left')
}

/** Flatten `source` into `target` and check the result against the original, every way. */
async function flattenAndCheck(
  t: Test,
  source: string,
  target: string,
  opts: { method?: string; base?: string; baseLayers?: number } = {},
): Promise<string> {
  if (await imageExists(target)) await removeImage(target)
  const args = [
    source,
    '-t',
    target,
    '--no-cache',
    ...(opts.method ? ['--method', opts.method] : []),
    ...(opts.base ? ['--base', opts.base] : []),
  ]
  const r = await dflatten(args)
  t.equal(r.exitCode, 0, `dflatten ${args.join(' ')} exits 0`)
  if (r.exitCode !== 0) {
    t.comment(r.stderr)
    return ''
  }
  t.match(r.stdout, /^flattened: /m, 'it says it flattened')
  await clean(t)

  const [orig, flat] = await Promise.all([exportFs(source), exportFs(target)])
  const differences = compareFs(orig, flat, { labels: [source, target] })
  t.same(differences, [], 'docker export of the original and of the result hold the same entries')
  t.same(await configOf(target), await configOf(source), 'the config is the same')

  const [src, res] = await Promise.all([inspect(source), inspect(target)])
  const baseLayers = opts.baseLayers ?? (await inspect(base)).RootFS.Layers?.length ?? 0
  t.equal(res.RootFS.Layers?.length, baseLayers + 1, 'the result has the base layers plus one')
  t.same(res.RootFS.Layers?.slice(0, baseLayers), src.RootFS.Layers?.slice(0, baseLayers), 'the base layers are shared, not copied')
  t.equal(res.Created, src.Created, 'the result keeps the original creation time')
  const history = await docker(['history', '--no-trunc', '--format', '{{.Comment}}', target])
  t.match(history.split('\n')[0], `dflatten: flattened ${src.Id}`, 'the new history entry says what was flattened')
  return res.Id
}

for (const [name, ref] of Object.entries(images)) {
  t.test(`flatten ${name} (${ref})`, async (t) => {
    const target = `dft-result-${name}:1`
    const dirs = await layerDirs(ref)
    const before = await fingerprint(dirs)

    const id = await flattenAndCheck(t, ref, target)

    const again = await dflatten([ref, '-t', target])
    t.equal(again.exitCode, 0)
    t.match(again.stdout, /from an earlier run \(cache\)/, 'a second run comes from the cache')
    t.equal((await inspect(target)).Id, id, 'with the same id')

    await removeImage(target)
    const fresh = await dflatten([ref, '-t', target, '-q'])
    t.equal(fresh.exitCode, 0)
    t.equal((await inspect(target)).Id, id, 'flattening again from nothing gives the same id')

    const copy = await flattenAndCheck(t, ref, `dft-result-${name}-copy:1`, { method: 'overlay-copy' })
    t.ok(copy, 'the overlay-copy method (rsync into a writable stack) agrees on the filesystem')
    await removeImage(`dft-result-${name}-copy:1`)

    const saved = await flattenAndCheck(t, ref, `dft-result-${name}-save:1`, { method: 'save' })
    t.ok(saved, 'the save method (docker save merged in user space) agrees on the filesystem')
    await removeImage(`dft-result-${name}-save:1`)
    const savedAgain = await flattenAndCheck(t, ref, `dft-result-${name}-save:1`, { method: 'save' })
    t.equal(savedAgain, saved, 'the save method is deterministic too')
    await removeImage(`dft-result-${name}-save:1`)

    t.equal(await fingerprint(dirs), before, "after every method, Docker's layer dirs are exactly as they were")
  })
}

/** Files of an image's newest layer, as `docker save` has it: what a container cannot show. */
async function newestLayerFiles(ref: string, paths: string[]): Promise<Record<string, string>> {
  const dir = await mkdtemp(join(tmpdir(), 'dft-saved-'))
  try {
    await execa('bash', ['-o', 'pipefail', '-c', `docker save ${ref} | tar -x -C ${dir}`])
    const [manifest] = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Array<{ Layers: string[] }>
    const layer = join(dir, manifest.Layers[manifest.Layers.length - 1])
    const out: Record<string, string> = {}
    for (const p of paths) {
      const r = await execa('tar', ['-xOf', layer, p], { reject: false })
      out[p] = r.exitCode === 0 ? r.stdout + '\n' : `(not in the layer: ${r.stderr})`
    }
    return out
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

t.test("files a container covers with Docker's own (/etc/hosts) come out of every method as the layers have them", async (t) => {
  const ref = await buildHidden()
  const paths = Object.keys(HIDDEN_FILES)
  for (const method of ['overlay', 'overlay-copy', 'save']) {
    const target = `dft-result-hidden-${method}:1`
    await flattenAndCheck(t, ref, target, { method })
    t.same(await newestLayerFiles(target, paths), HIDDEN_FILES, `${method}: the new layer holds the image's own files`)
    await removeImage(target)
  }
  const r = await dflatten([ref, '-t', 'dft-result-hidden:1', '-m', 'save', '--no-cache', '-v'])
  t.match(r.stderr, /content from a second docker save: the layers change \/etc\/host/, 'save says where it reads content, and why')
  await removeImage('dft-result-hidden:1')
})

t.test('the save method reads content through docker export, and agrees with a second save', async (t) => {
  const ref = images.corner
  const r = await dflatten([ref, '-t', 'dft-result-export:1', '-m', 'save', '--no-cache', '-v'])
  t.equal(r.exitCode, 0, r.stderr)
  t.match(r.stderr, /content from docker export of a container of the image/)
  const env = { DFLATTEN_SAVE_CONTENT: 'save' }
  const twice = await dflatten([ref, '-t', 'dft-result-twice:1', '-m', 'save', '--no-cache', '-v'], { env })
  t.equal(twice.exitCode, 0, twice.stderr)
  t.match(twice.stderr, /content from DFLATTEN_SAVE_CONTENT=save asks for a second docker save/)
  t.same(compareFs(await exportFs('dft-result-export:1'), await exportFs('dft-result-twice:1')), [], 'both give the same filesystem')
  // The two order files differently, so each is cached under its own marker.
  const ids = { export: (await inspect('dft-result-export:1')).Id, twice: (await inspect('dft-result-twice:1')).Id }
  for (const k of ['export', 'twice'] as const) {
    const hit = await dflatten([ref, '-t', `dft-result-${k}-again:1`, '-m', 'save'], k === 'twice' ? { env } : {})
    t.match(hit.stdout, /from an earlier run \(cache\)/, `${k}: a second run comes from the cache`)
    t.equal((await inspect(`dft-result-${k}-again:1`)).Id, ids[k], `${k}: with its own id`)
    await removeImage(`dft-result-${k}-again:1`)
  }
  await clean(t)
  await removeImage('dft-result-export:1')
  await removeImage('dft-result-twice:1')
})

t.test('--base scratch squashes every layer into one', async (t) => {
  await flattenAndCheck(t, images.corner, 'dft-result-scratch:1', { base: 'scratch', baseLayers: 0 })
  await removeImage('dft-result-scratch:1')
})

t.test('the plan describes the base layers as the daemon stores them', async (t) => {
  const r = await dflatten(['resolve', images.simple])
  t.equal(r.exitCode, 0, r.stderr)
  const plan = JSON.parse(r.stdout) as { method: { state: { baseDescriptors: Array<{ digest: string; size: number }> } } }
  const listing = await execa('bash', ['-c', `docker save ${base} | tar -tv`])
  const saved = /\s(\d+) \S+ \S+ \S+\/layer\.tar$/m.exec(listing.stdout)
  t.ok(saved, 'docker save lists the base layer')
  t.equal(plan.method.state.baseDescriptors[0].size, Number(saved?.[1]), "the descriptor's size is the layer tar's")
})

/** A temp dir of the test's own, removed when the test ends, whatever its outcome. */
async function scratchDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'dft-e2e-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

t.test('the stage commands piped by hand give the same image as the one-shot command', async (t) => {
  const ref = images.simple
  const oneShot = await dflatten([ref, '-t', 'dft-result-oneshot:1', '-q'])
  t.equal(oneShot.exitCode, 0)
  const r = await chain([`resolve ${ref} -t dft-result-chain:1`, 'mount', 'diff', 'pack', 'load'])
  t.equal(r.exitCode, 0, r.stderr)
  t.equal((await inspect('dft-result-chain:1')).Id, (await inspect('dft-result-oneshot:1')).Id)
  await clean(t)

  // pack into a file (stdout is then a file, which Node never closes: the run must still end).
  await docker(['image', 'rm', 'dft-result-chain:1'])
  const packed = join(await scratchDir(t), 'pack.tar')
  const toFile = await execa('bash', ['-o', 'pipefail', '-c', `${BIN} resolve ${ref} -t dft-result-chain:1 | ${BIN} mount | ${BIN} diff | ${BIN} pack > ${packed}`], { reject: false, timeout: 120_000 })
  t.equal(toFile.exitCode, 0, toFile.stderr)
  await docker(['load', '-i', packed])
  t.equal((await inspect('dft-result-chain:1')).Id, (await inspect('dft-result-oneshot:1')).Id, 'docker load of the packed file gives the same image')
  await clean(t)
  await removeImage('dft-result-chain:1')
  await removeImage('dft-result-oneshot:1')
})

t.test('the save method packed twice by hand from one kept work dir leaves no container behind', async (t) => {
  const doc = join(await scratchDir(t), 'diffed-save.json')
  const diffed = await execa('bash', ['-o', 'pipefail', '-c', `${BIN} resolve ${images.simple} -m save | ${BIN} mount | ${BIN} diff > ${doc}`], { reject: false })
  t.equal(diffed.exitCode, 0, diffed.stderr)
  const sizes: number[] = []
  for (let i = 0; i < 2; i++) {
    const packed = await execa('bash', ['-o', 'pipefail', '-c', `${BIN} pack --keep < ${doc} | wc -c`], { reject: false })
    t.equal(packed.exitCode, 0, packed.stderr)
    sizes.push(Number(packed.stdout))
    t.same((await leftovers()).containers, [], `pack ${i + 1}: its export container is gone once read`)
  }
  t.equal(sizes[1], sizes[0], 'both packs give the same archive size')
  t.ok(sizes[0] > 0)
  const c = await dflatten(['cleanup'])
  t.equal(c.exitCode, 0, c.stderr)
  await clean(t)
})

t.test('--output writes an archive that docker load turns into the same image', async (t) => {
  const ref = images.simple
  const archive = join(await scratchDir(t), 'result.tar')
  const r = await dflatten([ref, '-t', 'dft-result-file:1', '--output', archive])
  t.equal(r.exitCode, 0, r.stderr)
  t.notOk(await imageExists('dft-result-file:1'), 'nothing is loaded')
  await docker(['load', '-i', archive])
  const loaded = await inspect('dft-result-file:1')
  const direct = await dflatten([ref, '-t', 'dft-result-direct:1', '-q'])
  t.equal(direct.exitCode, 0)
  t.equal(loaded.Id, (await inspect('dft-result-direct:1')).Id)
  await docker(['image', 'rm', 'dft-result-file:1', 'dft-result-direct:1'])
  const devNull = await dflatten([ref, '-t', 'dft-result-file:1', '--output', '/dev/null', '-q'])
  t.equal(devNull.exitCode, 0)
  t.ok((await lstat('/dev/null')).isCharacterDevice(), '--output /dev/null writes into the device, never over it')
  await clean(t)
})

t.test('errors: one line, non-zero exit, nothing left behind, nothing tagged', async (t) => {
  const cases: Array<[string, string[], RegExp]> = [
    ['image not found', ['dft-no-such-image:1'], /image not found: dft-no-such-image:1/],
    ['base not an ancestor', [images.simple, '--base', images.corner, '-t', 'dft-result-err:1'], /is not an ancestor of/],
    ['base is the image', [images.simple, '--base', images.simple, '-t', 'dft-result-err:1'], /is the image itself/],
    ['target is the source', [images.simple, '-t', images.simple], /is the image's own name/],
    ['invalid target', [images.simple, '-t', 'Not/Valid:!'], /not a valid image name/],
    ['no image given', [], /give exactly one image/],
  ]
  for (const [what, args, message] of cases) {
    const r = await dflatten(args)
    t.not(r.exitCode, 0, `${what}: non-zero exit`)
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('dflatten: '))
    t.match(lines[0], message, `${what}: says so`)
    if (what !== 'no image given') t.equal(r.stderr.trim().split('\n').length, 1, `${what}: in one line`)
  }
  t.notOk(await imageExists('dft-result-err:1'), 'no result was tagged')
  await clean(t)
})

t.test('an image with nothing but metadata above its base is tagged as it is', async (t) => {
  const ref = 'dft-metaonly:1'
  await docker(['build', '-q', '-t', ref, '-'], {
    input: `FROM ${base}\nLABEL only=metadata\nENV X=1\n`,
    env: { DOCKER_BUILDKIT: '0' },
  })
  const r = await dflatten([ref, '-t', 'dft-result-metaonly:1'])
  t.equal(r.exitCode, 0, r.stderr)
  t.match(r.stdout, /no layers above the base/)
  t.equal((await inspect('dft-result-metaonly:1')).Id, (await inspect(ref)).Id, 'the target is the original')
  await removeImage('dft-result-metaonly:1')
})

t.test('as a user who may use the docker socket but is not root, auto picks save and it works', async (t) => {
  await execa('bash', ['-c', 'getent group docker >/dev/null || groupadd docker; chgrp docker /var/run/docker.sock; chmod g+rw /var/run/docker.sock; id dft-user >/dev/null 2>&1 || useradd -M -G docker dft-user'])
  const target = 'dft-result-nonroot:1'
  await removeImage(target)
  const r = await execa('runuser', ['-u', 'dft-user', '--', BIN, images.simple, '-t', target, '--no-cache', '-v'], {
    reject: false,
    env: { HOME: '/tmp' },
  })
  t.equal(r.exitCode, 0, r.stderr)
  t.match(r.stderr, /method save: the overlay method cannot work: it must run as root/, 'auto says why it picked save')
  t.same(compareFs(await exportFs(images.simple), await exportFs(target)), [], 'the result is right')
  const refused = await execa('runuser', ['-u', 'dft-user', '--', BIN, images.simple, '-t', target, '-m', 'overlay'], { reject: false })
  t.not(refused.exitCode, 0)
  t.match(refused.stderr, /--method overlay cannot work here: it must run as root.*use --method save/)
  await removeImage(target)
})
