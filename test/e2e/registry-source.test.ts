// Flattening without a daemon, end to end with real components: the test images are pushed by
// skopeo from the daemon into a real docker-registry (gzip layers) and into OCI layouts (zstd
// layers), flattened from there by the registry method in one pass, written to an OCI layout,
// and copied back into the daemon by skopeo; `docker export` of the result must hold what the
// original's does. Also what the CLI says when a registry refuses, lacks the tag or is not there.
// Daemon use (skopeo docker-daemon:, docker export) needs the shared lock: run it under flock.
import t, { type Test } from 'tap'
import { execa } from 'execa'
import { copyFile, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { buildBase, buildCorner, buildHidden, buildManyLayers, buildSimple } from '../helpers/images.js'
import { compareFs, configOf, exportFs } from '../helpers/export.js'
import { inspect, removeImage, imageExists } from '../helpers/docker.js'
import { dflatten } from '../helpers/cli.js'
import { makePki, useRegistry, useTempDir } from '../helpers/registry.js'

const base = await buildBase()
const images = { simple: await buildSimple(), corner: await buildCorner(), hidden: await buildHidden(), many: await buildManyLayers() }

// skopeo's docker-daemon: transport reads DOCKER_HOST; empty is the default socket.
const skopeo = (args: string[]) => execa('skopeo', ['--insecure-policy', ...args], { reject: false, env: { DOCKER_HOST: '' } })

const reg = await useRegistry(t)
const work = await useTempDir(t, 'dft-regsrc-e2e-')

async function push(image: string, to: string, extra: string[] = []): Promise<void> {
  const r = await skopeo(['copy', '--dest-tls-verify=false', ...extra, `docker-daemon:${image}`, to])
  if (r.exitCode !== 0) throw new Error(`skopeo copy ${image} ${to}: ${r.stderr}`)
}

const noConfig = (): Record<string, string> => ({ DOCKER_CONFIG: join(work, 'no-docker-config') })

/** The manifest digest a run printed (`pushed: NAME sha256:...` / `written: ...`). */
function printed(stdout: string): string {
  return /^(?:pushed|written, not loaded|found from an earlier run \(cache\)): \S+ (sha256:[0-9a-f]{64})$/m.exec(stdout)?.[1] ?? ''
}

/**
 * Flatten `source` onto `baseRef` with the CLI into `target` (an OCI layout or a registry
 * repository), bring the result into the daemon with skopeo, compare it with `original`.
 */
async function flattenAndCompare(t: Test, original: string, source: string, baseRef: string, target: string, name: string): Promise<void> {
  const run = (args: string[]) => dflatten([source, '--base', baseRef, '-t', target, ...args], { env: noConfig() })
  const first = await run([])
  t.equal(first.exitCode, 0, first.stderr)
  t.match(first.stdout, target.startsWith('oci:') ? /^written, not loaded: /m : /^pushed: /m)
  t.not(printed(first.stdout), '', 'it names the manifest digest')
  const again = await run(['--no-cache'])
  t.equal(again.exitCode, 0, again.stderr)
  t.equal(printed(again.stdout), printed(first.stdout), 'a second run gives the same manifest digest')
  const cached = await run([])
  t.equal(cached.exitCode, 0, cached.stderr)
  t.match(cached.stdout, /found from an earlier run/, 'a third run finds the result there and says so')
  const loaded = `dft-regsrc-${name}:flat`
  const r = await skopeo(['copy', '--src-tls-verify=false', target.startsWith('oci:') ? target : `docker://${target.slice('docker://'.length)}`, `docker-daemon:${loaded}`])
  t.equal(r.exitCode, 0, `skopeo loads the result: ${r.stderr}`)
  t.teardown(() => removeImage(loaded).catch(() => undefined))
  const [orig, flat] = await Promise.all([exportFs(original), exportFs(loaded)])
  t.same(compareFs(orig, flat, { labels: [original, loaded] }), [], 'docker export of the original and of the result hold the same entries')
  if (!source.startsWith('oci:')) t.same(await configOf(loaded), await configOf(original), 'the config is the same')
  const [src, res, b] = await Promise.all([inspect(original), inspect(loaded), inspect(base)])
  const k = b.RootFS.Layers?.length ?? 0
  t.equal(res.RootFS.Layers?.length, k + 1, 'the base layers plus one')
  t.same(res.RootFS.Layers?.slice(0, k), src.RootFS.Layers?.slice(0, k), 'the base layers as they were')
}

/** Blob uploads the registry saw since `from`, as digests (a finished upload names its digest). */
function uploadedDigests(requests: string[]): string[] {
  return requests.flatMap((q) => /^PUT .*\/blobs\/uploads\/.*[?&]digest=(sha256(?::|%3A)[0-9a-f]{64})/.exec(q)?.[1]?.replace('%3A', ':') ?? [])
}

t.test('from a registry (gzip layers), onto a base in the same registry, to the registry and to an OCI dir', async (t) => {
  await push(base, `docker://${reg.host}/base:1`)
  const baseBlobs = (await inspect(base)).RootFS.Layers ?? []
  for (const [name, ref] of Object.entries(images)) {
    await push(ref, `docker://${reg.host}/${name}:1`)
    const from = reg.requests().length
    await t.test(`${name} to docker://`, (t) => flattenAndCompare(t, ref, `docker://${reg.host}/${name}:1`, `docker://${reg.host}/base:1`, `docker://${reg.host}/${name}-flat:1`, `reg-${name}`))
    const uploads = uploadedDigests(reg.requests().slice(from))
    t.ok(uploads.length >= 2, `${name}: the new layer and the config went up (${uploads.length} uploads)`)
    const manifest = await skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/base:1`])
    const baseDigests = (JSON.parse(manifest.stdout) as { layers: Array<{ digest: string }> }).layers.map((l) => l.digest)
    t.same(uploads.filter((d) => baseDigests.includes(d) || baseBlobs.includes(d)), [], `${name}: no base blob was uploaded (the access log)`)
    t.ok(reg.requests().slice(from).some((q) => /^POST .*blobs\/uploads\/\?.*mount=/.test(q)), `${name}: the base blobs were mounted from the source repository`)
    await t.test(`${name} to oci:`, (t) => flattenAndCompare(t, ref, `docker://${reg.host}/${name}:1`, `docker://${reg.host}/base:1`, `oci:${join(work, `mixed-${name}`)}:flat`, `mixed-${name}`))
  }
})

// zstd sources are the unit tests' (test/unit/sources.test.ts): the result keeps the source's
// base blobs as they are, and neither skopeo nor Docker 20.10 can bring zstd into the daemon.
t.test('from an OCI layout, onto a base in the same layout, to an OCI dir and to a registry', async (t) => {
  const dir = join(work, 'layout')
  await push(base, `oci:${dir}:base`)
  for (const name of ['simple', 'corner'] as const) {
    await push(images[name], `oci:${dir}:${name}`)
    await t.test(`${name} to oci:`, (t) => flattenAndCompare(t, images[name], `oci:${dir}:${name}`, `oci:${dir}:base`, `oci:${dir}:${name}-flat`, `oci-${name}`))
    await t.test(`${name} to docker://`, (t) => flattenAndCompare(t, images[name], `oci:${dir}:${name}`, `oci:${dir}:base`, `docker://${reg.host}/from-oci-${name}:flat`, `ocireg-${name}`))
  }
})

t.test('the CLI: a refusing, missing or absent registry is one line', async (t) => {
  const fails = async (args: string[], env: Record<string, string>, re: RegExp, what: string): Promise<void> => {
    const r = await dflatten(['resolve', ...args], { env })
    t.equal(r.exitCode, 1, `${what}: exit 1`)
    t.match(r.stderr, re, what)
    t.equal(r.stderr.trim().split('\n').length, 1, `${what}: one line`)
  }
  await fails([`docker://${reg.host}/simple:nope`, '--base', 'scratch'], noConfig(), /simple:nope: not found on registry/, 'a missing tag')
  await fails(['docker://127.0.0.1:1/simple:1', '--base', 'scratch'], noConfig(), /127\.0\.0\.1:1/, 'nothing listens there')
  const usage = await dflatten(['resolve', `docker://${reg.host}/simple:1`], { env: noConfig() })
  t.equal(usage.exitCode, 2, 'no base named: a usage error')
  t.match(usage.stderr, /names no base/)

  const tmp = await useTempDir(t, 'dft-regsrc-pki-')
  const pki = await makePki(tmp)
  const secure = await useRegistry(t, { tls: pki, users: { alice: 'secret' } })
  const certs = join(tmp, 'certs.d')
  await mkdir(certs)
  await copyFile(pki.caCrt, join(certs, 'ca.crt'))
  const config = join(tmp, 'docker-config')
  await mkdir(config)
  await writeFile(join(config, 'config.json'), JSON.stringify({ auths: { [secure.host]: { auth: Buffer.from('alice:wrong').toString('base64') } } }))
  // resolve has no --cert-dir: the main command does; a wrong password fails before any pack.
  const r = await dflatten([`docker://${secure.host}/app:1`, '--base', 'scratch', '--cert-dir', certs, '-t', `oci:${tmp}/out:x`], { env: { DOCKER_CONFIG: config } })
  t.equal(r.exitCode, 1, 'wrong credentials: exit 1')
  t.match(r.stderr, /refused the credentials/, 'wrong credentials: said so')
  t.equal(r.stderr.trim().split('\n').length, 1, 'wrong credentials: one line')
  t.notOk(await imageExists('dft-regsrc-none:1'))
})
