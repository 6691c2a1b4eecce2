/**
 * References to images no daemon holds: `docker://HOST/REPO[:TAG][@DIGEST]` (a registry) and
 * `oci:PATH[:TAG]` or `oci:PATH@DIGEST` (an OCI image layout dir). A bare name stays the local
 * daemon's.
 */
import { DflattenError } from '../errors.js'
import { parseRegistryRef, type RegistryRef } from '../registry/index.js'

export type SourceRef =
  | { kind: 'registry'; text: string; ref: RegistryRef }
  | { kind: 'oci'; text: string; dir: string; tag?: string; digest?: string }

const DIGEST = /^sha256:[0-9a-f]{64}$/

/** Whether a reference is read without the daemon. */
export function isDaemonless(text: string): boolean {
  return text.startsWith('docker://') || text.startsWith('oci:')
}

export function parseSourceRef(text: string): SourceRef {
  if (text.startsWith('docker://')) {
    try {
      return { kind: 'registry', text, ref: parseRegistryRef(text) }
    } catch (e) {
      throw e instanceof DflattenError ? new DflattenError('bad-reference', e.message) : e
    }
  }
  if (!text.startsWith('oci:')) throw new DflattenError('bad-reference', `${JSON.stringify(text)} is neither docker://... nor oci:...`)
  let rest = text.slice('oci:'.length)
  let digest: string | undefined
  const at = rest.lastIndexOf('@')
  if (at !== -1 && DIGEST.test(rest.slice(at + 1))) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
  }
  // The tag is after the last colon, unless that colon is part of the path.
  let tag: string | undefined
  const colon = rest.lastIndexOf(':')
  if (!digest && colon !== -1 && !rest.slice(colon + 1).includes('/')) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!/^[\w][\w.-]{0,127}$/.test(tag)) throw new DflattenError('bad-reference', `${text}: bad tag ${JSON.stringify(tag)}`)
  }
  if (!rest) throw new DflattenError('bad-reference', `${text}: no directory (oci:PATH[:TAG])`)
  return { kind: 'oci', text, dir: rest, tag, digest }
}

/** The same store, another image in it (by digest): a platform of an index, a base named in annotations. */
export function withDigest(s: SourceRef, digest: string): string {
  if (s.kind === 'registry') {
    const { registry, repository } = s.ref
    return `docker://${registry}/${repository}@${digest}`
  }
  return `oci:${s.dir}@${digest}`
}
