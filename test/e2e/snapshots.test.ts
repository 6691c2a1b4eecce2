// The snapshots method on Docker 26 with the containerd image store (scripts/docker26.sh): test
// images made as a pull leaves them (gzip layers, through skopeo and docker load), flattened with
// it and with save to the same filesystem as the original, the new blob written into the content
// store under a lease (and still there once containerd collects garbage); its view snapshot and
// that lease gone after success, a failing load, SIGINT, SIGTERM, and kill -9 + `dflatten cleanup`;
// the archive carrying the blob when that containerd is not at hand; and --platform on a
// two-platform index assembled by hand. containerd-store.test.ts has the other images and what is
// done with a result. Set DFLATTEN_SKIP_DOCKER26=1 to leave these out.
import t from 'tap'
import { execa } from 'execa'
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BASE, buildCorner, buildSimple } from '../helpers/images.js'
import { inspect, removeImage } from '../helpers/docker.js'
import { compareFs, exportFs, readTar, type FsMap } from '../helpers/export.js'
import { BIN, WORK_DIR, dflatten, waitFor } from '../helpers/cli.js'
import { ctr, ctrdDaemon, ctrdEnv, pulled as pulledInto, views } from '../helpers/containerd-store.js'
import { DOCKER26_LEFT_OUT } from '../helpers/docker26.js'

const daemon = await ctrdDaemon()
if (daemon === null) t.comment(DOCKER26_LEFT_OUT)
else if (daemon.host === undefined) t.fail(daemon.skip ?? 'no Docker 26 daemon')
else await run(daemon.host)

