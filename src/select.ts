/**
 * What to squash: which of the image's layers stay as they are (the base) and which become the
 * one new layer. Three ways, as docker-squash has them: an ancestor image (`--base IMAGE`, or the
 * nearest tagged one), none (`--base scratch`), or the image's own first layers (`--layers N`
 * squashes the top N), for which no image need exist: BuildKit builds and pulled images have no
 * image per layer.
 */
import { DflattenError } from './errors.js'

/** How the kept layers were chosen (see `BaseSide` in plan.ts). */
export type BaseFrom = 'image' | 'scratch' | 'layers'

/**
 * `--layers`'s value as typed: a whole number from 1 up. How many layers the image has is
 * checked later, by `keptLayers`.
 */
export function parseLayerCount(text: string): number {
  if (!/^\d+$/.test(text.trim())) {
    throw new DflattenError('usage', `--layers takes how many of the top layers to squash (a number from 1 up), not ${JSON.stringify(text)}`)
  }
  return checkedCount(Number(text.trim()))
}

function checkedCount(n: number): number {
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new DflattenError('usage', `--layers takes how many of the top layers to squash (a number from 1 up), not ${String(n)}`)
  }
  return n
}

/**
 * How many of `total` layers stay when the top `squash` are squashed. 0 or fewer to squash, or
 * more than the image has, is refused: the first squashes nothing, the second cannot be done.
 */
export function keptLayers(squash: number, total: number, image: string): number {
  checkedCount(squash)
  if (squash > total) {
    throw new DflattenError('usage', `--layers ${squash}: ${image} has ${total === 1 ? 'only 1 layer' : `only ${total} layers`}`)
  }
  return total - squash
}

/** `--base` and `--layers` both say what to keep; only one may. */
export function checkSelection(opts: { base?: string; layers?: number }): void {
  if (opts.base !== undefined && opts.layers !== undefined) {
    throw new DflattenError('usage', '--base and --layers both choose what to keep; give one of them')
  }
}

/** What the log and the report call the kept layers. */
export function baseLabel(base: { from: BaseFrom; ref: string | null; layers: string[] }): string {
  if (base.from === 'layers') return base.layers.length === 1 ? 'its first layer' : `its first ${base.layers.length} layers`
  return base.ref ?? 'scratch'
}

/** The log's "onto ..." for a plan's base. */
export function ontoText(base: { from: BaseFrom; ref: string | null; layers: string[] }, squashed: number): string {
  const layers = (n: number): string => (n === 1 ? '1 layer' : `${n} layers`)
  if (base.from === 'layers') return `${baseLabel(base)}, squashing the top ${layers(squashed)}`
  if (base.from === 'image') return `${base.ref ?? '?'} (${layers(base.layers.length)})`
  return 'scratch: no tagged ancestor, squashing every layer'
}

/** A word for the user when the choice does less than it may seem to; null when it does not. */
export function selectionNote(base: { from: BaseFrom }, squashed: number): string | null {
  if (base.from === 'layers' && squashed === 1) {
    return '--layers 1 only rewrites the top layer: it squashes nothing into it, so it reclaims nothing'
  }
  return null
}
