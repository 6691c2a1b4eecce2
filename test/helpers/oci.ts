// OCI image layouts for the daemonless source tests: written by hand (layers gzip, zstd or
// plain), and a flatten's result written by the real OCI destination.
import { createHash } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { execa } from 'execa'
import { stableJson } from '../../src/image-archive.js'
import { encodeTarHeader, END_OF_ARCHIVE, padding, readTar } from '../../src/tar/index.js'
import { getMethod } from '../../src/methods/index.js'
import { packImage } from '../../src/stages/pack.js'
import { ociDestination } from '../../src/destinations/oci.js'
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
 * through the OCI destination (tagged `tag`, or untagged), as `-t oci:DIR:TAG` does.
 */
export async function writeFlattened(plan: Plan, dir: string, tag: string | undefined, settings: Settings = {}): Promise<IndexEntry & { diffId: string; layerBytes: number }> {
  const method = getMethod(plan.method.name)
  const ctx = { settings }
  const mounted = { ...plan, dflatten: 'mounted', workspace: { dir } } as Mounted
  const found = await method.entries(mounted, ctx)
  const diffed: Diffed = { ...mounted, dflatten: 'diffed', method: { ...plan.method, state: found.state }, image: found.image, diff: null, entries: null, layerSize: null }
  const image = packImage(diffed, { settings })
  const w = await ociDestination(dir, tag ?? 'untagged').write(image, { compression: { kind: 'none' } })
  const manifest = await readFile(join(dir, 'blobs', 'sha256', w.manifestDigest.slice(7)))
  const [os, architecture, variant] = (plan.source.platform ?? 'linux/amd64').split('/')
  const entry: IndexEntry = { mediaType: OCI_MANIFEST, digest: w.manifestDigest, size: manifest.length, platform: { os, architecture, ...(variant ? { variant } : {}) } }
  if (!tag) await dropTag(dir, 'untagged')
  return { ...entry, diffId: w.layer.diffId, layerBytes: w.layer.tarSize }
}

/** Take `tag` out of the layout's index.json (its blobs stay). */
async function dropTag(dir: string, tag: string): Promise<void> {
  const file = join(dir, 'index.json')
  const index = JSON.parse(await readFile(file, 'utf8')) as { manifests: IndexEntry[] }
  index.manifests = index.manifests.filter((m) => m.annotations?.['org.opencontainers.image.ref.name'] !== tag)
  await writeFile(file, JSON.stringify(index))
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
