// Real registries for the registry tests: Debian's docker-registry (distribution 2.8) on
// 127.0.0.1 with a free port and a temp root, plain HTTP, TLS + htpasswd, or token auth with a
// tiny token server here that signs RS256 JWTs with an x5c chain. Also a TCP proxy that cuts
// connections after N bytes (or stalls them). Everything is stopped and removed by `stop()`.
import type { Test } from 'tap'
import { execa, type ResultPromise } from 'execa'
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http'
import { createServer as createTcpServer, connect as tcpConnect, type AddressInfo, type Socket } from 'node:net'
import { createSign, X509Certificate } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A free TCP port on 127.0.0.1 (closed again; the registry binds it right after). */
export async function freePort(): Promise<number> {
  const srv = createTcpServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const port = (srv.address() as AddressInfo).port
  await new Promise<void>((r) => srv.close(() => r()))
  return port
}

async function waitForPort(port: number, ms: number, alive: () => boolean): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (!alive()) throw new Error('the registry exited while starting')
    const ok = await new Promise<boolean>((r) => {
      const s = tcpConnect(port, '127.0.0.1')
      s.once('connect', () => {
        s.destroy()
        r(true)
      })
      s.once('error', () => r(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms} ms`)
}

/** A CA, and files made with it: a server certificate for 127.0.0.1 and a token signer. */
export interface Pki {
  dir: string
  caCrt: string
  serverCrt: string
  serverKey: string
  signerCrt: string
  signerKey: string
}

/** Make a CA and, signed by it, a server certificate (SAN 127.0.0.1, localhost) and a JWT signing certificate. */
export async function makePki(dir: string): Promise<Pki> {
  const f = (n: string): string => join(dir, n)
  const ssl = (args: string[]): Promise<unknown> => execa('openssl', args, { cwd: dir })
  await ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=dflatten test CA'])
  await writeFile(f('san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n')
  for (const [name, ext] of [['server', ['-extfile', 'san.ext']], ['signer', []]] as const) {
    await ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=dflatten test ${name}`])
    await ssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', ...ext])
  }
  return { dir, caCrt: f('ca.crt'), serverCrt: f('server.crt'), serverKey: f('server.key'), signerCrt: f('signer.crt'), signerKey: f('signer.key') }
}

export interface RegistryOptions {
  /** Serve HTTPS with this PKI's server certificate. */
  tls?: Pki
  /** htpasswd users (bcrypt); distribution wants TLS for this. */
  users?: Record<string, string>
  /** Token auth: the token server's realm, and the PKI whose CA signs its signer. */
  token?: { realm: string; service: string; issuer: string; pki: Pki }
}

export interface TestRegistry {
  /** `127.0.0.1:PORT`. */
  host: string
  port: number
  root: string
  /** The registry's stderr so far (its access log is there). */
  log(): string
  /** Access log lines (`"METHOD /path HTTP/1.1" status`) so far, as `METHOD /path`. */
  requests(): string[]
  stop(): Promise<void>
}

/** Start docker-registry with a fresh root dir; `stop()` kills it and removes the dir. */
export async function startRegistry(options: RegistryOptions = {}): Promise<TestRegistry> {
  const root = await mkdtemp(join(tmpdir(), 'dflatten-registry-test-'))
  const port = await freePort()
  const lines = [
    'version: 0.1',
    'log:',
    '  level: info',
    '  accesslog:',
    '    disabled: false',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(root, 'data')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    `  secret: dflatten-test-secret`,
  ]
  if (options.tls) lines.push('  tls:', `    certificate: ${options.tls.serverCrt}`, `    key: ${options.tls.serverKey}`)
  if (options.users) {
    const file = join(root, 'htpasswd')
    let text = ''
    for (const [u, p] of Object.entries(options.users)) text += (await execa('htpasswd', ['-Bbn', u, p])).stdout.trim() + '\n'
    await writeFile(file, text)
    lines.push('auth:', '  htpasswd:', '    realm: dflatten-test', `    path: ${file}`)
  } else if (options.token) {
    const t = options.token
    lines.push('auth:', '  token:', `    realm: ${t.realm}`, `    service: ${t.service}`, `    issuer: ${t.issuer}`, `    rootcertbundle: ${t.pki.caCrt}`)
  }
  const config = join(root, 'config.yml')
  await writeFile(config, lines.join('\n') + '\n')
  let stderr = ''
  const proc: ResultPromise = execa('docker-registry', ['serve', config], { reject: false, buffer: false, stdin: 'ignore' })
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
  proc.stdout?.on('data', (d: Buffer) => (stderr += d.toString()))
  let exited = false
  void proc.then(() => (exited = true))
  try {
    await waitForPort(port, 20_000, () => !exited)
  } catch (e) {
    proc.kill('SIGKILL')
    await rm(root, { recursive: true, force: true })
    throw new Error(`${(e as Error).message}\n${stderr}`)
  }
  return {
    host: `127.0.0.1:${port}`,
    port,
    root,
    log: () => stderr,
    requests: () => [...stderr.matchAll(/"([A-Z]+) (\S+) HTTP\/[\d.]+" (\d+)/g)].map((m) => `${m[1]} ${m[2]} ${m[3]}`),
    stop: async () => {
      if (!exited) {
        proc.kill('SIGTERM')
        await Promise.race([proc, new Promise((r) => setTimeout(r, 5000))])
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the exit handler sets it while this awaits
        if (!exited) proc.kill('SIGKILL')
        await proc
      }
      await rm(root, { recursive: true, force: true })
    },
  }
}

