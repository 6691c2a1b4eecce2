/**
 * What flattening reclaims, for `--dry-run`: the files of the squashed layers that a later layer
 * deleted or overwrote. They cost space in the image as it is and none in the flattened one.
 *
 * A method finds them its own way (Method.reclaimed): the overlay methods compare each squashed
 * layer's files with the final view, the save method runs `fromLayerListings` over the headers its
 * first pass indexed. Either way only the largest few are kept, so memory follows the number of
 * paths and never their content.
 */
import { WHITEOUT_PREFIX, OPAQUE_MARKER } from './whiteout.js'

/**
 * One item the result drops: a file, or a directory a later layer deleted whole (its path ends in
 * `/`: a build cache is one item, not a thousand small ones); its content bytes, the layer that
 * added it.
 */
export interface ReclaimedFile {
  path: string
  bytes: number
  /** Index of that layer in the source's layers (0 is the lowest). */
  layer: number
  /** For a directory: how many of its files that layer added. */
  files?: number
}

/** What a method reports for a dry run. */
export interface Reclaimed {
  /** Each squashed layer's tar size, lowest first. */
  layerBytes: number[]
  /** The largest reclaimed files, largest first (ties by path). */
  top: ReclaimedFile[]
  /** Reclaimed files in all, and their bytes. */
  files: number
  bytes: number
}

/** How many of the largest reclaimed files a report lists unless told otherwise. */
export const DEFAULT_TOP = 20

function before(a: ReclaimedFile, b: ReclaimedFile): boolean {
  return a.bytes > b.bytes || (a.bytes === b.bytes && (a.path < b.path || (a.path === b.path && a.layer < b.layer)))
}

/** Counts every reclaimed file and keeps the `limit` largest. */
export class ReclaimTally {
  private readonly kept: ReclaimedFile[] = []
  files = 0
  bytes = 0
  constructor(private readonly limit: number) {}

  add(f: ReclaimedFile): void {
    this.files += f.files ?? 1
    this.bytes += f.bytes
    if (this.limit <= 0) return
    const last = this.kept.at(-1)
    if (this.kept.length >= this.limit && last && !before(f, last)) return
    let lo = 0
    let hi = this.kept.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (before(this.kept[mid], f)) lo = mid + 1
      else hi = mid
    }
    this.kept.splice(lo, 0, f)
    if (this.kept.length > this.limit) this.kept.pop()
  }

  result(layerBytes: number[]): Reclaimed {
    return { layerBytes, top: [...this.kept], files: this.files, bytes: this.bytes }
  }
}

/** Directories deleted whole, summed per layer, then handed to the tally as one item each. */
export class DeletedDirs {
  private readonly dirs = new Map<string, ReclaimedFile>()
  add(dir: string, layer: number, bytes: number): void {
    const key = `${layer}\0${dir}`
    const d = this.dirs.get(key) ?? { path: dir.endsWith('/') ? dir : dir + '/', bytes: 0, layer, files: 0 }
    d.bytes += bytes
    d.files = (d.files ?? 0) + 1
    this.dirs.set(key, d)
  }
  into(tally: ReclaimTally): void {
    for (const d of this.dirs.values()) tally.add(d)
    this.dirs.clear()
  }
}

/** A layer tar's member as the save method indexed it: name (latin1, cleaned), type, size. */
export interface ListedEntry {
  name: Buffer
  type: string
  size: number
}

function parentOf(p: string): string {
  const i = p.lastIndexOf('/')
  return i === -1 ? '' : p.slice(0, i)
}

function display(p: string): string {
  return '/' + Buffer.from(p, 'latin1').toString('utf8')
}

/**
 * The reclaimed files of layers given as tar listings (OCI whiteout rules), lowest layer first.
 * Read top down: a regular file is reclaimed when a higher layer holds its path (overwritten,
 * replaced, or a whiteout) or hides what is under one of its parents (a whiteout of the parent,
 * a non-directory there, an opaque directory).
 */
export function fromLayerListings(layers: Array<{ layer: number; entries: Iterable<ListedEntry> }>, tally: ReclaimTally): void {
  // What the layers above the one being read hold, and where they hide everything below.
  const held = new Set<string>()
  const hides = new Set<string>()
  // Of those, the paths where no directory is left at all (a whiteout, a non-directory).
  const gone = new Set<string>()
  const deleted = new DeletedDirs()
  /** Whether a higher layer hides `p`, and the highest directory above it that is gone whole. */
  const hidden = (p: string): { hidden: boolean; dir: string | null } => {
    let dir: string | null = null
    let found = held.has(p)
    for (let d = parentOf(p); d !== ''; d = parentOf(d)) {
      if (hides.has(d)) found = true
      if (gone.has(d)) dir = d
    }
    return { hidden: found, dir }
  }
  for (const { layer, entries } of [...layers].reverse()) {
    for (const e of entries) {
      if (e.type !== '0') continue
      const p = e.name.toString('latin1')
      const base = p.slice(p.lastIndexOf('/') + 1)
      if (base.startsWith(WHITEOUT_PREFIX)) continue
      const h = hidden(p)
      if (!h.hidden) continue
      if (h.dir !== null) deleted.add(display(h.dir), layer, e.size)
      else tally.add({ path: display(p), bytes: e.size, layer })
    }
    for (const e of entries) {
      const p = e.name.toString('latin1')
      const base = p.slice(p.lastIndexOf('/') + 1)
      if (base === OPAQUE_MARKER) {
        hides.add(parentOf(p))
      } else if (base.startsWith(WHITEOUT_PREFIX)) {
        const whited = (parentOf(p) ? parentOf(p) + '/' : '') + base.slice(WHITEOUT_PREFIX.length)
        held.add(whited)
        hides.add(whited)
        gone.add(whited)
      } else if (p !== '') {
        held.add(p)
        if (e.type !== '5') {
          hides.add(p)
          gone.add(p)
        }
      }
    }
  }
  deleted.into(tally)
}
