/**
 * The four manifest media types a registry serves for images (OCI and Docker v2, image and
 * index), and typed views of their JSON. Bytes stay the source of truth: a manifest's digest is
 * of the bytes as sent, so nothing here re-serialises one.
 */
import { DflattenError } from '../errors.js'
import { pickManifest } from '../platform.js'

/** Media types of manifests, indexes, configs and layers. */
export const MEDIA_TYPES = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const

/** What `getManifest` asks for by default: every image manifest and index type we read. */
export const MANIFEST_ACCEPT = [MEDIA_TYPES.ociManifest, MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifest, MEDIA_TYPES.dockerList]

/** A content descriptor. */
export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  annotations?: Record<string, string>
  urls?: string[]
  platform?: Platform
}

/** An index entry's platform. */
export interface Platform {
  architecture: string
  os: string
  variant?: string
  'os.version'?: string
  'os.features'?: string[]
}

/** An image manifest (OCI or Docker v2 schema 2). */
export interface ImageManifest {
  schemaVersion: 2
  mediaType?: string
  config: Descriptor
  layers: Descriptor[]
  annotations?: Record<string, string>
}

/** An image index (OCI) or manifest list (Docker). */
export interface ImageIndex {
  schemaVersion: 2
  mediaType?: string
  manifests: Descriptor[]
  annotations?: Record<string, string>
}

/** Whether a media type is an index or a manifest list. */
export function isIndexType(mediaType: string): boolean {
  return mediaType === MEDIA_TYPES.ociIndex || mediaType === MEDIA_TYPES.dockerList
}

/** Whether a media type is of the Docker family (so what we push next to it should be too). */
export function isDockerType(mediaType: string): boolean {
  return mediaType.startsWith('application/vnd.docker.')
}

/** A parsed manifest with what kind it is. */
export type ParsedManifest = { kind: 'index'; index: ImageIndex } | { kind: 'image'; manifest: ImageManifest }

/**
 * Parse a manifest's bytes as the media type the registry gave (or the one in the JSON); refuses
 * schema 1 and anything that is not an image or an index, as bad data naming `what`.
 */
export function parseManifest(bytes: Buffer, mediaType: string, what: string): ParsedManifest {
  let json: Record<string, unknown>
  try {
    json = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>
  } catch {
    throw new DflattenError('bad-data', `${what}: the manifest is not JSON`)
  }
  const type = (typeof json.mediaType === 'string' && json.mediaType) || mediaType
  if (json.schemaVersion !== 2) throw new DflattenError('unsupported-image', `${what}: manifest schema ${String(json.schemaVersion)} (only schema 2 and OCI are read)`)
  if (isIndexType(type) || (Array.isArray(json.manifests) && !json.config)) {
    if (!Array.isArray(json.manifests)) throw new DflattenError('bad-data', `${what}: the index lists no manifests`)
    return { kind: 'index', index: json as unknown as ImageIndex }
  }
  if (!json.config || !Array.isArray(json.layers)) throw new DflattenError('bad-data', `${what}: the manifest has no config or no layers`)
  return { kind: 'image', manifest: json as unknown as ImageManifest }
}

/**
 * The index entry for a platform (`linux/amd64`, `linux/arm64/v8`), or undefined; matched as
 * the daemon path matches --platform (platform.ts: architecture aliases, arm64's v8 the default).
 */
export function findPlatform(index: ImageIndex, platform: string): Descriptor | undefined {
  const [os, architecture = '', variant] = platform.split('/')
  return pickManifest(index.manifests, { os, architecture, variant }) ?? undefined
}
