/**
 * The documents the stages hand each other. In one process they flow through object-mode
 * streams; between stage commands (`dflatten resolve | dflatten mount | ...`) they travel as one
 * JSON document each, versioned, so a stage fed the wrong thing can say what it wanted.
 */
import type { LayerDescriptor } from './image-archive.js'
import type { DaemonInfo } from './docker.js'
import type { Workspace } from './workspace.js'
import { DflattenError } from './errors.js'

export const DOC_VERSION = 1

/**
 * overlay: read the difference from read-only views, content once (needs root, a local
 *   overlay2 daemon).
 * overlay-copy: the seed's way, rsync into a writable stack (the cross-check; same needs).
 * save: merge the layers of `docker save` in user space (any daemon, no root).
 * auto (what the user may ask for): overlay where it can work, else save.
 */
export const METHODS = ['overlay', 'overlay-copy', 'save'] as const
export type Method = (typeof METHODS)[number]
export type MethodChoice = Method | 'auto'

export interface ImageSide {
  /** As the user named it (or the tag dflatten picked), null for `scratch`. */
  ref: string | null
  id: string | null
  /** Diff ids, base first. */
  layers: string[]
}

export interface Plan {
  dflatten: 'plan'
  version: typeof DOC_VERSION
  method: Method
  daemon: DaemonInfo
  /** platform: os/architecture[/variant], as a container of the image must be created. */
  source: ImageSide & { ref: string; id: string; created: string; size: number; platform?: string }
  /**
   * history: the base config's history entries (for save, filled in by diff from the
   * original's config: its first `historyLength` entries).
   */
  base: ImageSide & { history: unknown[]; historyLength: number }
  /** Every layer's diff dir on the host, base first, one per `source.layers`. */
  layerDirs: string[]
  /** The base's layers as the daemon stores them, for the archive's manifest. */
  baseDescriptors: LayerDescriptor[]
  /** The original's config, parsed from the exact bytes the daemon holds (save: filled by diff). */
  config: Record<string, unknown>
  /** Why this method: for --verbose. */
  methodReason: string
  target: string
  /** Written into the new history entry; finds this flatten again (the cache). */
  marker: string
}

export interface Mounted extends Omit<Plan, 'dflatten'> {
  dflatten: 'mounted'
  workspace: Workspace
}

export type { EntryCounts as DiffSummary } from './entry.js'
import type { EntryCounts } from './entry.js'

export interface Diffed extends Omit<Mounted, 'dflatten'> {
  dflatten: 'diffed'
  /** Entries added or changed, paths deleted, content bytes. */
  diff: EntryCounts
  /** The layer's entries, one JSON object a line, in layer order. */
  entries: string
  /** The exact byte size of the layer tar those entries make. */
  layerSize: number
  /** save method: the layer blobs pack reads content from, member name -> diff id. */
  saveMembers?: Record<string, string>
  /**
   * save method: where pack reads the files' content: `docker export` of a container of the
   * image, or a second `docker save` when the export cannot supply it all; and why.
   */
  saveContent?: { from: 'export' | 'save'; reason: string }
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
    const from = PRODUCER[d.dflatten as DocKind] ?? 'something else'
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