async function run(host: string): Promise<void> {
  const scratch = await mkdtemp(join(tmpdir(), 'dft-ctrd-'))
  const workRoot = join(scratch, 'work')
  await mkdir(workRoot)
  t.teardown(() => rm(scratch, { recursive: true, force: true }))
  const env = ctrdEnv(host, workRoot)
  const onCtrd = { env: { ...process.env, DOCKER_HOST: host } }
  const leases = async (): Promise<string> => ctr('leases', 'ls')
  const workDirs = async (): Promise<string[]> => readdir(workRoot)
  const mounts = async (): Promise<string[]> => (await readFile('/proc/mounts', 'utf8')).split('\n').filter((l) => WORK_DIR.test(l) && l.includes(workRoot))

  const pulled = (ref: string, name: string): Promise<string> => pulledInto(ref, name, scratch, host)

  // Built on the default daemon, then carried over.
  const refs = [await buildSimple(), await buildCorner()]
  await mkdir(join(scratch, 'armsrc'))
  await writeFile(join(scratch, 'armsrc', 'Dockerfile'), `FROM ${BASE}\nRUN echo arm64 > /platform && rm -rf /data/old && mkdir -p /data/arm && echo x > /data/arm/x\n`)
  await execa('docker', ['build', '-q', '-t', 'dftp-armsrc:1', join(scratch, 'armsrc')], { env: { ...process.env, DOCKER_BUILDKIT: '0' } })
  const base = await pulled(BASE, 'dftp-base')
  const images = [await pulled(refs[0], 'dftp-simple'), await pulled(refs[1], 'dftp-corner')]
  process.env.DOCKER_HOST = host // exportFs and the docker helpers follow it from here
  t.teardown(() => {
    delete process.env.DOCKER_HOST
  })
  const before = await views()
  const leasesBefore = await leases()

  t.test('the same filesystem as the original, with snapshots, save and auto', async (t) => {
    for (const ref of images) {
      const original = await exportFs(ref)
      for (const method of ['snapshots', 'save', 'auto']) {
        const target = `dftp-result-${method}:1`
        await removeImage(target)
        const r = await dflatten([ref, '-b', base, '-t', target, '-m', method, '--no-cache', '-v'], { env })
        t.equal(r.exitCode, 0, `${ref} with ${method}: ${r.stderr.split('\n').slice(-4).join(' ')}`)
        if (r.exitCode) continue
        if (method === 'auto') t.match(r.stderr, /method snapshots: the overlay method cannot work/, 'auto takes snapshots, and says why not overlay')
        t.match(r.stderr, /writing the new layer into the content store of containerd at /, 'the blob goes into the content store directly')
        t.same(compareFs(original, await exportFs(target), { labels: [ref, target] }), [], `${ref} with ${method}: same filesystem`)
        const res = await inspect(target)
        t.equal(res.RootFS.Layers?.length, 2, 'the base layer plus one')
        await collectGarbage()
        const save = await execa('bash', ['-c', `docker save ${target} | wc -c`], { ...onCtrd, reject: false })
        t.equal(save.exitCode, 0, 'docker save of the result works')
        await removeImage(target)
      }
    }
    t.same(await views(), before, 'no view snapshot left')
    t.same(await leases(), leasesBefore, 'no lease left')
    t.same(await workDirs(), [], 'no work dir left')
  })

  // containerd's collector, run now: what nothing holds goes (a lease created and deleted with --sync).
  async function collectGarbage(): Promise<void> {
    await ctr('leases', 'create', '--id', 'dftp-gc')
    await ctr('leases', 'delete', '--sync', 'dftp-gc')
  }

  t.test('without the daemon\'s containerd at hand, the archive carries the blob', async (t) => {
    const ref = images[0]
    const target = 'dftp-result-nocontent:1'
    await removeImage(target)
    const r = await dflatten([ref, '-b', base, '-t', target, '-m', 'save', '--no-cache', '-v'], { env: { ...env, DFLATTEN_CONTAINERD_ADDRESS: join(scratch, 'no-such.sock') } })
    t.equal(r.exitCode, 0, r.stderr)
    t.notMatch(r.stderr, /content store of containerd/, 'no direct write')
    t.same(compareFs(await exportFs(ref), await exportFs(target), { labels: [ref, target] }), [])
    t.match((await inspect(target)).Id, /^sha256:/)
    await removeImage(target)
  })

  // A docker whose `load` fails at once, or never reads (to interrupt the run while it packs).
  async function fakeDocker(name: string, load: string): Promise<string> {
    const path = join(scratch, name)
    await writeFile(path, `#!/bin/sh\nif [ "$1" = load ]; then ${load}; fi\nexec docker "$@"\n`)
    await chmod(path, 0o755)
    return path
  }

  // Built on this daemon by the classic builder: each RUN layer's snapshot sits on its
  // container's -init snapshot, which is not a layer.
  t.test('an image built on this daemon', async (t) => {
    const built = await buildCorner()
    const target = 'dftp-result-built:1'
    await removeImage(target)
    const r = await dflatten([built, '-b', BASE, '-t', target, '--no-cache', '-v'], { env })
    t.equal(r.exitCode, 0, r.stderr)
    t.match(r.stderr, /method snapshots: [^]*container init snapshots between the layers left out/, 'auto takes snapshots, leaving the init snapshots out')
    t.same(compareFs(await exportFs(built), await exportFs(target), { labels: [built, target] }), [], 'same filesystem')
    await removeImage(target)
    t.same(await views(), before)
  })

  t.test('the view is gone after a failing load', async (t) => {
    const r = await dflatten([images[0], '-b', base, '-t', 'dftp-fail:1', '-m', 'snapshots', '--no-cache'], {
      env: { ...env, DFLATTEN_DOCKER: await fakeDocker('docker-fail', 'echo "load refused" >&2; exit 1') },
    })
    t.equal(r.exitCode, 1, r.stderr)
    t.same(await views(), before)
    t.same(await leases(), leasesBefore)
    t.same(await workDirs(), [])
    t.same(await mounts(), [])
  })

  for (const signal of ['SIGINT', 'SIGTERM', 'SIGKILL'] as const) {
    t.test(`the view is gone after ${signal}${signal === 'SIGKILL' ? ' and dflatten cleanup' : ''}`, async (t) => {
      const pidFile = join(scratch, `load-${signal}.pid`)
      const docker = await fakeDocker(`docker-hang-${signal}`, `echo $$ > ${pidFile}; exec sleep 120`)
      const child = execa(BIN, [images[1], '-b', base, '-t', 'dftp-hang:1', '-m', 'snapshots', '--no-cache'], { env: { ...env, DFLATTEN_DOCKER: docker }, reject: false })
      t.ok(await waitFor(async () => (await views()).length > before.length), 'the view exists while it runs')
      t.ok(await waitFor(async () => (await readFile(pidFile, 'utf8').catch(() => '')) !== ''), 'pack reached docker load')
      child.kill(signal)
      const r = await child
      if (signal !== 'SIGKILL') t.equal(r.exitCode, signal === 'SIGINT' ? 130 : 143, r.stderr)
      else {
        await execa('kill', ['-9', (await readFile(pidFile, 'utf8')).trim()], { reject: false })
        t.equal((await views()).length, before.length + 1, 'kill -9 leaves the view')
        t.match(await leases(), /\bdflatten-\S+-[0-9a-f]{8}\b/, 'and the lease holding the new blob')
        const c = await dflatten(['cleanup'], { env })
        t.equal(c.exitCode, 0, c.stderr)
      }
      t.same(await views(), before, 'no view snapshot left')
      t.same(await leases(), leasesBefore, 'no lease left')
      t.same(await workDirs(), [])
      t.same(await mounts(), [])
    })
  }

  t.test('--platform on a two-platform index', async (t) => {
    const multi = await twoPlatforms(scratch, onCtrd.env)
    const arm = await exportPlatform(multi, 'linux/arm64')
    const target = 'dftp-multi-flat:1'
    await removeImage(target)
    for (const method of ['snapshots', 'auto']) {
      const r = await dflatten([multi, '-b', base, '-t', target, '-m', method, '--platform', 'linux/arm64', '--no-cache', '-v'], { env })
      t.equal(r.exitCode, 0, r.stderr)
      t.match(r.stderr, /holds 2 platforms \(linux\/amd64, linux\/arm64\/v8\); flattening linux\/arm64\/v8, the result is that one platform's image/)
      t.match(r.stderr, /method snapshots:/)
      const res = await inspect(target)
      t.equal(`${res.Os}/${res.Architecture}`, 'linux/arm64', 'the result is the arm64 image')
      t.same(compareFs(arm, await exportPlatform(target, 'linux/arm64'), { labels: [multi, target] }), [], 'the arm64 filesystem')
      const manifest = JSON.parse(await ctr('content', 'get', (await inspect(target)).Id)) as { manifests?: unknown; layers: unknown[] }
      t.equal(manifest.manifests, undefined, 'a single-platform image (a manifest, not an index)')
      await removeImage(target)
    }
    const def = await dflatten([multi, '-b', base, '-t', target, '-m', 'snapshots', '--no-cache'], { env })
    t.equal(def.exitCode, 0, def.stderr)
    t.match(def.stderr, /flattening linux\/amd64, the result is that one platform's image/, "default: the daemon's platform")
    t.same(compareFs(await exportFs(multi), await exportFs(target)), [])
    await removeImage(target)
    const save = await dflatten([multi, '-b', base, '-t', target, '-m', 'save', '--platform', 'linux/arm64'], { env })
    t.equal(save.exitCode, 1)
    t.match(save.stderr, /^dflatten: --method save cannot work here: docker save of Docker 26[^\n]*cannot pick the platform linux\/arm64 \(API 1.48 can\); use --method auto$/)
    const missing = await dflatten([multi, '-t', target, '--platform', 'linux/s390x'], { env })
    t.equal(missing.exitCode, 1)
    t.match(missing.stderr, /^dflatten: dftp-multi:1 has no linux\/s390x image; it has linux\/amd64, linux\/arm64\/v8$/)
    t.same(await views(), before)
  })
}

/** A filesystem as `docker export` shows a container of one platform of the image. */
async function exportPlatform(ref: string, platform: string): Promise<FsMap> {
  const id = (await execa('docker', ['create', '--platform', platform, '--network', 'none', '--workdir', '/', ref, 'true'])).stdout
  try {
    const proc = execa('docker', ['export', id], { buffer: false })
    const [map] = await Promise.all([readTar(proc.stdout as NodeJS.ReadableStream), proc])
    return map
  } finally {
    await execa('docker', ['rm', '-v', id])
  }
}

/**
 * An index of two images, assembled by hand with no emulation: dft-simple as linux/amd64, and an
 * image on the same base whose config says linux/arm64/v8 (nothing of it ever runs).
 */
async function twoPlatforms(scratch: string, env: NodeJS.ProcessEnv): Promise<string> {
  const dir = join(scratch, 'oci')
  const local = { env: { ...process.env, DOCKER_HOST: '' } }
  const gz = ['copy', '-q', '--dest-compress', '--dest-compress-format', 'gzip']
  await execa('skopeo', [...gz, 'docker-daemon:dft-simple:1', `oci:${dir}:amd`], local)
  await execa('skopeo', [...gz, 'docker-daemon:dftp-armsrc:1', `oci:${dir}:arm`], local)
  const blob = (d: string): string => join(dir, 'blobs/sha256', d.slice(7))
  const put = async (v: unknown): Promise<{ digest: string; size: number }> => {
    const buf = Buffer.from(JSON.stringify(v))
    const digest = 'sha256:' + createHash('sha256').update(buf).digest('hex')
    await writeFile(blob(digest), buf)
    return { digest, size: buf.length }
  }
  type Desc = { mediaType: string; digest: string; size: number; annotations: Record<string, string> }
  const layout = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Desc[] }
  const by = Object.fromEntries(layout.manifests.map((m) => [m.annotations['org.opencontainers.image.ref.name'], m]))
  const armManifest = JSON.parse(await readFile(blob(by.arm.digest), 'utf8')) as { config: { digest: string } }
  const config = JSON.parse(await readFile(blob(armManifest.config.digest), 'utf8')) as Record<string, unknown>
  armManifest.config = { ...armManifest.config, ...(await put({ ...config, architecture: 'arm64', variant: 'v8' })) }
  const MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
  const INDEX = 'application/vnd.oci.image.index.v1+json'
  const index = await put({
    schemaVersion: 2,
    mediaType: INDEX,
    manifests: [
      { mediaType: MANIFEST, digest: by.amd.digest, size: by.amd.size, platform: { os: 'linux', architecture: 'amd64' } },
      { mediaType: MANIFEST, ...(await put(armManifest)), platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
    ],
  })
  const name = 'docker.io/library/dftp-multi:1'
  await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: INDEX, ...index, annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': '1' } }] }))
  const file = join(scratch, 'multi.tar')
  await execa('tar', ['-C', dir, '-cf', file, '.'])
  await execa('docker', ['load', '-i', file], { env })
  return 'dftp-multi:1'
}
