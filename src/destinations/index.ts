/** Where the result lands: the destinations, and which one a target names. */
import type { Writable } from 'node:stream'
import type { DaemonInfo } from '../docker.js'
import type { RegistryAccess, Settings } from '../settings.js'
import { containerdFor } from '../containerd.js'
import { DflattenError } from '../errors.js'
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
  /** The daemon the source came from (the default destination); null for a daemonless source. */
  daemon: DaemonInfo | null
  /** Write an archive here instead (`--output`). */
  output?: Writable
  /** The archive without the base's blobs (`--output-layer-only`). */
  layerOnly?: boolean
  /** How to reach a registry target (credentials dir, TLS). */
  registry?: RegistryAccess
  /** Where the daemon's containerd is, when settings say (see containerdFor). */
  settings?: Settings
}

/** The destination a target names. */
export function destinationFor(target: Target, ctx: DestinationContext): Destination {
  if (target.kind === 'registry' && !ctx.output) return registryDestination(target.ref, ctx.registry)
  if (target.kind === 'oci' && !ctx.output) return ociDestination(target.dir, target.tag)
  // The pipeline sends a daemonless source's result to a registry or an OCI dir only.
  if (!ctx.daemon) throw new DflattenError('usage', 'an image read without a daemon goes to -t docker://... or -t oci:DIR[:TAG]')
  if (ctx.output) return archiveDestination(ctx.output, { layerOnly: ctx.layerOnly, keepsBlobs: ctx.daemon.containerdStore })
  const d = ctx.daemon
  // A local containerd-store daemon's content store may take the blob directly (daemon.ts).
  return daemonDestination(d, { containerd: d.containerdStore && !d.remote ? containerdFor(d, ctx.settings) : undefined })
}
