/** The image store a daemonless reference names. */
import type { RegistryAccess } from '../settings.js'
import type { ImageStore } from './blob-source.js'
import { ociStore } from './oci-store.js'
import { registryStore, type Sessions } from './registry-store.js'
import type { SourceRef } from './reference.js'

export function openStore(ref: SourceRef, access: RegistryAccess = {}, sessions?: Sessions): Promise<ImageStore> {
  if (ref.kind === 'registry') return registryStore(ref.ref, access, sessions)
  return Promise.resolve(ociStore(ref.dir, { tag: ref.tag, digest: ref.digest }, ref.text))
}
