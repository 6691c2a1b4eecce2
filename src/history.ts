/**
 * The result's history: the kept layers' entries, then one for the new layer. That entry is
 * also how a later run finds this result again (the cache), so it is made in one place and the
 * cache compares the whole of it.
 */
import { docker } from './docker.js'

export interface HistoryEntry {
  created?: string
  created_by?: string
  comment?: string
  empty_layer?: boolean
  [key: string]: unknown
}

/**
 * The first entries of `history` up to and including the one of its `k`-th layer; the
 * metadata-only (empty_layer) entries among them stay, those after it go. Empty for k = 0.
 */
export function historyUpToLayer(history: HistoryEntry[], k: number): HistoryEntry[] {
  if (k <= 0) return []
  let seen = 0
  const cut = history.findIndex((e) => !e.empty_layer && ++seen === k)
  return cut === -1 ? [...history] : history.slice(0, cut + 1)
}

/** What identifies the new layer's entry: the cache marker and, when given, the user's message. */
export interface EntryFacts {
  marker: string
  message?: string | null
  /** How many layers were squashed into it. */
  squashed: number
}

/** The facts of a plan (or a later document) that make its new entry. */
export function entryFacts(p: { marker: string; message?: string | null; source: { layers: string[] }; base: { layers: string[] } }): EntryFacts {
  return { marker: p.marker, message: p.message, squashed: p.source.layers.length - p.base.layers.length }
}

/**
 * The new layer's history entry. Without a message the marker is its comment, as it always was
 * (same input, same id). A message goes where `docker commit -m` and docker-squash's `-m` put
 * theirs, the comment, which `docker history` shows in full; the marker then moves to created_by.
 */
export function newLayerEntry(f: EntryFacts, created: string): HistoryEntry {
  if (f.message) return { created, created_by: f.marker, comment: f.message }
  return { created, created_by: `dflatten: ${f.squashed} layers squashed into one`, comment: f.marker }
}

/** An entry's two texts that say what made it, as `docker history` shows them. */
export interface EntryText {
  created_by: string
  comment: string
}

/** The newest history entry's created_by and comment. */
export async function lastHistoryEntry(ref: string): Promise<EntryText> {
  const out = await docker(['history', '--no-trunc', '--format', '{"created_by":{{json .CreatedBy}},"comment":{{json .Comment}}}', ref])
  const first = out.split('\n')[0]
  return first ? (JSON.parse(first) as EntryText) : { created_by: '', comment: '' }
}

/** A layer's CREATED BY line, for a report: the history entry of the `i`-th layer, cut to `max` characters. */
export function layerLabels(history: HistoryEntry[], layers: number, max = 60): string[] {
  const withLayer = history.filter((e) => !e.empty_layer)
  // An image whose history does not list one entry per layer cannot be matched up.
  const usable = withLayer.length === layers
  return Array.from({ length: layers }, (_, i) => {
    const by = usable ? (withLayer[i].created_by ?? '').replace(/\s+/g, ' ').trim() : ''
    const text = by || `layer ${i + 1}`
    return text.length > max ? text.slice(0, max - 1) + '…' : text
  })
}
