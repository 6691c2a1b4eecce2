/**
 * Registry credentials from a Docker config directory (`config.json`), the way the docker CLI
 * finds them: a `credHelpers` entry for the registry, else the `credsStore`, else `auths`. The
 * caller says which directory (`$DOCKER_CONFIG` or `~/.docker`): nothing here reads the
 * environment, so a library user can point it anywhere.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { execa } from 'execa'
import { DflattenError } from '../errors.js'
import { DOCKER_HUB } from './reference.js'

/** What a registry is told about who we are. */
export type Credentials =
  | { kind: 'basic'; username: string; password: string }
  /** An OAuth2 refresh token (`docker login` to registries that hand them out). */
  | { kind: 'identity-token'; username?: string; token: string }

interface AuthEntry {
  auth?: string
  username?: string
  password?: string
  identitytoken?: string
}

interface DockerConfig {
  auths?: Record<string, AuthEntry>
  credHelpers?: Record<string, string>
  credsStore?: string
}

/** The key Docker Hub's credentials are stored under, for historical reasons. */
const DOCKER_HUB_KEY = 'https://index.docker.io/v1/'

/**
 * The credentials for `registry` (as in a reference: `docker.io`, `host:port`) from the Docker
 * config in `configDir`, or undefined for anonymous access. A missing or empty config is
 * anonymous; a malformed one or a failing helper is an error.
 */
export async function loadCredentials(configDir: string, registry: string): Promise<Credentials | undefined> {
  const file = join(configDir, 'config.json')
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new DflattenError('host', `cannot read ${file}: ${(e as Error).message}`)
  }
  let config: DockerConfig
  try {
    config = text.trim() === '' ? {} : (JSON.parse(text) as DockerConfig)
  } catch (e) {
    throw new DflattenError('usage', `${file} is not JSON: ${(e as Error).message}`)
  }
  const serverKey = registry === DOCKER_HUB ? DOCKER_HUB_KEY : registry
  const helper = findEntry(config.credHelpers, registry) ?? config.credsStore
  if (helper) {
    const fromHelper = await runHelper(helper, serverKey)
    if (fromHelper) return fromHelper
  }
  const entry = findEntry(config.auths, registry)
  return entry ? fromAuthEntry(entry, file, registry) : undefined
}

/**
 * A config's keys may be `host`, `https://host`, `http://host/v1/` (old logins): they are
 * compared by host, as the docker CLI does.
 */
function findEntry<T>(map: Record<string, T> | undefined, registry: string): T | undefined {
  if (!map) return undefined
  const want = registry === DOCKER_HUB ? ['docker.io', 'index.docker.io', 'registry-1.docker.io'] : [registry]
  for (const [key, value] of Object.entries(map)) {
    if (want.includes(hostOfKey(key))) return value
  }
  return undefined
}

function hostOfKey(key: string): string {
  return key.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '')
}

function fromAuthEntry(entry: AuthEntry, file: string, registry: string): Credentials | undefined {
  if (entry.identitytoken) return { kind: 'identity-token', username: entry.username, token: entry.identitytoken }
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon <= 0) throw new DflattenError('usage', `${file}: the auth entry for ${registry} is not base64 of user:password`)
    return { kind: 'basic', username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
  }
  if (entry.username && entry.password !== undefined) return { kind: 'basic', username: entry.username, password: entry.password }
  return undefined
}

/**
 * `docker-credential-<name> get`: the server on stdin, `{ServerURL, Username, Secret}` on stdout.
 * A helper that has nothing for the server says so on stdout and exits 1: that is anonymous.
 */
async function runHelper(name: string, server: string): Promise<Credentials | undefined> {
  const program = `docker-credential-${name}`
  const r = await execa(program, ['get'], { input: server, reject: false, timeout: 30_000 })
  if (['ENOENT', 'EACCES'].includes((r as { code?: string }).code ?? '')) {
    throw new DflattenError('tool-missing', `${program} is not installed (the Docker config names it for ${server})`)
  }
  const out = r.stdout.trim()
  if (r.exitCode !== 0) {
    if (/credentials not found/i.test(out)) return undefined
    const said = (r.stderr.trim() || out).split('\n')[0]
    throw new DflattenError('tool-failed', `${program} get ${server} failed: ${said || `exit code ${r.exitCode}`}`)
  }
  let parsed: { Username?: string; Secret?: string }
  try {
    parsed = JSON.parse(out) as { Username?: string; Secret?: string }
  } catch {
    throw new DflattenError('tool-failed', `${program} get ${server} printed something that is not JSON`)
  }
  if (!parsed.Secret) return undefined
  // Helpers store an identity token with the user name `<token>`, as docker login writes it.
  if (parsed.Username === '<token>') return { kind: 'identity-token', token: parsed.Secret }
  return { kind: 'basic', username: parsed.Username ?? '', password: parsed.Secret }
}
