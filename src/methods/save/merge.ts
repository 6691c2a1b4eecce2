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

/**
 * One path of the merged tree, and what the merge keeps there: the tar type and size, which are
 * all the merge itself looks at, and where the whole header is, read when the entry is written.
 * An image holds a node for each path of its layers above the base until a higher layer deletes
 * it, so everything lives in one object whose fields are all made at once (no second object per
 * path, no property store grown later); a node is reused as higher layers replace its path.
 */
class Node {
  /** Children by name (latin1, so bytes compare as bytes). */
  kids: Map<string, Node> | undefined = undefined
  /** The children in walk order, once the merge is done and the walk has sorted them. */
  sorted: Node[] | undefined = undefined
  opaque = false
  /** Whether a layer's entry is at this path (else it is only a parent of such paths). */
  held = false
  type = ''
  size = 0
  layer: SavedLayer | undefined = undefined
  index = 0
  /** The header: `at` in `store`, or `entry` itself where a layer is not packed (tests). */
  store: PackedHeaders | undefined = undefined
  at = 0
  entry: IndexedEntry | undefined = undefined
  /** The path it goes out under where the header's own name is not it (whiteouts, shared links). */
  out: Buffer | undefined = undefined
  /** For a hardlink: the entry whose content it shares (layer and index). */
  content: { layer: SavedLayer; index: number } | undefined = undefined
  whiteout = false

  constructor(
    readonly name: string,
    readonly parent: Node | undefined,
  ) {}

  /** Hold entry `e` of `layer`, in place of what it held. */
  hold(e: IndexedEntry, entries: Iterable<IndexedEntry>, layer: SavedLayer): void {
    const packed = entries instanceof PackedHeaders && e.at !== undefined
    this.held = true
    this.type = e.type
    this.size = e.size
    this.layer = layer
    this.index = e.index
    this.store = packed ? entries : undefined
    this.at = e.at ?? 0
    this.entry = packed ? undefined : e
    this.out = undefined
    this.content = undefined
    this.whiteout = false
  }

  header(): IndexedEntry {
    // eslint-disable-next-line @typescript-eslint/no-non-null-assertion -- hold() sets either store or entry
    return this.store ? this.store.header(this.at, this.index) : this.entry!
  }

  /** The layer of the entry whose content it is: its own, or the one a hardlink shares. */
  sourceLayer(): SavedLayer {
    // eslint-disable-next-line @typescript-eslint/no-non-null-assertion -- asked of held nodes only, which hold() gave a layer
    return this.content?.layer ?? this.layer!
  }

  sourceIndex(): number {
    return this.content ? this.content.index : this.index
  }

  /** A file whose content the layer carries (a hardlink sharing one is one too). */
  isFile(): boolean {
    return this.held && !this.whiteout && (this.type === '0' || this.content !== undefined)
  }
}

const SLASH = 0x2f

/** The node at the path in `path[0, end)`. Names are read from the bytes: no path string to slice. */
function nodeAt(root: Node, path: Buffer, create: true, end?: number): Node
function nodeAt(root: Node, path: Buffer, create: false, end?: number): Node | undefined
function nodeAt(root: Node, path: Buffer, create: boolean, end = path.length): Node | undefined {
  let n: Node = root
  for (let s = 0; s < end;) {
    let i = path.indexOf(SLASH, s)
    if (i === -1 || i > end) i = end
    const part = path.toString('latin1', s, i)
    let next: Node | undefined = n.kids?.get(part)
    if (!next) {
      if (!create) return undefined
      n.kids ??= new Map()
      n.kids.set(part, (next = new Node(part, n)))
    }
    n = next
    s = i + 1
  }
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

/**
 * Merge the layers above the base, lowest first, into the entries of one layer with the same
 * effect on the base. Within a layer, whiteouts and opaque markers act on the layers below it
 * only, so they are applied before the layer's own entries.
 */
export function mergeLayers(
  layers: Array<{ layer: SavedLayer; entries: Iterable<IndexedEntry> }>,
  base?: BaseContent,
): MergedLayer {
  const root = new Node('', undefined)
  for (const { layer, entries } of layers) {
    for (const e of select(entries, true)) {
      const b = baseStart(e.name)
      const name = e.name.toString('latin1', b)
      // The parent's path is the name up to its last slash; at the top, none.
      const dirEnd = Math.max(0, b - 1)
      if (name === OPAQUE_MARKER) {
        const dir = nodeAt(root, e.name, true, dirEnd)
        dir.kids = undefined
        dir.opaque = true
      } else {
        const gone = Buffer.concat([e.name.subarray(0, b), e.name.subarray(b + WHITEOUT_PREFIX.length)])
        const n = nodeAt(root, gone, true)
        n.kids = undefined
        n.opaque = false
        n.hold(e, entries, layer)
        n.size = 0
        n.out = gone
        n.whiteout = true
      }
    }
    for (const e of select(entries, false)) {
      if (e.name.length === 0) continue
      const n = nodeAt(root, e.name, true)
      if (e.type === '5') {
        // A directory over something this merge deleted or replaced must hide the base's copy.
        if (n.held && (n.whiteout || n.type !== '5')) n.opaque = true
        n.hold(e, entries, layer)
        continue
      }
      n.kids = undefined
      n.opaque = false
      n.hold(e, entries, layer)
      if (e.type === '1') {
        // Links come after their target in a tar; the target's node holds the version the link
        // shares, from this layer or an earlier one. A link to a base file stays a link.
        const target = nodeAt(root, e.linkname, false)
        if (target && target !== n && target.isFile()) {
          n.type = target.type
          n.size = target.size
          n.store = target.store
          n.at = target.at
          n.entry = target.entry
          n.out = e.name
          n.content = { layer: target.sourceLayer(), index: target.sourceIndex() }
        }
      }
    }
  }
  return new MergedLayer(root, base)
}

function toEntry(n: Node): LayerEntry | null {
  // eslint-disable-next-line @typescript-eslint/no-non-null-assertion -- every whiteout is made with the path it deletes
  if (n.whiteout) return whiteoutEntry(n.out!)
  // A merged link that shares content carries its target's header: a file's.
  const h = n.header()
  const e = entryFromHeader(h, n.out ?? h.name)
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
  if (!n.sorted) {
    // The merge is done: the map is needed no more, and the sorted list is far smaller.
    n.sorted = n.kids ? [...n.kids.values()].sort((a, b) => (a.name < b.name ? -1 : 1)) : []
    n.kids = undefined
  }
  return n.sorted
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
      const firstPath = pathOf(first)
      // eslint-disable-next-line @typescript-eslint/no-non-null-assertion -- a file with content: toEntry makes a file of it
      const e = toEntry(first)!
      e.path = firstPath
      e.from = fromOf(first)
      yield e
      for (const n of rest) {
        links.push({
          path: pathOf(n),
          kind: 'hardlink',
          linkname: firstPath,
          mode: e.mode,
          uid: e.uid,
          gid: e.gid,
          mtime: e.mtime,
          size: 0,
        })
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
          links.push({
            path: Buffer.from(path, 'latin1'),
            kind: 'hardlink',
            linkname: f.path,
            mode: f.mode,
            uid: f.uid,
            gid: f.gid,
            mtime: f.mtime,
            size: 0,
          })
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
