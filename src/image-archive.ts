/**
 * The image archive `docker load` reads: an OCI image layout naming only the new layer's blob,
 * plus Docker's manifest.json. Its outer tar is written by tar-stream, as its names are plain
 * ASCII; the layer inside it is ours (layer-tar.ts).
 */
import type { Readable } from 'node:stream'
import tar from 'tar-stream'
import { Digester, sha256 } from './layer-tar.js'

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

export interface ImageArchiveInput {
  /** The base's layers, which stay out of the archive: the daemon has them. */
  baseLayers: LayerDescriptor[]
  /** The new layer: its exact size and its bytes. */
  layer: { size: number; stream: Readable }
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
  layerSize: number
  configJson: string
}

/** Name of the layer's tar entry; `blobs/sha256/<diff id>` is a hardlink to it. */
const LAYER_ENTRY = 'dflatten/layer.tar'
const EPOCH = new Date(0)

function addEntry(pack: tar.Pack, name: string, data: string): void {
  pack.entry({ name, mode: 0o644, mtime: EPOCH, uid: 0, gid: 0 }, data)
}

/**
 * The image archive `docker load` reads, as one stream: the new layer first (its digest is only
 * known once it has streamed through), then config, manifests and index. It is an OCI image
 * layout that names only the new layer's blob; both image stores accept that when they already
 * hold the base (see NOTES), and a Docker-style manifest.json rides along for daemons that read
 * only that.
 */
export function imageArchive(input: ImageArchiveInput): Readable {
  const pack = tar.pack()
  const run = async (): Promise<void> => {
    addEntry(pack, 'oci-layout', '{"imageLayoutVersion":"1.0.0"}')
    const digester = new Digester()
    await new Promise<void>((resolve, reject) => {
      const sink = pack.entry(
        { name: LAYER_ENTRY, size: input.layer.size, mode: 0o644, mtime: EPOCH, uid: 0, gid: 0 },
        (err) => (err ? reject(err) : resolve()),
      )
      // A failing layer destroys the archive, which destroys this entry: its error must land
      // here, not as an unhandled event.
      sink.on('error', reject)
      input.layer.stream.on('error', reject)
      digester.on('error', reject)
      input.layer.stream.pipe(digester).pipe(sink)
    })
    if (digester.bytes !== input.layer.size) {
      throw new Error(`layer size mismatch: computed ${input.layer.size}, wrote ${digester.bytes}`)
    }
    const diffId = digester.digest
    const blob = (d: string): string => `blobs/sha256/${d.slice('sha256:'.length)}`
    pack.entry({ name: blob(diffId), type: 'link', linkname: LAYER_ENTRY, mtime: EPOCH, mode: 0o644 })

    const configJson = stableJson(input.config(diffId))
    const configDigest = sha256(configJson)
    addEntry(pack, blob(configDigest), configJson)

    const layers = [
      ...input.baseLayers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
      { mediaType: MEDIA_TYPES.layer, digest: diffId, size: input.layer.size },
    ]
    const manifestJson = stableJson({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.manifest,
      config: { mediaType: MEDIA_TYPES.config, digest: configDigest, size: Buffer.byteLength(configJson) },
      layers,
    })
    const manifestDigest = sha256(manifestJson)
    addEntry(pack, blob(manifestDigest), manifestJson)

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
          Config: blob(configDigest),
          RepoTags: input.tags,
          Layers: [...input.baseLayers.map((l) => blob(l.diffId)), blob(diffId)],
        },
      ]),
    )
    pack.finalize()
    input.onDone?.({ imageId: configDigest, diffId, layerSize: input.layer.size, configJson })
  }
  run().catch((err: unknown) => pack.destroy(err as Error))
  return pack as unknown as Readable
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
