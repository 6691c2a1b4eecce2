// Flattening without a daemon, end to end with real components: the test images are pushed by
// skopeo from the daemon into a real docker-registry (gzip layers) and into OCI layouts (zstd
// layers), flattened from there by the registry method in one pass, written to an OCI layout,
// and copied back into the daemon by skopeo; `docker export` of the result must hold what the
// original's does. Also what the CLI says when a registry refuses, lacks the tag or is not there.
// Daemon use (skopeo docker-daemon:, docker export) needs the shared lock: run it under flock.
import t, { type Test } from 'tap'
import { execa } from 'execa'
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { buildBase, buildCorner, buildHidden, buildManyLayers, buildSimple } from '../helpers/images.js'
import { compareFs, configOf, exportFs } from '../helpers/export.js'
import { inspect, removeImage, imageExists } from '../helpers/docker.js'
import { dflatten } from '../helpers/cli.js'
import { makePki, useRegistry, useTempDir } from '../helpers/registry.js'
import { writeFlattened } from '../helpers/oci.js'
import { resolve } from '../../src/stages/resolve.js'
import type { Settings } from '../../src/settings.js'

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

/** Flatten `source` onto `baseRef` into an OCI layout, load it with skopeo, compare with `original`. */
async function flattenAndCompare(t: Test, original: string, source: string, baseRef: string, name: string): Promise<void> {
  const out = join(work, `out-${name}`)
  const settings: Settings = { registry: { configDir: join(work, 'no-docker-config') } }
  const plan = await resolve({ image: source, base: baseRef, tag: `oci:${out}:flat`, settings })
  t.equal(plan.method.name, 'registry', 'the daemonless method')
  const first = await writeFlattened(plan, out, 'flat', settings)
  const again = await writeFlattened(plan, join(work, `again-${name}`), 'flat', settings)
  t.equal(again.digest, first.digest, 'a second run gives the same manifest digest')
  t.equal(again.diffId, first.diffId, 'and the same layer')
  const loaded = `dft-regsrc-${name}:flat`
  const r = await skopeo(['copy', `oci:${out}:flat`, `docker-daemon:${loaded}`])
  t.equal(r.exitCode, 0, `skopeo loads the result: ${r.stderr}`)
  t.teardown(() => removeImage(loaded).catch(() => undefined))
  const [orig, flat] = await Promise.all([exportFs(original), exportFs(loaded)])
  t.same(compareFs(orig, flat, { labels: [original, loaded] }), [], 'docker export of the original and of the result hold the same entries')
  if (source.startsWith('oci:')) {
    // skopeo's OCI config has no Healthcheck (the OCI format lacks it): compare with what the layout holds.
    const held = JSON.parse(Buffer.from((plan.method.state as { config: { bytes: string } }).config.bytes, 'base64').toString()) as { config?: unknown }
    const written = JSON.parse(await readFile(join(out, 'blobs/sha256', (JSON.parse(await readFile(join(out, 'blobs/sha256', first.digest.slice(7)), 'utf8')) as { config: { digest: string } }).config.digest.slice(7)), 'utf8')) as { config?: unknown }
    t.same(written.config, held.config, "the config is the layout's")
  } else {
    t.same(await configOf(loaded), await configOf(original), 'the config is the same')
  }
  const [src, res, b] = await Promise.all([inspect(original), inspect(loaded), inspect(base)])
  const k = b.RootFS.Layers?.length ?? 0
  t.equal(res.RootFS.Layers?.length, k + 1, 'the base layers plus one')
  t.same(res.RootFS.Layers?.slice(0, k), src.RootFS.Layers?.slice(0, k), 'the base layers as they were')
}


t.test('from a registry (gzip layers), onto a base in the same registry', async (t) => {
  await push(base, `docker://${reg.host}/base:1`)
  for (const [name, ref] of Object.entries(images)) {
    await push(ref, `docker://${reg.host}/${name}:1`)
    await t.test(name, (t) => flattenAndCompare(t, ref, `docker://${reg.host}/${name}:1`, `docker://${reg.host}/base:1`, `reg-${name}`))
  }
})

t.test('from an OCI layout (zstd layers), onto a base in the same layout', async (t) => {
  const dir = join(work, 'layout')
  const zstd = ['--dest-compress-format', 'zstd']
  await push(base, `oci:${dir}:base`, zstd)
  for (const name of ['simple', 'corner'] as const) {
    await push(images[name], `oci:${dir}:${name}`, zstd)
    await t.test(name, (t) => flattenAndCompare(t, images[name], `oci:${dir}:${name}`, `oci:${dir}:base`, `oci-${name}`))
  }
})

t.test('the CLI: a refusing, missing or absent registry is one line', async (t) => {
  const fails = async (args: string[], env: Record<string, string>, re: RegExp, what: string): Promise<void> => {
    const r = await dflatten(['resolve', ...args], { env })
    t.equal(r.exitCode, 1, `${what}: exit 1`)
    t.match(r.stderr, re, what)
    t.equal(r.stderr.trim().split('\n').length, 1, `${what}: one line`)
  }
  const noConfig = { DOCKER_CONFIG: join(work, 'no-docker-config') }
  await fails([`docker://${reg.host}/simple:nope`, '--base', 'scratch'], noConfig, /simple:nope: not found on registry/, 'a missing tag')
  await fails(['docker://127.0.0.1:1/simple:1', '--base', 'scratch'], noConfig, /127\.0\.0\.1:1/, 'nothing listens there')
  const usage = await dflatten(['resolve', `docker://${reg.host}/simple:1`], { env: noConfig })
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