export interface TokenServer {
  realm: string
  /** Token requests so far: the scopes asked and whether Basic credentials came. */
  requests: { scopes: string[]; user?: string; method: string }[]
  /** Make the next token already expired (past distribution's 60 s leeway). */
  expireNext(): void
  stop(): Promise<void>
}

/**
 * A token server for distribution's `auth: token`: Basic credentials (or anonymous, pull only)
 * give an RS256 JWT whose x5c header holds the signer certificate the registry's root bundle
 * trusts. An identity token (POST, grant_type=refresh_token) stands for `refreshUser`.
 */
export async function startTokenServer(opts: {
  pki: Pki
  service: string
  issuer: string
  users: Record<string, string>
  refreshTokens?: Record<string, string>
  /** Whether anonymous users may pull a repository (default: no access at all). */
  anonymousPull?: (repo: string) => boolean
}): Promise<TokenServer> {
  const key = await readFile(opts.pki.signerKey, 'utf8')
  const der = new X509Certificate(await readFile(opts.pki.signerCrt)).raw.toString('base64')
  const requests: TokenServer['requests'] = []
  let expire = false
  const b64u = (b: Buffer | string): string => Buffer.from(b).toString('base64url')
  const sign = (sub: string, access: { type: string; name: string; actions: string[] }[]): string => {
    const now = Math.floor(Date.now() / 1000)
    const exp = expire ? now - 3600 : now + 300
    expire = false
    const head = b64u(JSON.stringify({ typ: 'JWT', alg: 'RS256', x5c: [der] }))
    const claims = b64u(JSON.stringify({ iss: opts.issuer, sub, aud: opts.service, exp, nbf: now - 10, iat: now, jti: String(Math.random()), access }))
    const s = createSign('RSA-SHA256').update(`${head}.${claims}`).sign(key)
    return `${head}.${claims}.${b64u(s)}`
  }
  const grant = (scopes: string[], user: string | undefined): { type: string; name: string; actions: string[] }[] =>
    scopes.flatMap((s) => {
      const [type, name, actions] = s.split(':')
      if (type !== 'repository') return []
      if (user) return [{ type, name, actions: actions.split(',') }]
      return opts.anonymousPull?.(name) ? [{ type, name, actions: ['pull'] }] : []
    })
  const body = (req: IncomingMessage): Promise<string> =>
    new Promise((r) => {
      let s = ''
      req.on('data', (d: Buffer) => (s += d.toString()))
      req.on('end', () => r(s))
    })
  // eslint-disable-next-line @typescript-eslint/no-misused-promises -- a test server: a failure here is an unhandled rejection, which fails the run loudly
  const server: Server = createHttpServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x')
    const reply = (status: number, json: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify(json))
    }
    if (url.pathname !== '/token') { reply(404, {}); return; }
    if (url.searchParams.get('service') !== opts.service && req.method === 'GET') { reply(400, { error: 'bad service' }); return; }
    if (req.method === 'POST') {
      const form = new URLSearchParams(await body(req))
      const user = opts.refreshTokens?.[form.get('refresh_token') ?? '']
      const scopes = (form.get('scope') ?? '').split(' ').filter(Boolean)
      requests.push({ scopes, user, method: 'POST' })
      if (form.get('grant_type') !== 'refresh_token' || !user) { reply(401, { error: 'invalid_grant' }); return; }
      reply(200, { access_token: sign(user, grant(scopes, user)), expires_in: 300 }); return;
    }
    const scopes = url.searchParams.getAll('scope')
    let user: string | undefined
    const auth = req.headers.authorization
    if (auth?.startsWith('Basic ')) {
      const [u, p] = Buffer.from(auth.slice(6), 'base64').toString().split(':')
      if (opts.users[u] !== p) {
        requests.push({ scopes, user: u, method: 'GET' })
        reply(401, { error: 'wrong credentials' }); return;
      }
      user = u
    }
    requests.push({ scopes, user, method: 'GET' })
    reply(200, { token: sign(user ?? '', grant(scopes, user)), expires_in: 300, issued_at: new Date().toISOString() })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  return {
    realm: `http://127.0.0.1:${port}/token`,
    requests,
    expireNext: () => (expire = true),
    stop: () => new Promise((r) => (server.closeAllConnections(), server.close(() => r()))),
  }
}

