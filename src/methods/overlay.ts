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
 * opaque or replaced it (by a file, or a whiteout and a new directory). For those directories
 * alone, the base view's entries that the source view lacks get whiteouts.
 */
import { readdir } from 'node:fs/promises'
import { lstatSync, type BigIntStats } from 'node:fs'
import type { LayerEntry } from '../entry.js'
import { DflattenError } from '../errors.js'
import { isOverlayOpaque, isReservedName } from '../whiteout.js'
import { readTreeXattrs, type XattrMap } from '../xattrs.js'
import { joinPath, LinkTracker, statEntry, whiteoutEntry } from './stat.js'

interface Node {
  children: Map<string, Node> | null
  /** Index of the topmost layer above the base that holds this path: its xattrs are the visible ones. */
  top: number
  /** Some layer above the base made this path opaque, a non-directory or a whiteout. */
  replaced: boolean
}

/** The paths the layers above the base hold, as a tree, with what the xattrs of each layer say. */
export async function touchedPaths(layersAbove: string[]): Promise<{ tree: Node; xattrs: XattrMap[] }> {
  const tree: Node = { children: new Map(), top: -1, replaced: false }
  // getfattr walks each layer in its own process, beside our own walk of the same dirs.
  const xattrs: XattrMap[] = await Promise.all(layersAbove.map((dir) => readTreeXattrs(dir)))
  for (const [i, dir] of layersAbove.entries()) {
    const layerX = xattrs[i]
    const walk = async (abs: Buffer, rel: Buffer | null, node: Node): Promise<void> => {
      for (const d of await readdir(abs, { encoding: 'buffer', withFileTypes: true })) {
        const name = d.name as unknown as Buffer
        const key = name.toString('latin1')
        const children = (node.children ??= new Map())
        let child = children.get(key)
        if (!child) children.set(key, (child = { children: null, top: i, replaced: false }))
        child.top = i
        const path = joinPath(rel, name)
        if (d.isDirectory()) {
          if (isOverlayOpaque(layerX.get(path.toString('latin1')))) child.replaced = true
          await walk(Buffer.concat([abs, Buffer.from('/'), name]), path, child)
        } else {
          child.replaced = true
        }
      }
    }
    await walk(Buffer.from(dir), null, tree)
  }
  return { tree, xattrs }
}

export interface DirectViews {
  sourceView: string
  baseView: string
}

/**
 * Synchronous: one lstat per touched path, where thread-pool round trips would cost more.
 * Missing (ENOENT), or under something that is not a directory there (ENOTDIR): null.
 */
function lstatOrNull(p: Buffer): BigIntStats | null {
  try {
    return lstatSync(p, { bigint: true, throwIfNoEntry: false }) ?? null
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') return null
    throw e
  }
}

/** The difference between the base view and the source view, as layer entries in order. */
export async function* directEntries(views: DirectViews, layersAbove: string[]): AsyncGenerator<LayerEntry> {
  const { tree, xattrs } = await touchedPaths(layersAbove)
  const links = new LinkTracker()
  const src = Buffer.from(views.sourceView + '/')
  const base = Buffer.from(views.baseView + '/')
  const under = (root: Buffer, rel: Buffer | null): Buffer => (rel ? Buffer.concat([root, rel]) : root)

  async function* walk(rel: Buffer | null, node: Node): AsyncGenerator<LayerEntry> {
    const names = new Set(node.children?.keys())
    if (node.replaced) {
      const inBase = lstatOrNull(under(base, rel))
      if (inBase?.isDirectory()) {
        const now = new Set((await readdir(under(src, rel), { encoding: 'latin1' })) as string[])
        for (const n of (await readdir(under(base, rel), { encoding: 'latin1' })) as string[]) {
          if (!now.has(n)) names.add(n)
        }
      }
    }
    // latin1 strings compare code unit by code unit, that is byte by byte.
    for (const key of [...names].sort()) {
      const name = Buffer.from(key, 'latin1')
      const path = joinPath(rel, name)
      const st = lstatOrNull(under(src, path))
      if (!st) {
        if (lstatOrNull(under(base, path))) yield whiteoutEntry(path)
        continue
      }
      if (isReservedName(name)) {
        throw new DflattenError(`cannot store ${path.toString()} in a layer: names starting with .wh. mean deletions`)
      }
      const child = node.children?.get(key)
      if (!child) continue // in both views and untouched: cannot happen, names came from one or the other
      const entry = await statEntry(path, under(src, path), st, xattrs[child.top]?.get(path.toString('latin1')), links)
      if (!entry) continue
      yield entry
      if (entry.kind === 'dir' && child.children) yield* walk(path, child)
    }
  }
  yield* walk(null, tree)
}
