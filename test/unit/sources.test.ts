// Daemonless sources without a daemon or a registry: OCI layouts written here (gzip, zstd and
// plain layers, an index with an attestation), resolved into plans, flattened by the registry
// method's one pass and written as an OCI layout again; the result applied to the base must be
// the original's filesystem, every run the same bytes; and the refusals, one line each.
import t from 'tap'
import { mkdtemp, rm, readFile, writeFile, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { resolveSource } from '../../src/sources/resolve.js'
import { flatten } from '../../src/pipeline.js'
import { parseSourceRef } from '../../src/sources/reference.js'
import { resolve } from '../../src/stages/resolve.js'
import { isDflattenError } from '../../src/errors.js'
import { apply, show, type Fs } from '../helpers/model.js'
import { layoutLayers, modelTar, tarModel, writeFlattened, writeImage, writeIndex, type Codec } from '../helpers/oci.js'

const dir = await mkdtemp(join(tmpdir(), 'dft-sources-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))

const BASE = [
  modelTar([
    { name: 'etc', type: 'dir' },
    { name: 'etc/conf', type: 'file', content: 'base conf' },
    { name: 'etc/old', type: 'dir' },
    { name: 'etc/old/a', type: 'file', content: 'a' },
    { name: 'bin', type: 'dir' },
    { name: 'bin/sh', type: 'file', content: 'shell' },
    { name: 'bin/ash', type: 'link', link: 'bin/sh' },
  ]),
]
const ABOVE = [
  modelTar([{ name: 'app', type: 'dir' }, { name: 'app/one', type: 'file', content: '1' }, { name: 'app/two', type: 'file', content: '2' }, { name: 'app/one-link', type: 'link', link: 'app/one' }]),
  modelTar([{ name: 'etc', type: 'dir' }, { name: 'etc/.wh.old', type: 'file' }, { name: 'app', type: 'dir' }, { name: 'app/.wh.one', type: 'file' }, { name: 'bin', type: 'dir' }, { name: 'bin/sh', type: 'file', content: 'new shell' }]),
  modelTar([{ name: 'etc', type: 'dir' }, { name: 'etc/.wh..wh..opq', type: 'file' }, { name: 'etc/conf', type: 'file', content: 'app conf' }, { name: 'app', type: 'dir' }, { name: 'app/sym', type: 'symlink', content: '../etc/conf' }]),
]

const baseEntry = await writeImage(dir, { tag: 'base', layers: BASE })
for (const codec of ['gzip', 'zstd', 'none'] as Codec[]) await writeImage(dir, { tag: `app-${codec}`, layers: [...BASE, ...ABOVE], codec })
await writeImage(dir, {
  tag: 'annotated',
  layers: [...BASE, ...ABOVE],
  annotations: { 'org.opencontainers.image.base.name': 'example.org/base:1', 'org.opencontainers.image.base.digest': baseEntry.digest },
})
await writeImage(dir, { tag: 'other', layers: [modelTar([{ name: 'x', type: 'file', content: 'x' }])] })

async function fsOf(layers: Buffer[]): Promise<Fs> {
  const fs: Fs = new Map()
  for (const l of layers) apply(fs, await tarModel(l))
  return fs
}

const original = show(await fsOf([...BASE, ...ABOVE]))

t.test('an OCI layout image flattens onto its base: same filesystem, base layers kept as they were', async (t) => {
  for (const codec of ['gzip', 'zstd', 'none']) {
    const out = await mkdtemp(join(tmpdir(), 'dft-sources-out-'))
    const plan = await resolve({ image: `oci:${dir}:app-${codec}`, base: `oci:${dir}:base`, tag: `oci:${out}:flat` })
    t.equal(plan.method.name, 'registry', `${codec}: the daemonless method`)
    t.equal(plan.daemon, null, `${codec}: no daemon`)
    t.equal(plan.base.layers.length, 1)
    t.equal(plan.source.layers.length, 4)
    const written = await writeFlattened(plan, out, 'flat')
    const layers = await layoutLayers(out, 'flat')
    t.equal(layers.length, 2, `${codec}: the base layer plus one`)
    t.ok(layers[0].equals(BASE[0]), `${codec}: the base layer is the source's`)
    t.same(show(await fsOf(layers)), original, `${codec}: the same filesystem as the original`)
    const again = await writeFlattened(plan, out, 'flat2')
    t.equal(again.digest, written.digest, `${codec}: the same manifest digest on a second run`)
    await rm(out, { recursive: true, force: true })
  }
})

t.test('the base from the manifest annotations, a layer count, or scratch', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'dft-sources-out-'))
  t.teardown(() => rm(out, { recursive: true, force: true }))
  const annotated = await resolveSource({ image: `oci:${dir}:annotated`, tag: 'oci:x:y' })
  t.equal(annotated.base.layers.length, 1, 'the annotated base')
  t.match(annotated.base.ref, /@sha256:/)
  const counted = await resolveSource({ image: `oci:${dir}:app-gzip`, layers: 2, tag: 'oci:x:y' })
  t.equal(counted.base.layers.length, 2, '--layers 2 keeps all but the top two')
  await writeFlattened(counted, out, 'counted')
  t.same(show(await fsOf(await layoutLayers(out, 'counted'))), original, 'and flattens to the same filesystem')
  const scratch = await resolveSource({ image: `oci:${dir}:app-gzip`, base: 'scratch', tag: 'oci:x:y' })
  t.equal(scratch.base.layers.length, 0)
  await writeFlattened(scratch, out, 'scratch')
  const layers = await layoutLayers(out, 'scratch')
  t.equal(layers.length, 1, 'scratch: one layer')
  t.same(show(await fsOf(layers)), original, 'scratch: the same filesystem')
})

