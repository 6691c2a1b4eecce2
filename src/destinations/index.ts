/** Where the result lands: the destinations, and which one a target names. */
import type { Writable } from 'node:stream'
import type { DaemonInfo } from '../docker.js'
import type { ConnectOptions } from '../registry/index.js'
import { archiveDestination } from './archive.js'
import { daemonDestination } from './daemon.js'
import { ociDestination } from './oci.js'
import { registryDestination } from './registry.js'
import type { Target } from './target.js'
import type { Destination } from './destination.js'

export type * from './destination.js'
export { parseTarget, planName, type Target } from './target.js'
export { compressionFor, archiveStream, archiveDestination, ZSTD_TAKERS } from './archive.js'
export { daemonDestination, daemonTakesZstd } from './daemon.js'
export { registryDestination } from './registry.js'
export { ociDestination } from './oci.js'
export { daemonBlobs, eachBlob } from './blobs.js'

export interface DestinationContext {
  /** The daemon the source came from (the default destination). */
  daemon: DaemonInfo
  /** Write an archive here instead (`--output`). */
  output?: Writable
  /** The archive without the base's blobs (`--output-layer-only`). */
  layerOnly?: boolean
  /** How to reach a registry target (credentials dir, TLS). */
  registry?: ConnectOptions
}

/** The destination a target names. */
export function destinationFor(target: Target, ctx: DestinationContext): Destination {
  if (ctx.output) return archiveDestination(ctx.output, { layerOnly: ctx.layerOnly, keepsBlobs: ctx.daemon.containerdStore })
  if (target.kind === 'registry') return registryDestination(target.ref, ctx.registry)
  if (target.kind === 'oci') return ociDestination(target.dir, target.tag)
  return daemonDestination(ctx.daemon)
}
