// OCI image layouts for the daemonless source tests: written by hand (layers gzip, zstd or
// plain), and a minimal writer for a flatten's result (the destinations are another module's):
// the new layer as an uncompressed blob, the config, the manifest, the base blobs copied from
// the source, and index.json naming it.
import { createHash } from 'node:crypto'
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { layerTar } from '../../src/sources/decompress.js'
import { createWriteStream } from 'node:fs'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { gzipSync } from 'node:zlib'
import { execa } from 'execa'
import { stableJson, type LayerDescriptor } from '../../src/image-archive.js'
import { layerStream } from '../../src/layer-tar.js'
import { encodeTarHeader, END_OF_ARCHIVE, padding, readTar } from '../../src/tar/index.js'
import { getMethod } from '../../src/methods/index.js'
import { flattenedConfig } from '../../src/stages/pack.js'
import { openStore } from '../../src/sources/open.js'
import { parseSourceRef } from '../../src/sources/reference.js'
import type { Diffed, Mounted, Plan } from '../../src/plan.js'
import type { Settings } from '../../src/settings.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'

function digestOf(b: Buffer | string): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex')
}

async function putBlob(dir: string, bytes: Buffer | string): Promise<string> {
  const digest = digestOf(bytes)
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true })
  await writeFile(join(dir, 'blobs', 'sha256', digest.slice(7)), bytes)
  return digest
}

interface IndexEntry {
  mediaType: string
  digest: string
  size: number
  annotations?: Record<string, string>
  platform?: { os: string; architecture: string; variant?: string }
}

const DOCKER_LAYERS: Record<string, string> = {
  'application/vnd.docker.image.rootfs.diff.tar.gzip': 'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.docker.image.rootfs.diff.tar': 'application/vnd.oci.image.layer.v1.tar',
}

function ociLayerType(mediaType: string): string {
  return DOCKER_LAYERS[mediaType] ?? mediaType
}

/** Add `entry` to the layout's index.json, replacing any with the same tag. */
export async function addToIndex(dir: string, entry: IndexEntry): Promise<void> {
  const file = join(dir, 'index.json')
  const index = JSON.parse(await readFile(file, 'utf8').catch(() => '{"schemaVersion":2,"manifests":[]}')) as { manifests: IndexEntry[] }
  const tag = entry.annotations?.['org.opencontainers.image.ref.name']
  index.manifests = index.manifests.filter((m) => !tag || m.annotations?.['org.opencontainers.image.ref.name'] !== tag)
  index.manifests.push(entry)
  await writeFile(file, JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: index.manifests }))
  await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}')
}

export type Codec = 'gzip' | 'zstd' | 'none'

async function compress(tar: Buffer, codec: Codec): Promise<Buffer> {
  if (codec === 'gzip') return gzipSync(tar)
  if (codec === 'zstd') return Buffer.from((await execa('zstd', ['-q', '-c'], { input: tar, encoding: 'buffer' })).stdout)
  return tar
}

export interface LayoutImage {
  tag?: string
  /** Layer tars, base first. */
  layers: Buffer[]
  codec?: Codec
  annotations?: Record<string, string>
  platform?: { os: string; architecture: string; variant?: string }
  config?: Record<string, unknown>
}

/** Write one image into the layout; returns its manifest descriptor (tagged in index.json if `tag`). */
export async function writeImage(dir: string, img: LayoutImage): Promise<IndexEntry> {
  const codec = img.codec ?? 'gzip'
  const layers = []
  for (const tar of img.layers) {
    const blob = await compress(tar, codec)
    layers.push({ mediaType: `application/vnd.oci.image.layer.v1.tar${codec === 'none' ? '' : '+' + codec}`, digest: await putBlob(dir, blob), size: blob.length })
  }
  const platform = img.platform ?? { os: 'linux', architecture: 'amd64' }
  const config = stableJson({
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    created: '2026-01-01T00:00:00Z',
    config: { Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: img.layers.map((l) => digestOf(l)) },
    history: img.layers.map((_, i) => ({ created: '2026-01-01T00:00:00Z', created_by: `layer ${i}` })),
    ...img.config,
  })
  const manifest = stableJson({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: await putBlob(dir, config), size: Buffer.byteLength(config) },
    layers,
    ...(img.annotations ? { annotations: img.annotations } : {}),
  })
  const entry: IndexEntry = { mediaType: OCI_MANIFEST, digest: await putBlob(dir, manifest), size: Buffer.byteLength(manifest), platform }
  if (img.tag) await addToIndex(dir, { ...entry, annotations: { 'org.opencontainers.image.ref.name': img.tag } })
  return entry
}

/** Write an index of `entries` (manifest descriptors with platforms) under `tag`. */
export async function writeIndex(dir: string, tag: string, entries: IndexEntry[]): Promise<void> {
  const index = stableJson({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: entries })
  await addToIndex(dir, { mediaType: OCI_INDEX, digest: await putBlob(dir, index), size: Buffer.byteLength(index), annotations: { 'org.opencontainers.image.ref.name': tag } })
}

/**
 * Run a daemonless plan's method to the end and write the result into the OCI layout `dir`
 * (tagged `tag`, or untagged): what a destination will do, kept minimal for the tests.
 */
