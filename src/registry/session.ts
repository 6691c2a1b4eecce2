/**
 * One registry host, authenticated: the transport, the challenge learnt from `GET /v2/`, and
 * requests sent with the Authorization their scopes need (asked again once after a 401). Also
 * the one place a registry's error answer becomes a one-line message.
 */
import { DflattenError, type ErrorCode } from '../errors.js'
import { Authenticator } from './auth.js'
import type { Credentials } from './credentials.js'
import { Transport, type HttpRequest, type HttpResponse, type TransportOptions } from './transport.js'

/** How to reach and authenticate to one registry. */
export interface SessionOptions extends Omit<TransportOptions, 'host'> {
  /** The registry's name, as in references and the Docker config (`docker.io`, `host:port`). */
  registry: string
  /** The API host; defaults to `registry`. */
  apiHost?: string
  /** Who we are; undefined is anonymous. */
  credentials?: Credentials
}

/** A request to the registry, and the scopes it needs. */
export interface SessionRequest extends Omit<HttpRequest, 'url'> {
  /** A path (`/v2/...`) on this registry, or a full URL (a Location it gave). */
  url: string | URL
  scopes: string[]
}

/** An authenticated connection to one registry; share it between the repositories on it. */
export class RegistrySession {
  readonly registry: string
  readonly transport: Transport
  readonly auth: Authenticator
  private readonly hasCredentials: boolean
  private pinged?: Promise<void>

  constructor(options: SessionOptions) {
    this.registry = options.registry
    this.transport = new Transport({ ...options, host: options.apiHost ?? options.registry })
    this.auth = new Authenticator(this.transport, options.credentials, options.registry)
    this.hasCredentials = options.credentials !== undefined
  }

  /** The API's base URL once settled (`https://host/` or `http://host/`). */
  async baseUrl(what: string): Promise<URL> {
    await this.ready(what)
    return this.transport.url('/')
  }

  /** Ping `/v2/` once: settles HTTPS or HTTP, and learns the challenge. */
  ready(what: string, signal?: AbortSignal): Promise<void> {
    this.pinged ??= (async () => {
      const r = await this.transport.ping(what, signal)
      if (r.status === 401) this.auth.learn(r.headers)
      else if (r.status !== 200) {
        throw new DflattenError('registry', `${what}: ${this.transport.host} does not answer as a registry (GET /v2/ gave ${r.status})`)
      }
    })()
    // A failed ping is tried again by the next request, not remembered.
    this.pinged.catch(() => (this.pinged = undefined))
    return this.pinged
  }

  /** Send with authentication; a 401 is answered once more with a fresh token when that can help. */
  async send(req: SessionRequest): Promise<HttpResponse> {
    await this.ready(req.what, req.signal)
    const url = typeof req.url === 'string' ? this.transport.url(req.url) : req.url
    const sameHost = url.host === this.transport.host
    for (let attempt = 1; ; attempt++) {
      const headers = { ...req.headers }
      // A redirect elsewhere (blob storage) must not see our credentials.
      const authorization = sameHost ? await this.auth.authorization(req.scopes, req.what, req.signal) : undefined
      if (authorization) headers.authorization = authorization
      const res = await this.transport.send({ ...req, url, headers })
      const again = res.status === 401 && attempt === 1 && sameHost && !isStream(req.body) && this.auth.rejected(res.headers, req.scopes)
      if (!again) return res
      await res.body.dump()
    }
  }

  /** Close the connections. */
  close(): Promise<void> {
    return this.transport.close()
  }

  /**
   * The one-line error for a response that is not what was wanted; reads (and so frees) the
   * body. `notFound` is the code a 404 gets (image-not-found for a manifest).
   */
  async failure(res: HttpResponse, what: string, notFound: ErrorCode = 'registry'): Promise<DflattenError> {
    const said = await registryErrors(res)
    const reg = `registry ${this.registry}`
    switch (res.status) {
      case 401:
        return new DflattenError(
          'registry',
          this.hasCredentials
            ? `${what}: ${reg} refused the credentials (401${said}); check docker login ${this.registry}`
            : `${what}: ${reg} wants credentials (401${said}): log in with docker login ${this.registry}`,
        )
      case 403:
        return new DflattenError('registry', `${what}: ${reg} denied access (403${said})`)
      case 404:
        return new DflattenError(notFound, `${what}: not found on ${reg} (404${said})`)
      case 429:
        return new DflattenError('registry', `${what}: ${reg} is limiting our requests (429${said}); try again later`)
      default:
        return new DflattenError('registry', `${what}: ${reg} answered ${res.status}${said ? ` (${said.slice(1)})` : ''}`)
    }
  }
}

function isStream(body: unknown): boolean {
  return body !== undefined && !Buffer.isBuffer(body)
}

/** ` CODE: message` from the Distribution error body, or ''. */
async function registryErrors(res: HttpResponse): Promise<string> {
  let text = ''
  try {
    text = (await res.body.text()).slice(0, 4096)
  } catch {
    return ''
  }
  try {
    const body = JSON.parse(text) as { errors?: { code?: string; message?: string }[] }
    const e = body.errors?.[0]
    if (e) return ` ${[e.code, e.message].filter(Boolean).join(': ')}`.replace(/\s+/g, ' ').trimEnd()
  } catch {
    // not the Distribution error format
  }
  return ''
}
