// Both methods right on Docker's containerd image store (issue 14, item 3), on Docker 26 with
// that store (scripts/docker26.sh) and test images that look pulled (gzip layers, through
// skopeo): every e2e image and corner case not already in snapshots.test.ts (hardlink groups,
// empty ones included; repeated layers; 120 layers; files a container covers) flattens to the
// original's filesystem and config with snapshots, save and auto. The result is then taken
// through what users do with it: `docker save` (complete, and loaded on the classic Docker
// 20.10), `docker push` to a real registry on 127.0.0.1 (its new layer gzip there), removed and
// pulled back with the same files; and a second run finds it in the cache. Under the daemon
// lock; DFLATTEN_SKIP_DOCKER26=1 leaves it out.
import t from 'tap'
import { execa } from 'execa'
import { mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  BASE,
  HARDLINKS_BASE,
  HIDDEN_FILES,
  REPEATED,
  REPEATED_BASE,
  REPEATED_BASE2,
  REPEATED_ON,
  REPEATED_OVER,
  buildCorner,
  buildHardlinks,
  buildHidden,
  buildManyLayers,
  buildRepeated,
  buildSimple,
} from '../helpers/images.js'
import { docker, inspect, removeImage } from '../helpers/docker.js'
import { compareFs, exportFs } from '../helpers/export.js'
import { dflatten } from '../helpers/cli.js'
import { flattenChecked } from '../helpers/every-method.js'
import { ctr, ctrdDaemon, ctrdEnv, pulled, views } from '../helpers/containerd-store.js'
import { startRegistry } from '../helpers/registry.js'
import { DOCKER26_LEFT_OUT } from '../helpers/docker26.js'

/** The name an image of the system's daemon has in the containerd store once carried over. */
const pulledName = (ref: string): string => ref.replace(/^dft-/, 'dftp-')

/** Run `fn` with DOCKER_HOST set to `host` ('' for the system's daemon): the docker helpers follow it. */
async function on<T>(host: string, fn: () => Promise<T>): Promise<T> {
  const saved = process.env.DOCKER_HOST
  process.env.DOCKER_HOST = host
  try {
    return await fn()
  } finally {
    if (saved === undefined) delete process.env.DOCKER_HOST
    else process.env.DOCKER_HOST = saved
  }
}

