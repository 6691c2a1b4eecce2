/**
 * Image references as the user types them, and the name of the result.
 * Grammar (Docker's): [domain[:port]/]path[:tag][@digest]. Anything that is not a valid
 * reference may still be an image id, which the daemon resolves.
 */
import { DflattenError } from './errors.js'

export interface ParsedRef {
  /** Repository with its domain, as typed (no normalisation to docker.io). */
  repo: string
  tag?: string
  digest?: string
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const TAG = /^\w[\w.-]{0,127}$/
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$/
const HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])(?::\d{1,5})?$/
const ID = /^(sha256:)?[0-9a-f]{12,64}$/

/** A reference in its parts, as typed: nothing normalised. */
export interface RefParts {
  /** The first path component when it names a registry host: it has a `.` or `:`, is `localhost` or `[IPv6]`. */
  domain?: string
  /** The repository's path components, after the domain. */
  path: string[]
  tag?: string
  digest?: string
}

/**
 * Split a reference by Docker's grammar, or say what is wrong with it. `digest` is the digests
 * taken, and what to say of one that is not (a registry asks for sha256 only).
 */
export function splitRef(ref: string, digest = { pattern: DIGEST, says: 'a digest is ALGORITHM:HEX, 32 hex digits at least' }): RefParts | { bad: string } {
  let rest = ref
  const parts: RefParts = { path: [] }
  const at = rest.indexOf('@')
  if (at !== -1) {
    parts.digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!digest.pattern.test(parts.digest)) return { bad: digest.says }
  }
  const path = rest.split('/')
  if (path.length > 1 && (/[.:]/.test(path[0]) || path[0] === 'localhost' || path[0].startsWith('['))) {
    parts.domain = path.shift()
    if (!HOST.test(parts.domain ?? '')) return { bad: `bad registry host ${JSON.stringify(parts.domain)}` }
  }
  const last = path[path.length - 1]
  const colon = last.lastIndexOf(':')
  if (colon !== -1) {
    parts.tag = last.slice(colon + 1)
    path[path.length - 1] = last.slice(0, colon)
    if (!TAG.test(parts.tag)) return { bad: `bad tag ${JSON.stringify(parts.tag)}` }
  }
  if (path.some((p) => p === '')) return { bad: 'empty repository name' }
  const wrong = path.find((p) => !COMPONENT.test(p))
  if (wrong !== undefined) return { bad: `bad name component ${JSON.stringify(wrong)} (lowercase letters, digits, . _ -)` }
  parts.path = path
  return parts
}

/** Parse a reference, or return null when it is not one (it may still be an id). */
export function parseRef(ref: string): ParsedRef | null {
  const parts = splitRef(ref)
  if ('bad' in parts) return null
  const { domain, path, tag, digest } = parts
  return { repo: [...(domain === undefined ? [] : [domain]), ...path].join('/'), tag, digest }
}

export function isImageId(ref: string): boolean {
  return ID.test(ref)
}

/** A target name must be a reference with a tag (or gets `latest`), never a digest. */
export function normaliseTarget(ref: string): string {
  const p = parseRef(ref)
  if (!p || p.digest) throw new DflattenError('bad-reference', `not a valid image name for the result: ${ref}`)
  return `${p.repo}:${p.tag ?? 'latest'}`
}

/**
 * The default result name: `<repo>_flatten:<tag>`, from the name the user typed or, when they
 * gave an id, from the image's first tag.
 */
export function defaultTarget(sourceRef: string, repoTags: string[]): string {
  const typed = isImageId(sourceRef) ? null : parseRef(sourceRef)
  const named = typed ?? (repoTags.length ? parseRef(repoTags[0]) : null)
  if (!named) {
    throw new DflattenError('usage', `${sourceRef} has no name to derive the result's from; give one with -t NAME[:TAG]`)
  }
  return `${named.repo}_flatten:${named.tag ?? 'latest'}`
}

/** `app` and `app:latest` are the same image name. */
export function sameName(a: string, b: string): boolean {
  const pa = parseRef(a)
  const pb = parseRef(b)
  if (!pa || !pb) return a === b
  return pa.repo === pb.repo && (pa.tag ?? 'latest') === (pb.tag ?? 'latest') && pa.digest === pb.digest
}