t.test('refusals are one line with a code', async (t) => {
  const refuses = async (p: Promise<unknown>, code: string, re: RegExp, what: string): Promise<void> => {
    const e = await p.then(() => null, (e: unknown) => e)
    t.ok(isDflattenError(e), `${what}: a DflattenError`)
    if (!isDflattenError(e)) return
    t.equal(e.code, code, `${what}: code ${code}`)
    t.match(e.message, re, what)
    t.notMatch(e.message, /\n/, `${what}: one line`)
  }
  await refuses(resolveSource({ image: `oci:${dir}:app-gzip`, tag: 'oci:x:y' }), 'usage', /names no base.*--base docker:\/\/\.\.\. or oci:\.\.\., --layers N or --base scratch/, 'no base named')
  await refuses(resolveSource({ image: `oci:${dir}:app-gzip`, base: `oci:${dir}:other`, tag: 'oci:x:y' }), 'not-an-ancestor', /is not an ancestor/, 'an unrelated base')
  await refuses(resolveSource({ image: `oci:${dir}:app-gzip`, base: `oci:${dir}:app-gzip`, tag: 'oci:x:y' }), 'not-an-ancestor', /is the image itself/, 'the image as its own base')
  await refuses(resolveSource({ image: `oci:${dir}:nope`, base: 'scratch' }), 'image-not-found', /no image tagged nope/, 'a missing tag')
  await refuses(resolveSource({ image: `oci:${dir}/missing:x`, base: 'scratch' }), 'image-not-found', /not an OCI image layout/, 'a missing dir')
  await refuses(resolveSource({ image: `oci:${dir}:app-gzip`, base: 'dft-base:1' }), 'usage', /is a daemon image/, 'a daemon base for a daemonless image')
  await refuses(resolveSource({ image: `oci:${dir}:app-gzip`, base: 'scratch', tag: `oci:${dir}:app-gzip` }), 'name-clash', /own name/, 'the result over the original')
  await refuses(resolveSource({ image: `oci:${dir}:app-gzip`, layers: 9 }), 'usage', /has only 4 layers/, '--layers beyond the image')
  t.throws(() => parseSourceRef('docker://UPPER/x'), /not a valid registry reference/)

  // A damaged layer blob: found when pack reads it, not silently flattened.
  const bad = await mkdtemp(join(tmpdir(), 'dft-sources-bad-'))
  t.teardown(() => rm(bad, { recursive: true, force: true }))
  await writeImage(bad, { tag: 'base', layers: BASE })
  const entry = await writeImage(bad, { tag: 'app', layers: [...BASE, ...ABOVE], codec: 'none' })
  const manifest = JSON.parse(await readFile(join(bad, 'blobs/sha256', entry.digest.slice(7)), 'utf8')) as { layers: Array<{ digest: string }> }
  const top = join(bad, 'blobs/sha256', manifest.layers[3].digest.slice(7))
  const bytes = await readFile(top)
  bytes[600] ^= 1
  await writeFile(top, bytes)
  const plan = await resolveSource({ image: `oci:${bad}:app`, base: `oci:${bad}:base`, tag: 'oci:x:y' })
  const out = await mkdtemp(join(tmpdir(), 'dft-sources-out-'))
  t.teardown(() => rm(out, { recursive: true, force: true }))
  await refuses(writeFlattened(plan, out, 'x'), 'bad-data', /^oci:.*: layer sha256:\w+.*(hash to|checksum)/, 'a blob that does not match its digest')
})

