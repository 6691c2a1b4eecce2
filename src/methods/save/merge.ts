/**
 * The save method's merge: the layers above the base, as pass 1 indexed them, into the entries
 * of ONE layer with the same effect on the base (OCI whiteout rules), in the order pack writes
 * them.
 */
import { entryFromHeader, type LayerEntry } from '../../entry.js'
import { OPAQUE_MARKER, WHITEOUT_PREFIX } from '../../whiteout.js'
import { whiteoutEntry } from '../stat.js'
import { type BaseContent, type IndexedEntry, type SavedLayer } from './first-pass.js'
import { isWhiteoutName, PackedHeaders } from './packed.js'

/** A layer as the merge holds it: where its headers are packed, if they are (tests give arrays). */
interface Source {
  layer: SavedLayer
  store: PackedHeaders | undefined
}

/** What few nodes need: a header not in a packed store, a name of their own, shared content. */
interface Extra {
  entry?: IndexedEntry
  /** The path a hardlink that shares content goes out under (its target's header names another). */
  out?: Buffer
  /** For a hardlink: the entry whose content it shares (layer and index). */
  content?: { layer: SavedLayer; index: number }
}

const HELD = 1
const OPAQUE = 2
const WHITEOUT = 4

const CUT_SPAN = 2 ** 15
const cutGone = (cut: number): number => (cut % CUT_SPAN) - 1
const cutBelow = (cut: number): number => Math.floor(cut / CUT_SPAN) - 1

/**
 * One path of the merged tree, and what the merge keeps there: the tar type and size, which are
 * all the merge itself looks at, and where the whole header is, read when the entry is written.
 * An image holds a node for each path of its layers above the base that no higher layer deletes,
 * so a node is one object with few fields, all made at once, and reused as higher layers replace
 * its path.
 */
class Node {
  /** Children by name (latin1, so bytes compare as bytes); once the walk has sorted them, a list. */
  kids: Map<string, Node> | Node[] | undefined = undefined
  /** HELD (a layer's entry is at this path, else it only leads to such paths), OPAQUE, WHITEOUT. */
  flags = 0
  type = ''
  size = 0
  src: Source | undefined = undefined
  index = 0
  /** The header's place in `src.store`. */
  at = 0
  extra: Extra | undefined = undefined
  /**
   * The highest layer that deletes this path and all below it (`gone`), and the highest that
   * hides all below it (`below`), each plus one (0: none), packed in one small integer.
   */
  cut = 0

  constructor(
    readonly name: string,
    readonly parent: Node | undefined,
  ) {}

  get held(): boolean {
    return (this.flags & HELD) !== 0
  }

  get whiteout(): boolean {
    return (this.flags & WHITEOUT) !== 0
  }

  get opaque(): boolean {
    return (this.flags & OPAQUE) !== 0
  }

  set opaque(on: boolean) {
    this.flags = on ? this.flags | OPAQUE : this.flags & ~OPAQUE
  }

  /** Hold entry `e` of `src`, in place of what it held (whether the path is opaque stays). */
  hold(e: IndexedEntry, src: Source): void {
    this.flags = HELD | (this.flags & OPAQUE)
    this.type = e.type
    this.size = e.size
    this.src = src
    this.index = e.index
    this.at = e.at ?? 0
    this.extra = src.store && e.at !== undefined ? undefined : { entry: e }
  }

  header(): IndexedEntry {
    const entry = this.extra?.entry
    // eslint-disable-next-line @typescript-eslint/no-non-null-assertion -- hold() keeps the entry wherever there is no store
    return entry ?? this.src!.store!.header(this.at, this.index)
  }

  /** The layer of the entry whose content it is: its own, or the one a hardlink shares. */
  sourceLayer(): SavedLayer {
    // eslint-disable-next-line @typescript-eslint/no-non-null-assertion -- asked of held nodes only, which hold() gave a source
    return this.extra?.content?.layer ?? this.src!.layer
  }

  sourceIndex(): number {
    const c = this.extra?.content
    return c ? c.index : this.index
  }

