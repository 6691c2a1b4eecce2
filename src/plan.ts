/**
 * The documents the stages hand each other. In one process they flow through object-mode
 * streams; between stage commands (`dflatten resolve | dflatten mount | ...`) they travel as one
 * JSON document each, versioned, so a stage fed the wrong thing can say what it wanted.
 *
 * The facts every method shares are fields of their own; what only one method needs travels in
 * `method.state`, typed by that method (see src/methods/method.ts).
 */
import type { DaemonInfo } from './docker.js'
import type { Workspace } from './workspace.js'
import type { LayerDescriptor } from './image-archive.js'
import { DflattenError } from './errors.js'
import type { BaseFrom } from './select.js'

export const DOC_VERSION = 2

/** A method's name (see `methodNames()` in src/methods). */
export type MethodName = string
/** A method's name or `auto`, which lets resolve pick (a string too: the registry is open). */
export type MethodChoice = MethodName

/** The parts of the result every method must provide, exactly as the daemon holds them. */
export interface ImageParts {
  /** The original's config, parsed from its exact bytes. */
  config: Record<string, unknown>
  /** The base config's history entries. */
  baseHistory: unknown[]
  /** The base's layers as the daemon stores them, for the archive's manifest. */
  baseDescriptors: LayerDescriptor[]
  /** The source manifest's media type family, which the result's keeps: OCI (the default) or Docker v2. */
  manifestFormat?: 'oci' | 'docker'
}

export interface ImageSide {
  /** As the user named it (or the tag dflatten picked), null for `scratch`. */
  ref: string | null
  id: string | null
  /** Diff ids, base first. */
  layers: string[]
}

/**
 * The layers the result keeps as they are. `from` says how they were chosen:
 *  - `image`: an ancestor image (`--base IMAGE`, or the nearest tagged one): `ref` as named (or
 *    the tag picked), `id` its id, `layers` its diff ids; history from its config.
 *  - `scratch`: none (`--base scratch`, no tagged ancestor, or `--layers` of every layer): `ref`
 *    and `id` null, `layers` empty.
 *  - `layers`: the source's own first layers (`--layers N` keeps all but the top N): no image
 *    need exist for them, so `ref` and `id` are null; `layers` are the first K diff ids, and
 *    their history and descriptors come from the source itself.
 */
export interface BaseSide extends ImageSide {
  from: BaseFrom
}

/** Which method, why (for --verbose), and its own state. */
export interface MethodDoc<S = unknown> {
  name: MethodName
  reason: string
  state: S
  /** How the content will be read, when diff found that it depends on the image (for --verbose). */
  detail?: string
}

export interface Plan<S = unknown> {
  dflatten: 'plan'
  version: typeof DOC_VERSION
  method: MethodDoc<S>
  /** null when the image is read without a daemon (docker:// or oci:). */
  daemon: DaemonInfo | null
  /**
   * platform: os/architecture[/variant], as a container of the image must be created; platforms:
   * all that the image's index lists, when it lists more than one (the result has one only).
   */
  source: ImageSide & { ref: string; id: string; created: string; size: number; platform?: string; platforms?: string[] }
  base: BaseSide
  target: string
  /**
   * Written into the new history entry; finds this flatten again (the cache): source, base and
   * method. Its comment without a message, its created_by with one (src/history.ts).
   */
  marker: string
  /** `--message`: the new history entry's comment, what `docker history` shows; null: none. */
  message: string | null
}

export interface Mounted<S = unknown> extends Omit<Plan<S>, 'dflatten'> {
  dflatten: 'mounted'
  workspace: Workspace
}

export type { EntryCounts as DiffSummary } from './entry.js'
import type { EntryCounts } from './entry.js'

export interface Diffed<S = unknown> extends Omit<Mounted<S>, 'dflatten'> {
  dflatten: 'diffed'
  /** The original's config, the base's history and layer descriptors, as the daemon holds them. */
  image: ImageParts
  /** Entries added or changed, paths deleted, content bytes; null until streamed (one pass). */
  diff: EntryCounts | null
  /** The layer's entries file, one JSON object a line, in layer order; null for a one-pass method. */
  entries: string | null
  /** The exact byte size of the layer tar those entries make; null when unknown before streaming. */
  layerSize: number | null
}

export type StageDoc = Plan | Mounted | Diffed
export type DocKind = StageDoc['dflatten']

const PRODUCER: Record<DocKind, string> = {
  plan: 'dflatten resolve',
  mounted: 'dflatten mount',
  diffed: 'dflatten diff',
}

/** Check that `doc` is the document a stage expects; say which stage should have made it. */
export function expectDoc<K extends DocKind>(doc: unknown, kind: K, stage: string): Extract<StageDoc, { dflatten: K }> {
  const want = `${stage} reads the output of \`${PRODUCER[kind]}\``
  if (!doc || typeof doc !== 'object' || !('dflatten' in doc)) {
    throw new DflattenError('bad-input', `${want}; its input is not a dflatten document`)
  }
  const d = doc as { dflatten: string; version?: number }
  if (d.version !== DOC_VERSION) {
    throw new DflattenError('bad-input', `${want}; got document version ${String(d.version)}, this dflatten reads version ${DOC_VERSION}`)
  }
  if (d.dflatten !== kind) {
    const from = Object.hasOwn(PRODUCER, d.dflatten) ? PRODUCER[d.dflatten as DocKind] : 'something else'
    throw new DflattenError('bad-input', `${want}; got the output of \`${from}\``)
  }
  return doc as Extract<StageDoc, { dflatten: K }>
}

export function parseDoc(text: string, stage: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    throw new DflattenError('bad-input', `${stage}: its input is not JSON (pipe the previous stage's output into it)`)
  }
}
