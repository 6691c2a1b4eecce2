/**
 * Where the result lands: the interface every destination implements (the local daemon, an
 * archive file, a registry, an OCI layout dir), so the pipeline hands any of them the same
 * image without knowing which (modelled on go-containerregistry's small interfaces).
 *
 * What a destination is given is the result as parts: the new layer as an uncompressed tar it
 * can open (again, when the method can read it twice), the base's layers as descriptors, a
 * `BlobSource` to read a base blob it lacks, and the config as a function of the new layer's
 * diff id, which is only known once the layer has streamed.
 */
import type { Readable } from 'node:stream'
import type { LayerDescriptor } from '../image-archive.js'
import type { Compression, CompressionChoice } from '../compress/index.js'

export type { LayerDescriptor }

/** The new layer, as the uncompressed layer tar pack makes. */
export interface NewLayer {
  /** The tar from its first byte; each call streams the same bytes again (when reopenable). */
  open(): Readable
  /** Its exact byte size, when known before its bytes; null when learned only as it streams. */
  readonly size: number | null
  /** Whether open may be called more than once (a method that reads its source once cannot). */
  readonly reopenable: boolean
}

/** A base blob on its way out of a BlobSource. */
export interface SourceBlob {
  /** Its digest, or null when the source learns it only by hashing it (the caller does). */
  digest: string | null
  /** Its exact byte size. */
  size: number
  stream: Readable
}

/** A registry repository that holds a layer's content, maybe in another compression. */
export interface RemoteBlob {
  /** The registry as references name it (`127.0.0.1:5000`). */
  registry: string
  repository: string
  /** The blob's digest there (a gzip blob of the same diff id, say). */
  digest: string
  mediaType: string
}

/** Where base blobs come from when the destination lacks them. */
export interface BlobSource {
  /** The bytes of the blob the descriptor names. */
  open(descriptor: LayerDescriptor, signal?: AbortSignal): Promise<Readable>
  /**
   * The wanted blobs in the order the source reads them best (one docker save, say); each must
   * be read to its end or destroyed before the next is asked for. Absent: open each in turn.
   */
  each?(wanted: LayerDescriptor[], signal?: AbortSignal): AsyncIterable<SourceBlob>
  /** Registry repositories known to hold the layer's content, for a mount instead of an upload. */
  elsewhere?(descriptor: LayerDescriptor): Promise<RemoteBlob[]>
}

/** The result image, as parts. */
export interface ResultImage {
  layer: NewLayer
  /** The base's layers, base first, as the source holds them. */
  baseLayers: LayerDescriptor[]
  /** Reads a base blob the destination lacks. */
  base: BlobSource
  /** The image config, once the new layer's diff id is known. */
  config: (diffId: string) => object
  /** Full references (`name:tag`) the result gets; a destination with its own name ignores them. */
  tags: string[]
  /** The manifest's media type family, the source's: OCI (the default) or Docker v2. */
  format?: ManifestFormat
}

export type ManifestFormat = 'oci' | 'docker'

/** What a write is told besides the image. */
export interface WriteOptions {
  /** How the new layer is stored (already checked against the destination: see compressionFor). */
  compression: CompressionChoice
  signal?: AbortSignal
  /** Told how many bytes of the uncompressed layer have been read, of how many (0: unknown), per pass. */
  onProgress?: (stage: string, done: number, total: number) => void
  /** Progress lines for a human (a skipped or mounted blob, a cache hit). */
  log?: (line: string) => void
  /** Store the image by its manifest digest only, for an index to name (see writeIndex). */
  untagged?: boolean
  /** The run's work dir: what a write makes outside it is recorded there first, for cleanup. */
  workDir?: string
}

/** The new layer's blob as the destination stored it. */
export interface StoredLayer {
  mediaType: string
  digest: string
  size: number
  diffId: string
  /** The uncompressed tar's size. */
  tarSize: number
}

/** What a write made. */
export interface WriteResult {
  /** The config's digest (the classic store's image id). */
  imageId: string
  /** The manifest's digest (the containerd store's and a registry's name for the image). */
  manifestDigest: string
  layer: StoredLayer
  /** What the daemon said it loaded (daemon destination only). */
  loaded?: { tags: string[]; ids: string[] }
  /** The manifest as an index names it (registry and OCI dir). */
  manifest?: { mediaType: string; size: number }
}

/** What a destination can tell about an earlier run's result, for the cache. */
export interface CacheQuery {
  /** The marker the result's newest history entry carries (see src/rerun.ts). */
  marker: string
  /** The --message it carries with it. */
  message?: string | null
  /** The base's diff ids: the result's first layers. */
  baseLayers: string[]
  compression: CompressionChoice
}

/** An earlier result a destination holds: its config's and its manifest's digests. */
export interface HeldResult {
  imageId: string
  manifestDigest: string
}

export interface Destination {
  /** What messages call it: `the local daemon`, `127.0.0.1:5000/app:1`, `oci:DIR:TAG`. */
  readonly label: string
  /** Keeps layers as blobs at rest (a registry, an OCI dir, the containerd store): compression defaults to gzip. */
  readonly keepsBlobs: boolean
  /** Needs a blob's size before its bytes (a tar entry): a compressed layer then takes two reads. */
  readonly needsSize: boolean
  /** The compressions it can store. */
  readonly accepts: readonly Compression[]
  /** The earlier result it holds, or null. */
  cached?(query: CacheQuery, signal?: AbortSignal): Promise<HeldResult | null>
  /** Write the image; resolves once the destination holds all of it. */
  write(image: ResultImage, opts: WriteOptions): Promise<WriteResult>
  /**
   * Name an index of images written untagged with the destination's tag; resolves with whether
   * the tag already named exactly this index. Absent: the destination holds single images only.
   */
  writeIndex?(bytes: Buffer, mediaType: string, signal?: AbortSignal): Promise<boolean>
}
