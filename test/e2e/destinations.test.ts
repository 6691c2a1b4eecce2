// Where the result lands: a registry (base blobs skipped or mounted, never uploaded; the result
// pulled back by docker), an OCI dir (read by skopeo), a complete --output archive (loaded on a
// daemon that lacks the base), and the containerd store, where gzip is the default and makes the
// result smaller than --compress none. Every result's filesystem is compared with the original's.
// Run under the daemon lock.
import t from 'tap'
import { execa } from 'execa'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildBase, buildSimple } from '../helpers/images.js'
import { compareFs, exportFs } from '../helpers/export.js'
import { docker, inspect, removeImage } from '../helpers/docker.js'
import { dflatten, leftovers } from '../helpers/cli.js'
import { startRegistry } from '../helpers/registry.js'

const SCRIPT = new URL('../../scripts/docker26.sh', import.meta.url).pathname
const base = await buildBase()
const simple = await buildSimple()
const original = await exportFs(simple)
const tmp = await mkdtemp(join(tmpdir(), 'dft-dest-'))
t.teardown(() => rm(tmp, { recursive: true, force: true }))

const hasRegistry = await execa('docker-registry', ['--version'], { reject: false }).then((r) => r.exitCode === 0, () => false)

t.test('registry destination', { skip: hasRegistry ? false : 'docker-registry is not installed (bash scripts/registry-deps.sh)' }, async (t) => {
  const reg = await startRegistry()
  t.teardown(() => reg.stop())
  const baseRef = `${reg.host}/dft-dest-base:1`
  await docker(['tag', base, baseRef])
  await docker(['push', baseRef])
  t.teardown(() => removeImage(baseRef))
  const before = reg.requests().length
  const target = `${reg.host}/dft-dest-base:flat`
  const r = await dflatten([simple, '-t', `docker://${target}`, '--no-cache', '-v'])
  t.equal(r.exitCode, 0, r.stderr)
  t.match(r.stdout, /pushed:/)
  const pushReqs = reg.requests().slice(before)
  t.equal(pushReqs.filter((q) => q.startsWith('PATCH')).length, 1, 'one PATCH: the new layer, no base blob sent')
  t.equal(pushReqs.filter((q) => /^POST .*blobs\/uploads\/ /.test(q)).length, 2, 'two uploads opened: the new layer and the config')
  t.ok(pushReqs.some((q) => q.startsWith('PUT /v2/dft-dest-base/manifests/flat')), 'the manifest goes up, under the tag')
  t.equal(pushReqs[pushReqs.length - 1]?.split(' ')[0], 'PUT', 'the manifest is the last request')

  // Another repository of the same registry: the base is mounted from where docker pushed it.
  const mark = reg.requests().length
  const other = `${reg.host}/team/flat:1`
  const r2 = await dflatten([simple, '-t', `docker://${other}`, '--no-cache'])
  t.equal(r2.exitCode, 0, r2.stderr)
  const otherReqs = reg.requests().slice(mark)
  t.ok(otherReqs.some((q) => /POST \/v2\/team\/flat\/blobs\/uploads\/\?.*mount=/.test(q)), 'the base layer is mounted across repositories')
  t.equal(otherReqs.filter((q) => q.startsWith('PATCH')).length, 1, 'only the new layer is sent')

  // The same flatten again: the registry holds exactly that result.
  const again = await dflatten([simple, '-t', `docker://${target}`])
  t.equal(again.exitCode, 0, again.stderr)
  t.match(again.stderr, /already holds this result/)

  // docker pulls it back over plain HTTP (localhost); same filesystem as the original.
  await removeImage(target)
  await docker(['pull', target])
  t.teardown(() => removeImage(target))
  t.same(compareFs(original, await exportFs(target), { labels: [simple, target] }), [], 'the pulled result has the original filesystem')
  const pulled = await inspect(target)
  t.equal(pulled.RootFS.Layers?.length, 2)
  t.same(await leftovers(), { mounts: [], dirs: [], containers: [] })
})

const hasSkopeo = await execa('skopeo', ['--version'], { reject: false }).then((r) => r.exitCode === 0, () => false)

t.test('OCI dir destination, read by skopeo', { skip: hasSkopeo ? false : 'skopeo is not installed' }, async (t) => {
  const dir = join(tmp, 'layout')
  for (const c of ['gzip', 'zstd']) {
    const r = await dflatten([simple, '-t', `oci:${dir}:${c}`, '--compress', c])
    t.equal(r.exitCode, 0, r.stderr)
  }
  const again = await dflatten([simple, '-t', `oci:${dir}:gzip`])
  t.match(again.stderr, /already holds this result/, 'a second run finds it')
  const target = 'dft-dest-oci:1'
  await removeImage(target)
  const copy = await execa('skopeo', ['copy', `oci:${dir}:gzip`, `docker-daemon:${target}`], { env: { DOCKER_HOST: '' }, reject: false })
  t.equal(copy.exitCode, 0, copy.stderr)
  t.teardown(() => removeImage(target))
  t.same(compareFs(original, await exportFs(target), { labels: [simple, target] }), [], 'same filesystem')
  const inspected = await execa('skopeo', ['inspect', '--raw', `oci:${dir}:zstd`])
  t.match(inspected.stdout, /tar\+zstd/, 'the zstd layer is named so')
})

