/**
 * The daemonless method: an image read from a registry (`docker://`) or an OCI layout dir
 * (`oci:`), no daemon, no root, no mounts. The plan holds the original's manifest and config
 * (exact bytes) and every layer's descriptor; pack then reads the layers above the base once,
 * top layer first, and merges them on the fly (one-pass.ts). The layer's size is known only once
 * it has streamed, so diff gives no entries and no size (`entries: null`).
 */
import type { LayerDescriptor } from '../../image-archive.js'
import { DflattenError } from '../../errors.js'
import { openStore } from '../../sources/open.js'
import { parseSourceRef } from '../../sources/reference.js'
import { layerTar } from '../../sources/decompress.js'
import type { ImageStore } from '../../sources/blob-source.js'
import type { Diffed } from '../../plan.js'
import type { BlobSource } from '../../destinations/destination.js'
import { DOCKER } from '../../destinations/layer.js'
import type { LayerSource, Method, MethodContext } from '../method.js'
import { baseHistory } from '../save/index.js'
import { onePassMerge } from './one-pass.js'

export const REGISTRY_METHOD = 'registry'

export interface RegistryState {
  /** The reference read (`docker://...@sha256:...` or `oci:DIR@sha256:...`: pinned to the manifest). */
  source: string
  manifest: { digest: string; mediaType: string; /** base64 of the exact bytes */ bytes: string }
  config: { digest: string; /** base64 of the exact bytes */ bytes: string }
  /** Every layer of the image, base first, as the source holds it, with its diff id. */
  layers: LayerDescriptor[]
  /** How many of them are the base's. */
  baseLayers: number
  /** The base config's history length, or null when the base is only a layer count (--layers). */
  baseHistoryLength: number | null
}

function configOf(s: RegistryState): Record<string, unknown> & { history?: Array<{ empty_layer?: boolean }> } {
  return JSON.parse(Buffer.from(s.config.bytes, 'base64').toString('utf8')) as Record<string, unknown>
}

/** The layers above the base, top first, and the base's, read from the store as pack pulls them. */
function readLayers(d: Diffed<RegistryState>, ctx: MethodContext): LayerSource {
  const s = d.method.state
  const source = parseSourceRef(s.source)
  let store: ImageStore | undefined
  const opened = (): Promise<ImageStore> => (store ? Promise.resolve(store) : openStore(source, ctx.settings.registry).then((st) => (store = st)))
  const top = s.layers.length - 1
  const tar = async (l: LayerDescriptor): Promise<AsyncIterable<Buffer>> => layerTar(await opened(), l, source.text, ctx.signal)
  const merge = onePassMerge(
    {
      count: s.layers.length - s.baseLayers,
      open: (r) => tar(s.layers[top - r]),
      base: { count: s.baseLayers, open: (r) => tar(s.layers[s.baseLayers - 1 - r]) },
      describe: (r) => `${source.text}: layer ${s.layers[top - r].digest.slice(0, 19)}`,
    },
    ctx.signal,
  )
  return {
    entries: merge.entries,
    content: merge.content,
    close: () => void store?.close().catch(() => undefined),
  }
}

/**
 * Base blobs for a destination that lacks them: read from where the image came from, and, for a
 * registry source, named there so a target on the same registry mounts them instead.
 */
function sourceBlobs(d: Diffed<RegistryState>, ctx: MethodContext): BlobSource {
  const source = parseSourceRef(d.method.state.source)
  return {
    async open(descriptor, signal) {
      const store = await openStore(source, ctx.settings.registry)
      const stream = await store.open(descriptor, signal)
      stream.once('close', () => void store.close().catch(() => undefined))
      return stream
    },
    elsewhere(descriptor) {
      if (source.kind !== 'registry') return Promise.resolve([])
      const { registry, repository } = source.ref
      return Promise.resolve([{ registry, repository, digest: descriptor.digest, mediaType: descriptor.mediaType }])
    },
  }
}

export const registry: Method<RegistryState> = {
  name: REGISTRY_METHOD,
  summary: 'read a docker:// or oci: image top-down, each layer once, merged on the fly (no daemon, no root)',
  largeHeap: true,
  available: () => Promise.resolve({ ok: false, reason: 'it reads docker://REGISTRY/... and oci:DIR images, not the daemon\'s' }),
  cacheKey: () => REGISTRY_METHOD,
  plan: () => Promise.reject(new DflattenError('usage', 'the registry method is planned from a docker:// or oci: reference (src/sources)')),
  prepare: (plan) => Promise.resolve(plan.method.state),
  entries(m) {
    const s = m.method.state
    const config = configOf(s)
    return Promise.resolve({
      entries: null,
      image: {
        config,
        baseHistory: baseHistory(config.history ?? [], s.baseHistoryLength ?? Number.MAX_SAFE_INTEGER, s.baseLayers),
        baseDescriptors: s.layers.slice(0, s.baseLayers),
        manifestFormat: s.manifest.mediaType === DOCKER.manifest ? 'docker' : 'oci',
      },
      state: s,
      detail: `content read once from ${s.source}, top layer first`,
    })
  },
  layer: readLayers,
  blobSource: sourceBlobs,
}
