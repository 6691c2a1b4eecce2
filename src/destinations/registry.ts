/**
 * A registry repository (`-t docker://HOST/REPO:TAG`). Base blobs the repository has are
 * skipped (HEAD), ones another repository of the registry holds are mounted, the rest are
 * streamed across from the BlobSource; the new layer is compressed and uploaded as it is made
 * (one read: a registry learns the digest at the end); then the config, and the manifest last,
 * so an interrupted run leaves no tag (and the client cancels its open upload).
 */
import { connect, sha256, type ConnectOptions, type RegistryClient, type RegistryRef } from '../registry/index.js'
import { formatRef } from '../registry/reference.js'
import { stableJson } from '../image-archive.js'
import { DflattenError } from '../errors.js'
import { COMPRESSIONS } from '../compress/index.js'
import { eachBlob } from './blobs.js'
import { baseMediaType, formatFor, layerBlob, layerMediaType } from './layer.js'
import { buildManifest, configOf, isEarlierResult, type BlobRef } from './manifest.js'
import type { Destination, LayerDescriptor, ManifestFormat, ResultImage, WriteOptions } from './destination.js'

const CONFIG_LIMIT = 8 * 1024 * 1024

async function readAll(stream: AsyncIterable<Buffer>, limit: number): Promise<Buffer> {
  const parts: Buffer[] = []
  let n = 0
  for await (const c of stream) {
    n += c.length
    if (n > limit) throw new DflattenError('bad-data', 'an image config larger than 8 MB')
    parts.push(c)
  }
  return Buffer.concat(parts)
}

/**
 * Make the base's blobs present in the repository; returns each one's descriptor as the
 * manifest names it (a mounted copy may be another blob of the same layer).
 */
async function placeBase(client: RegistryClient, image: ResultImage, format: ManifestFormat, w: WriteOptions): Promise<BlobRef[]> {
  const log = w.log ?? (() => {})
  const refs: Array<BlobRef | null> = []
  const missing: Array<{ at: number; d: LayerDescriptor }> = []
  for (const [at, d] of image.baseLayers.entries()) {
    const here = await client.headBlob(d.digest, w.signal)
    if (here) {
      refs.push({ mediaType: baseMediaType(d.mediaType, format), digest: d.digest, size: d.size })
      continue
    }
    const placed = await fromElsewhere(client, image, d, format, w)
    refs.push(placed)
    if (!placed) missing.push({ at, d })
  }
  const skipped = refs.filter(Boolean).length
  if (skipped) log(`${skipped} of ${image.baseLayers.length} base layers already in ${client.ref.registry} (skipped or mounted)`)
  if (missing.length) {
    log(`uploading ${missing.length} base layer${missing.length === 1 ? '' : 's'} to ${client.label}`)
    const want = new Map(missing.map((m) => [m.d.digest, m]))
    for await (const b of eachBlob(image.base, missing.map((m) => m.d), w.signal)) {
      const up = await client.upload(b.stream, { digest: b.digest ?? undefined, signal: w.signal })
      const m = want.get(up.digest)
      if (!m) continue
      refs[m.at] = { mediaType: baseMediaType(m.d.mediaType, format), digest: m.d.digest, size: m.d.size }
      want.delete(up.digest)
    }
    const [left] = want.keys()
    if (left) throw new DflattenError('bad-data', `the base's blob ${left} is missing from what its source gave`)
  }
  return refs.map((r) => r as BlobRef)
}

/** A copy of the layer on this registry: there already, or mounted from another repository. */
async function fromElsewhere(client: RegistryClient, image: ResultImage, d: LayerDescriptor, format: ManifestFormat, w: WriteOptions): Promise<BlobRef | null> {
  const copies = (await image.base.elsewhere?.(d)) ?? []
  for (const c of copies) {
    if (c.registry !== client.ref.registry) continue
    let size = (await client.headBlob(c.digest, w.signal))?.size
    if (size === undefined && c.repository !== client.repository && (await client.mountBlob(c.digest, c.repository, w.signal))) {
      size = (await client.headBlob(c.digest, w.signal))?.size
    }
    if (size !== undefined) return { mediaType: baseMediaType(c.mediaType, format), digest: c.digest, size }
  }
  return null
}

export function registryDestination(ref: RegistryRef & { tag: string }, options: ConnectOptions = {}): Destination {
  let client: Promise<RegistryClient> | null = null
  const open = (): Promise<RegistryClient> => (client ??= connect(ref, options))
  return {
    label: formatRef(ref),
    keepsBlobs: true,
    needsSize: false,
    accepts: COMPRESSIONS,
    async cached(q, signal) {
      const c = await open()
      const head = await c.headManifest(ref.tag, undefined, signal)
      if (!head) return null
      const m = await c.getManifest(ref.tag, undefined, signal)
      const config = configOf(m.bytes)
      if (!config) return null
      const blob = await c.getBlob(config.digest, { size: config.size, signal })
      return isEarlierResult(m.bytes, await readAll(blob.stream, CONFIG_LIMIT), q) ? { imageId: config.digest, manifestDigest: m.digest } : null
    },
    async write(image, w) {
      const c = await open()
      const kind = w.compression.kind
      const format = formatFor(image.format, kind)
      const base = await placeBase(c, image, format, w)
      const pass = layerBlob(image.layer, w.compression, { ...w, stage: 'push' })
      const up = await c.upload(pass.stream, { signal: w.signal, what: `${c.label}: new layer` })
      const tar = pass.tar()
      const layer = { mediaType: layerMediaType(format, kind), digest: up.digest, size: up.size, diffId: tar.digest, tarSize: tar.size }
      const configJson = Buffer.from(stableJson(image.config(tar.digest)))
      const config = await c.uploadBytes(configJson, w.signal)
      const manifest = buildManifest(format, config, [...base, layer])
      w.signal?.throwIfAborted()
      await c.putManifest(w.untagged ? manifest.digest : ref.tag, manifest.bytes, manifest.mediaType, w.signal)
      return { imageId: config.digest, manifestDigest: manifest.digest, layer, manifest: { mediaType: manifest.mediaType, size: manifest.bytes.length } }
    },
    async writeIndex(bytes, mediaType, signal) {
      const c = await open()
      const held = (await c.headManifest(ref.tag, undefined, signal))?.digest === sha256(bytes)
      await c.putManifest(ref.tag, bytes, mediaType, signal)
      return held
    },
  }
}
