/**
 * The image archive `docker load` reads: an OCI image layout naming the new layer's blob (and,
 * for a complete archive, the base's), plus Docker's manifest.json. Its outer tar is written by tar-stream, as its names are plain
 * ASCII; the layer inside it is ours (layer-tar.ts).
 */
import type { Readable } from 'node:stream'
import tar from 'tar-stream'
import { Digester, sha256 } from './layer-tar.js'
import { DflattenError } from './errors.js'

/** JSON with object keys sorted at every level: the same value always gives the same bytes. */
export function stableJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const sorted: Record<string, unknown> = {}
      for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k]
      return sorted
    }
    return v
  })
}

export const MEDIA_TYPES = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
} as const

/** A layer the daemon already has, described as the daemon stores it. */
export interface LayerDescriptor {
  mediaType: string
  digest: string
  size: number
  diffId: string
}

/** A base blob to put in the archive (a complete archive), as a BlobSource gives it. */
export interface ArchiveBlob {
  /** Its digest, or null when only hashing it tells (docker save before Docker 25). */
  digest: string | null
  size: number
  stream: Readable
}

/** The new layer's blob as measured by a first read (see src/destinations/layer.ts). */
export interface MeasuredBlob {
  mediaType: string
  digest: string
  size: number
  diffId: string
  tarSize: number
}

export interface ImageArchiveInput {
  /** The base's layers, as the source holds them. */
  baseLayers: LayerDescriptor[]
  /**
   * The base's blobs, to make the archive complete (it then loads where the base is not);
   * absent, the archive holds the new layer alone and loads only where the base already is.
   */
  baseBlobs?: AsyncIterable<ArchiveBlob>
  /**
   * The new layer: the uncompressed tar and its exact size, or, with `blob` (measured by a
   * first read), the compressed blob's bytes, which must hash to it; or, `stored`, a blob the
   * daemon's store already holds (written into it beforehand), which the archive only names.
   */
  layer: { size: number; stream: Readable; blob?: MeasuredBlob } | { stored: MeasuredBlob }
  /** Builds the image config once the new layer's diff id is known. */
  config: (diffId: string) => object
  /** Full references (`name:tag`) the loaded image gets, or none. */
  tags: string[]
  /** Called once the archive is complete, with what it holds. */
  onDone?: (result: ImageArchiveResult) => void
}

export interface ImageArchiveResult {
  imageId: string
  diffId: string
  /** The uncompressed layer tar's size. */
  layerSize: number
  configJson: string
  manifestDigest: string
  /** The new layer's descriptor in the manifest. */
  layer: MeasuredBlob
}

/** Name of the layer's tar entry; `blobs/sha256/<diff id>` is a hardlink to it. */
const LAYER_ENTRY = 'dflatten/layer.tar'
const EPOCH = new Date(0)

function addEntry(pack: tar.Pack, name: string, data: string): void {
  pack.entry({ name, mode: 0o644, mtime: EPOCH, uid: 0, gid: 0 }, data)
}

const blobPath = (d: string): string => `blobs/sha256/${d.slice('sha256:'.length)}`

/** The digest an OCI layout's blob name is (`blobs/sha256/HEX`, as `docker save` writes it), or null. */
export function digestInName(name: string): string | null {
  const m = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(name)
  return m ? `sha256:${m[1]}` : null
}

/** Stream `source` into a new entry of `size` bytes; resolves with its digest and length. */
function streamEntry(pack: tar.Pack, name: string, size: number, source: Readable): Promise<Digester> {
  const digester = new Digester()
  return new Promise<Digester>((resolve, reject) => {
    const sink = pack.entry({ name, size, mode: 0o644, mtime: EPOCH, uid: 0, gid: 0 }, (err) => (err ? reject(err) : resolve(digester)))
    // A failing layer destroys the archive, which destroys this entry: its error must land
    // here, not as an unhandled event.
    sink.on('error', reject)
    source.on('error', reject)
    digester.on('error', reject)
    source.pipe(digester).pipe(sink)
  })
}

/**
 * Base blobs into the archive as they come: one whose digest is known goes under its blob name;
 * one known only by hashing goes under a name of its own and gets its blob name as a hardlink.
 */
async function addBaseBlobs(pack: tar.Pack, blobs: AsyncIterable<ArchiveBlob>, wanted: LayerDescriptor[]): Promise<void> {
  const missing = new Set(wanted.map((l) => l.digest))
  let n = 0
  for await (const b of blobs) {
    if (b.digest !== null && !missing.has(b.digest)) {
      b.stream.destroy()
      continue
    }
    const name = b.digest ? blobPath(b.digest) : `dflatten/base-${n++}.tar`
    const got = await streamEntry(pack, name, b.size, b.stream)
    if (b.digest !== null && got.digest !== b.digest) {
      throw new DflattenError('bad-data', `the base's blob ${b.digest.slice(0, 19)} hashes to ${got.digest}`)
    }
    if (b.digest === null && missing.has(got.digest)) {
      pack.entry({ name: blobPath(got.digest), type: 'link', linkname: name, mtime: EPOCH, mode: 0o644 })
    }
    missing.delete(got.digest)
  }
  const [first] = missing
  if (first) throw new DflattenError('bad-data', `the base's blob ${first} is missing from what its source gave`)
}

