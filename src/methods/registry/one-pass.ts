/**
 * The one-pass merge: the layers above the base, read TOP layer first, each once, into the
 * entries of one layer with the same effect on the base (OCI whiteout rules, the semantics of
 * the save method's merge.ts), each entry handed on with its content as it is read.
 *
 * Reading downwards, the first layer to name a path decides it, and what a layer hides (a
 * whiteout, an opaque marker, a non-directory over a directory) is a cut that hides the layers
 * read after it below that path. So all that is kept is a tree of the paths decided or cut, never
 * content. A layer's own whiteouts act only on the layers below it: a cut remembers the layer
 * that made it and hides only layers read later.
 *
 * Hardlinks: a link's content is its target's as of the link's layer. When the target comes
 * earlier in the same layer and was written, the link stays a link to it. When the target lives
 * in a lower layer, the link waits for "the next entry read at that path": that entry's content
 * goes out under its own name if it survives, else under the first waiting name, and the other
 * names follow as links. The one case that cannot be served from a single read is a target met
 * earlier in the same layer and hidden by a higher one (`rm target` above a layer holding
 * target and link): its content has streamed past, so after the pass that one blob is read
 * again, up to that entry, and the names are written at the end of the layer.
 */
import { entryFromHeader, type LayerEntry } from '../../entry.js'
import { DflattenError } from '../../errors.js'
import type { ContentSource } from '../../layer-tar.js'
import { cleanMemberName, readTar, type TarEntry, type TarHeader } from '../../tar/index.js'
import { OPAQUE_MARKER, WHITEOUT_PREFIX } from '../../whiteout.js'
import { whiteoutEntry } from '../stat.js'
import { LayerSeen } from './seen.js'

/** The layers above the base, as tar bytes. */
export interface LayerTars {
  /** How many there are. */
  count: number
  /**
   * The tar bytes (decompressed) of the layer read `position`-th (0 = the top layer), checked
   * against its digests at the end; a second call for a position is the rare re-read.
   */
  open(position: number): Promise<AsyncIterable<Buffer>>
  /**
   * The base's layers the same way (0 = its top layer), for the rare link to a base file whose
   * path the layers above replace: only then is a base blob read, up to that file.
   */
  base?: { count: number; open(position: number): Promise<AsyncIterable<Buffer>> }
  /** How messages name the layer read `position`-th (a damaged tar says which blob). */
  describe?(position: number): string
}

/** What the merge has told so far, for the summary line. */
export interface OnePassCounts {
  changed: number
  deleted: number
  bytes: number
}

/** A path decided or cut. Every field is made at once: one small object a path, nothing grown later. */
class Node {
  kids: Map<string, Node> | undefined = undefined
  /** The path's own entry was decided by a layer read earlier: a dir, something else, or gone. */
  is: 'dir' | 'other' | 'gone' | undefined = undefined
  /** Layers read after this one are hidden strictly below this path. */
  cut: number | undefined = undefined
  /** Something below it was written: the path is a directory in the result, named or not. */
  live = false
  /** An opaque marker is wanted once the path is a directory, and whether it went out. */
  opaque = false
  marked = false
}

/**
 * A name as a string of its own: a part split from a path is a slice that keeps the whole path
 * alive, which as a key of the tree would hold every path ever read.
 */
function own(part: string): string {
  return Buffer.from(part, 'latin1').toString('latin1')
}

/** Names waiting for the content of the next entry read at a path (hardlinks to a lower layer). */
interface Group {
  links: LayerEntry[]
}

function isFile(h: TarHeader): boolean {
  return h.type === '0' || h.type === '7'
}

function parentOf(p: string): string {
  const i = p.lastIndexOf('/')
  return i === -1 ? '' : p.slice(0, i)
}

function join(dir: string, name: string): string {
  return dir ? `${dir}/${name}` : name
}

function under(path: string, dir: string): boolean {
  return dir === '' ? path !== '' : path.startsWith(dir + '/')
}

function linkTo(e: LayerEntry, target: Buffer): LayerEntry {
  return { path: e.path, kind: 'hardlink', linkname: target, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, size: 0, xattrs: e.xattrs }
}

/**
 * The merged layer's entries, in the order they are read, and where pack takes each file's
 * content: the body of the tar entry being read at the time it is asked for.
 */
