/**
 * The local daemon: the image archive streamed into `docker load` (no temp file). The classic
 * store unpacks every layer and compresses only when it pushes, so the layer goes in as it is
 * by default; the containerd store keeps blobs as they come, so it gets gzip by default (an
 * uncompressed layer would stay full size in its content store, saves and pushes).
 *
 * An archive entry needs the compressed blob's size before its bytes, which costs a measuring
 * read. Where the daemon's containerd answers here (root, a local daemon), the blob is written
 * straight into its content store instead, in one read, under a lease (lease.ts), and the
 * archive only names it.
 */
import { pipeline } from 'node:stream/promises'
import type { DaemonInfo, LoadOutput } from '../docker.js'
import { loadStage } from '../stages/load.js'
import { contentSize, writeContent } from '../containerd-api.js'
import type { Containerd } from '../containerd.js'
import { archiveStream, toResult } from './archive.js'
import { layerBlob, layerMediaType } from './layer.js'
import { dropLease, holdLease } from './lease.js'
import type { Compression } from '../compress/index.js'
import type { Destination, ResultImage, WriteOptions, WriteResult } from './destination.js'

/** Docker learned zstd layers in 23 (moby's archive.DecompressStream); 20.10 refuses them. */
export function daemonTakesZstd(info: DaemonInfo): boolean {
  const major = Number(/^(\d+)\./.exec(info.serverVersion)?.[1] ?? 0)
  return major >= 23
}

export interface DaemonOptions {
  /** Leave the base's blobs out of the archive (the default: the daemon holds them already). */
  layerOnly?: boolean
  /** The containerd behind a containerd-store daemon, to write the blob into directly. */
  containerd?: Containerd
}

/**
 * Whether `c` is the daemon's containerd and answers here: its socket is ours to use (a missing
 * or forbidden one fails the call) and its content store holds the base's first blob. Without a
 * base layer to check by, it is not used.
 */
async function contentStoreHere(c: Containerd, image: ResultImage, signal?: AbortSignal): Promise<boolean> {
  if (image.baseLayers.length === 0) return false
  const first = image.baseLayers[0]
  try {
    return (await contentSize(c, first.digest, signal)) === first.size
  } catch {
    signal?.throwIfAborted()
    return false
  }
}

async function load(stream: NodeJS.ReadableStream, w: WriteOptions): Promise<LoadOutput | undefined> {
  let loaded: LoadOutput | undefined
  await pipeline(stream, loadStage({ signal: w.signal, onDone: (o) => (loaded = o) }), { signal: w.signal })
  return loaded
}

/** The blob into the content store under a lease, then the archive that names it. */
async function writeThroughContent(c: Containerd, dir: string, image: ResultImage, w: WriteOptions): Promise<WriteResult> {
  const lease = await holdLease(dir, c, w.signal)
  w.log?.(`writing the new layer into the content store of containerd at ${c.address} (lease ${lease})`)
  try {
    const blob = layerBlob(image.layer, w.compression, { ...w, stage: 'pack' })
    const written = await writeContent(c, lease, `${lease}-layer`, blob.stream, w.signal)
    const tar = blob.tar()
    const stored = { mediaType: layerMediaType('oci', w.compression.kind), ...written, diffId: tar.digest, tarSize: tar.size }
    const { stream, result } = await archiveStream(image, { ...w, layerOnly: true, stored })
    const loaded = await load(stream, w)
    return { ...toResult(result()), loaded }
  } finally {
    // Once loaded, the image holds the blob; after a failure, what the lease held goes with it.
    // Should the delete fail, the record stays: removing the work dir tries again, and says so.
    await dropLease(dir).catch(() => undefined)
  }
}

export function daemonDestination(info: DaemonInfo, opts: DaemonOptions = {}): Destination {
  const accepts: Compression[] = daemonTakesZstd(info) ? ['gzip', 'zstd', 'none'] : ['gzip', 'none']
  const layerOnly = opts.layerOnly ?? true
  return {
    label: `the local daemon (Docker ${info.serverVersion})`,
    keepsBlobs: info.containerdStore,
    needsSize: true,
    accepts,
    async write(image, w) {
      const c = opts.containerd
      if (c && w.workDir && layerOnly && w.compression.kind !== 'none' && (await contentStoreHere(c, image, w.signal))) {
        return writeThroughContent(c, w.workDir, image, w)
      }
      // The daemon holds the base: only the new layer goes in, unless asked otherwise.
      const { stream, result } = await archiveStream(image, { ...w, layerOnly })
      const loaded = await load(stream, w)
      return { ...toResult(result()), loaded }
    },
  }
}
