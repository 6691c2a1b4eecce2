/**
 * The save method's merge: the layers above the base, as pass 1 indexed them, into the entries
 * of ONE layer with the same effect on the base (OCI whiteout rules), in the order pack writes
 * them.
 */
import { entryFromHeader, type LayerEntry } from '../../entry.js'
import { OPAQUE_MARKER, WHITEOUT_PREFIX } from '../../whiteout.js'
import { whiteoutEntry } from '../stat.js'
import { baseName, type BaseContent, type IndexedEntry, type SavedLayer } from './first-pass.js'
import { PackedHeaders } from './packed.js'

/**
 * What the merge keeps at a path: the tar type and size, which are all the merge itself looks
 * at, and where the whole header is, read when the entry is written. A path of a large image is
 * replaced by higher layers several times over, so a node's Merged is reused and a header held
 * only where a layer is not packed (tests give plain arrays).
 */
interface Merged {
  type: string
  size: number
  layer: SavedLayer
  index: number
  /** The header: `at` in `store`, or `entry` itself. */
  store: PackedHeaders | undefined
  at: number
  entry: IndexedEntry | undefined
  /** The path it goes out under where the header's own name is not it (whiteouts, shared links). */
  name: Buffer | undefined
  /** For a hardlink: the entry whose content it shares (layer and index). */
  content: { layer: SavedLayer; index: number } | undefined
  whiteout: boolean
}

function headerOf(m: Merged): IndexedEntry {
  // eslint-disable-next-line @typescript-eslint/no-non-null-assertion -- hold() sets either store or entry
  return m.store ? m.store.header(m.at, m.index) : m.entry!
}

/** Make `n` hold entry `e` of `layer` (reusing what it held). */
function hold(n: Node, e: IndexedEntry, entries: Iterable<IndexedEntry>, layer: SavedLayer): Merged {
  const packed = entries instanceof PackedHeaders && e.at !== undefined
  const m = (n.m ??= { type: '', size: 0, layer, index: 0, store: undefined, at: 0, entry: undefined, name: undefined, content: undefined, whiteout: false })
  m.type = e.type
  m.size = e.size
  m.layer = layer
  m.index = e.index
  m.store = packed ? entries : undefined
  m.at = e.at ?? 0
  m.entry = packed ? undefined : e
  m.name = undefined
  m.content = undefined
  m.whiteout = false
  return m
}

/** The merged tree: one node a path, children by name (latin1, so bytes compare as bytes). */
interface Node {
  m?: Merged
  opaque?: boolean
  kids?: Map<string, Node>
}

function nodeAt(root: Node, path: string, create: true): Node
function nodeAt(root: Node, path: string, create: false): Node | undefined
function nodeAt(root: Node, path: string, create: boolean): Node | undefined {
  let n: Node | undefined = root
  if (path === '') return root
  for (const part of path.split('/')) {
    let next: Node | undefined = n.kids?.get(part)
    if (!next) {
      if (!create) return undefined
      n.kids ??= new Map()
      n.kids.set(part, (next = {}))
    }
    n = next
  }
  return n
}

function parentOf(p: string): string {
  const i = p.lastIndexOf('/')
  return i === -1 ? '' : p.slice(0, i)
}


/**
 * Merge the layers above the base, lowest first, into the entries of one layer with the same
 * effect on the base. Within a layer, whiteouts and opaque markers act on the layers below it
 * only, so they are applied before the layer's own entries.
 */
export function mergeLayers(layers: Array<{ layer: SavedLayer; entries: Iterable<IndexedEntry> }>, base?: BaseContent): LayerEntry[] {
  const root: Node = {}
  for (const { layer, entries } of layers) {
    for (const e of entries) {
      const p = e.name.toString('latin1')
      const name = baseName(p)
      if (name === OPAQUE_MARKER) {
        const dir = nodeAt(root, parentOf(p), true)
        dir.kids = undefined
        dir.opaque = true
      } else if (name.startsWith(WHITEOUT_PREFIX)) {
        const gone = (parentOf(p) ? parentOf(p) + '/' : '') + name.slice(WHITEOUT_PREFIX.length)
        const n = nodeAt(root, gone, true)
        n.kids = undefined
        n.opaque = false
        const m = hold(n, e, entries, layer)
        m.size = 0
        m.name = Buffer.from(gone, 'latin1')
        m.whiteout = true
      }
    }
    for (const e of entries) {
      const p = e.name.toString('latin1')
      if (p === '' || baseName(p).startsWith(WHITEOUT_PREFIX)) continue
      const n = nodeAt(root, p, true)
      const before = n.m
      if (e.type === '5') {
        // A directory over something this merge deleted or replaced must hide the base's copy.
        if (before && (before.whiteout || before.type !== '5')) n.opaque = true
        hold(n, e, entries, layer)
        continue
      }
      n.kids = undefined
      n.opaque = false
      const m = hold(n, e, entries, layer)
      if (e.type === '1') {
        // Links come after their target in a tar; the target's node holds the version the link
        // shares, from this layer or an earlier one. A link to a base file stays a link.
        const target = nodeAt(root, e.linkname.toString('latin1'), false)?.m
        if (target && target !== m && !target.whiteout && (target.type === '0' || target.content)) {
          m.type = target.type
          m.size = target.size
          m.store = target.store
          m.at = target.at
          m.entry = target.entry
          m.name = e.name
          m.content = target.content ?? { layer: target.layer, index: target.index }
        }
      }
    }
  }
  return layerOrder(root, base)
}

