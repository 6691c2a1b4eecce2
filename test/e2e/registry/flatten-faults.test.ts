// The real CLI flattening from a registry into a registry when things go wrong, and once right
// over TLS with htpasswd auth: wrong credentials, a missing tag, an unreachable registry, a
// connection cut mid-blob (reading the source, and pushing), SIGINT/SIGTERM while pushing, and
// the refusals of a daemonless source. Every failure is one line, exits non-zero and leaves no
// tag at the target; an interrupted upload is cancelled in the registry (DELETE, no upload
// session left in its storage), one whose PATCH the network cut is asked to be (distribution
// 2.8 cannot do it, see below), and no work dir stays in /tmp. No daemon is used; the
// images are made by hand and copied into the registries by skopeo.
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { copyFile, mkdir, readdir, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { dflatten, spawnDflatten, waitFor, type CliResult } from '../../helpers/cli.js'
import { modelTar, writeImage } from '../../helpers/oci.js'
import { freePort, makePki, startCuttingProxy, startRegistry, tempDir, uploadsLeft, type CuttingProxy, type TestRegistry } from '../../helpers/registry.js'
import { fsOf, pullPlatform, rawManifest, skopeoCopy, type SkopeoAccess } from '../../helpers/registry-cli.js'

const file = (name: string, content: string) => ({ name, type: 'file', content })
const baseTars = [modelTar([{ name: 'etc', type: 'dir' }, file('etc/os-release', 'base'), file('etc/motd', 'hi')])]
// Random bytes do not compress: the new layer stays megabytes, so a cut lands inside it.
const big = randomBytes(3 * 1024 * 1024).toString('latin1')
const upperTars = [modelTar([file('etc/.wh.motd', ''), file('big.bin', big)]), modelTar([file('etc/os-release', 'app')])]

let work: string
let layout: string
t.before(async () => {
  const tmp = await tempDir('dft-regfaults-e2e-')
  work = tmp.dir
  t.teardown(tmp.remove)
  layout = join(work, 'layout')
  await writeImage(layout, { tag: 'base', layers: baseTars })
  await writeImage(layout, { tag: 'app', layers: [...baseTars, ...upperTars] })
})

/** Push the test's base and app into `host` (as base:1 and app:1). */
async function seed(host: string, access: SkopeoAccess = {}): Promise<void> {
  await skopeoCopy(`oci:${layout}:base`, `docker://${host}/base:1`, access)
  await skopeoCopy(`oci:${layout}:app`, `docker://${host}/app:1`, access)
}

/** A Docker config dir whose auths hold `user:password` for `host`. */
async function dockerConfig(name: string, host: string, userPass: string): Promise<string> {
  const dir = join(work, name)
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'config.json'), JSON.stringify({ auths: { [host]: { auth: Buffer.from(userPass).toString('base64') } } }))
  return dir
}

const noConfig = (): Record<string, string> => ({ DOCKER_CONFIG: join(work, 'no-docker-config') })

/** The run failed with exit `code` and one line on stderr matching `re`. */
function failed(t: Test, r: CliResult, code: number, re: RegExp, what: string): void {
  t.equal(r.exitCode, code, `${what}: exit ${code}`)
  t.match(r.stderr, re, `${what}: says why`)
  t.equal(r.stderr.trim().split('\n').length, 1, `${what}: one line (${r.stderr.trim()})`)
}

/** dflatten's work dirs in /tmp (mkdtemp's `dflatten-` and six characters). */
async function workDirs(): Promise<string[]> {
  return (await readdir(tmpdir())).filter((n) => /^dflatten-[A-Za-z0-9]{6}$/.test(n))
}

