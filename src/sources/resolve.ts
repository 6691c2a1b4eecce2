/**
 * resolve for an image no daemon holds: from `docker://...` or `oci:...` to a plan for the
 * registry method, reading only manifests and configs. The base is named (`--base`, same kinds),
 * found from the image's `org.opencontainers.image.base.name`/`.digest` annotations, a layer
 * count (`--layers N`), or `scratch`; it must be an ancestor (its diff ids a prefix of the
 * image's).
 */
import { DflattenError } from '../errors.js'
import { checkSelection, keptLayers } from '../select.js'
import { flattenMarker, keptLayersOf } from '../rerun.js'
import { DOC_VERSION, type Plan } from '../plan.js'
import type { RegistryAccess, Settings } from '../settings.js'
import { REGISTRY_METHOD, type RegistryState } from '../methods/registry/index.js'
import { openStore } from './open.js'
import { isDaemonless, parseSourceRef, withDigest, type SourceRef } from './reference.js'
import { readImage, type StoredImage } from './image.js'
import type { Sessions } from './registry-store.js'

/** What resolve's options say about a daemonless image (the same fields as ResolveOptions, and more). */
export interface SourceOptions {
  image: string
  base?: string
  tag?: string
  force?: boolean
  settings?: Settings
  /** For an index: the platform to flatten (`linux/arm64`); index-image.ts runs each in turn. */
  platform?: string
  /** Keep all but the top N layers as the base (instead of naming one). */
  layers?: number
  /** The new layer's history comment. */
  message?: string
  signal?: AbortSignal
}

const BASE_NAME = 'org.opencontainers.image.base.name'
const BASE_DIGEST = 'org.opencontainers.image.base.digest'

interface Base {
  ref: string | null
  image: StoredImage | null
  count: number
}

async function read(ref: SourceRef, access: RegistryAccess, sessions: Sessions, opts: { digest?: string; platform?: string }): Promise<StoredImage> {
  const store = await openStore(ref, access, sessions)
  try {
    return await readImage(store, opts)
  } finally {
    await store.close()
  }
}

/** The base as the options or the image's annotations name it. */
async function findBase(opts: SourceOptions, source: SourceRef, image: StoredImage, access: RegistryAccess, sessions: Sessions): Promise<Base> {
  const total = image.layers.length
  checkSelection(opts)
  if (opts.layers !== undefined) return { ref: null, image: null, count: keptLayers(opts.layers, total, opts.image) }
  if (opts.base === 'scratch') return { ref: null, image: null, count: 0 }
  let baseRef: string
  let digest: string | undefined
  if (opts.base) {
    if (!isDaemonless(opts.base)) {
      throw new DflattenError('usage', `the base ${opts.base} is a daemon image, the image is not: name the base as docker://... or oci:..., or use --base scratch`)
    }
    baseRef = opts.base
  } else {
    const a = image.manifest.json.annotations ?? {}
    if (!a[BASE_NAME] && !a[BASE_DIGEST]) {
      throw new DflattenError('usage', `${opts.image} names no base (no ${BASE_NAME} annotation): give --base docker://... or oci:..., --layers N or --base scratch`)
    }
    digest = a[BASE_DIGEST]
    baseRef = source.kind === 'oci' && digest ? withDigest(source, digest) : `docker://${a[BASE_NAME]}`
  }
  const ref = parseSourceRef(baseRef)
  const base = await read(ref, access, sessions, { digest, platform: image.platform })
  if (base.config.digest === image.config.digest) {
    throw new DflattenError('not-an-ancestor', `the base ${baseRef} is the image itself; pick an ancestor or --base scratch`)
  }
  const prefix = base.layers.map((l) => l.diffId)
  if (prefix.length > total || !prefix.every((d, i) => image.layers[i].diffId === d)) {
    throw new DflattenError('not-an-ancestor', `${baseRef} is not an ancestor of ${opts.image}: its layers are not the first layers of ${opts.image}`)
  }
  return { ref: baseRef, image: base, count: prefix.length }
}

/** Where a daemonless source's result goes when -t is not given: beside it, `_flatten` added. */
export function defaultTarget(source: SourceRef): string {
  if (source.kind === 'registry') {
    const { registry, repository, tag } = source.ref
    return `docker://${registry}/${repository}_flatten:${tag ?? 'latest'}`
  }
  return `oci:${source.dir}:${source.tag ?? 'latest'}_flatten`
}

export async function resolveSource(opts: SourceOptions): Promise<Plan<RegistryState>> {
  const source = parseSourceRef(opts.image)
  const access = opts.settings?.registry ?? {}
  const sessions: Sessions = new Map()
  try {
    const image = await read(source, access, sessions, { platform: opts.platform })
    const base = await findBase(opts, source, image, access, sessions)
    const target = opts.tag ?? defaultTarget(source)
    if (!opts.force && target === opts.image) {
      throw new DflattenError('name-clash', `the result's name ${target} is the image's own name; pick another with -t, or pass --force`)
    }
    const baseId = base.image?.config.digest ?? null
    const state: RegistryState = {
      source: withDigest(source, image.manifest.digest),
      manifest: { digest: image.manifest.digest, mediaType: image.manifest.mediaType, bytes: image.manifest.bytes.toString('base64') },
      config: { digest: image.config.digest, bytes: image.config.bytes.toString('base64') },
      layers: image.layers,
      baseLayers: base.count,
      baseHistoryLength: base.image ? (base.image.config.json.history ?? []).length : null,
    }
    const from = base.image ? 'image' : base.count ? 'layers' : 'scratch'
    const onto = from === 'layers' ? keptLayersOf(image.config.digest, base.count) : baseId
    return {
      dflatten: 'plan',
      version: DOC_VERSION,
      method: { name: REGISTRY_METHOD, reason: `${opts.image} is read without a daemon`, state },
      daemon: null,
      source: {
        ref: opts.image,
        id: image.config.digest,
        created: image.config.json.created ?? '',
        size: image.layers.reduce((n, l) => n + l.size, 0),
        layers: image.layers.map((l) => l.diffId),
        platform: image.platform,
      },
      base: { from, ref: base.ref, id: baseId, layers: image.layers.slice(0, base.count).map((l) => l.diffId) },
      target,
      marker: flattenMarker(image.config.digest, onto, REGISTRY_METHOD),
      message: opts.message ?? null,
    }
  } finally {
    await Promise.all([...sessions.values()].map((s) => s.close().catch(() => undefined)))
  }
}
