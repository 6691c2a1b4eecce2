/**
 * HTTP to one registry host, over undici: which scheme (HTTPS always, plain HTTP only where
 * Docker allows it), which CAs, and bounded retries of requests that can be sent again. It knows
 * nothing of the Distribution API; it turns failures into one-line DflattenErrors that name what
 * was being done.
 */
import { readdir, readFile } from 'node:fs/promises'
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls'
import { join } from 'node:path'
import { isIP } from 'node:net'
import { Readable } from 'node:stream'
import { Agent, request, type Dispatcher } from 'undici'
import { DflattenError } from '../errors.js'

/** How to reach one registry host. */
export interface TransportOptions {
  /** `host[:port]` of the registry API. */
  host: string
  /**
   * A directory laid out as Docker's `/etc/docker/certs.d/HOST/`: `*.crt` are CAs trusted on top
   * of the system's, `NAME.cert` + `NAME.key` a client certificate. Missing is fine.
   */
  certDir?: string
  /**
   * Insecure registries (`host[:port]`, as `--insecure-registry`): plain HTTP is allowed and
   * TLS certificates are not verified. Loopback hosts get plain HTTP without this, never the
   * unverified TLS.
   */
  insecure?: string[]
  /** Attempts for a request that can be repeated (default 4), and the time they may take (default 30 s). */
  retries?: { attempts?: number; maxMillis?: number; baseMillis?: number }
  /** Connect timeout in ms (default 15 s). */
  connectTimeout?: number
}

/** One request. A `Readable` body cannot be sent twice, so such a request is never retried. */
export interface HttpRequest {
  method: Dispatcher.HttpMethod
  url: URL
  headers?: Record<string, string>
  body?: Buffer | Readable
  signal?: AbortSignal
  /** What this request is for, as the message should start: `127.0.0.1:5000/app:1`. */
  what: string
}

/** A response; its body must be consumed or dumped by the caller. */
export interface HttpResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Dispatcher.ResponseData['body']
  url: URL
}

const RETRY_STATUS = new Set([500, 502, 503, 504])
const RETRY_ERRORS = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH',
  'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_CLOSED',
])

/**
 * Docker's rule: plain HTTP only for localhost, 127.0.0.0/8 and ::1, or hosts the user named as
 * insecure. Anything else is HTTPS or nothing.
 */
export function allowsPlainHttp(host: string, insecure: string[] = []): boolean {
  if (insecure.includes(host)) return true
  const name = hostName(host)
  if (name === 'localhost') return true
  if (isIP(name) === 4) return name.startsWith('127.')
  return isIP(name) === 6 && /^(0*:)*:?0*1$/.test(name)
}

/** The host name of `host[:port]`, without brackets for IPv6. */
export function hostName(host: string): string {
  const m = /^\[([^\]]+)\](?::\d+)?$/.exec(host)
  if (m) return m[1]
  if (isIP(host) === 6) return host
  return host.replace(/:\d+$/, '')
}

/** HTTP to one registry host (and the token servers it sends us to). Call `close()` when done. */
export class Transport {
  readonly host: string
  private readonly options: TransportOptions
  private agent?: Promise<Agent>
  /** `https:` or `http:`, settled by `ping`. */
  scheme: 'https:' | 'http:' = 'https:'

  constructor(options: TransportOptions) {
    this.options = options
    this.host = options.host
  }

  /** Whether plain HTTP may be tried for this host. */
  get plainHttpAllowed(): boolean {
    return allowsPlainHttp(this.host, this.options.insecure)
  }

  /** A URL on this registry: `/v2/...` with the settled scheme. */
  url(path: string): URL {
    return new URL(`${this.scheme}//${this.host}${path}`)
  }

  /**
   * Settle the scheme with a first `GET /v2/`: HTTPS, and plain HTTP where allowed when the
   * host does not speak TLS. Returns that response (its body already read), whose challenge
   * tells which authentication the registry wants.
   */
  async ping(what: string, signal?: AbortSignal): Promise<{ status: number; headers: HttpResponse['headers'] }> {
    const attempt = async (): Promise<{ status: number; headers: HttpResponse['headers'] }> => {
      const r = await this.send({ method: 'GET', url: this.url('/v2/'), what, signal })
      await r.body.dump()
      return { status: r.status, headers: r.headers }
    }
    if (!this.plainHttpAllowed) return attempt()
    try {
      return await attempt()
    } catch (e) {
      // Refused or untrusted: plain HTTP would only hide what is wrong.
      if (noPlainHttpFallback(e)) throw e
      this.scheme = 'http:'
      try {
        return await attempt()
      } catch {
        this.scheme = 'https:'
        throw e
      }
    }
  }

  /**
   * Send a request; a 5xx or a dropped connection is retried with backoff when the body can
   * be sent again, within the attempt and time bounds. Any status comes back as a response;
   * only the network failing is thrown.
   */
  async send(req: HttpRequest): Promise<HttpResponse> {
    const repeatable = !(req.body instanceof Readable)
    const attempts = repeatable ? (this.options.retries?.attempts ?? 4) : 1
    const deadline = Date.now() + (this.options.retries?.maxMillis ?? 30_000)
    const base = this.options.retries?.baseMillis ?? 200
    const dispatcher = await this.dispatcher()
    for (let i = 1; ; i++) {
      let res: Dispatcher.ResponseData
      try {
        res = await request(req.url, {
          method: req.method,
          headers: req.headers,
          body: req.body,
          signal: req.signal,
          dispatcher,
        })
      } catch (e) {
        if (req.signal?.aborted) throw abortReason(req.signal, req.what)
        const code = errorCode(e)
        const wait = base * 2 ** (i - 1)
        if (i < attempts && RETRY_ERRORS.has(code) && Date.now() + wait < deadline) {
          await sleep(wait)
          continue
        }
        throw networkError(req, e, repeatable)
      }
      if (i < attempts && RETRY_STATUS.has(res.statusCode)) {
        const wait = retryAfter(res.headers) ?? base * 2 ** (i - 1)
        if (Date.now() + wait < deadline) {
          await res.body.dump()
          await sleep(wait)
          continue
        }
      }
      return { status: res.statusCode, headers: res.headers, body: res.body, url: req.url }
    }
  }