function toEntry(m: Merged): LayerEntry | null {
  // eslint-disable-next-line @typescript-eslint/no-non-null-assertion -- every whiteout is made with the path it deletes
  if (m.whiteout) return whiteoutEntry(m.name!)
  // A merged link that shares content carries its target's header: a file's.
  const h = headerOf(m)
  const e = entryFromHeader(h, m.name ?? h.name)
  return e && { ...e, sha256: e.kind === 'file' ? h.sha256 : undefined }
}

/** The entry whose content it is: its own, or the one a hardlink shares. */
function sourceOf(m: Merged): { layer: SavedLayer; index: number } {
  return m.content ?? { layer: m.layer, index: m.index }
}

/**
 * The final order: every entry that carries no content, depth first by name (so directories
 * precede their contents and an opaque marker follows its directory); then the files with
 * content in the order the save stream delivers them; then the extra names of hardlinked files.
 */
function layerOrder(root: Node, base?: BaseContent): LayerEntry[] {
  const meta: LayerEntry[] = []
  type Group = { source: { layer: SavedLayer; index: number }; members: Array<[Buffer, Merged]> }
  const groups = new Map<string, Group>()
  const links: LayerEntry[] = []
  // Empty files have no content to order by, so they stay in the walk order; but the names of
  // one empty inode must still be one inode: the first carries it, the others link to it.
  const firstEmpty = new Map<string, LayerEntry>()
  const walk = (n: Node, path: string): void => {
    const m = n.m
    const file = m !== undefined && !m.whiteout && (m.type === '0' || m.content !== undefined)
    const source = m && sourceOf(m)
    const key = source ? `${source.layer.member}#${source.index}` : ''
    const firstName = file && m.size === 0 ? firstEmpty.get(key) : undefined
    if (file && m.size > 0) {
      const g = groups.get(key) ?? { source: sourceOf(m), members: [] }
      g.members.push([Buffer.from(path, 'latin1'), m])
      groups.set(key, g)
    } else if (firstName) {
      const f = firstName
      links.push({ path: Buffer.from(path, 'latin1'), kind: 'hardlink', linkname: f.path, mode: f.mode, uid: f.uid, gid: f.gid, mtime: f.mtime, size: 0 })
    } else if (m && !(m.whiteout && base && !base.has(path))) {
      const e = toEntry(m)
      if (e) meta.push(e)
      if (e && file) firstEmpty.set(key, e)
    }
    if (n.opaque && (path === '' || m?.type === '5') && (!base || base.hasUnder(path))) {
      meta.push({ ...whiteoutEntry(Buffer.from(path, 'latin1')), kind: 'opaque' })
    }
    for (const [k, kid] of [...(n.kids ?? [])].sort(([a], [b]) => (a < b ? -1 : 1))) walk(kid, path ? `${path}/${k}` : k)
  }
  walk(root, '')

  const content: LayerEntry[] = []
  const ordered = [...groups.values()].sort(
    (a, b) => a.source.layer.position - b.source.layer.position || a.source.index - b.source.index,
  )
  for (const g of ordered) {
    // Members are in walk order already; the first carries the content.
    const [[firstPath, first], ...rest] = g.members
    // eslint-disable-next-line @typescript-eslint/no-non-null-assertion -- an entry with content is a file, which toEntry always makes
    const e = toEntry({ ...first, content: sourceOf(first) })!
    content.push({ ...e, path: firstPath, from: { member: g.source.layer.member, index: g.source.index } })
    for (const [p] of rest) {
      links.push({ path: p, kind: 'hardlink', linkname: firstPath, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, size: 0 })
    }
  }
  links.sort((a, b) => Buffer.compare(a.path, b.path))
  return [...meta, ...content, ...links]
}