  /** A file whose content the layer carries (a hardlink sharing one is one too). */
  isFile(): boolean {
    return this.held && !this.whiteout && (this.type === '0' || this.extra?.content !== undefined)
  }
}

const SLASH = 0x2f

/**
 * The node at the path in `path[0, end)`, made if need be. Names are read from the bytes: no
 * path string to slice. Given `layer`: undefined when a higher layer deletes the path (or hides
 * it under an opaque directory), as nothing of this layer can show there.
 */
function nodeAt(root: Node, path: Buffer, create: true, end?: number, layer?: number): Node | undefined
function nodeAt(root: Node, path: Buffer, create: false): Node | undefined
function nodeAt(root: Node, path: Buffer, create: boolean, end = path.length, layer = -1): Node | undefined {
  let n: Node = root
  for (let s = 0; s < end; ) {
    if (layer >= 0 && n.cut && (cutGone(n.cut) > layer || cutBelow(n.cut) > layer)) return undefined
    let i = path.indexOf(SLASH, s)
    if (i === -1 || i > end) i = end
    const part = path.toString('latin1', s, i)
    let kids = n.kids
    if (Array.isArray(kids)) throw new Error('save merge: the tree was changed after it was walked')
    let next: Node | undefined = kids?.get(part)
    if (!next) {
      if (!create) return undefined
      kids ??= n.kids = new Map()
      kids.set(part, (next = new Node(part, n)))
    }
    n = next
    s = i + 1
  }
  if (layer >= 0 && n.cut && cutGone(n.cut) > layer) return undefined
  return n
}

/** Where the last part of a name starts. */
function baseStart(name: Buffer): number {
  return name.lastIndexOf(SLASH) + 1
}

/** The headers of a layer whose names are whiteouts (true) or are not (false). */
function select(entries: Iterable<IndexedEntry>, whiteouts: boolean): Iterable<IndexedEntry> {
  if (entries instanceof PackedHeaders) return entries.select(whiteouts)
  return [...entries].filter((e) => isWhiteoutName(e.name, 0, e.name.length) === whiteouts)
}

/** A whiteout's name, as what it deletes: the path, or for an opaque marker its directory. */
function deletion(name: Buffer): { path: Buffer; opaque: boolean } {
  const b = baseStart(name)
  if (name.toString('latin1', b) === OPAQUE_MARKER) return { path: name.subarray(0, Math.max(0, b - 1)), opaque: true }
  return { path: Buffer.concat([name.subarray(0, b), name.subarray(b + WHITEOUT_PREFIX.length)]), opaque: false }
}

/** The targets of every hardlink of the layers: their paths must be merged even where deleted later. */
function linkTargets(layers: Array<{ entries: Iterable<IndexedEntry> }>): Set<string> {
  const targets = new Set<string>()
  for (const { entries } of layers) {
    const links = entries instanceof PackedHeaders ? entries.links() : [...entries].filter((e) => e.type === '1')
    for (const e of links) targets.add(e.linkname.toString('latin1'))
  }
  return targets
}

/**
 * Merge the layers above the base, lowest first, into the entries of one layer with the same
 * effect on the base. Within a layer, whiteouts and opaque markers act on the layers below it
 * only, so they are applied before the layer's own entries.
 *
 * What a higher layer deletes is never merged: the deletions of all layers are marked in the
 * tree first, so an image that makes a build cache in one layer and deletes it in a later one
 * costs nothing for it. Except the targets of hardlinks: a link that survives takes its content
 * from the target as it was in the link's layer.
 */
