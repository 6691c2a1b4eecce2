// The registry layer's pure parts: references, challenges, the plain-HTTP rule, and the Docker
// config's credentials (auths, credHelpers and credsStore through a helper program).
import t from 'tap'
import { chmod, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { allowsPlainHttp, findPlatform, formatRef, loadCredentials, parseChallenges, parseRegistryRef, withReference } from '../../src/registry/index.js'
import { tempDir } from '../helpers/registry.js'

const D = 'sha256:' + 'a'.repeat(64)

t.test('references', async (t) => {
  t.same(parseRegistryRef('docker://127.0.0.1:5000/app:1'), { registry: '127.0.0.1:5000', apiHost: '127.0.0.1:5000', repository: 'app', tag: '1', digest: undefined })
  t.same(parseRegistryRef('busybox'), { registry: 'docker.io', apiHost: 'registry-1.docker.io', repository: 'library/busybox', tag: undefined, digest: undefined })
  t.same(parseRegistryRef('docker://me/app:2'), { registry: 'docker.io', apiHost: 'registry-1.docker.io', repository: 'me/app', tag: '2', digest: undefined })
  t.equal(parseRegistryRef('docker://index.docker.io/busybox').repository, 'library/busybox')
  t.same(parseRegistryRef(`docker://localhost/a/b/c:t@${D}`), { registry: 'localhost', apiHost: 'localhost', repository: 'a/b/c', tag: 't', digest: D })
  t.equal(parseRegistryRef('docker://[::1]:5000/app').registry, '[::1]:5000')
  t.equal(parseRegistryRef('docker://ghcr.io/o/app').repository, 'o/app', 'no library/ outside Docker Hub')
  t.equal(formatRef(parseRegistryRef('app')), 'docker.io/library/app')
  t.equal(formatRef(withReference(parseRegistryRef('h:1/app:1'), D)), `h:1/app@${D}`)
  for (const bad of ['docker://', 'docker://h:1/', 'docker://h:1/App', 'app:bad tag', 'app@sha256:12', 'docker:///app', 'a//b', 'docker://h:1/app:']) {
    t.throws(() => parseRegistryRef(bad), { code: 'usage', message: new RegExp(`: ${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(`) }, bad)
  }
})

t.test("an index's platform is matched as --platform is on a daemon", async (t) => {
  const entry = (digest: string, platform: { os: string; architecture: string; variant?: string }) => ({ mediaType: 'm', digest, size: 1, platform })
  const index = { schemaVersion: 2 as const, manifests: [entry('amd', { os: 'linux', architecture: 'amd64' }), entry('arm', { os: 'linux', architecture: 'arm64' })] }
  t.equal(findPlatform(index, 'linux/arm64/v8')?.digest, 'arm', "arm64's variant v8 is the one meant when none is listed")
  t.equal(findPlatform(index, 'linux/x86_64')?.digest, 'amd', 'an architecture alias')
  t.equal(findPlatform(index, 'linux/s390x'), undefined)
  t.equal(findPlatform(index, 'linux'), undefined, 'no architecture, no match')
})

t.test('WWW-Authenticate challenges', async (t) => {
  t.same(parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/x:pull"'), [
    { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/x:pull' } },
  ])
  t.same(parseChallenges('Basic realm="Registry Realm"'), [{ scheme: 'basic', params: { realm: 'Registry Realm' } }])
  t.same(parseChallenges(['Basic realm="a", Bearer realm="b",error=invalid_token']), [
    { scheme: 'basic', params: { realm: 'a' } },
    { scheme: 'bearer', params: { realm: 'b', error: 'invalid_token' } },
  ])
  t.same(parseChallenges(undefined), [])
})

t.test('plain HTTP only where Docker allows it', async (t) => {
  for (const h of ['localhost', 'localhost:5000', '127.0.0.1:5000', '127.9.8.7', '[::1]:5000', '::1']) t.ok(allowsPlainHttp(h), h)
  for (const h of ['registry.example.com', '10.0.0.1:5000', 'localhost.example.com', '128.0.0.1', '[::2]:5000']) t.notOk(allowsPlainHttp(h), h)
  t.ok(allowsPlainHttp('registry.lan:5000', ['registry.lan:5000']), 'named insecure')
})

t.test('credentials from the Docker config', async (t) => {
  const { dir, remove } = await tempDir('dflatten-cred-test-')
  t.teardown(remove)
  t.equal(await loadCredentials(join(dir, 'none'), 'h:1'), undefined, 'no config is anonymous')
  const bin = join(dir, 'bin')
  await mkdir(bin)
  // A helper that knows one server, answers "not found" for the rest, and logs what it was asked.
  await writeFile(
    join(bin, 'docker-credential-fake'),
    `#!/bin/sh\n[ "$1" = get ] || exit 2\nread s\necho "$s" >> ${join(dir, 'asked')}\ncase "$s" in\n  helped:1) echo '{"ServerURL":"helped:1","Username":"hu","Secret":"hs"}' ;;\n  tok:1) echo '{"ServerURL":"tok:1","Username":"<token>","Secret":"refresh"}' ;;\n  https://index.docker.io/v1/) echo '{"Username":"hub","Secret":"hubs"}' ;;\n  *) echo 'credentials not found in native keychain'; exit 1 ;;\nesac\n`,
  )
  await chmod(join(bin, 'docker-credential-fake'), 0o755)
  // Found on PATH but not runnable: spawn says EACCES.
  await writeFile(join(bin, 'docker-credential-noexec'), '#!/bin/sh\n')
  await chmod(join(bin, 'docker-credential-noexec'), 0o644)
  const path = process.env.PATH
  process.env.PATH = `${bin}:${path}`
  t.teardown(() => void (process.env.PATH = path))
  await writeFile(
    join(dir, 'config.json'),
    JSON.stringify({
      auths: {
        'plain:1': { auth: Buffer.from('u:p:with:colons').toString('base64') },
        'https://schemed:2/v1/': { username: 'su', password: 'sp' },
        'ident:1': { identitytoken: 'it' },
        'other:1': {},
      },
      credHelpers: { 'helped:1': 'fake', 'tok:1': 'fake', 'missing:1': 'fake', 'nohelper:1': 'absent-helper', 'noexec:1': 'noexec' },
    }),
  )
  t.same(await loadCredentials(dir, 'plain:1'), { kind: 'basic', username: 'u', password: 'p:with:colons' })
  t.same(await loadCredentials(dir, 'schemed:2'), { kind: 'basic', username: 'su', password: 'sp' }, 'keys compared by host')
  t.same(await loadCredentials(dir, 'ident:1'), { kind: 'identity-token', username: undefined, token: 'it' })
  t.equal(await loadCredentials(dir, 'other:1'), undefined)
  t.equal(await loadCredentials(dir, 'unknown:1'), undefined)
  t.same(await loadCredentials(dir, 'helped:1'), { kind: 'basic', username: 'hu', password: 'hs' }, 'credHelpers')
  t.same(await loadCredentials(dir, 'tok:1'), { kind: 'identity-token', token: 'refresh' }, '<token> user is an identity token')
  t.equal(await loadCredentials(dir, 'missing:1'), undefined, 'a helper without the server is anonymous')
  await t.rejects(loadCredentials(dir, 'nohelper:1'), { code: 'tool-missing', message: /docker-credential-absent-helper is not installed/ })
  await t.rejects(loadCredentials(dir, 'noexec:1'), { code: 'tool-missing', message: /docker-credential-noexec is not installed/ }, 'a helper that cannot be run')

  await writeFile(join(dir, 'config.json'), JSON.stringify({ credsStore: 'fake', auths: { 'plain:1': { auth: Buffer.from('a:b').toString('base64') } } }))
  t.same(await loadCredentials(dir, 'docker.io'), { kind: 'basic', username: 'hub', password: 'hubs' }, 'credsStore, Docker Hub under its v1 key')
  t.same(await loadCredentials(dir, 'plain:1'), { kind: 'basic', username: 'a', password: 'b' }, 'the store has nothing: auths')

  await writeFile(join(dir, 'config.json'), '{not json')
  await t.rejects(loadCredentials(dir, 'plain:1'), { code: 'usage' })
})

t.test('5xx is retried within bounds; a streamed body is not sent twice', async (t) => {
  const { createServer } = await import('node:http')
  const { Readable } = await import('node:stream')
  const { connect: open } = await import('../../src/registry/index.js')
  let manifestCalls = 0
  let patchCalls = 0
  const srv = createServer((req, res) => {
    if (req.url === '/v2/') return res.end('{}')
    if (req.url?.startsWith('/v2/app/manifests/')) {
      manifestCalls++
      if (manifestCalls < 3 || req.url.endsWith('/down')) return res.writeHead(503).end()
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' })
      return res.end('{"schemaVersion":2}')
    }
    if (req.method === 'POST') return res.writeHead(202, { location: '/v2/app/blobs/uploads/u1' }).end()
    if (req.method === 'PATCH') {
      patchCalls++
      req.resume()
      return req.on('end', () => res.writeHead(503).end())
    }
    if (req.method === 'DELETE') return res.writeHead(204).end()
    return res.writeHead(404).end()
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => (srv.closeAllConnections(), srv.close(() => r()))))
  const host = `127.0.0.1:${(srv.address() as { port: number }).port}`
  const c = await open(parseRegistryRef(`docker://${host}/app:1`), { retries: { attempts: 4, baseMillis: 20 } })
  t.equal((await c.getManifest()).bytes.toString(), '{"schemaVersion":2}', 'third time lucky')
  t.equal(manifestCalls, 3)
  manifestCalls = 0
  await t.rejects(c.getManifest('down'), { code: 'registry', message: `${host}/app:down: registry ${host} answered 503` })
  t.equal(manifestCalls, 4, 'bounded')
  await t.rejects(c.upload(Readable.from([Buffer.from('data')])), { code: 'registry', message: /answered 503/ })
  t.equal(patchCalls, 1, 'the PATCH is not repeated')
  await c.session.close()
})