export interface CuttingProxy {
  host: string
  /** Bytes from the registry before the cut; set per test. */
  cutAfter: number
  /** Bytes passed from clients to the registry so far, all connections. */
  toRegistry: number
  /**
   * Bytes a client may send on one connection before it is cut (`cut`) or left hanging, its
   * bytes no longer passed on (`stall`, a registry that stops reading); null: no limit.
   */
  upLimit: { bytes: number; then: 'cut' | 'stall' } | null
  /** Bytes per second a client may send on one connection (a slow link); null: as fast as it goes. */
  upRate: number | null
  stop(): Promise<void>
}

/**
 * A TCP proxy to `target` that passes requests through and cuts each connection once more than
 * `cutAfter` bytes came back from the registry on it (0 cuts nothing), or once the client sent
 * more than `upLimit` on it (cut, or stalled); `upRate` slows what clients send.
 */
export async function startCuttingProxy(target: number, cutAfter = 0): Promise<CuttingProxy> {
  const sockets = new Set<Socket>()
  const proxy: CuttingProxy = { host: '', cutAfter, toRegistry: 0, upLimit: null, upRate: null, stop: async () => undefined }
  const server = createTcpServer((client) => {
    const upstream = tcpConnect(target, '127.0.0.1')
    sockets.add(client).add(upstream)
    let n = 0
    let up = 0
    client.on('data', (d: Buffer) => {
      const limit = proxy.upLimit
      if (limit && up + d.length > limit.bytes) {
        const part = d.subarray(0, Math.max(0, limit.bytes - up))
        up = limit.bytes
        proxy.toRegistry += part.length
        upstream.write(part)
        // A stalled connection reads nothing more: the client's sends back up as they would.
        if (limit.then === 'stall') client.pause()
        else {
          client.destroy()
          upstream.destroy()
        }
        return
      }
      up += d.length
      proxy.toRegistry += d.length
      // As pipe() would: stop reading the client while the registry's side is full.
      if (!upstream.write(d)) client.pause()
      else if (proxy.upRate) {
        client.pause()
        setTimeout(() => client.resume(), (1000 * d.length) / proxy.upRate)
      }
    })
    upstream.on('drain', () => {
      if (!proxy.upLimit || up < proxy.upLimit.bytes) client.resume()
    })
    client.on('end', () => upstream.end())
    upstream.on('data', (d: Buffer) => {
      if (proxy.cutAfter > 0 && n + d.length > proxy.cutAfter) {
        client.write(d.subarray(0, Math.max(0, proxy.cutAfter - n)))
        n = proxy.cutAfter
        client.destroy()
        upstream.destroy()
        return
      }
      n += d.length
      client.write(d)
    })
    const end = (): void => {
      client.destroy()
      upstream.destroy()
    }
    upstream.on('end', () => client.end())
    upstream.on('error', end)
    client.on('error', end)
    client.on('close', () => (upstream.destroy(), sockets.delete(client)))
    upstream.on('close', () => sockets.delete(upstream))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  proxy.host = `127.0.0.1:${(server.address() as AddressInfo).port}`
  proxy.stop = () =>
    new Promise((r) => {
      for (const s of sockets) s.destroy()
      server.close(() => r())
    })
  return proxy
}

/**
 * The upload sessions a repository still has in the registry's storage: those with data or a
 * start time (distribution 2.8 leaves an empty hash state file behind a cancelled one).
 */
export async function uploadsLeft(r: TestRegistry, repo: string): Promise<string[]> {
  const dir = join(r.root, 'data/docker/registry/v2/repositories', repo, '_uploads')
  const names = await readdir(dir).catch(() => [] as string[])
  const left: string[] = []
  for (const n of names) {
    const inside = await readdir(join(dir, n)).catch(() => [] as string[])
    if (inside.includes('data') || inside.includes('startedat')) left.push(n)
  }
  return left
}

/** A temp dir removed by the returned function. */
export async function tempDir(prefix: string): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) }
}

/** A temp dir for the test `t` (a file's root test: all of them), removed when it ends. */
export async function useTempDir(t: Test, prefix: string): Promise<string> {
  const tmp = await tempDir(prefix)
  t.teardown(tmp.remove)
  return tmp.dir
}

/** A registry for the test `t` (a file's root test: all of them), stopped when it ends. */
export async function useRegistry(t: Test, options: RegistryOptions = {}): Promise<TestRegistry> {
  const reg = await startRegistry(options)
  t.teardown(() => reg.stop())
  return reg
}

/** The promise fails with a DflattenError of `code` whose message is one line matching `re`. */
export async function failsWith(t: Test, p: Promise<unknown>, code: string, re: RegExp): Promise<void> {
  try {
    await p
    t.fail(`expected a ${code} error`)
  } catch (e) {
    const err = e as { code?: string; message: string }
    t.equal(err.code, code, err.message)
    t.notMatch(err.message, /\n/, 'one line')
    t.match(err.message, re)
  }
}
