/**
 * The result's manifest, for the destinations that store one themselves (registry, OCI dir),
 * and how they recognise an earlier run's result for the cache.
 */
import { stableJson } from '../image-archive.js'
import { sha256 } from '../layer-tar.js'
import { compressionOf, DOCKER, OCI } from './layer.js'
import type { CacheQuery, ManifestFormat } from './destination.js'
import { isThisFlatten } from '../rerun.js'

export interface BlobRef {
  mediaType: string
  digest: string
  size: number
}

export interface BuiltManifest {
  bytes: Buffer
  digest: string
  mediaType: string
}

/** The manifest's bytes (stable JSON: the same image always gives the same digest). */
export function buildManifest(format: ManifestFormat, config: { digest: string; size: number }, layers: BlobRef[]): BuiltManifest {
  const types = format === 'oci' ? OCI : DOCKER
  const bytes = Buffer.from(
    stableJson({
      schemaVersion: 2,
      mediaType: types.manifest,
      config: { mediaType: types.config, digest: config.digest, size: config.size },
      layers: layers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
    }),
  )
  return { bytes, digest: sha256(bytes), mediaType: types.manifest }
}

interface StoredConfig {
  rootfs?: { diff_ids?: string[] }
  history?: Array<{ comment?: string; created_by?: string }>
}

/**
 * Is this manifest and config an earlier run's result for the same flatten: the base's layers
 * plus one, stored with the compression asked for, its newest history entry carrying the marker?
 */
export function isEarlierResult(manifestJson: Buffer, configJson: Buffer, q: CacheQuery): boolean {
  try {
    const m = JSON.parse(manifestJson.toString('utf8')) as { layers?: Array<{ mediaType?: string }> }
    const c = JSON.parse(configJson.toString('utf8')) as StoredConfig
    const diffIds = c.rootfs?.diff_ids ?? []
    const top = m.layers?.[m.layers.length - 1]
    if (diffIds.length !== q.baseLayers.length + 1 || !q.baseLayers.every((d, i) => diffIds[i] === d)) return false
    if (!top?.mediaType || compressionOf(top.mediaType) !== q.compression.kind) return false
    const last = c.history?.[c.history.length - 1]
    return last !== undefined && isThisFlatten({ comment: last.comment ?? '', created_by: last.created_by ?? '' }, q)
  } catch {
    return false
  }
}

/** A manifest's config descriptor. */
export function configOf(manifestJson: Buffer): { digest: string; size: number } | null {
  try {
    const m = JSON.parse(manifestJson.toString('utf8')) as { config?: { digest?: string; size?: number } }
    return m.config?.digest ? { digest: m.config.digest, size: m.config.size ?? 0 } : null
  } catch {
    return null
  }
}
