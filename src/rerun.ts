/**
 * When a run repeats one that already succeeded. A name the result should take may already
 * point at the image being flattened; that is a clash (the original would lose the name) only
 * when the name is the original's own. It is not when the name already names exactly what this
 * run gives:
 *   - nothing above the base: the result is the image itself, so tagging it changes nothing
 *     (the name the user typed for the image is still its own, and refused without --force);
 *   - the image is itself an earlier result of this flatten (same base, method and message), e.g. after
 *     `dflatten app:1 -t app:1 --force`: its names were given by that run.
 */
import { sameName } from './refs.js'
import { findImage } from './docker.js'
import { lastHistoryEntry, type EntryText } from './history.js'
import type { Plan } from './plan.js'

/**
 * The marker every result's newest history entry carries (see resolve and newLayerEntry):
 * `onto` names the kept layers: the base's id, null for scratch, or `keptLayersOf` for `--layers`.
 */
export function flattenMarker(sourceId: string, onto: string | null, cacheKey: string): string {
  return `dflatten: flattened ${sourceId} onto ${onto ?? 'scratch'} (${cacheKey})`
}

/** How a marker names kept layers that no image holds (`--layers`): the source's own first k. */
export function keptLayersOf(sourceId: string, k: number): string {
  return `the first ${k} layers of ${sourceId}`
}

const MARKER = /^dflatten: flattened sha256:[0-9a-f]{64}( onto .*)$/

/** What a run looks for in an image's newest history entry: its marker and its message (none: null). */
export interface Wanted {
  marker: string
  message?: string | null
}

/**
 * The marker an entry carries and the message with it; null when dflatten did not write it.
 * Without a message the marker is the comment; with one it is created_by (see newLayerEntry).
 */
function carried(e: EntryText): { marker: string; message: string | null } | null {
  if (MARKER.test(e.comment)) return { marker: e.comment, message: null }
  if (MARKER.test(e.created_by)) return { marker: e.created_by, message: e.comment || null }
  return null
}

/** Is `e` the entry this very flatten writes: same source, kept layers, method and message (the cache)? */
export function isThisFlatten(e: EntryText, want: Wanted): boolean {
  const got = carried(e)
  return got !== null && got.marker === want.marker && got.message === (want.message || null)
}

/**
 * Does `e`, an image's newest history entry, say that image is a flatten onto the same base by
 * the same method, with the same message, as the run that wants `want`? What was flattened may differ.
 */
export function sameFlatten(e: EntryText, want: Wanted): boolean {
  const got = carried(e)
  const mine = MARKER.exec(want.marker)?.[1]
  return got !== null && mine !== undefined && MARKER.exec(got.marker)?.[1] === mine && got.message === (want.message || null)
}

/** Whether the image `ref`'s newest history entry is the one this flatten writes (one that cannot be read: no). */
export async function carriesEntry(ref: string, want: Wanted): Promise<boolean> {
  const e = await lastHistoryEntry(ref).catch(() => null)
  return e !== null && isThisFlatten(e, want)
}

export interface Candidate extends Wanted {
  /** The image's layers, and the base's. */
  layers: string[]
  baseLayers: string[]
  /** The image's newest history entry; read only when needed. */
  entry: () => Promise<EntryText>
}

/** Is the image already this flatten's result: the base's layers plus one, marked as such? */
export async function isEarlierResult(c: Candidate): Promise<boolean> {
  return baseLayersPlusOne(c.layers, c.baseLayers) && sameFlatten(await c.entry(), c)
}

function baseLayersPlusOne(layers: string[], baseLayers: string[]): boolean {
  return layers.length === baseLayers.length + 1 && baseLayers.every((d, i) => layers[i] === d)
}

export interface ClashQuestion extends Candidate {
  /** The image as the user typed it, and the names that point at it now. */
  typed: string
  tags: string[]
  target: string
}

/**
 * Would `target` take a name that is the original's own? Not when the target names nothing of
 * the image, and not when it already names exactly the result (see the top of this file).
 */
export async function takesOwnName(q: ClashQuestion): Promise<boolean> {
  const typed = sameName(q.typed, q.target)
  if (!typed && !q.tags.some((n) => sameName(n, q.target))) return false
  if (q.layers.length === q.baseLayers.length) return typed
  return !(await isEarlierResult(q))
}

/**
 * Does the result's name already point at the image, which is an earlier result of this very
 * flatten? Then there is nothing to build: the run repeats one that succeeded.
 */
export async function alreadyTheResult(plan: Plan): Promise<boolean> {
  // The layer count first: it costs no call to the daemon and rules out most images.
  if (!baseLayersPlusOne(plan.source.layers, plan.base.layers)) return false
  if ((await findImage(plan.target))?.Id !== plan.source.id) return false
  return isEarlierResult({
    layers: plan.source.layers,
    baseLayers: plan.base.layers,
    marker: plan.marker,
    message: plan.message,
    entry: () => lastHistoryEntry(plan.source.id),
  })
}
