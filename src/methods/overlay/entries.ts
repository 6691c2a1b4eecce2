/**
 * The default method: the kernel merges, dflatten only looks.
 *
 * Which paths can differ from the base is known without reading any content: exactly the paths
 * that the layers above the base hold. For each of those, the read-only overlay of the whole
 * image (the source view) says what the path finally is, and the read-only overlay of the base
 * (the base view) says whether a path that is gone existed before, so it needs a whiteout. Content
 * is read once, by pack, from the source view; nothing is copied or written.
 *
 * A directory can also lose base entries without a whiteout for each: when an upper layer made it
 * opaque or replaced it (by a file, or a whiteout and a new directory). So for every touched
 * directory the base has, the base view's entries that the source view lacks get whiteouts; no
 * overlayfs marker is read, and xattrs are read only for the entries that go into the layer.
 */
import { lstatSync, readdirSync, type BigIntStats, type Dirent } from 'node:fs'
import type { LayerEntry } from '../../entry.js'
import { DflattenError } from '../../errors.js'
import { isReservedName } from '../../whiteout.js'
import { withXattrs } from '../../xattrs.js'
import { joinPath, LinkTracker, statEntry, whiteoutEntry } from '../stat.js'

/** The names a directory holds, or none when it is missing or not a directory there. */
function namesIn(dir: Buffer): string[] {
  try {
    return readdirSync(dir, { encoding: 'latin1' })
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') return []
    throw e
  }
}

/**
 * Whether a layer's entry is a directory. Docker's overlay2 needs a filesystem that reports
 * entry types in readdir; where one says "unknown" anyway, lstat decides.
 */
function isDir(d: Dirent, layer: Buffer, rel: Buffer | null): boolean {
  if (d.isDirectory()) return true
  if (d.isFile() || d.isSymbolicLink() || d.isCharacterDevice() || d.isBlockDevice() || d.isFIFO() || d.isSocket()) return false
  return lstatSync(Buffer.concat([layer, joinPath(rel, Buffer.from(d.name, 'latin1'))])).isDirectory()
}

export interface DirectViews {
  sourceView: string
  baseView: string
}

/** Missing (ENOENT), or under something that is not a directory there (ENOTDIR): null. */
function lstatOrNull(p: Buffer): BigIntStats | null {
  try {
    return lstatSync(p, { bigint: true, throwIfNoEntry: false }) ?? null
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') return null
    throw e
  }
}

/**
 * The difference between the base view and the source view, as layer entries in order, with
 * the xattrs the source view shows (overlayfs hides its own bookkeeping there).
 */
export function directEntries(views: DirectViews, layersAbove: string[]): AsyncGenerator<LayerEntry> {
  return withXattrs(touchedEntries(views, layersAbove), views.sourceView)
}

async function* touchedEntries(views: DirectViews, layersAbove: string[]): AsyncGenerator<LayerEntry> {
  const links = new LinkTracker()
  const src = Buffer.from(views.sourceView + '/')
  const base = Buffer.from(views.baseView + '/')
  const layers = layersAbove.map((d) => Buffer.from(d + '/'))
  const under = (root: Buffer, rel: Buffer | null): Buffer => (rel ? Buffer.concat([root, rel]) : root)

  // Only directories of the source view that some layer above the base holds are walked, one
  // level at a time, so memory follows the depth of the tree and not its size.
  async function* walk(rel: Buffer | null, baseHasDir: boolean, holders: Buffer[]): AsyncGenerator<LayerEntry> {
    const touched = new Set<string>()
    // The layers where each touched name is a directory: the only ones to look in below it.
    const dirsIn = new Map<string, Buffer[]>()
    for (const layer of holders) {
      for (const d of readdirSync(under(layer, rel), { encoding: 'latin1', withFileTypes: true })) {
        touched.add(d.name)
        if (!isDir(d, layer, rel)) continue
        const dirs = dirsIn.get(d.name)
        if (dirs) dirs.push(layer)
        else dirsIn.set(d.name, [layer])
      }
    }
    const before = baseHasDir ? new Set(namesIn(under(base, rel))) : null
    // What the source view lists answers "is it there?" without an lstat: most touched paths
    // that are gone never existed in the base (a cache written, then deleted). A directory only
    // one layer holds, and the base lacks, is that layer's as it is: there lstat answers.
    const now = holders.length > 1 || before?.size ? new Set(readdirSync(under(src, rel), { encoding: 'latin1' })) : null
    // A directory loses base entries without a whiteout for each when a layer made it opaque or
    // replaced it. Rather than read overlayfs's markers, compare what the two views list: the
    // base's names the source view lacks get whiteouts. Names in both views that no layer above
    // the base holds are the base's own, unchanged, and never looked at.
    const names = new Set(touched)
    if (now) for (const n of before ?? []) if (!now.has(n)) names.add(n)
    // latin1 strings compare code unit by code unit, that is byte by byte.
    for (const key of [...names].sort()) {
      const name = Buffer.from(key, 'latin1')
      const path = joinPath(rel, name)
      const full = under(src, path)
      const st = now && !now.has(key) ? null : lstatOrNull(full)
      if (!st) {
        if (before?.has(key)) yield whiteoutEntry(path)
        continue
      }
      if (isReservedName(name)) {
        throw new DflattenError('unsupported-image', `cannot store ${path.toString()} in a layer: names starting with .wh. mean deletions`)
      }
      const entry = await statEntry(path, full, st, undefined, links)
      if (!entry) continue
      yield entry
      if (entry.kind === 'dir') yield* walk(path, before?.has(key) ?? false, dirsIn.get(key) ?? [])
    }
  }
  yield* walk(null, true, layers)
}
