// A two-platform index in a real registry, flattened by the real CLI onto a two-platform base
// index: the result is an index of both platforms (the attestation left out), each platform's
// filesystem is the original's for that platform (read back with skopeo), the base layers stay
// as they were, and a second run gives the same digest and says the target already named it.
// `--platform` picks one. The images are assembled by hand in an OCI layout and copied into
// the registry by skopeo (`--all`); no daemon is used.
import t from 'tap'
import { join } from 'node:path'
import { dflatten } from '../../helpers/cli.js'
import { modelTar, writeImage, writeIndex } from '../../helpers/oci.js'
import { startRegistry, tempDir, type TestRegistry } from '../../helpers/registry.js'
import { fsOf, pullPlatform, rawManifest, skopeoCopy } from '../../helpers/registry-cli.js'

type Entry = { name: string; type: string; content?: string; link?: string }
const file = (name: string, content: string): Entry => ({ name, type: 'file', content })
const dir = (name: string): Entry => ({ name, type: 'dir' })

const PLATFORMS = ['linux/amd64', 'linux/arm64'] as const
type Platform = (typeof PLATFORMS)[number]

/** Per platform: the base's layers and the app's layers above them (different on each, so a mix-up shows). */
function layers(p: Platform): { base: Buffer[]; upper: Buffer[] } {
  const arch = p.split('/')[1]
  return {
    base: [modelTar([dir('bin'), file('bin/sh', `sh for ${arch}`), dir('etc'), file('etc/os-release', `base ${arch}`), file('etc/motd', 'hello')])],
    upper: [
      modelTar([dir('app'), file('app/run', `run ${arch}`), file('app/old', 'old'), file('etc/.wh.motd', ''), { name: 'app/link', type: 'link', link: 'app/run' }]),
      modelTar([file('app/.wh.old', ''), file(`app/only-${arch}`, arch), file('etc/os-release', `app ${arch}`)]),
    ],
  }
}

const platformOf = (p: Platform): { os: string; architecture: string } => ({ os: 'linux', architecture: p.split('/')[1] })

let reg: TestRegistry
let work: string
t.before(async () => {
  reg = await startRegistry()
  const tmp = await tempDir('dft-multi-e2e-')
  work = tmp.dir
  t.teardown(async () => {
    await reg.stop()
    await tmp.remove()
  })
  // Base index and app index (with a BuildKit-style attestation for amd64) in one layout.
  const layout = join(work, 'layout')
  const bases = []
  const apps = []
  for (const p of PLATFORMS) {
    const l = layers(p)
    bases.push(await writeImage(layout, { layers: l.base, platform: platformOf(p) }))
    apps.push(await writeImage(layout, { layers: [...l.base, ...l.upper], platform: platformOf(p) }))
  }
  const attestation = await writeImage(layout, {
    layers: [modelTar([file('sbom.spdx.json', '{"spdxVersion":"SPDX-2.3"}')])],
    platform: { os: 'unknown', architecture: 'unknown' },
  })
  await writeIndex(layout, 'base', bases)
  await writeIndex(layout, 'app', [
    ...apps,
    { ...attestation, annotations: { 'vnd.docker.reference.type': 'attestation-manifest', 'vnd.docker.reference.digest': apps[0].digest } },
  ])
  await skopeoCopy(`oci:${layout}:base`, `docker://${reg.host}/base:1`, {}, ['--all'])
  await skopeoCopy(`oci:${layout}:app`, `docker://${reg.host}/app:1`, {}, ['--all'])
})

interface Index {
  manifests: Array<{ digest: string; platform?: { os: string; architecture: string } }>
}
interface Manifest {
  layers: Array<{ digest: string }>
}

const noConfig = (): Record<string, string> => ({ DOCKER_CONFIG: join(work, 'no-docker-config') })

