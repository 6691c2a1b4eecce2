/**
 * What `-t` names: a bare name is an image in the local daemon, `docker://HOST/REPO[:TAG]` a
 * registry repository, `oci:DIR[:TAG]` an OCI image layout dir (skopeo's spelling: the path
 * ends at the first colon).
 */
import { DflattenError } from '../errors.js'
import { formatRef, isRegistryRef, parseRegistryRef, type RegistryRef } from '../registry/reference.js'

export type Target =
  /** The local daemon; `name` is what -t said (resolve picks the default when absent). */
  | { kind: 'daemon'; name?: string }
  | { kind: 'registry'; ref: RegistryRef & { tag: string }; name: string }
  | { kind: 'oci'; dir: string; tag: string }

const OCI_TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/

/** Parse -t's value (undefined: the local daemon, default name). */
export function parseTarget(text: string | undefined): Target {
  if (text === undefined) return { kind: 'daemon' }
  if (isRegistryRef(text)) {
    const ref = parseRegistryRef(text)
    if (ref.digest) throw new DflattenError('bad-reference', `the result is named by a tag, not a digest: ${text}`)
    const tagged = { ...ref, tag: ref.tag ?? 'latest' }
    return { kind: 'registry', ref: tagged, name: formatRef(tagged) }
  }
  if (text.startsWith('oci:')) {
    const rest = text.slice('oci:'.length)
    const colon = rest.indexOf(':')
    const dir = colon === -1 ? rest : rest.slice(0, colon)
    const tag = colon === -1 ? 'latest' : rest.slice(colon + 1)
    if (!dir) throw new DflattenError('bad-reference', `no directory in ${text}; write oci:DIR[:TAG]`)
    if (!OCI_TAG.test(tag)) throw new DflattenError('bad-reference', `not a valid tag in ${text}: ${JSON.stringify(tag)}`)
    return { kind: 'oci', dir, tag }
  }
  return { kind: 'daemon', name: text }
}

/** The name resolve gives the plan's target (a daemon-style reference), for a parsed target. */
export function planName(t: Target): string | undefined {
  return t.kind === 'daemon' ? t.name : t.kind === 'registry' ? t.name : undefined
}
