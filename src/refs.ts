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
const TAG = /^[\w][\w.-]{0,127}$/
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$/
const ID = /^(sha256:)?[0-9a-f]{12,64}$/

/** Parse a reference, or return null when it is not one (it may still be an id). */
export function parseRef(ref: string): ParsedRef | null {
  let rest = ref
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at !== -1) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!DIGEST.test(digest)) return null
  }
  let tag: string | undefined
  const colon = rest.lastIndexOf(':')
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!TAG.test(tag)) return null
  }
  if (rest === '') return null
  const parts = rest.split('/')
  const domain = parts.length > 1 && /[.:]|^localhost$/.test(parts[0]) ? parts.shift() : undefined
  if (domain !== undefined && !/^[a-zA-Z0-9.-]+(?::\d+)?$/.test(domain)) return null
  if (!parts.every((p) => COMPONENT.test(p))) return null
  return { repo: rest, tag, digest }
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