t.test('both platforms flattened onto the base index, the attestation left out', async (t) => {
  const source = await rawManifest(`docker://${reg.host}/app:1`)
  t.equal((source as unknown as Index).manifests.length, 3, 'the source index holds two images and an attestation')
  const target = `docker://${reg.host}/app:flat`
  const before = reg.requests().length
  const r = await dflatten([`docker://${reg.host}/app:1`, '--base', `docker://${reg.host}/base:1`, '-t', target], { env: noConfig() })
  t.equal(r.exitCode, 0, r.stderr)
  t.match(r.stderr, /index of 2 platforms \(linux\/amd64, linux\/arm64\).*1 attestation manifest left out/)
  const digest = /pushed: \S+ (sha256:[0-9a-f]{64})/.exec(r.stdout)?.[1]
  t.ok(digest, `the index digest is printed: ${r.stdout}`)
  const index = (await rawManifest(target)) as unknown as Index | null
  t.same(
    index?.manifests.map((m) => m.platform),
    PLATFORMS.map(platformOf),
    'an index of both platforms, no attestation',
  )
  const pushed = reg.requests().slice(before)
  t.equal(pushed.filter((q) => q.startsWith('PATCH')).length, 2, 'two PATCHes: one new layer per platform, no base blob sent')
  t.equal(pushed.filter((q) => /^PUT \/v2\/app\/manifests\/flat /.test(q)).length, 1, 'the tag is written once')
  t.match(pushed.filter((q) => q.startsWith('PUT /v2/app/manifests/')).pop() ?? '', /manifests\/flat /, 'and last, after the platform manifests')

  for (const p of PLATFORMS) {
    const l = layers(p)
    const flat = await pullPlatform(target, p, work)
    const orig = await pullPlatform(`docker://${reg.host}/app:1`, p, work)
    t.equal(flat.layers.length, l.base.length + 1, `${p}: the base layers plus one`)
    t.same(flat.layers.slice(0, l.base.length), l.base, `${p}: the base layers as they were`)
    t.same(await fsOf(flat.layers), await fsOf(orig.layers), `${p}: the filesystem of the original's ${p}`)
    t.same(await fsOf(flat.layers), await fsOf([...l.base, ...l.upper]), `${p}: as the model applies the original's layers`)
  }
  for (const m of index?.manifests ?? []) {
    const one = (await rawManifest(`docker://${reg.host}/app@${m.digest}`)) as unknown as Manifest | null
    const base = (await rawManifest(`docker://${reg.host}/base:1`)) as unknown as Index | null
    const baseOne = base?.manifests.find((b) => b.platform?.architecture === m.platform?.architecture)
    const baseManifest = (await rawManifest(`docker://${reg.host}/base@${baseOne?.digest ?? ''}`)) as unknown as Manifest | null
    t.same(one?.layers.slice(0, -1).map((x) => x.digest), baseManifest?.layers.map((x) => x.digest), `${m.platform?.architecture ?? ''}: the base's own blobs`)
  }

  const again = await dflatten([`docker://${reg.host}/app:1`, '--base', `docker://${reg.host}/base:1`, '-t', target], { env: noConfig() })
  t.equal(again.exitCode, 0, again.stderr)
  t.match(again.stderr, /already named this index/, 'a second run says the target already names it')
  t.equal(/(?:pushed|cache\)): \S+ (sha256:[0-9a-f]{64})/.exec(again.stdout)?.[1], digest, 'the same index digest')
  t.match(again.stdout, /found from an earlier run/)
})

t.test('--platform linux/arm64: an index of that one', async (t) => {
  const target = `docker://${reg.host}/app:arm`
  const r = await dflatten([`docker://${reg.host}/app:1`, '--base', `docker://${reg.host}/base:1`, '-t', target, '--platform', 'linux/arm64'], { env: noConfig() })
  t.equal(r.exitCode, 0, r.stderr)
  const index = (await rawManifest(target)) as unknown as Index | null
  t.same(index?.manifests.map((m) => m.platform), [platformOf('linux/arm64')], 'a one-entry index')
  const l = layers('linux/arm64')
  const flat = await pullPlatform(target, 'linux/arm64', work)
  t.same(await fsOf(flat.layers), await fsOf([...l.base, ...l.upper]), 'the arm64 filesystem')
  const none = await dflatten([`docker://${reg.host}/app:1`, '--base', `docker://${reg.host}/base:1`, '-t', `docker://${reg.host}/app:s390x`, '--platform', 'linux/s390x'], { env: noConfig() })
  t.equal(none.exitCode, 1, 'a platform the index lacks: exit 1')
  t.match(none.stderr, /has no linux\/s390x image \(it has linux\/amd64, linux\/arm64\)/)
  t.equal(none.stderr.trim().split('\n').length, 1, 'one line')
  t.equal(await rawManifest(`docker://${reg.host}/app:s390x`), null, 'no tag')
})
