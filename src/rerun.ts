/**
 * When a run repeats one that already succeeded. A name the result should take may already
 * point at the image being flattened; that is a clash (the original would lose the name) only
 * when the name is the original's own. It is not when the name already names exactly what this
 * run gives:
 *   - nothing above the base: the result is the image itself, so tagging it changes nothing
 *     (the name the user typed for the image is still its own, and refused without --force);
 *   - the image is itself an earlier result of this flatten (same base, same method), e.g. after
 *     `dflatten app:1 -t app:1 --force`: its names were given by that run.
 */
import { sameName } from './refs.js'
import { findImage, lastHistoryComment } from './docker.js'
import type { Plan } from './plan.js'

/** The marker every result's newest history entry carries (see resolve). */
export function flattenMarker(sourceId: string, baseId: string | null, cacheKey: string): string {
  return `dflatten: flattened ${sourceId} onto ${baseId ?? 'scratch'} (${cacheKey})`
}

const MARKER = /^dflatten: flattened sha256:[0-9a-f]{64}( onto .*)$/

/**
 * Does `comment`, an image's newest history comment, say that image is a flatten onto the same
 * base by the same method as the run whose marker is `marker`? What was flattened may differ.
 */
export function sameFlatten(comment: string, marker: string): boolean {
  const mine = MARKER.exec(marker)?.[1]
  return mine !== undefined && MARKER.exec(comment)?.[1] === mine
}

export interface Candidate {
  /** The image's layers, and the base's. */
  layers: string[]
  baseLayers: string[]
  /** The image's newest history comment; read only when needed. */
  comment: () => Promise<string>
  /** This run's marker. */
  marker: string
}

/** Is the image already this flatten's result: the base's layers plus one, marked as such? */
export async function isEarlierResult(c: Candidate): Promise<boolean> {
  return baseLayersPlusOne(c.layers, c.baseLayers) && sameFlatten(await c.comment(), c.marker)
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
    comment: () => lastHistoryComment(plan.source.id),
  })
}