/**
 * The image archive `docker load` reads, as one stream: base blobs (when asked) and the new
 * layer first (its digest is only known once it has streamed through, unless a first read
 * measured it), then config, manifests and index. It is an OCI image layout; without base
 * blobs it names only the new layer's blob, which both image stores accept when they already
 * hold the base (see NOTES), and a Docker-style manifest.json rides along for daemons that read
 * only that.
 */
export function imageArchive(input: ImageArchiveInput): Readable {
  const pack = tar.pack()
  const run = async (): Promise<void> => {
    addEntry(pack, 'oci-layout', '{"imageLayoutVersion":"1.0.0"}')
    if (input.baseBlobs) await addBaseBlobs(pack, input.baseBlobs, input.baseLayers)
    const layer = await addLayer(pack, input.layer)
    const diffId = layer.diffId

    const configJson = stableJson(input.config(diffId))
    const configDigest = sha256(configJson)
    addEntry(pack, blobPath(configDigest), configJson)

    const layers = [
      ...input.baseLayers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
      { mediaType: layer.mediaType, digest: layer.digest, size: layer.size },
    ]
    const manifestJson = stableJson({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.manifest,
      config: { mediaType: MEDIA_TYPES.config, digest: configDigest, size: Buffer.byteLength(configJson) },
      layers,
    })
    const manifestDigest = sha256(manifestJson)
    addEntry(pack, blobPath(manifestDigest), manifestJson)

    const manifests = (input.tags.length ? input.tags : [undefined]).map((tag) => ({
      mediaType: MEDIA_TYPES.manifest,
      digest: manifestDigest,
      size: Buffer.byteLength(manifestJson),
      ...(tag ? { annotations: refAnnotations(tag) } : {}),
    }))
    addEntry(pack, 'index.json', stableJson({ schemaVersion: 2, mediaType: MEDIA_TYPES.index, manifests }))
    addEntry(
      pack,
      'manifest.json',
      stableJson([
        {
          Config: blobPath(configDigest),
          RepoTags: input.tags,
          Layers: [...input.baseLayers.map((l) => blobPath(l.digest)), blobPath(layer.digest)],
        },
      ]),
    )
    pack.finalize()
    input.onDone?.({ imageId: configDigest, diffId, layerSize: layer.tarSize, configJson, manifestDigest, layer })
  }
  run().catch((err: unknown) => pack.destroy(err as Error))
  return pack as unknown as Readable
}

/** The new layer's entry: the plain tar (hardlinked to its digest's name), the measured blob, or none for a stored one. */
async function addLayer(pack: tar.Pack, layer: ImageArchiveInput['layer']): Promise<MeasuredBlob> {
  if ('stored' in layer) return layer.stored
  if (layer.blob) {
    const want = layer.blob
    const got = await streamEntry(pack, blobPath(want.digest), want.size, layer.stream)
    if (got.digest !== want.digest) {
      throw new DflattenError('bad-data', `the layer came out different on its second read (${got.digest}, measured ${want.digest}); the source changed while it was read`)
    }
    return want
  }
  const got = await streamEntry(pack, LAYER_ENTRY, layer.size, layer.stream)
  if (got.bytes !== layer.size) throw new Error(`layer size mismatch: computed ${layer.size}, wrote ${got.bytes}`)
  pack.entry({ name: blobPath(got.digest), type: 'link', linkname: LAYER_ENTRY, mtime: EPOCH, mode: 0o644 })
  return { mediaType: MEDIA_TYPES.layer, digest: got.digest, size: layer.size, diffId: got.digest, tarSize: layer.size }
}

/** containerd names images fully qualified; the OCI ref name is the tag alone. */
export function refAnnotations(tag: string): Record<string, string> {
  return {
    'io.containerd.image.name': fullyQualified(tag),
    'org.opencontainers.image.ref.name': tag.slice(tag.lastIndexOf(':') + 1),
  }
}

/** `app:1` -> `docker.io/library/app:1`, as Docker's reference normalisation does. */
export function fullyQualified(ref: string): string {
  const slash = ref.indexOf('/')
  const first = slash === -1 ? '' : ref.slice(0, slash)
  const hasDomain = first.includes('.') || first.includes(':') || first === 'localhost'
  if (hasDomain) return ref
  return slash === -1 ? `docker.io/library/${ref}` : `docker.io/${ref}`
}
