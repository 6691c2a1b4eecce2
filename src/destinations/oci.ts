/**
 * An OCI image layout dir (`-t oci:DIR[:TAG]`), as skopeo and containerd read it. Each blob is
 * written under a temp name in DIR/blobs/sha256 and renamed to its digest once complete (blobs
 * already there are skipped), `oci-layout` is made if missing, and index.json is replaced last,
 * in one rename: a run that stops early leaves the dir as it was, plus at most a temp file.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { access, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Transform, type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { stableJson } from '../image-archive.js'
import { DflattenError } from '../errors.js'
import { COMPRESSIONS } from '../compress/index.js'
import { eachBlob } from './blobs.js'
import { baseMediaType, layerBlob, layerMediaType, OCI } from './layer.js'
import { buildManifest, configOf, isEarlierResult, type BlobRef } from './manifest.js'
import type { Destination } from './destination.js'

const REF_NAME = 'org.opencontainers.image.ref.name'
const TEMP_PREFIX = '.dflatten-'

interface IndexJson {
  schemaVersion: number
  mediaType?: string
  manifests: Array<{ mediaType: string; digest: string; size: number; annotations?: Record<string, string> }>
}

const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false)

export function ociDestination(dir: string, tag: string): Destination {
  const blobs = join(dir, 'blobs', 'sha256')
  const blobFile = (digest: string): string => join(blobs, digest.replace(/^sha256:/, ''))

  /** A blob into the dir; resolves with its digest and size. */
  async function writeBlob(stream: Readable, signal?: AbortSignal): Promise<{ digest: string; size: number }> {
    const temp = join(blobs, `${TEMP_PREFIX}${randomBytes(6).toString('hex')}`)
    const hash = createHash('sha256')
    let size = 0
    const hashing = new Transform({
      transform(c: Buffer, _e, cb) {
        hash.update(c)
        size += c.length
        cb(null, c)
      },
    })
    try {
      await pipeline(stream, hashing, createWriteStream(temp, { mode: 0o644 }), { signal })
      const digest = `sha256:${hash.digest('hex')}`
      await rename(temp, blobFile(digest))
      return { digest, size }
    } catch (e) {
      await rm(temp, { force: true })
      throw e
    }
  }

  /** A small blob held in memory, the same way: a temp name, then its digest's. */
  async function writeBytes(bytes: Buffer, digest: string): Promise<void> {
    if (await exists(blobFile(digest))) return
    const temp = join(blobs, `${TEMP_PREFIX}${randomBytes(6).toString('hex')}`)
    await writeFile(temp, bytes, { mode: 0o644 })
    await rename(temp, blobFile(digest))
  }

  async function readIndex(): Promise<IndexJson> {
    const path = join(dir, 'index.json')
    if (!(await exists(path))) return { schemaVersion: 2, mediaType: OCI.index, manifests: [] }
    try {
      const index = JSON.parse(await readFile(path, 'utf8')) as IndexJson
      if (!Array.isArray(index.manifests)) throw new Error('no manifests list')
      return index
    } catch (e) {
      throw new DflattenError('bad-data', `${path} is not an OCI index (${(e as Error).message})`)
    }
  }

  /** Point the tag at a manifest or index: index.json replaced whole, by rename. */
  async function name(d: { mediaType: string; digest: string; size: number }): Promise<void> {
    const index = await readIndex()
    index.manifests = index.manifests.filter((m) => m.annotations?.[REF_NAME] !== tag)
    index.manifests.push({ ...d, annotations: { [REF_NAME]: tag } })
    const temp = join(dir, `${TEMP_PREFIX}index-${randomBytes(6).toString('hex')}.json`)
    await writeFile(temp, JSON.stringify(index))
    await rename(temp, join(dir, 'index.json'))
  }

  async function layout(): Promise<void> {
    await mkdir(blobs, { recursive: true })
    const marker = join(dir, 'oci-layout')
    if (!(await exists(marker))) await writeFile(marker, '{"imageLayoutVersion":"1.0.0"}')
  }

  return {
    label: `oci:${dir}:${tag}`,
    keepsBlobs: true,
    needsSize: false,
    accepts: COMPRESSIONS,
    async cached(q) {
      if (!(await exists(join(dir, 'index.json')))) return null
      const entry = (await readIndex()).manifests.find((m) => m.annotations?.[REF_NAME] === tag)
      if (!entry) return null
      const manifest = await readFile(blobFile(entry.digest)).catch(() => null)
      const config = manifest && configOf(manifest)
      const configJson = config && (await readFile(blobFile(config.digest)).catch(() => null))
      return manifest && configJson && isEarlierResult(manifest, configJson, q) ? { imageId: config.digest, manifestDigest: entry.digest } : null
    },
    async write(image, w) {
      await layout()
      const base: BlobRef[] = image.baseLayers.map((d) => ({ mediaType: baseMediaType(d.mediaType, 'oci'), digest: d.digest, size: d.size }))
      const missing = []
      for (const d of image.baseLayers) if (!(await exists(blobFile(d.digest)))) missing.push(d)
      const want = new Set(missing.map((d) => d.digest))
      for await (const b of eachBlob(image.base, missing, w.signal)) {
        const got = await writeBlob(b.stream, w.signal)
        if (b.digest !== null && got.digest !== b.digest) throw new DflattenError('bad-data', `the base's blob ${b.digest} hashes to ${got.digest}`)
        want.delete(got.digest)
      }
      const [left] = want
      if (left) throw new DflattenError('bad-data', `the base's blob ${left} is missing from what its source gave`)

      const kind = w.compression.kind
      const pass = layerBlob(image.layer, w.compression, { ...w, stage: 'write' })
      const blob = await writeBlob(pass.stream, w.signal)
      const tar = pass.tar()
      const layer = { mediaType: layerMediaType('oci', kind), digest: blob.digest, size: blob.size, diffId: tar.digest, tarSize: tar.size }
      const configBytes = Buffer.from(stableJson(image.config(tar.digest)))
      const configDigest = `sha256:${createHash('sha256').update(configBytes).digest('hex')}`
      await writeBytes(configBytes, configDigest)
      const manifest = buildManifest('oci', { digest: configDigest, size: configBytes.length }, [...base, layer])
      await writeBytes(manifest.bytes, manifest.digest)

      w.signal?.throwIfAborted()
      if (!w.untagged) await name({ mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.bytes.length })
      return { imageId: configDigest, manifestDigest: manifest.digest, layer, manifest: { mediaType: manifest.mediaType, size: manifest.bytes.length } }
    },
    async writeIndex(bytes, mediaType, signal) {
      await layout()
      const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`
      const held = (await readIndex()).manifests.find((m) => m.annotations?.[REF_NAME] === tag)?.digest === digest
      await writeBytes(bytes, digest)
      signal?.throwIfAborted()
      await name({ mediaType, digest, size: bytes.length })
      return held
    },
  }
}