async function run(host: string): Promise<void> {
  const scratch = await mkdtemp(join(tmpdir(), 'dft-ctrd-store-'))
  const workRoot = join(scratch, 'work')
  await mkdir(workRoot)
  t.teardown(() => rm(scratch, { recursive: true, force: true }))
  const env = ctrdEnv(host, workRoot)

  // Built on the system's daemon, then carried over with gzip layers, bases included.
  const many = await buildManyLayers()
  const [simple, corner, hardlinks, hidden] = [await buildSimple(), await buildCorner(), await buildHardlinks(), await buildHidden()]
  await buildRepeated()
  const originals = [BASE, simple, corner, hardlinks, HARDLINKS_BASE, hidden, many, REPEATED, REPEATED_BASE, REPEATED_OVER, REPEATED_BASE2, REPEATED_ON]
  for (const ref of originals) await pulled(ref, pulledName(ref).split(':')[0], scratch, host)
  const p = pulledName
  const before = await on(host, views)

  // [image, base]: every corner case of these images is checked by compareFs (files, modes,
  // owners, mtimes, xattrs, devices, hardlink groups), their configs and layer lists too.
  const CASES: Array<[string, string]> = [
    [p(hardlinks), p(HARDLINKS_BASE)],
    [p(hardlinks), 'scratch'],
    [p(REPEATED), p(BASE)],
    [p(REPEATED_OVER), p(REPEATED_BASE)],
    [p(REPEATED_ON), p(REPEATED_BASE2)],
    [p(REPEATED_ON), 'scratch'],
    [p(many), p(BASE)],
    [p(hidden), p(BASE)],
    [p(corner), 'scratch'],
  ]

  t.test('pulled-style images flatten to the same filesystem and config with snapshots, save and auto', async (t) => {
    await on(host, async () => {
      for (const ref of new Set(CASES.flat().filter((r) => r !== 'scratch'))) {
        const manifest = JSON.parse(await ctr('content', 'get', (await inspect(ref)).Id)) as { layers: Array<{ mediaType: string }> }
        t.ok(manifest.layers.every((l) => l.mediaType.endsWith('.tar+gzip')), `${ref} looks pulled: gzip layers in the content store`)
      }
      for (const [ref, base] of CASES) {
        const original = await exportFs(ref)
        for (const method of ['snapshots', 'save', 'auto']) await flattenChecked(t, ref, base, method, original, env)
      }
      t.same(await views(), before, 'no view snapshot left')
      t.same(await readdir(workRoot), [], 'no work dir left')
    })
  })

  t.test("files a container covers (/etc/hosts) are in the new layer with both methods", async (t) => {
    await on(host, async () => {
      for (const method of ['snapshots', 'save']) {
        const target = `dftp-result-hidden-${method}:1`
        const r = await dflatten([p(hidden), '-b', p(BASE), '-t', target, '-m', method, '--no-cache'], { env })
        t.equal(r.exitCode, 0, r.stderr)
        t.same(await newestLayerFiles(target, Object.keys(HIDDEN_FILES), scratch), HIDDEN_FILES, `${method}: the new layer holds the image's own files`)
        await removeImage(target)
      }
    })
  })

  t.test('the result: saved and loaded on Docker 20.10, pushed, pulled back, cached', async (t) => {
    const target = 'dftp-corner-flat:1'
    const original = await on(host, () => exportFs(p(corner)))
    const flat = await on(host, async () => {
      await removeImage(target)
      const r = await dflatten([p(corner), '-b', p(BASE), '-t', target, '-m', 'snapshots', '--no-cache', '--json'], { env })
      t.equal(r.exitCode, 0, r.stderr)
      return JSON.parse(r.stdout) as { imageId: string; outcome: string }
    })
    t.equal(flat.outcome, 'flattened')

    t.test('a second run finds it in the cache: same image id', async (t) => {
      await on(host, async () => {
        const again = await dflatten([p(corner), '-b', p(BASE), '-t', target, '-m', 'snapshots'], { env })
        t.equal(again.exitCode, 0, again.stderr)
        t.match(again.stderr, /already flattened earlier/, 'says so')
        t.match(again.stdout, /found from an earlier run \(cache\)/)
        t.equal((await inspect(target)).Id, flat.imageId, 'the same image')
        // Under another name: found among the store's images, and only tagged.
        const json = await dflatten([p(corner), '-b', p(BASE), '-t', 'dftp-corner-flat:again', '-m', 'snapshots', '--json'], { env })
        t.equal(json.exitCode, 0, json.stderr)
        t.match(JSON.parse(json.stdout), { outcome: 'cached', imageId: flat.imageId }, '-t another name: cached, the same image')
        t.equal((await inspect('dftp-corner-flat:again')).Id, flat.imageId)
        await removeImage('dftp-corner-flat:again')
        t.same(await views(), before, 'a cached run makes no view either')
      })
    })

    t.test('docker save: complete, and it loads on Docker 20.10 with the same files', async (t) => {
      const file = join(scratch, 'flat-save.tar')
      await on(host, () => execa('docker', ['save', '-o', file, target]))
      const dir = join(scratch, 'flat-save')
      await mkdir(dir)
      await execa('tar', ['-C', dir, '-xf', file])
      const [manifest] = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Array<{ Config: string; Layers: string[] }>
      t.equal(manifest.Layers.length, 2, 'manifest.json lists the base layer and the new one')
      const present = await Promise.all([manifest.Config, ...manifest.Layers].map((f) => readFile(join(dir, f)).then(() => true, () => false)))
      t.same(present, present.map(() => true), 'every file manifest.json names is in the archive')
      await rm(dir, { recursive: true })
      await on('', async () => {
        await removeImage(target)
        const load = await execa('docker', ['load', '-i', file], { reject: false })
        t.equal(load.exitCode, 0, `Docker 20.10 loads it: ${load.stderr}`)
        if (load.exitCode === 0) t.same(compareFs(original, await exportFs(target), { labels: [p(corner), 'loaded on Docker 20.10'] }), [], 'the same filesystem there')
        await removeImage(target)
      })
      await rm(file)
    })

    t.test('docker push to a registry, gzip there; removed and pulled back with the same files', async (t) => {
      const reg = await startRegistry()
      t.teardown(() => reg.stop())
      const remote = `${reg.host}/dftp/corner-flat:1`
      await on(host, async () => {
        await docker(['tag', target, remote])
        const push = await execa('docker', ['push', remote], { reject: false })
        t.equal(push.exitCode, 0, `docker push: ${push.stderr}`)
        const raw = await execa('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${remote}`])
        const manifest = JSON.parse(raw.stdout) as { layers: Array<{ mediaType: string; digest: string; size: number }>; config: { digest: string } }
        const res = await inspect(target)
        t.equal(manifest.layers.length, 2, 'the pushed manifest has the base layer and the new one')
        const layer = manifest.layers.at(-1) ?? { mediaType: '', digest: '', size: -1 }
        t.match(layer.mediaType, /\.tar\+gzip$/, 'the new layer is gzip in the pushed manifest')
        const blob = Buffer.from(await (await fetch(`http://${reg.host}/v2/dftp/corner-flat/blobs/${layer.digest}`)).arrayBuffer())
        t.same([blob[0], blob[1]], [0x1f, 0x8b], 'and its blob is gzip')
        t.equal(blob.length, layer.size, 'of the size the manifest says')
        const config = JSON.parse(Buffer.from(await (await fetch(`http://${reg.host}/v2/dftp/corner-flat/blobs/${manifest.config.digest}`)).arrayBuffer()).toString()) as { rootfs: { diff_ids: string[] } }
        t.same(config.rootfs.diff_ids, res.RootFS.Layers, "the config's diff ids are the uncompressed layers'")

        await removeImage(remote)
        await removeImage(target)
        const pull = await execa('docker', ['pull', remote], { reject: false })
        t.equal(pull.exitCode, 0, `docker pull: ${pull.stderr}`)
        t.equal((await inspect(remote)).Id, flat.imageId, 'the same image comes back')
        t.same(compareFs(original, await exportFs(remote), { labels: [p(corner), remote] }), [], 'with the same files')
        await removeImage(remote)
      })
    })
  })
}

/** Files of an image's newest layer, as `docker save` has it: what a container cannot show. */
async function newestLayerFiles(ref: string, paths: string[], scratch: string): Promise<Record<string, string>> {
  const dir = await mkdtemp(join(scratch, 'saved-'))
  try {
    await execa('bash', ['-o', 'pipefail', '-c', `docker save ${ref} | tar -x -C ${dir}`])
    const [manifest] = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Array<{ Layers: string[] }>
    const layer = join(dir, manifest.Layers[manifest.Layers.length - 1] ?? '')
    const out: Record<string, string> = {}
    for (const path of paths) {
      // tar finds out by itself that a layer is gzip
      const r = await execa('tar', ['-xOf', layer, path], { reject: false })
      out[path] = r.exitCode === 0 ? r.stdout + '\n' : `(not in the layer: ${r.stderr})`
    }
    return out
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

const daemon = await ctrdDaemon()
if (daemon === null) t.comment(DOCKER26_LEFT_OUT)
else if (daemon.host === undefined) t.fail(daemon.skip ?? 'no Docker 26 daemon')
else await run(daemon.host)