export function onePassMerge(tars: LayerTars, signal?: AbortSignal): { entries: AsyncGenerator<LayerEntry>; content: ContentSource; counts: OnePassCounts } {
  const bodies = new WeakMap<LayerEntry, () => AsyncIterable<Buffer>>()
  const counts: OnePassCounts = { changed: 0, deleted: 0, bytes: 0 }
  const content: ContentSource = (e) => {
    const body = bodies.get(e)
    if (!body) throw new Error(`one-pass merge: no content at hand for ${e.path.toString()}`)
    bodies.delete(e)
    return body()
  }
  const root = new Node()
  root.is = 'dir'
  const wants = new Map<string, Group>()
  /** Links whose target can no longer come (deleted below them, or in the base): links as they are. */
  const unmet: LayerEntry[] = []
  /** Layer position -> entry index -> the names that need that entry's content again. */
  const rereads = new Map<number, Map<number, LayerEntry[]>>()

  const count = (e: LayerEntry): LayerEntry => {
    if (e.kind === 'whiteout') counts.deleted++
    else if (e.kind !== 'opaque') counts.changed++
    if (e.kind === 'file') counts.bytes += e.size
    return e
  }

  /** The node at `path`, made if asked; `hidden` if a cut of a layer read before `r` covers it. */
  const walk = (path: string, r: number, create: boolean): { node?: Node; hidden: boolean; chain: Node[] } => {
    let n: Node = root
    const chain: Node[] = []
    if (path === '') return { node: root, hidden: false, chain }
    const parts = path.split('/')
    for (let i = 0; i < parts.length; i++) {
      if (n.cut !== undefined && n.cut < r) return { hidden: true, chain }
      chain.push(n)
      let next = n.kids?.get(parts[i])
      if (!next) {
        if (!create) return { hidden: false, chain }
        n.kids ??= new Map()
        n.kids.set(own(parts[i]), (next = new Node()))
      }
      n = next
    }
    return { node: n, hidden: false, chain }
  }

  /** A layer read after this point holds nothing at `path` (or below it): no link can wait there. */
  const dropWants = (path: string, self: boolean): void => {
    if (!wants.size) return
    for (const [p, g] of wants) {
      if ((self && p === path) || under(p, path)) {
        wants.delete(p)
        unmet.push(...g.links)
      }
    }
  }

  const isDir = (n: Node): boolean => n.is === 'dir' || (n.is === undefined && n.live)
  const decide = (node: Node, is: 'dir' | 'other', chain: Node[]): void => {
    node.is = is
    for (const a of chain) a.live = true
  }

  function* marker(node: Node, path: string): Generator<LayerEntry> {
    node.opaque = true
    if (node.marked || !isDir(node)) return
    node.marked = true
    yield count({ ...whiteoutEntry(Buffer.from(path, 'latin1')), kind: 'opaque' })
  }

  /** Emit `e` (a file) with the content of the tar entry being read, then `links` to it. */
  function* withContent(e: LayerEntry, body: TarEntry, links: LayerEntry[]): Generator<LayerEntry> {
    bodies.set(e, () => body.body())
    yield count(e)
    // Asked for the next entry: the reader moves on, so this content is no longer at hand.
    bodies.delete(e)
    for (const l of links) yield count(linkTo(l, e.path))
  }

  /** `<dir>/.wh..wh..opq` in the layer read `r`-th. */
  function* opaqueAt(dir: string, r: number): Generator<LayerEntry, void> {
    dropWants(dir, false)
    const { node, hidden } = walk(dir, r, true)
    // Cut already by a layer above (its own marker, a file or a whiteout there): nothing to add.
    if (!node || hidden || node.cut !== undefined) return
    node.cut = r
    yield* marker(node, dir)
  }

  /** `.wh.<name>` in the layer read `r`-th: `gone` is deleted from the layers below. */
  function* whiteoutAt(gone: string, r: number): Generator<LayerEntry, void> {
    dropWants(gone, true)
    const { node, hidden } = walk(gone, r, true)
    if (!node || hidden) return
    if (node.is === undefined && !node.live) {
      node.is = 'gone'
      node.cut ??= r
      yield count(whiteoutEntry(Buffer.from(gone, 'latin1')))
    } else if (isDir(node) && node.cut === undefined) {
      // A directory above what this layer deletes: it must hide the base's copy.
      node.cut = r
      yield* marker(node, gone)
    }
  }

  /** One entry of the layer read `r`-th; `seen` is what this layer held so far, by path. */
  function* step(t: TarEntry, index: number, r: number, seen: LayerSeen): Generator<LayerEntry> {
    const name = cleanMemberName(t.name)
    const p = name.toString('latin1')
    if (p === '') return // the root's own entry: not part of a layer
    const base = p.slice(p.lastIndexOf('/') + 1)
    if (base === OPAQUE_MARKER) {
      yield* opaqueAt(parentOf(p), r)
      return
    }
    if (base.startsWith(WHITEOUT_PREFIX)) {
      yield* whiteoutAt(join(parentOf(p), base.slice(WHITEOUT_PREFIX.length)), r)
      return
    }
    // Links waiting for this path get this entry, whether or not the result shows it.
    const group = wants.get(p)
    if (group) wants.delete(p)
    if (t.type !== '5') dropWants(p, false)
    const { node, hidden, chain } = walk(p, r, true)
    const open = node !== undefined && !hidden
    if (t.type === '5') {
      if (group) unmet.push(...group.links)
      if (!open || node.is !== undefined) return
      const e = entryFromHeader(t, name)
      if (!e) return
      decide(node, 'dir', chain)
      yield count(e)
      if (node.opaque) yield* marker(node, p)
      return
    }
    let e: LayerEntry | null = null
    if (open && isDir(node)) {
      // A directory above this non-directory: the base's copy was replaced here, so hide it.
      if (node.cut === undefined) {
        node.cut = r
        yield* marker(node, p)
      }
    } else if (open && node.is === undefined) {
      e = entryFromHeader(t, name)
      decide(node, 'other', chain)
      node.cut ??= r
    }
    if (t.type === '1') {
      const target = cleanMemberName(t.linkname).toString('latin1')
      seen.set(name, { link: target })
      const links = [...(e ? [e] : []), ...(group?.links ?? [])]
      if (links.length) yield* linked(target, links, r, seen)
      return
    }
    if (!isFile(t)) {
      if (group) unmet.push(...group.links)
      if (e) yield count(e)
      return
    }
    const carrier = e ?? (group ? entryFromHeader(t, group.links[0].path) : null)
    if (!carrier) {
      seen.set(name, { index })
      return
    }
    seen.set(name, { index, as: carrier.path })
    yield* withContent(carrier, t, e ? (group?.links ?? []) : (group?.links.slice(1) ?? []))
  }

  /** `links` share the content `target` has as of the layer read `r`-th (its earlier entries first). */
  function* linked(target: string, links: LayerEntry[], r: number, seen: LayerSeen): Generator<LayerEntry> {
    let at = target
    for (let hops = 0; hops < 16; hops++) {
      const s = seen.get(Buffer.from(at, 'latin1'))
      if (!s) break
      if ('link' in s) {
        at = s.link
        continue
      }
      if (s.as) {
        const as = s.as
        for (const l of links) yield count(linkTo(l, as))
        return
      }
      // Its content streamed past under no name: read this blob again after the pass.
      const layer = rereads.get(r) ?? new Map<number, LayerEntry[]>()
      rereads.set(r, layer)
      layer.set(s.index, [...(layer.get(s.index) ?? []), ...links])
      return
    }
    const g = wants.get(at) ?? { links: [] }
    g.links.push(...links)
    wants.set(at, g)
  }

  /** The tar reader speaks of the daemon's archives; here the layer is a blob of a registry or a layout. */
  function named(e: unknown, r: number): unknown {
    const daemon = 'malformed archive from the daemon: '
    if (!(e instanceof DflattenError) || !tars.describe || !e.message.startsWith(daemon)) return e
    return new DflattenError(e.code, `${tars.describe(r)}: ${e.message.slice(daemon.length)}`)
  }

  async function* again(r: number, wanted: Map<number, LayerEntry[]>): AsyncGenerator<LayerEntry> {
    const last = Math.max(...wanted.keys())
    let index = 0
    for await (const t of readTar(await tars.open(r))) {
      const links = wanted.get(index)
      if (links && isFile(t)) {
        const carrier = entryFromHeader(t, links[0].path)
        if (carrier) yield* withContent(carrier, t, links.slice(1))
      }
      if (index++ >= last) return
    }
  }

  async function* entries(): AsyncGenerator<LayerEntry> {
    for (let r = 0; r < tars.count; r++) {
      const seen = new LayerSeen()
      let index = 0
      try {
        for await (const t of readTar(await tars.open(r))) {
          signal?.throwIfAborted()
          yield* step(t, index++, r, seen)
        }
      } catch (e) {
        throw named(e, r)
      }
    }
    for (const [r, wanted] of [...rereads].sort(([a], [b]) => a - b)) yield* again(r, wanted)
    // Targets that never came: base files (or ones deleted below the link, a broken layer).
    for (const [p, g] of wants) {
      if (shadowed(p)) fromBase.set(p, g)
      else unmet.push(...g.links)
    }
    if (fromBase.size) yield* baseContent()
    for (const l of unmet) yield count(l)
  }

  /** Links to base files whose paths the result shows otherwise: they carry the base's content. */
  const fromBase = new Map<string, Group>()

  /** Whether the result shows something else than the base at `path`. */
  function shadowed(path: string): boolean {
    let n: Node | undefined = root
    for (const part of path.split('/')) {
      if (n.cut !== undefined) return true
      n = n.kids?.get(part)
      if (!n) return false
    }
    return n.is !== undefined || n.live
  }

  /** The base layers, top first, until every wanted base file has been met (or deleted). */
  async function* baseContent(): AsyncGenerator<LayerEntry> {
    const base = tars.base
    for (let r = 0; base && r < base.count && fromBase.size; r++) {
      for await (const t of readTar(await base.open(r))) {
        const p = cleanMemberName(t.name).toString('latin1')
        const slash = p.lastIndexOf('/')
        const gone = p.startsWith(WHITEOUT_PREFIX, slash + 1) ? join(parentOf(p), p.slice(slash + 1 + WHITEOUT_PREFIX.length)) : null
        const g = fromBase.get(gone ?? p)
        if (!g) continue
        fromBase.delete(gone ?? p)
        const carrier = !gone && isFile(t) ? entryFromHeader(t, g.links[0].path) : null
        if (carrier) yield* withContent(carrier, t, g.links.slice(1))
        else unmet.push(...g.links)
        if (!fromBase.size) break
      }
    }
    for (const g of fromBase.values()) unmet.push(...g.links)
    fromBase.clear()
  }

  return { entries: entries(), content, counts }
}