export function mergeLayers(layers: Array<{ layer: SavedLayer; entries: Iterable<IndexedEntry> }>, base?: BaseContent): MergedLayer {
  if (layers.length >= CUT_SPAN - 1) throw new Error(`save merge: ${layers.length} layers are more than it can tell apart`)
  const root = new Node('', undefined)
  for (const [li, { entries }] of layers.entries()) {
    for (const e of select(entries, true)) {
      const d = deletion(e.name)
      const n = nodeAt(root, d.path, true)
      if (!n) continue
      n.cut = d.opaque ? (li + 1) * CUT_SPAN + (n.cut % CUT_SPAN) : n.cut - (n.cut % CUT_SPAN) + li + 1
    }
  }
  const keep = linkTargets(layers)
  // A kept path is looked up only where the deletions would leave it out, not for every entry.
  const at = (path: Buffer, li: number): Node | undefined =>
    nodeAt(root, path, true, path.length, li) ?? (keep.has(path.toString('latin1')) ? nodeAt(root, path, true) : undefined)

  for (const [li, { layer, entries }] of layers.entries()) {
    const src: Source = { layer, store: entries instanceof PackedHeaders ? entries : undefined }
    for (const e of select(entries, true)) {
      const d = deletion(e.name)
      const n = at(d.path, li)
      if (!n) continue
      n.kids = undefined
      if (d.opaque) {
        n.opaque = true
        continue
      }
      const path = d.path.toString('latin1')
      if (base && !base.has(path) && !base.hasUnder(path)) {
        // The base has nothing there, and what the layers below had is not merged: nothing to
        // delete, in the result or for the layers above.
        if (n.parent?.kids instanceof Map && n.parent.kids.get(n.name) === n) n.parent.kids.delete(n.name)
        continue
      }
      n.opaque = false
      n.hold(e, src)
      n.flags |= WHITEOUT
      n.size = 0
    }
    for (const e of select(entries, false)) {
      if (e.name.length === 0) continue
      const n = at(e.name, li)
      if (!n) continue
      if (e.type === '5') {
        // A directory over something this merge deleted or replaced must hide the base's copy.
        const over = n.held && (n.whiteout || n.type !== '5')
        n.hold(e, src)
        if (over) n.opaque = true
        continue
      }
      n.kids = undefined
      n.opaque = false
      n.hold(e, src)
      if (e.type === '1') {
        // Links come after their target in a tar; the target's node holds the version the link
        // shares, from this layer or an earlier one. A link to a base file stays a link.
        const target = nodeAt(root, e.linkname, false)
        if (target && target !== n && target.isFile()) {
          n.type = target.type
          n.size = target.size
          n.src = target.src
          n.at = target.at
          n.extra = { entry: target.extra?.entry, out: e.name, content: { layer: target.sourceLayer(), index: target.sourceIndex() } }
        }
      }
    }
  }
  return new MergedLayer(root, base)
}

function toEntry(n: Node): LayerEntry | null {
  if (n.whiteout) return whiteoutEntry(pathOf(n))
  // A merged link that shares content carries its target's header: a file's.
  const h = n.header()
  const e = entryFromHeader(h, n.extra?.out ?? h.name)
  if (e?.kind === 'file') e.sha256 = h.sha256
  return e
}

/** A node's path, from its ancestors' names (only content-bearing files need theirs). */
function pathOf(n: Node): Buffer {
  const parts: string[] = []
  for (let p = n; p.parent; p = p.parent) parts.push(p.name)
  return Buffer.from(parts.reverse().join('/'), 'latin1')
}

function kidsOf(n: Node): Node[] {
  // The merge is done: the map is needed no more, and the sorted list is far smaller.
  if (!Array.isArray(n.kids)) n.kids = n.kids ? [...n.kids.values()].sort((a, b) => (a.name < b.name ? -1 : 1)) : []
  return n.kids
}

/** Another name of the inode `to` carries. */
function linkEntry(path: Buffer, to: LayerEntry): LayerEntry {
  return { path, kind: 'hardlink', linkname: to.path, mode: to.mode, uid: to.uid, gid: to.gid, mtime: to.mtime, size: 0 }
}

/** Where the content of a file with content comes from in the save stream. */
const fromOf = (n: Node): { member: string; index: number } => ({ member: n.sourceLayer().member, index: n.sourceIndex() })

