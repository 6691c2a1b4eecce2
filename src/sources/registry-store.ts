/** A registry repository as an image store, through the Distribution API client. */
import { DflattenError } from '../errors.js'
import { connect, formatRef, manifestReference, MANIFEST_ACCEPT, type RegistryRef, type RegistrySession } from '../registry/index.js'
import type { RegistryAccess } from '../settings.js'
import type { ImageStore } from './blob-source.js'

/** Configs and other JSON read whole: more is not a config. */
const SMALL_BLOB = 8 * 1024 * 1024

/** Sessions by registry, so an image and its base on one registry share tokens and connections. */
export type Sessions = Map<string, RegistrySession>

/** With `sessions`, the session goes into it and its owner closes it; without, the store does. */
export async function registryStore(ref: RegistryRef, access: RegistryAccess = {}, sessions?: Sessions): Promise<ImageStore> {
  const shared = sessions?.get(ref.registry)
  const client = await connect(ref, { configDir: access.configDir, certDir: access.certDir, insecure: access.insecure, session: shared })
  sessions?.set(ref.registry, client.session)
  return {
    label: formatRef(ref),
    manifest: (digest, signal) => client.getManifest(digest ?? manifestReference(ref), MANIFEST_ACCEPT, signal),
    async open(d, signal) {
      return (await client.getBlob(d.digest, { size: d.size, signal })).stream
    },
    async bytes(d, signal) {
      if (d.size > SMALL_BLOB) throw new DflattenError('bad-data', `${formatRef(ref)}: blob ${d.digest.slice(0, 19)} is ${d.size} bytes, too large for a config`)
      const { stream } = await client.getBlob(d.digest, { size: d.size, signal })
      const chunks: Buffer[] = []
      for await (const c of stream) chunks.push(c as Buffer)
      return Buffer.concat(chunks)
    },
    close: async () => {
      if (!sessions) await client.session.close()
    },
  }
}