export async function writeFlattened(plan: Plan, dir: string, tag: string | undefined, settings: Settings = {}): Promise<IndexEntry & { diffId: string; layerBytes: number }> {
  const method = getMethod(plan.method.name)
  const ctx = { settings }
  const mounted = { ...plan, dflatten: 'mounted', workspace: { dir } } as Mounted
  const found = await method.entries(mounted, ctx)
  const diffed: Diffed = { ...mounted, dflatten: 'diffed', method: { ...plan.method, state: found.state }, image: found.image, diff: null, entries: null, layerSize: null }
  const src = method.layer(diffed, ctx)
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true })
  const partial = join(dir, 'blobs', 'layer.partial')
  const hash = createHash('sha256')
  let bytes = 0
  const stream = layerStream(src.entries, src.content, src.finish)
  stream.on('data', (c: Buffer) => {
    hash.update(c)
    bytes += c.length
  })
  try {
    await pipeline(stream, createWriteStream(partial))
  } finally {
    src.close?.()
  }
  const diffId = 'sha256:' + hash.digest('hex')
  await rename(partial, join(dir, 'blobs', 'sha256', diffId.slice(7)))
  // The base's blobs, as the source holds them.
  // zstd base layers are stored plain: skopeo cannot hand zstd to a daemon (a real destination
  // copies or mounts them as they are).
  const base: LayerDescriptor[] = found.image.baseDescriptors.map((d) => (d.mediaType.endsWith('+zstd') ? { ...d, mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: d.diffId, size: -1 } : d))
  const store = await openStore(parseSourceRef(plan.source.ref), settings.registry)
  try {
    for (const [i, d] of base.entries()) {
      const file = join(dir, 'blobs', 'sha256', d.digest.slice(7))
      const from = found.image.baseDescriptors[i]
      if (d.size >= 0) await pipeline(await store.open(d), createWriteStream(file))
      else {
        await pipeline(Readable.from(layerTar(store, from, 'test')), createWriteStream(file))
        d.size = (await stat(file)).size
      }
    }
  } finally {
    await store.close()
  }
  const config = stableJson(flattenedConfig(diffed, diffId))
  const manifest = stableJson({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: await putBlob(dir, config), size: Buffer.byteLength(config) },
    // An OCI manifest names OCI layer types (skopeo refuses Docker ones in it): same bytes, OCI names.
    layers: [...base.map(({ mediaType, digest, size }) => ({ mediaType: ociLayerType(mediaType), digest, size })), { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: diffId, size: bytes }],
  })
  const [os, architecture, variant] = (plan.source.platform ?? 'linux/amd64').split('/')
  const entry: IndexEntry = { mediaType: OCI_MANIFEST, digest: await putBlob(dir, manifest), size: Buffer.byteLength(manifest), platform: { os, architecture, ...(variant ? { variant } : {}) } }
  if (tag) await addToIndex(dir, { ...entry, annotations: { 'org.opencontainers.image.ref.name': tag } })
  return { ...entry, diffId, layerBytes: bytes }
}

/** The layer tars (decompressed) of the image tagged `tag` in a layout, base first. */
export async function layoutLayers(dir: string, tag: string): Promise<Buffer[]> {
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: IndexEntry[] }
  const d = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag)
  if (!d) throw new Error(`no ${tag} in ${dir}`)
  const blob = (digest: string) => readFile(join(dir, 'blobs', 'sha256', digest.slice(7)))
  const manifest = JSON.parse((await blob(d.digest)).toString()) as { layers: Array<{ digest: string; mediaType: string }> }
  const out: Buffer[] = []
  for (const l of manifest.layers) {
    const b = await blob(l.digest)
    if (l.mediaType.endsWith('+gzip')) out.push((await import('node:zlib')).gunzipSync(b))
    else if (l.mediaType.endsWith('+zstd')) out.push(Buffer.from((await execa('zstd', ['-d', '-q', '-c'], { input: b, encoding: 'buffer' })).stdout))
    else out.push(b)
  }
  return out
}

const TYPE: Record<string, string> = { dir: '5', file: '0', symlink: '2', link: '1' }

/** A model layer (test/helpers/model.ts) as tar bytes. */
export function modelTar(layer: Array<{ name: string; type: string; content?: string; link?: string }>): Buffer {
  const parts: Buffer[] = []
  for (const e of layer) {
    const data = e.type === 'file' ? Buffer.from(e.content ?? '') : Buffer.alloc(0)
    parts.push(
      encodeTarHeader({
        name: Buffer.from(e.type === 'dir' ? `${e.name}/` : e.name),
        type: TYPE[e.type],
        mode: e.type === 'dir' ? 0o755 : 0o644,
        uid: 0,
        gid: 0,
        size: data.length,
        mtime: 0,
        linkname: Buffer.from(e.type === 'symlink' ? (e.content ?? '') : (e.link ?? '')),
        devmajor: 0,
        devminor: 0,
        xattrs: [],
      }),
      data,
      Buffer.alloc(padding(data.length)),
    )
  }
  parts.push(Buffer.alloc(END_OF_ARCHIVE))
  return Buffer.concat(parts)
}

/** A tar's entries as model entries. */
export async function tarModel(tar: Buffer): Promise<Array<{ name: string; type: string; content?: string; link?: string }>> {
  const out = []
  for await (const e of readTar((async function* () { yield tar })())) {
    const c: Buffer[] = []
    for await (const b of e.body()) c.push(b)
    const name = e.name.toString().replace(/^\.\//, '').replace(/\/$/, '')
    const type = { '0': 'file', '1': 'link', '2': 'symlink', '5': 'dir' }[e.type] ?? e.type
    out.push({ name, type, content: type === 'file' ? Buffer.concat(c).toString() : type === 'symlink' ? e.linkname.toString() : undefined, link: type === 'link' ? e.linkname.toString() : undefined })
  }
  return out
}
