/**
 * The registry's authentication challenge (`WWW-Authenticate`) and the answer to it: Basic with
 * the user's credentials, or Bearer with a token from the realm the registry names, asked for
 * the scopes a request needs (`repository:NAME:pull,push`). Tokens are kept per set of scopes
 * until they expire; a 401 with a kept token fetches a new one, once.
 */
import { DflattenError } from '../errors.js'
import type { Credentials } from './credentials.js'
import type { HttpResponse, Transport } from './transport.js'

/** One challenge of a `WWW-Authenticate` header. */
export interface Challenge {
  /** Lowercased: `basic`, `bearer`. */
  scheme: string
  params: Record<string, string>
}

/**
 * Parse `WWW-Authenticate` (RFC 7235): `Bearer realm="...",service="...",scope="a b"`; several
 * challenges may share the header, comma-separated.
 */
export function parseChallenges(value: string | string[] | undefined): Challenge[] {
  const out: Challenge[] = []
  for (const line of Array.isArray(value) ? value : value ? [value] : []) {
    const re = /\s*([A-Za-z][\w!#$%&'*+.^`|~-]*)(?:\s+|$)|\s*([\w!#$%&'*+.^`|~-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?/y
    // A group that took no part in the match is undefined.
    let m: (string | undefined)[] | null
    let current: Challenge | undefined
    while (re.lastIndex < line.length && (m = re.exec(line))) {
      if (m[1] !== undefined) {
        current = { scheme: m[1].toLowerCase(), params: {} }
        out.push(current)
      } else if (current && m[2] !== undefined) {
        current.params[m[2].toLowerCase()] = m[3] !== undefined ? m[3].replace(/\\(.)/g, '$1') : (m[4] ?? '')
      }
    }
  }
  return out
}

/** The scope a request on a repository needs. */
export function repositoryScope(repository: string, actions: ('pull' | 'push')[]): string {
  return `repository:${repository}:${actions.join(',')}`
}

interface Kept {
  header: string
  expires: number
}

/** Answers one registry's challenges; one per registry host, shared by its repositories. */
export class Authenticator {
  private challenge?: Challenge
  private readonly tokens = new Map<string, Kept>()
  /** How many tokens were fetched (for tests and `-v`). */
  tokenRequests = 0

  constructor(
    private readonly transport: Transport,
    private readonly credentials: Credentials | undefined,
    /** `127.0.0.1:5000`, as messages name the registry. */
    private readonly registry: string,
  ) {}

  /** Take the challenge from a `/v2/` ping or a 401. Returns whether there is one we can answer. */
  learn(headers: HttpResponse['headers']): boolean {
    const all = parseChallenges(headers['www-authenticate'])
    const c = all.find((x) => x.scheme === 'bearer') ?? all.find((x) => x.scheme === 'basic')
    if (c) this.challenge = c
    return c !== undefined
  }

  /** Whether the registry asked for authentication at all. */
  get required(): boolean {
    return this.challenge !== undefined
  }

  /** The Authorization header for a request that needs `scopes`, or undefined when none is needed. */
  async authorization(scopes: string[], what: string, signal?: AbortSignal): Promise<string | undefined> {
    const c = this.challenge
    if (!c) return undefined
    if (c.scheme === 'basic') return this.basic(what)
    if (c.scheme !== 'bearer') {
      throw new DflattenError('registry', `${what}: registry ${this.registry} wants ${c.scheme} authentication, which dflatten does not speak`)
    }
    const key = [...new Set(scopes)].sort().join(' ')
    const kept = this.tokens.get(key)
    if (kept && kept.expires > Date.now()) return kept.header
    const fresh = await this.fetchToken(c, scopes, what, signal)
    this.tokens.set(key, fresh)
    return fresh.header
  }

  /**
   * A request came back 401: take its challenge (it may ask for more scope) and forget the token
   * for these scopes. Returns false when asking again cannot help (no challenge, or Basic: the
   * credentials do not change).
   */
  rejected(headers: HttpResponse['headers'], scopes: string[]): boolean {
    const before = this.challenge
    if (!this.learn(headers)) return false
    this.tokens.delete([...new Set(scopes)].sort().join(' '))
    return this.challenge?.scheme === 'bearer' || before === undefined
  }

  private basic(what: string): string {
    const c = this.credentials
    if (!c) throw new DflattenError('registry', `${what}: registry ${this.registry} wants a user name and password: log in with docker login ${this.registry}`)
    if (c.kind !== 'basic') throw new DflattenError('registry', `${what}: registry ${this.registry} wants Basic authentication, but the Docker config holds an identity token for it`)
    return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`
  }

  /**
   * Docker's token protocol: GET the realm with `service` and one `scope` per scope, with Basic
   * credentials or none. An identity token is an OAuth2 refresh token: POST it as a form.
   */
  private async fetchToken(c: Challenge, scopes: string[], what: string, signal?: AbortSignal): Promise<Kept> {
    const realm = c.params.realm
    if (!realm) throw new DflattenError('registry', `${what}: registry ${this.registry} asks for a Bearer token but names no realm`)
    let url: URL
    try {
      url = new URL(realm)
    } catch {
      throw new DflattenError('registry', `${what}: registry ${this.registry} names a token realm that is not a URL: ${realm}`)
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new DflattenError('registry', `${what}: registry ${this.registry} names a token realm that is not HTTP: ${realm}`)
    }
    const wanted = [...new Set([...scopes, ...(c.params.scope ? c.params.scope.split(' ') : [])])]
    const cred = this.credentials
    this.tokenRequests++
    let res: HttpResponse
    if (cred?.kind === 'identity-token') {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: cred.token, client_id: 'dflatten' })
      if (c.params.service) form.set('service', c.params.service)
      if (wanted.length) form.set('scope', wanted.join(' '))
      res = await this.transport.send({
        method: 'POST',
        url,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: Buffer.from(form.toString()),
        signal,
        what,
      })
    } else {
      if (c.params.service) url.searchParams.set('service', c.params.service)
      for (const s of wanted) url.searchParams.append('scope', s)
      const headers: Record<string, string> = {}
      if (cred) headers.authorization = `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}`
      res = await this.transport.send({ method: 'GET', url, headers, signal, what })
    }
    const text = await res.body.text()
    if (res.status === 401 || res.status === 403) {
      throw new DflattenError(
        'registry',
        cred
          ? `${what}: the token server of ${this.registry} refused the credentials (${res.status}); check docker login ${this.registry}`
          : `${what}: the token server of ${this.registry} wants credentials (${res.status}): log in with docker login ${this.registry}`,
      )
    }
    if (res.status !== 200) throw new DflattenError('registry', `${what}: the token server of ${this.registry} answered ${res.status} (${url.origin}${url.pathname})`)
    let body: { token?: string; access_token?: string; expires_in?: number; issued_at?: string }
    try {
      body = JSON.parse(text) as typeof body
    } catch {
      throw new DflattenError('registry', `${what}: the token server of ${this.registry} sent something that is not JSON`)
    }
    const token = body.token || body.access_token
    if (!token) throw new DflattenError('registry', `${what}: the token server of ${this.registry} sent no token`)
    // Docker's minimum lifetime is 60 s; renew a little early rather than be refused mid-push.
    const life = Math.max(Number(body.expires_in) || 60, 60)
    const issued = body.issued_at ? Date.parse(body.issued_at) : NaN
    const start = Number.isFinite(issued) ? Math.min(issued, Date.now()) : Date.now()
    return { header: `Bearer ${token}`, expires: start + (life - 10) * 1000 }
  }
}