t.test('TLS + htpasswd: flattened with --cert-dir and config.json credentials; wrong credentials, missing tag, unreachable', async (t) => {
  const pki = await makePki(await mkdir(join(work, 'pki'), { recursive: true }).then(() => join(work, 'pki')))
  const secure = await startRegistry({ tls: pki, users: { alice: 'secret' } })
  t.teardown(() => secure.stop())
  const certs = join(work, 'certs.d')
  await mkdir(certs)
  await copyFile(pki.caCrt, join(certs, 'ca.crt'))
  const access = { certDir: certs, creds: 'alice:secret' }
  await seed(secure.host, access)
  const good = { DOCKER_CONFIG: await dockerConfig('good-config', secure.host, 'alice:secret') }
  const R = `docker://${secure.host}`
  // -q: a failure's stderr is then its one line, no progress before it.
  const run = (source: string, target: string, env: Record<string, string>, extra = ['--cert-dir', certs]) =>
    dflatten([source, '--base', `${R}/base:1`, '-t', target, '-q', ...extra], { env })

  const ok = await dflatten([`${R}/app:1`, '--base', `${R}/base:1`, '-t', `${R}/app:flat`, '--cert-dir', certs], { env: good })
  t.equal(ok.exitCode, 0, ok.stderr)
  t.match(ok.stdout, /^pushed: /m)
  const flat = await pullPlatform(`${R}/app:flat`, 'linux/amd64', work, access)
  t.same(flat.layers[0], baseTars[0], 'the base layer as it was')
  t.equal(flat.layers.length, 2, 'the base layer plus one')
  t.same(await fsOf(flat.layers), await fsOf([...baseTars, ...upperTars]), "the original's filesystem")
  t.ok(secure.requests().some((q) => /^POST \/v2\/app\/blobs\/uploads\/\?.*mount=/.test(q) || /^HEAD \/v2\/app\/blobs\/sha256:\S+ 200/.test(q)), 'the base blob found, not sent')

  const absent = async (ref: string, what: string): Promise<void> => {
    t.equal(await rawManifest(`${R}/${ref}`, access), null, `${what}: no ${ref} at the target`)
  }
  const wrong = { DOCKER_CONFIG: await dockerConfig('wrong-config', secure.host, 'alice:wrong') }
  failed(t, await run(`${R}/app:1`, `${R}/app:wrongcreds`, wrong), 1, /refused the credentials/, 'wrong credentials')
  await absent('app:wrongcreds', 'wrong credentials')
  failed(t, await run(`${R}/app:1`, `${R}/app:none`, noConfig()), 1, new RegExp(secure.host.replaceAll('.', '\\.')), 'no credentials')
  await absent('app:none', 'no credentials')
  failed(t, await run(`${R}/app:nope`, `${R}/app:missing`, good), 1, /app:nope: not found on registry/, 'a missing tag')
  await absent('app:missing', 'a missing tag')
  failed(t, await run(`${R}/app:1`, `${R}/app:untrusted`, good, []), 1, /TLS certificate is not trusted/, 'no --cert-dir')
  await absent('app:untrusted', 'no --cert-dir')

  const closed = await freePort()
  failed(t, await run(`docker://127.0.0.1:${closed}/app:1`, `${R}/app:gone`, good), 1, new RegExp(`cannot connect to registry 127\\.0\\.0\\.1:${closed}`), 'an unreachable source')
  await absent('app:gone', 'an unreachable source')
  failed(t, await run(`${R}/app:1`, `docker://127.0.0.1:${closed}/app:flat`, good), 1, new RegExp(`cannot connect to registry 127\\.0\\.0\\.1:${closed}`), 'an unreachable target')
})

/** A plain registry with the test images, and a proxy in front of it. */
async function plainWithProxy(t: Test): Promise<{ reg: TestRegistry; proxy: CuttingProxy }> {
  const reg = await startRegistry()
  t.teardown(() => reg.stop())
  await seed(reg.host)
  const proxy = await startCuttingProxy(reg.port)
  t.teardown(() => proxy.stop())
  return { reg, proxy }
}

/** The target's upload was cancelled: a DELETE of its session, and nothing left in storage. */
async function cancelled(t: Test, reg: TestRegistry, repo: string, from: number): Promise<void> {
  t.ok(reg.requests().slice(from).some((q) => new RegExp(`^DELETE /v2/${repo}/blobs/uploads/\\S+ 204`).test(q)), `${repo}: the upload session was cancelled (DELETE)`)
  // A cut PATCH may still be ending inside the registry when the DELETE comes.
  t.ok(await waitFor(async () => (await uploadsLeft(reg, repo)).length === 0, 5000), `${repo}: no upload session left in the registry's storage`)
}

t.test('a connection cut mid-blob while reading the source: one line, no tag, the upload cancelled', async (t) => {
  const { reg, proxy } = await plainWithProxy(t)
  const dirs = await workDirs()
  proxy.cutAfter = 1024 * 1024
  const from = reg.requests().length
  const r = await dflatten([`docker://${proxy.host}/app:1`, '--base', `docker://${proxy.host}/base:1`, '-t', `docker://${reg.host}/cutread:flat`, '-q'], { env: noConfig() })
  failed(t, r, 1, /connection to registry .* broke after \d+ of \d+ bytes/, 'cut while reading')
  t.equal(await rawManifest(`docker://${reg.host}/cutread:flat`), null, 'no tag at the target')
  await cancelled(t, reg, 'cutread', from)
  t.same(await workDirs(), dirs, 'no work dir left in /tmp')
})

