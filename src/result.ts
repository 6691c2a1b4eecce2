/** What a flatten is asked and what it answers: the library's API types, shared by pipeline.ts and platforms.ts. */
import type { Writable } from 'node:stream'
import type { ResolveOptions } from './stages/resolve.js'
import type { CompressionChoice } from './compress/index.js'
import type { DiffSummary, Plan } from './plan.js'
import type { BaseFrom } from './select.js'

/** `settings` (from ResolveOptions) reach every stage: work root, rsync, save content source. */
export interface FlattenOptions extends ResolveOptions {
  /** Abort the run: child processes are stopped, mounts and temp dirs removed. */
  signal?: AbortSignal
  /** Progress lines for a human. */
  log?: (line: string) => void
  /** Also log why a method was picked. */
  verbose?: boolean
  /** Write the image archive here instead of loading it (`docker load -i` reads it later). */
  output?: Writable
  /** The archive holds the new layer alone: it then loads only where the base already is. */
  outputLayerOnly?: boolean
  /** How the new layer is stored; default: gzip where blobs are kept (registry, OCI dir, containerd store), else none. */
  compression?: CompressionChoice
  /** Build the result even when an earlier run already made it (default: use the cache). */
  noCache?: boolean
  /** Told how many bytes of the new layer have streamed, of how many. */
  onProgress?: (p: Progress) => void
  /** Told the plan once it is made, before any work on it. */
  onPlan?: (plan: Plan) => void
}

export interface Progress {
  stage: string
  done: number
  total: number
}

export interface FlattenResult {
  source: { ref: string; id: string; layers: number; size: number }
  /** `from`: an ancestor image, scratch, or the source's own first layers (`--layers`). */
  base: { ref: string | null; id: string | null; layers: number; from: BaseFrom }
  target: string
  imageId: string
  layers: number
  size: number
  /**
   * How the result came about: built and loaded now, found from an earlier run, the original as
   * is (nothing above the base), written as an archive or OCI dir and not loaded, or pushed.
   */
  outcome: 'flattened' | 'cached' | 'unchanged' | 'written' | 'pushed'
  diff?: DiffSummary
  /** The new layer's tar, and its blob as stored (compressed or not). */
  layerBytes?: number
  blob?: { mediaType: string; digest: string; size: number }
  /** The manifest's digest, where the destination names images by it (registry, OCI dir). */
  manifestDigest?: string
  /** The manifest's type and size, for an index to name it. */
  manifest?: { mediaType: string; size: number }
  /** For an index: each platform's result, in the index's order. */
  platforms?: Array<FlattenResult & { platform: string }>
  /** Wall time of each stage in seconds; pack and load stream together, so they share one. */
  timings: Record<string, number>
}
