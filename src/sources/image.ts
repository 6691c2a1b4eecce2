/**
 * One image of a daemonless store, read for the plan: its manifest and config (exact bytes,
 * digests checked), its layers with their diff ids; an index resolved to one platform.
 */
import { DflattenError } from '../errors.js'
import type { LayerDescriptor } from '../image-archive.js'
import { findPlatform, parseManifest, sha256, type Descriptor, type ImageIndex, type ImageManifest } from '../registry/index.js'
import { formatPlatform } from '../platform.js'
import type { ImageStore } from './blob-source.js'

export interface StoredImage {
  manifest: { digest: string; mediaType: string; bytes: Buffer; json: ImageManifest }
  config: { digest: string; bytes: Buffer; json: ImageConfig }
  /** Every layer, base first, with the diff id the config names at its place. */
  layers: LayerDescriptor[]
  platform: string
}

export interface ImageConfig {
  os?: string
  architecture?: string
  variant?: string
  created?: string
  rootfs?: { diff_ids?: string[] }
  history?: Array<{ empty_layer?: boolean }>
  [k: string]: unknown
}

const ATTESTATION = 'vnd.docker.reference.type'
const UNKNOWN = { os: 'unknown', architecture: 'unknown' }

/** Docker's build attestations ride in indexes as manifests for `unknown/unknown`: not images to flatten. */
export function isAttestation(d: Descriptor): boolean {
  return d.annotations?.[ATTESTATION] === 'attestation-manifest' || (d.platform?.os === 'unknown' && d.platform.architecture === 'unknown')
}

/** The platforms of an index that are images, those named in `wanted` if given (each must be there). */
export function imagePlatforms(index: ImageIndex, label: string, wanted?: string[]): Descriptor[] {
  const images = index.manifests.filter((d) => !isAttestation(d) && d.platform)
  if (!wanted?.length) return images
  return wanted.map((w) => {
    const d = findPlatform({ ...index, manifests: images }, w)
    if (!d) throw new DflattenError('image-not-found', `${label} has no ${w} image (it has ${images.map((i) => formatPlatform(i.platform ?? UNKNOWN)).join(', ')})`)
    return d
  })
}

/**
 * The image `store`'s reference names, or the manifest `digest`; for an index, the image of
 * `platform` (refused when it is not named and the index holds more than one).
 */
export async function readImage(store: ImageStore, opts: { digest?: string; platform?: string; signal?: AbortSignal } = {}): Promise<StoredImage> {
  let fetched = await store.manifest(opts.digest, opts.signal)
  let parsed = parseManifest(fetched.bytes, fetched.mediaType, store.label)
  if (parsed.kind === 'index') {
    const images = imagePlatforms(parsed.index, store.label, opts.platform ? [opts.platform] : undefined)
    if (images.length !== 1) {
      throw new DflattenError('usage', `${store.label} is a multi-platform index (${images.map((d) => formatPlatform(d.platform ?? UNKNOWN)).join(', ')}); name one with --platform`)
    }
    fetched = await store.manifest(images[0].digest, opts.signal)
    parsed = parseManifest(fetched.bytes, fetched.mediaType, store.label)
    if (parsed.kind !== 'image') throw new DflattenError('unsupported-image', `${store.label}: an index inside an index`)
  }
  const manifest = parsed.manifest
  const configBytes = await store.bytes(manifest.config, opts.signal)
  if (sha256(configBytes) !== manifest.config.digest) throw new DflattenError('bad-data', `${store.label}: the config does not hash to ${manifest.config.digest}`)
  let config: ImageConfig
  try {
    config = JSON.parse(configBytes.toString('utf8')) as ImageConfig
  } catch {
    throw new DflattenError('bad-data', `${store.label}: the image config is not JSON`)
  }
  const diffIds = config.rootfs?.diff_ids ?? []
  if (!Array.isArray(diffIds) || diffIds.length !== manifest.layers.length) {
    throw new DflattenError('bad-data', `${store.label}: the config names ${diffIds.length} diff ids for ${manifest.layers.length} layers`)
  }
  if (config.os !== 'linux') {
    throw new DflattenError('unsupported-image', `${store.label} is a ${String(config.os)}/${String(config.architecture)} image; dflatten flattens Linux images`)
  }
  return {
    manifest: { digest: fetched.digest, mediaType: fetched.mediaType || manifest.mediaType || '', bytes: fetched.bytes, json: manifest },
    config: { digest: manifest.config.digest, bytes: configBytes, json: config },
    layers: manifest.layers.map((l, i) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size, diffId: diffIds[i] })),
    platform: formatPlatform({ os: config.os, architecture: config.architecture ?? '', variant: config.variant }),
  }
}
