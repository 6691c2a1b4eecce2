/**
 * The local daemon: the image archive streamed into `docker load` (no temp file). The classic
 * store unpacks every layer and compresses only when it pushes, so the layer goes in as it is
 * by default; the containerd store keeps blobs as they come, so it gets gzip by default (an
 * uncompressed layer would stay full size in its content store, saves and pushes).
 */
import { pipeline } from 'node:stream/promises'
import type { DaemonInfo, LoadOutput } from '../docker.js'
import { loadStage } from '../stages/load.js'
import { archiveStream, toResult } from './archive.js'
import type { Compression } from '../compress/index.js'
import type { Destination } from './destination.js'

/** Docker learned zstd layers in 23 (moby's archive.DecompressStream); 20.10 refuses them. */
export function daemonTakesZstd(info: DaemonInfo): boolean {
  const major = Number(/^(\d+)\./.exec(info.serverVersion)?.[1] ?? 0)
  return major >= 23
}

export function daemonDestination(info: DaemonInfo, opts: { layerOnly?: boolean } = {}): Destination {
  const accepts: Compression[] = daemonTakesZstd(info) ? ['gzip', 'zstd', 'none'] : ['gzip', 'none']
  return {
    label: `the local daemon (Docker ${info.serverVersion})`,
    keepsBlobs: info.containerdStore,
    needsSize: true,
    accepts,
    async write(image, w) {
      // The daemon holds the base: only the new layer goes in, unless asked otherwise.
      const { stream, result } = await archiveStream(image, { ...w, layerOnly: opts.layerOnly ?? true })
      let loaded: LoadOutput | undefined
      await pipeline(stream, loadStage({ signal: w.signal, onDone: (o) => (loaded = o) }), { signal: w.signal })
      return { ...toResult(result()), loaded }
    },
  }
}