t.test('a connection cut mid-blob while pushing: one line, no tag, the cancel sent', async (t) => {
  const { reg, proxy } = await plainWithProxy(t)
  const dirs = await workDirs()
  proxy.upLimit = { bytes: 1024 * 1024, then: 'cut' }
  const from = reg.requests().length
  const r = await dflatten([`docker://${reg.host}/app:1`, '--base', `docker://${reg.host}/base:1`, '-t', `docker://${proxy.host}/cutpush:flat`, '-q'], { env: noConfig() })
  failed(t, r, 1, /cutpush.*connection to registry .* failed while sending data/, 'cut while pushing')
  t.equal(await rawManifest(`docker://${reg.host}/cutpush:flat`), null, 'no tag at the target')
  // The PATCH was cut, so the client never learns the session's new state token, and
  // distribution 2.8 cancels only with the current one (a stale one: 404 BLOB_UPLOAD_INVALID,
  // and its Cancel runs on an already closed writer). The part stays until the registry's
  // upload purge; all a client can do is ask, and leave nothing else behind.
  const seen = reg.requests().slice(from)
  const cut = seen.find((q) => /^PATCH \/v2\/cutpush\/blobs\/uploads\/\S+ 500/.test(q))?.split(/[/?]/)[5]
  t.ok(cut, 'the cut PATCH is in the log')
  t.ok(seen.some((q) => q.startsWith(`DELETE /v2/cutpush/blobs/uploads/${cut ?? '-'}?`)), 'a DELETE of that session was sent')
  t.same(await uploadsLeft(reg, 'cutpush'), [cut], 'no other upload session left in the registry')
  t.same(await workDirs(), dirs, 'no work dir left in /tmp')
})

for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  t.test(`${signal} during a push: the interrupt's exit code, no tag, no work dir, the upload cancelled`, async (t) => {
    const { reg, proxy } = await plainWithProxy(t)
    const dirs = await workDirs()
    // A slow link: the 3 MB layer takes a second and a half to go up; the signal comes after 1 MB,
    // and what is already on its way drains within the 5 s dflatten waits for the answer.
    const limit = 1024 * 1024
    proxy.upRate = 2 * 1024 * 1024
    const repo = `sig${signal.toLowerCase()}`
    const from = reg.requests().length
    const child = spawnDflatten([`docker://${reg.host}/app:1`, '--base', `docker://${reg.host}/base:1`, '-t', `docker://${proxy.host}/${repo}:flat`], { env: noConfig() })
    let stderr = ''
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
    const pushing = await waitFor(async () => proxy.toRegistry >= limit || child.exitCode !== null, 60_000)
    t.ok(pushing && child.exitCode === null, 'the run is in the middle of the push')
    const started = Date.now()
    child.kill(signal)
    const r = await child
    t.equal(r.exitCode, code, `exit code ${code}`)
    t.match(stderr, /interrupted by/, 'says it was interrupted')
    t.ok(Date.now() - started < 20_000, 'and ends soon')
    t.equal(await rawManifest(`docker://${reg.host}/${repo}:flat`), null, 'no tag')
    t.same(await workDirs(), dirs, 'no work dir left in /tmp')
    await cancelled(t, reg, repo, from)
  })
}

t.test('a daemonless source refuses a daemon target and --output: one line, exit 2', async (t) => {
  const reg = await startRegistry()
  t.teardown(() => reg.stop())
  await seed(reg.host)
  const src = [`docker://${reg.host}/app:1`, '--base', `docker://${reg.host}/base:1`]
  const from = reg.requests().length
  failed(t, await dflatten([...src, '-t', 'dft-regfaults-bare:1'], { env: noConfig() }), 2, /read without a daemon.*not to the local daemon/, 'a bare -t name')
  const out = join(work, 'out.tar')
  failed(t, await dflatten([...src, '--output', out], { env: noConfig() }), 2, /read without a daemon.*not to an archive/, '--output')
  t.equal(await stat(out).catch(() => null), null, 'no archive left')
  t.equal(await stat(`${out}.dflatten-partial`).catch(() => null), null, 'no partial archive left')
  const oci = [`oci:${layout}:app`, '--base', `oci:${layout}:base`]
  failed(t, await dflatten([...oci, '-t', 'dft-regfaults-bare:1'], { env: noConfig() }), 2, /read without a daemon/, 'an oci: source, a bare -t name')
  failed(t, await dflatten([...oci, '--output', out], { env: noConfig() }), 2, /read without a daemon/, 'an oci: source, --output')
  t.same(reg.requests().slice(from).filter((q) => /^(PUT|POST|PATCH)/.test(q)), [], 'nothing was written to the registry')
})
