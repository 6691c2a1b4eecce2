// Authentication and TLS against real registries: TLS with a CA made here and htpasswd users
// (Basic), and token auth with a token server here that signs RS256 JWTs (Bearer): cached per
// scope, asked again once after a 401, refused credentials as one line.
import t from 'tap'
import { mkdir, copyFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { connect, parseRegistryRef, type ConnectOptions } from '../../../src/registry/index.js'
import { failsWith, makePki, startTokenServer, useRegistry, useTempDir, type Pki, type TestRegistry, type TokenServer } from '../../helpers/registry.js'
import { makeImage, pushImage, sha } from '../../helpers/registry-image.js'

const fast: ConnectOptions = { retries: { attempts: 2, baseMillis: 50, maxMillis: 2000 } }

let pki: Pki
let certDir: string
t.before(async () => {
  const tmp = await useTempDir(t, 'dflatten-pki-test-')
  pki = await makePki(tmp)
  certDir = join(tmp, 'certs.d')
  await mkdir(certDir)
  await copyFile(pki.caCrt, join(certDir, 'ca.crt'))
})

t.test('TLS and htpasswd (Basic)', async (t) => {
  const reg: TestRegistry = await useRegistry(t, { tls: pki, users: { alice: 'secret' } })
  const ref = parseRegistryRef(`docker://${reg.host}/app:1`)

  const ok = await connect(ref, { ...fast, certDir, credentials: { kind: 'basic', username: 'alice', password: 'secret' } })
  t.teardown(() => ok.session.close())
  const image = await makeImage([{ 'a': 'tls' }])
  await pushImage(ok, image, '1')
  t.same((await ok.getManifest()).bytes, image.manifest, 'pushed and read back over TLS')
  t.equal(ok.session.transport.scheme, 'https:', 'HTTPS, not the plain-HTTP fallback')

  // Credentials from a Docker config dir.
  const cfg = await useTempDir(t, 'dflatten-dockercfg-test-')
  await writeFile(join(cfg, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from('alice:secret').toString('base64') } } }))
  const fromConfig = await connect(ref, { ...fast, certDir, configDir: cfg })
  t.equal((await fromConfig.getManifest()).digest, image.digest, 'credentials from config.json')

  await failsWith(t, (await connect(ref, { ...fast, certDir, credentials: { kind: 'basic', username: 'alice', password: 'wrong' } })).getManifest(), 'registry', new RegExp(`^${reg.host}/app:1: registry ${reg.host} refused the credentials \\(401`))
  await failsWith(t, (await connect(ref, { ...fast, certDir })).getManifest(), 'registry', /wants a user name and password: log in with docker login/)
  await failsWith(t, (await connect(ref, { ...fast, credentials: { kind: 'basic', username: 'alice', password: 'secret' } })).getManifest(), 'registry', /TLS certificate is not trusted .*put its CA in the cert dir/)
  const insecure = await connect(ref, { ...fast, insecure: [reg.host], credentials: { kind: 'basic', username: 'alice', password: 'secret' } })
  t.equal((await insecure.getManifest()).digest, image.digest, 'an insecure host skips verification')
  t.same(await ok.tags(), ['1'])
  t.notOk(reg.requests().some((r) => r.startsWith('PUT /v2/app/manifests') && !r.endsWith(' 201')), 'no failed manifest push')
})

t.test('token auth (Bearer)', async (t) => {
  const service = 'dflatten-test-registry'
  const issuer = 'dflatten-test-issuer'
  const tokens: TokenServer = await startTokenServer({
    pki,
    service,
    issuer,
    users: { bob: 'hunter2' },
    refreshTokens: { 'refresh-bob': 'bob' },
    anonymousPull: (repo) => repo === 'public',
  })
  t.teardown(() => tokens.stop())
  const reg = await useRegistry(t, { token: { realm: tokens.realm, service, issuer, pki } })
  const bob = { kind: 'basic' as const, username: 'bob', password: 'hunter2' }

  const app = await connect(parseRegistryRef(`docker://${reg.host}/app:1`), { ...fast, credentials: bob })
  const image = await makeImage([{ 'a': 'token' }, { 'b': 'auth' }])
  await pushImage(app, image, '1')
  t.same((await app.getManifest()).bytes, image.manifest)
  const asked = tokens.requests.length
  t.ok(asked <= 3, `tokens are kept per scope (${asked} requests for a whole push and read)`)
  t.same(tokens.requests[0], { scopes: ['repository:app:pull'], user: 'bob', method: 'GET' })
  t.ok(tokens.requests.some((r) => r.scopes.includes('repository:app:pull,push')))

  // Mount across repositories: the token must cover both.
  const other = await connect(parseRegistryRef(`docker://${reg.host}/other:1`), { ...fast, session: app.session })
  t.equal(await other.copyBlob(app, sha(image.layers[0])), 'mounted')
  t.ok(tokens.requests.some((r) => r.scopes.includes('repository:other:pull,push') && r.scopes.includes('repository:app:pull')), 'one token for both repositories')

  // A token the registry refuses: asked again once, then it works.
  const fresh = await connect(parseRegistryRef(`docker://${reg.host}/app:1`), { ...fast, credentials: bob })
  tokens.expireNext()
  const n = tokens.requests.length
  t.equal((await fresh.getManifest()).digest, image.digest, 'refreshed after a 401')
  t.equal(tokens.requests.length, n + 2, 'one expired token, one fresh')

  // An identity token (OAuth2 refresh token) is POSTed.
  const ident = await connect(parseRegistryRef(`docker://${reg.host}/app:1`), { ...fast, credentials: { kind: 'identity-token', token: 'refresh-bob' } })
  t.equal((await ident.getManifest()).digest, image.digest)
  t.equal(tokens.requests.at(-1)?.method, 'POST')

  // Anonymous: pulls what the policy allows, is refused the rest, in one line.
  const anonApp = await connect(parseRegistryRef(`docker://${reg.host}/app:1`), fast)
  await failsWith(t, anonApp.getManifest(), 'registry', new RegExp(`^${reg.host}/app:1: registry ${reg.host} wants credentials \\(401`))
  const wrong = await connect(parseRegistryRef(`docker://${reg.host}/app:1`), { ...fast, credentials: { kind: 'basic', username: 'bob', password: 'nope' } })
  await failsWith(t, wrong.getManifest(), 'registry', new RegExp(`^${reg.host}/app:1: the token server of ${reg.host} refused the credentials \\(401\\)`))
  const pub = await connect(parseRegistryRef(`docker://${reg.host}/public:1`), { ...fast, credentials: bob })
  await pushImage(pub, image, '1')
  const anonPub = await connect(parseRegistryRef(`docker://${reg.host}/public:1`), fast)
  t.equal((await anonPub.getManifest()).digest, image.digest, 'anonymous pull where allowed')
  await failsWith(t, anonPub.putManifest('2', image.manifest, image.mediaType), 'registry', /wants credentials \(401/)
  t.same(await pub.tags(), ['1'], 'the refused push left no tag')
})