/**
 * The merged layer's entries in the final order: every entry that carries no content, depth
 * first by name (so directories precede their contents and an opaque marker follows its
 * directory); then the files with content in the order the save stream delivers them; then the
 * extra names of hardlinked files. Made as they are read, so the layer's entries are never all
 * held at once: only the tree, and a reference to each file with content.
 */
export class MergedLayer implements Iterable<LayerEntry> {
  /** The files with content, by where the save stream delivers it, then in walk order. */
  private files: Node[] | undefined

  constructor(
    private readonly root: Node,
    private readonly base: BaseContent | undefined,
  ) {}

  *[Symbol.iterator](): Generator<LayerEntry> {
    const links: LayerEntry[] = []
    const files = this.files ? undefined : []
    yield* this.walk(files, links)
    this.files ??= sortFiles(files ?? [])
    for (const [first, ...rest] of groups(this.files)) {
      // eslint-disable-next-line @typescript-eslint/no-non-null-assertion -- a file with content: toEntry makes a file of it
      const e = toEntry(first)!
      e.path = pathOf(first)
      e.from = fromOf(first)
      yield e
      for (const n of rest) {
        links.push(linkEntry(pathOf(n), e))
      }
    }
    links.sort((a, b) => Buffer.compare(a.path, b.path))
    yield* links
  }

  /** The path and source of each entry that takes content from the image, without the rest. */
  *withContent(): Generator<{ path: Buffer; from: { member: string; index: number } }> {
    if (!this.files) {
      const files: Node[] = []
      for (const _ of this.walk(files, null)) {
        // only the files are wanted
      }
      this.files = sortFiles(files)
    }
    for (const [first] of groups(this.files)) yield { path: pathOf(first), from: fromOf(first) }
  }

  /**
   * Depth first by name: yields the entries without content (when `links` is given: null only
   * collects), pushes the files with content onto `files` and the extra names of empty files
   * onto `links`.
   */
  private *walk(files: Node[] | undefined, links: LayerEntry[] | null): Generator<LayerEntry> {
    const base = this.base
    // Empty files have no content to order by, so they stay in the walk order; but the names of
    // one empty inode must still be one inode: the first carries it, the others link to it.
    const firstEmpty = new Map<string, LayerEntry>()
    const nodes: Node[] = [this.root]
    const paths: string[] = ['']
    for (let n = nodes.pop(), path = paths.pop(); n && path !== undefined; n = nodes.pop(), path = paths.pop()) {
      const file = n.isFile()
      if (file && n.size > 0) {
        files?.push(n)
      } else if (links && n.held && !(n.whiteout && base && !base.has(path))) {
        const key = file ? `${n.sourceLayer().member}#${n.sourceIndex()}` : ''
        const f = file ? firstEmpty.get(key) : undefined
        if (f) {
          links.push(linkEntry(Buffer.from(path, 'latin1'), f))
        } else {
          const e = toEntry(n)
          if (e && file) firstEmpty.set(key, e)
          if (e) yield e
        }
      }
      if (links && n.opaque && (path === '' || (n.held && n.type === '5')) && (!base || base.hasUnder(path))) {
        yield { ...whiteoutEntry(Buffer.from(path, 'latin1')), kind: 'opaque' }
      }
      const kids = kidsOf(n)
      for (let i = kids.length - 1; i >= 0; i--) {
        nodes.push(kids[i])
        paths.push(path ? `${path}/${kids[i].name}` : kids[i].name)
      }
    }
  }
}

/** Files by the position of their content in the save stream; walk order kept within one. */
function sortFiles(files: Node[]): Node[] {
  return files.sort((a, b) => a.sourceLayer().position - b.sourceLayer().position || a.sourceIndex() - b.sourceIndex())
}

/** Runs of files that share one content: the first carries it, the others link to it. */
function* groups(files: Node[]): Generator<Node[]> {
  for (let i = 0; i < files.length;) {
    let j = i + 1
    while (
      j < files.length &&
      files[j].sourceLayer() === files[i].sourceLayer() &&
      files[j].sourceIndex() === files[i].sourceIndex()
    )
      j++
    yield files.slice(i, j)
    i = j
  }
}
