/**
 * Registry references: `docker://HOST[:PORT]/REPO[:TAG][@sha256:...]`, and the same without the
 * `docker://` prefix. The grammar is Docker's: the first path component is a registry host only
 * when it has a `.` or a `:`, is `localhost`, or is a bracketed IPv6 address; otherwise the
 * image lives on Docker Hub, where one-component names sit under `library/`.
 */
import { DflattenError } from '../errors.js'
import { splitRef } from '../refs.js'

/** A parsed reference to an image (or an index) in a registry. */
export interface RegistryRef {
  /** The registry as people name it: `docker.io`, `ghcr.io`, `127.0.0.1:5000`. */
  registry: string
  /** The host (and port) that serves the HTTP API: `registry-1.docker.io` for Docker Hub. */
  apiHost: string
  /** The repository path inside the registry: `library/busybox`, `team/app`. */
  repository: string
  tag?: string
  /** `sha256:<64 hex>`; when given with a tag, the digest decides and the tag is informative. */
  digest?: string
}

/** The name Docker Hub is known by in references and in the Docker config's `auths`. */
export const DOCKER_HUB = 'docker.io'
/** The host that serves Docker Hub's registry API. */
export const DOCKER_HUB_API = 'registry-1.docker.io'

const DIGEST = /^sha256:[0-9a-f]{64}$/

/** Whether a string names a registry image (`docker://...`) rather than a local daemon image. */
export function isRegistryRef(s: string): boolean {
  return s.startsWith('docker://')
}

/**
 * Parse `docker://HOST[:PORT]/REPO[:TAG][@sha256:...]` or `REPO[:TAG]`; throws
 * DflattenError('usage') on anything malformed, quoting what was typed.
 */
export function parseRegistryRef(input: string): RegistryRef {
  const bad = (why: string): never => {
    throw new DflattenError('usage', `not a valid registry reference: ${input} (${why})`)
  }
  const rest = input.startsWith('docker://') ? input.slice('docker://'.length) : input
  if (rest.startsWith('//')) bad('use docker://HOST/REPO')
  const split = splitRef(rest, { pattern: DIGEST, says: 'a digest is sha256: and 64 lowercase hex digits' })
  if ('bad' in split) return bad(split.bad)
  const { tag, digest, path: parts } = split
  let registry = split.domain ?? DOCKER_HUB
  if (registry === 'index.docker.io' || registry === DOCKER_HUB_API) registry = DOCKER_HUB
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift('library')
  const repository = parts.join('/')
  if (registry.length + 1 + repository.length > 255) bad('name longer than 255 characters')
  return { registry, apiHost: registry === DOCKER_HUB ? DOCKER_HUB_API : registry, repository, tag, digest }
}

/** What the manifest endpoint is asked for: the digest when there is one, else the tag or `latest`. */
export function manifestReference(ref: RegistryRef): string {
  return ref.digest ?? ref.tag ?? 'latest'
}

/** The reference written out in full, for messages: `127.0.0.1:5000/app:1`, `docker.io/library/x@sha256:...`. */
export function formatRef(ref: RegistryRef): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`
}

/** The same repository on the same registry, another tag or digest. */
export function withReference(ref: RegistryRef, reference: string): RegistryRef {
  const { tag: _t, digest: _d, ...base } = ref
  return DIGEST.test(reference) ? { ...base, digest: reference } : { ...base, tag: reference }
}
