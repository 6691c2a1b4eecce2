/**
 * A multi-platform source: every platform the index holds (or those asked for) is flattened onto
 * the same platform of the base, one pipeline run each, and an index of the results is written
 * last, under the target's name. Attestation manifests (`unknown/unknown`) are left out: they
 * describe the original's layers, which the result no longer has.
 */
import { DflattenError } from '../errors.js'
import { stableJson } from '../image-archive.js'
import { isDockerType, MEDIA_TYPES, parseManifest, sha256, type Descriptor, type ImageIndex, type Platform } from '../registry/index.js'
import { openStore } from './open.js'
import { formatPlatform } from '../platform.js'
import { imagePlatforms } from './image.js'
import { parseSourceRef, withDigest } from './reference.js'
import type { SourceOptions } from './resolve.js'

/** What one platform's run wrote: its manifest, pushed by digest (untagged). */
export interface WrittenManifest {
  digest: string
  size: number
  mediaType: string
}

export interface IndexRun {
  /** Flatten one platform (`opts.image` pinned to its manifest, `opts.platform` set); write it untagged. */
  flattenOne(opts: SourceOptions): Promise<WrittenManifest>
  /** Write the index under the target's name, once every platform is written. */
  writeIndex(bytes: Buffer, mediaType: string): Promise<void>
}

export interface FlattenedIndex {
  digest: string
  mediaType: string
  bytes: Buffer
  images: Array<{ platform: Platform; manifest: WrittenManifest }>
}

export interface SourceIndex {
  index: ImageIndex
  /** The images to flatten, attestations left out. */
  platforms: Descriptor[]
}

/** The source's index and the platforms to flatten, or null when the source is one image. */
export async function sourceIndex(opts: SourceOptions & { platforms?: string[] }): Promise<SourceIndex | null> {
  const source = parseSourceRef(opts.image)
  const store = await openStore(source, opts.settings?.registry)
  try {
    const top = await store.manifest(undefined, opts.signal)
    const parsed = parseManifest(top.bytes, top.mediaType, store.label)
    if (parsed.kind !== 'index') return null
    const platforms = imagePlatforms(parsed.index, store.label, opts.platforms)
    if (!platforms.length) throw new DflattenError('unsupported-image', `${store.label}: the index holds no image for any platform`)
    return { index: parsed.index, platforms }
  } finally {
    await store.close()
  }
}

/** The index of the flattened images, in the source's order. */
export function indexOf(images: FlattenedIndex['images']): { bytes: Buffer; mediaType: string } {
  const docker = images.every((i) => isDockerType(i.manifest.mediaType))
  const mediaType = docker ? MEDIA_TYPES.dockerList : MEDIA_TYPES.ociIndex
  const manifests = images.map((i) => ({ mediaType: i.manifest.mediaType, digest: i.manifest.digest, size: i.manifest.size, platform: i.platform }))
  return { bytes: Buffer.from(stableJson({ schemaVersion: 2, mediaType, manifests })), mediaType }
}

/** Flatten each platform in turn, then write the index (`found`: the source's, when already read). */
export async function flattenIndex(opts: SourceOptions & { platforms?: string[] }, run: IndexRun, found?: SourceIndex): Promise<FlattenedIndex> {
  found ??= (await sourceIndex(opts)) ?? undefined
  if (!found) throw new DflattenError('usage', `${opts.image} is one image, not an index`)
  const source = parseSourceRef(opts.image)
  const images: FlattenedIndex['images'] = []
  for (const d of found.platforms) {
    opts.signal?.throwIfAborted()
    const platform = d.platform as Platform
    const manifest = await run.flattenOne({ ...opts, image: withDigest(source, d.digest), platform: formatPlatform(platform) })
    images.push({ platform, manifest })
  }
  const { bytes, mediaType } = indexOf(images)
  await run.writeIndex(bytes, mediaType)
  return { digest: sha256(bytes), mediaType, bytes, images }
}