const start = await execa('bash', [SCRIPT, 'start'], { reject: false })
const hosts = Object.fromEntries([...start.stdout.matchAll(/export (\w+)=(\S+)/g)].map((m) => [m[1], m[2]])) as Record<string, string>

t.test('--output: a complete archive loads on a daemon that lacks the base', { skip: hosts.DFLATTEN_D26_CLASSIC_HOST ? false : 'no Docker 26 daemon' }, async (t) => {
  // A base of our own that the other daemon has never seen.
  const root = join(tmp, 'root')
  await execa('bash', ['-c', `mkdir -p ${root}/bin && cp /bin/busybox ${root}/bin/ && ln -s busybox ${root}/bin/sh && ln -s busybox ${root}/bin/cat && echo unique-$$-$RANDOM > ${root}/unique`])
  await execa('bash', ['-c', `tar -C ${root} -c . | docker import - dft-dest-ubase:1`])
  await execa('bash', ['-c', `printf 'FROM dft-dest-ubase:1\\nRUN echo hi > /hi && rm /unique\\n' | DOCKER_BUILDKIT=0 docker build -q -t dft-dest-uimg:1 -`])
  t.teardown(async () => {
    await removeImage('dft-dest-uimg:1')
    await removeImage('dft-dest-ubase:1')
  })
  const file = join(tmp, 'full.tar')
  const r = await dflatten(['dft-dest-uimg:1', '-t', 'dft-dest-full:1', '--output', file])
  t.equal(r.exitCode, 0, r.stderr)
  const small = join(tmp, 'small.tar')
  t.equal((await dflatten(['dft-dest-uimg:1', '-t', 'dft-dest-full:1', '--output', small, '--output-layer-only'])).exitCode, 0)
  const env = { DOCKER_HOST: hosts.DFLATTEN_D26_CLASSIC_HOST }
  const on26 = (args: string[]) => execa('docker', args, { env, reject: false })
  await on26(['rmi', '-f', 'dft-dest-full:1'])
  const refused = await on26(['load', '-i', small])
  t.not(refused.exitCode, 0, 'the layer-only archive does not load where the base is missing')
  const load = await on26(['load', '-i', file])
  t.equal(load.exitCode, 0, load.stderr)
  const run = await on26(['run', '--rm', '--network', 'none', 'dft-dest-full:1', 'cat', '/hi'])
  t.equal(run.stdout, 'hi', 'it runs there')
  // Compare there and here: export from Docker 26 and from the original on 20.10.
  const here = await exportFs('dft-dest-uimg:1')
  const saved = process.env.DOCKER_HOST
  process.env.DOCKER_HOST = env.DOCKER_HOST
  try {
    t.same(compareFs(here, await exportFs('dft-dest-full:1'), { labels: ['original', 'loaded on Docker 26'] }), [], 'same filesystem')
  } finally {
    if (saved === undefined) delete process.env.DOCKER_HOST
    else process.env.DOCKER_HOST = saved
    await on26(['rmi', '-f', 'dft-dest-full:1'])
  }
})

t.test('containerd store: gzip by default, smaller than none, same filesystem', { skip: hosts.DFLATTEN_D26_CTRD_HOST ? false : 'no Docker 26 daemon' }, async (t) => {
  const saved = process.env.DOCKER_HOST
  process.env.DOCKER_HOST = hosts.DFLATTEN_D26_CTRD_HOST
  t.teardown(() => {
    if (saved === undefined) delete process.env.DOCKER_HOST
    else process.env.DOCKER_HOST = saved
  })
  const env = { DOCKER_HOST: hosts.DFLATTEN_D26_CTRD_HOST }
  await buildBase()
  await execa('bash', ['-c', `printf 'FROM dft-base:1\\nRUN cp /bin/busybox /copy && echo x > /x\\n' | DOCKER_BUILDKIT=0 docker build -q -t dft-dest-cimg:1 -`], { env })
  t.teardown(() => removeImage('dft-dest-cimg:1'))
  const src = await exportFs('dft-dest-cimg:1')
  const sizes: Record<string, number> = {}
  for (const [name, args] of [['default', []], ['none', ['--compress', 'none']], ['zstd', ['--compress', 'zstd']]] as const) {
    const target = `dft-dest-c${name}:1`
    const r = await dflatten(['dft-dest-cimg:1', '-t', target, '--no-cache', ...args], { env })
    t.equal(r.exitCode, 0, r.stderr)
    sizes[name] = (await inspect(target)).Size
    t.same(compareFs(src, await exportFs(target), { labels: ['original', target] }), [], `${name}: same filesystem`)
    const save = await execa('bash', ['-c', `docker save ${target} | wc -c`], { env, reject: false })
    t.equal(save.exitCode, 0, `${name}: docker save of it works`)
    await removeImage(target)
  }
  t.ok(sizes.default < sizes.none, `gzip (default) ${sizes.default} < none ${sizes.none}`)
  t.ok(sizes.zstd < sizes.none, `zstd ${sizes.zstd} < none ${sizes.none}`)
})