  /** Close the connections. */
  async close(): Promise<void> {
    if (this.agent) await (await this.agent).close()
  }

  private dispatcher(): Promise<Agent> {
    this.agent ??= this.makeAgent()
    return this.agent
  }

  private async makeAgent(): Promise<Agent> {
    const secureContext = await secureContextFor(this.options.certDir)
    const insecure = this.options.insecure?.includes(this.host) ?? false
    return new Agent({
      connect: { secureContext, rejectUnauthorized: !insecure, timeout: this.options.connectTimeout ?? 15_000 },
      headersTimeout: 120_000,
      bodyTimeout: 120_000,
    })
  }
}

/**
 * One TLS context per cert dir for the whole process: made from some 300 CAs it costs a tenth of
 * a second and megabytes, and every registry client (source, base, target) would make its own.
 */
const contexts = new Map<string, Promise<SecureContext>>()

function secureContextFor(certDir?: string): Promise<SecureContext> {
  const key = certDir ?? ''
  let made = contexts.get(key)
  if (!made) {
    made = tlsOptions(certDir).then((o) => createSecureContext(o))
    contexts.set(key, made)
    made.catch(() => contexts.delete(key))
  }
  return made
}

/** The system's CAs, Node's bundle, and the `*.crt` of the cert dir; its client certificate. */
async function tlsOptions(certDir?: string): Promise<{ ca: string[]; cert?: string; key?: string }> {
  const ca = [...rootCertificates]
  for (const bundle of ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt']) {
    try {
      ca.push(await readFile(bundle, 'utf8'))
      break
    } catch {
      // not this distribution's path
    }
  }
  if (!certDir) return { ca }
  let names: string[]
  try {
    names = (await readdir(certDir)).sort()
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { ca }
    throw new DflattenError('host', `cannot read the certificate directory ${certDir}: ${(e as Error).message}`)
  }
  let cert: string | undefined
  let key: string | undefined
  for (const n of names) {
    if (n.endsWith('.crt')) ca.push(await readFile(join(certDir, n), 'utf8'))
    if (n.endsWith('.cert')) {
      const keyName = `${n.slice(0, -'.cert'.length)}.key`
      if (!names.includes(keyName)) throw new DflattenError('usage', `${join(certDir, n)} has no ${keyName} beside it`)
      cert = await readFile(join(certDir, n), 'utf8')
      key = await readFile(join(certDir, keyName), 'utf8')
    }
  }
  return { ca, cert, key }
}

function errorCode(e: unknown): string {
  const err = e as { code?: string; cause?: { code?: string } } | null | undefined
  return err?.cause?.code ?? err?.code ?? ''
}

/**
 * The network failed (no HTTP answer). `networkCode` is Node's or undici's code (ECONNREFUSED,
 * ERR_SSL_..., UND_ERR_SOCKET); `certificate` says the TLS peer was not trusted, which no
 * fallback to plain HTTP may hide.
 */
export class NetworkError extends DflattenError {
  readonly networkCode: string
  readonly certificate: boolean
  constructor(message: string, networkCode: string, certificate: boolean) {
    super('registry', message)
    this.networkCode = networkCode
    this.certificate = certificate
  }
}

function noPlainHttpFallback(e: unknown): boolean {
  return !(e instanceof NetworkError) || e.certificate || e.networkCode === 'ECONNREFUSED'
}

const CERT_CODES = /^(CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT|ERR_TLS_CERT_ALTNAME_INVALID)/

function networkError(req: HttpRequest, e: unknown, repeatable: boolean): DflattenError {
  if (e instanceof DflattenError) return e
  const code = errorCode(e)
  const err = e as { message?: string; cause?: Error }
  const detail = (err.cause?.message ?? err.message ?? String(e)).split('\n')[0]
  const host = req.url.host
  if (code === 'ECONNREFUSED') return new NetworkError(`${req.what}: cannot connect to registry ${host} (connection refused)`, code, false)
  if (CERT_CODES.test(code)) {
    return new NetworkError(`${req.what}: registry ${host}'s TLS certificate is not trusted (${detail}); put its CA in the cert dir as a .crt file`, code, true)
  }
  const during = !repeatable ? ' while sending data' : ''
  const why = code && detail && !detail.includes(code) ? `${code}: ${detail}` : code || detail
  return new NetworkError(`${req.what}: connection to registry ${host} failed${during} (${why})`, code, false)
}

function abortReason(signal: AbortSignal, what: string): DflattenError {
  const r: unknown = signal.reason
  if (r instanceof DflattenError) return r
  return new DflattenError('interrupted', `${what}: cancelled`)
}

function retryAfter(headers: HttpResponse['headers']): number | undefined {
  const v = headers['retry-after']
  const s = Array.isArray(v) ? v[0] : v
  if (!s || !/^\d+$/.test(s)) return undefined
  return Math.min(Number(s) * 1000, 10_000)
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

/** The one value of a response header (the first, when it came several times). */
export function header(headers: HttpResponse['headers'], name: string): string | undefined {
  const v = headers[name.toLowerCase()]
  return Array.isArray(v) ? v[0] : v
}
