/**
 * One way of finding the new layer: the interface every method implements, so the stages run
 * any of them without knowing which (modelled on go-containerregistry's small interfaces).
 *
 * A method's own facts travel in the documents as `method.state`, typed by the method: planned
 * at resolve, extended by prepare (mount) and entries (diff), read back by layer (pack). The
 * stages only ever hand that state back to the method that made it.
 *
 * How the next sources fit, with no change to the stages:
 *  - kernel on the containerd store's snapshots: `plan` asks containerd for the layer dirs
 *    (like overlay2's), `prepare` creates view snapshots and records them in the workspace
 *    before it creates them, `cleanup` removes the recorded views (also after kill -9).
 *  - a registry read top-down in one pass: `entries` gives the image parts from the manifest and
 *    config and `entries: null`; `layer` then yields each entry with its content as they come,
 *    and the layer's size is unknown until it has streamed (the document says so: `layerSize`
 *    is null), which the archive writer must accept.
 *  - an OCI layout dir: `available` checks the dir, `plan` reads index and manifest; entries and
 *    content as save's, from blobs read in any order (no second pass needed).
 */
import type { LayerEntry } from '../entry.js'
import type { ContentSource } from '../layer-tar.js'
import type { DaemonInfo, ImageInspect } from '../docker.js'
import type { Settings } from '../settings.js'
import type { Workspace } from '../workspace.js'
import type { Diffed, ImageParts, Mounted, Plan } from '../plan.js'
import type { BlobSource } from '../destinations/destination.js'
import type { Reclaimed } from '../reclaim.js'

export type { ImageParts }

/** What every member may use: the run's abort signal, the caller's settings. */
export interface MethodContext {
  signal?: AbortSignal
  settings: Settings
  /**
   * Set on a dry run: `entries` may keep what `reclaimed` needs (the save method's first pass is
   * the only read of the layers' headers), and `reclaimed` lists this many of the largest files.
   */
  reclaimTop?: number
}

/**
 * What `available` looks at: the daemon and the image as docker inspect gives them (for
 * --platform, that platform's image), the caller's settings, and whether the platform is one
 * other than the daemon would pick itself.
 */
export interface Probe {
  info: DaemonInfo
  source: ImageInspect
  settings?: Settings
  /** Set when --platform asks for another platform than docker's default for this image. */
  otherPlatform?: string
}

/** What `plan` may read from: the probe, and the base picked (null for scratch and `--layers`). */
export interface PlanFacts extends Probe {
  base: ImageInspect | null
  /**
   * How many of the source's first layers the result keeps: the base's count, or with `--layers`
   * (no base image) the layers below the squashed ones, whose history and descriptors then come
   * from the source itself.
   */
  kept: number
}

/** Can the method work here? Either way, a reason for --verbose or the refusal. */
export type Availability = { ok: true; reason: string } | { ok: false; reason: string }

/** What diff gets from a method. */
export interface Difference<S> {
  /** The new layer's entries in layer order; null when they only come with their content (one pass). */
  entries: Iterable<LayerEntry> | AsyncIterable<LayerEntry> | null
  image: ImageParts
  /** The state pack will see. */
  state: S
  /** How the content will be read, when that depends on the image (for --verbose). */
  detail?: string
}

/** What pack streams the layer from. */
export interface LayerSource {
  /** The entries in the order they go into the tar. */
  entries: Iterable<LayerEntry> | AsyncIterable<LayerEntry>
  /** Each file's content; by default read from the host path in `entry.source`. */
  content?: ContentSource
  /** Runs after the last entry: a failure fails the layer (the source checked to its end). */
  finish?: () => Promise<void>
  /** Runs when the layer stream closes, however it ended: stop what still reads. */
  close?: () => void
}

export interface Method<S = unknown> {
  /** What --method takes. */
  readonly name: string
  /** One line for --help. */
  readonly summary: string
  /** Makes a long-lived object for every path it meets, which V8's optimize-for-size slows (the CLI turns it off). */
  readonly largeHeap: boolean
  /** Whether it can work with this daemon, store, user and image. */
  available(probe: Probe): Promise<Availability>
  /** How the cache marker names its output: its name, plus any setting that changes the bytes. */
  cacheKey(settings: Settings, daemon: DaemonInfo): string
  /** Its own facts, read at resolve (layer dirs, exact configs, base descriptors...). */
  plan(facts: PlanFacts, ctx: MethodContext): Promise<S>
  /** Mounts, containers...: each recorded in the workspace before it exists; returns the new state. */
  prepare(plan: Plan<S>, ws: Workspace, ctx: MethodContext): Promise<S>
  /** The new layer's entries in layer order, and the image parts. */
  entries(doc: Mounted<S>, ctx: MethodContext): Promise<Difference<S>>
  /** Where pack reads the layer: entries in pack order, their content, a finish check. */
  layer(doc: Diffed<S>, ctx: MethodContext): LayerSource
  /** Where a destination reads base blobs it lacks; absent: `docker save` of the base (src/destinations/blobs.ts). */
  blobSource?(doc: Diffed<S>, ctx: MethodContext): BlobSource
  /**
   * A dry run's report, after `entries` and before the workspace goes: each squashed layer's tar
   * size, and the files of the squashed layers that a later layer deleted or overwrote.
   */
  reclaimed?(doc: Diffed<S>, ctx: MethodContext): Promise<Reclaimed>
  /** Remove what it recorded in a workspace dir, before the dir goes; also for a killed run's. */
  cleanup?(dir: string): Promise<void>
}