t.test('a multi-platform index: each platform onto the base of its platform, attestations dropped, an index again', async (t) => {
  const m = await mkdtemp(join(tmpdir(), 'dft-sources-multi-'))
  const out = await mkdtemp(join(tmpdir(), 'dft-sources-multi-out-'))
  t.teardown(() => Promise.all([rm(m, { recursive: true, force: true }), rm(out, { recursive: true, force: true })]))
  const arm = { os: 'linux', architecture: 'arm64', variant: 'v8' }
  const amd = { os: 'linux', architecture: 'amd64' }
  const armBase = [modelTar([{ name: 'arch', type: 'file', content: 'arm64' }])]
  const bases = [await writeImage(m, { layers: BASE, platform: amd }), await writeImage(m, { layers: armBase, platform: arm })]
  await writeIndex(m, 'base', bases)
  const images = [await writeImage(m, { layers: [...BASE, ...ABOVE], platform: amd }), await writeImage(m, { layers: [...armBase, ...ABOVE], platform: arm, codec: 'zstd' })]
  const attestation = await writeImage(m, { layers: [modelTar([{ name: 'sbom', type: 'file', content: '{}' }])], platform: { os: 'unknown', architecture: 'unknown' } })
  await writeIndex(m, 'app', [...images, { ...attestation, annotations: { 'vnd.docker.reference.type': 'attestation-manifest', 'vnd.docker.reference.digest': images[0].digest } }])

  const one = resolveSource({ image: `oci:${m}:app`, base: `oci:${m}:base` })
  await t.rejects(one, /multi-platform index \(linux\/amd64, linux\/arm64\/v8\); name one with --platform/, 'one plan needs one platform')
  const armPlan = await resolveSource({ image: `oci:${m}:app`, base: `oci:${m}:base`, platform: 'linux/arm64', tag: 'oci:x:y' })
  t.equal(armPlan.source.platform, 'linux/arm64/v8')
  t.equal(armPlan.base.layers.length, 1, "onto the arm64 base's layer")

  // The whole pipeline, as `dflatten oci:M:app --base oci:M:base -t oci:OUT:flat` runs it.
  const opts = { image: `oci:${m}:app`, base: `oci:${m}:base`, tag: `oci:${out}:flat`, compression: { kind: 'none' as const } }
  const r = await flatten(opts)
  const outIndex = JSON.parse(await readFile(join(out, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; mediaType: string; annotations?: Record<string, string> }> }
  const named = outIndex.manifests.find((d) => d.annotations?.['org.opencontainers.image.ref.name'] === 'flat')
  t.equal(named?.digest, r.manifestDigest, 'the tag names the index')
  t.equal(named?.mediaType, 'application/vnd.oci.image.index.v1+json')
  t.equal(outIndex.manifests.length, 1, 'the platform images are untagged')
  const written = JSON.parse(await readFile(join(out, 'blobs/sha256', (r.manifestDigest ?? '').slice(7)), 'utf8')) as { manifests: Array<{ digest: string; platform: { os: string; architecture: string } }> }
  const result = { digest: r.manifestDigest ?? '', images: written.manifests.map((d) => ({ platform: d.platform, manifest: { digest: d.digest } })) }
  t.same(r.platforms?.map((p) => p.platform), ['linux/amd64', 'linux/arm64/v8'], 'a result per platform')
  const again = await flatten(opts)
  t.equal(again.manifestDigest, r.manifestDigest, 'a second run: the same index digest')
  t.equal(again.outcome, 'cached', 'and it says the target already named it')
  const armOnly = await flatten({ ...opts, tag: `oci:${out}:arm`, platform: 'linux/arm64' })
  t.same(armOnly.platforms?.map((p) => p.platform), ['linux/arm64/v8'], '--platform picks the platforms to flatten')
  t.same(result.images.map((i) => [i.platform.os, i.platform.architecture].join('/')), ['linux/amd64', 'linux/arm64'], 'both platforms, no attestation')
  for (const [i, baseLayers] of [[0, BASE], [1, armBase]] as const) {
    const sub = await mkdtemp(join(tmpdir(), 'dft-sources-sub-'))
    t.teardown(() => rm(sub, { recursive: true, force: true }))
    await writeFlattened(await resolveSource({ image: `oci:${m}:app`, base: `oci:${m}:base`, platform: i ? 'linux/arm64' : 'linux/amd64', tag: 'oci:x:y' }), sub, 'p')
    const layers = await layoutLayers(sub, 'p')
    t.same(show(await fsOf(layers)), show(await fsOf([...baseLayers, ...ABOVE])), `platform ${i}: the same filesystem`)
    t.equal(result.images[i].manifest.digest, (JSON.parse(await readFile(join(sub, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> }).manifests[0].digest, `platform ${i}: the index names the same manifest a single run makes`)
  }
  t.ok((await readdir(join(out, 'blobs/sha256'))).includes(result.digest.slice(7)), 'the index is written')
})
