/**
 * The portable method: no root, no mounts, any daemon (remote, rootless, containerd store).
 *
 * `docker save` streams the image; its layer blobs arrive in no useful order and their names do
 * not say which layer they are until manifest.json, which comes last. The layer's size must be
 * known before its bytes and nothing may be spooled to disk, so the image is read twice:
 *  1. index: every layer blob is parsed as it passes (decompressed when gzip), every file's
 *     content hashed, and, once manifest.json and the config say which layer each blob is, the
 *     entries' metadata kept for the layers above the base. Then the layers are merged in user
 *     space with OCI whiteout semantics into the new layer's entries.
 *  2. content (in pack): by default from `docker export` of a container of the image, which is
 *     far cheaper for the daemon than a save (export-content.ts), each file checked against its
 *     hash from pass 1; where a container cannot show a file, a second `docker save` streams
 *     past again and each kept file's content is taken as it goes by (SaveContent below).
 *     Content-bearing entries are ordered as their source delivers them, which is fixed for a
 *     given daemon and image.
 * Memory grows with the number of paths, never with content; nothing is written but the entries
 * file.
 */
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { createGunzip } from 'node:zlib'
import type { LayerEntry } from '../entry.js'
import { DflattenError } from '../errors.js'
import { MEDIA_TYPES, type LayerDescriptor } from '../image-archive.js'
import { cleanMemberName, isZeroBlock, readTar, TarParser, type TarEntry, type TarHeader, type TarSink } from '../tar/index.js'
import { OPAQUE_MARKER, WHITEOUT_PREFIX } from '../whiteout.js'
import { whiteoutEntry } from './stat.js'
import { FileDigest } from './export-content.js'

/** Small non-layer members (manifests, configs) are kept whole; larger ones are not metadata. */
const MAX_JSON = 8 * 1024 * 1024

export interface IndexedEntry extends TarHeader {
  /** Position of the entry in its layer tar, counted from 0. */
  index: number
  /** A regular file's content digest (base64 sha256), so content read elsewhere can be checked. */
  sha256?: string
}

export interface SavedLayer {
  member: string
  diffId: string
  /** The blob as the archive (and so the daemon) has it. */
  digest: string
  size: number
  gzip: boolean
  /** Order of arrival in the save stream. */
  position: number
}

export interface SaveIndex {
  /** Every layer blob seen, by member name. */
  layers: Map<string, SavedLayer>
  /** Entries of the layers asked for, by diff id. */
  entries: Map<string, IndexedEntry[]>
  /** Small non-layer members (JSON), by name. */
  files: Map<string, Buffer>
  symlinks: Map<string, string>
  /** What the base's layers hold, to leave out whiteouts and opaque markers that hide nothing. */
  base: BaseContent
  /** The image, as manifest.json and its config give it once the stream has ended. */
  image: { config: Buffer; layers: SavedLayer[] }
}

/** Paths in the base's layers (a superset of the base's filesystem: its own whiteouts ignored). */
export class BaseContent {
  private readonly paths = new Set<string>()
  private readonly parents = new Set<string>()
  add(path: string): void {
    this.paths.add(path)
    for (let i = path.lastIndexOf('/'); i > 0; i = path.lastIndexOf('/', i - 1)) this.parents.add(path.slice(0, i))
    this.parents.add('')
  }
  has(path: string): boolean {
    return this.paths.has(path)
  }
  hasUnder(dir: string): boolean {
    return this.parents.has(dir)
  }
}

async function* hashing(source: AsyncIterable<Buffer>, hash: ReturnType<typeof createHash>): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    hash.update(chunk)
    yield chunk
  }
}

/** The first bytes of a body, and the whole body again as a stream. */
async function peek(body: AsyncGenerator<Buffer>, n: number): Promise<{ head: Buffer; all: AsyncGenerator<Buffer> }> {
  const first: Buffer[] = []
  let have = 0
  while (have < n) {
    const r = await body.next()
    if (r.done) break
    first.push(r.value)
    have += r.value.length
  }
  const head = Buffer.concat(first)
  async function* all(): AsyncGenerator<Buffer> {
    if (head.length) yield head
    yield* body
  }
  return { head, all: all() }
}

function isGzip(head: Buffer): boolean {
  return head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b
}

function isTar(head: Buffer): boolean {
  if (head.length < 512) return false
  return head.toString('latin1', 257, 262) === 'ustar' || isZeroBlock(head)
}

interface BlobDigests {
  digest: string
  diffId: string
  size: number
}

/**
 * A layer blob's tar bytes (gunzipped when gzip), with the digests of the blob and of its tar
 * computed on the way: `digests` reads what the tar reader left (the blob's end) and gives them.
 */
function blobTar(body: AsyncIterable<Buffer>, gzip: boolean): { tar: AsyncIterable<Buffer>; digests(): Promise<BlobDigests> } {
  const raw = createHash('sha256')
  // An uncompressed blob is its own tar: one digest serves as both.
  const plain = gzip ? createHash('sha256') : null
  let size = 0
  const counted = (async function* () {
    for await (const c of hashing(body, raw)) {
      size += c.length
      yield c
    }
  })()
  const tarBytes: AsyncIterable<Buffer> = gzip ? Readable.from(counted).pipe(createGunzip()) : counted
  return {
    tar: plain ? hashing(tarBytes, plain) : tarBytes,
    async digests() {
      // Whatever follows the end-of-archive blocks still belongs to the blob and its digest.
      for await (const _ of counted) void _
      const digest = 'sha256:' + raw.digest('hex')
      return { digest, diffId: plain ? 'sha256:' + plain.digest('hex') : digest, size }
    },
  }
}

/** One layer blob's entries (for a second save, pass 2), then its digests. */
async function* blobEntries(body: AsyncIterable<Buffer>, gzip: boolean): AsyncGenerator<TarEntry & { index: number }, BlobDigests> {
  const blob = blobTar(body, gzip)
  let index = 0
  for await (const e of readTar(blob.tar)) yield Object.assign(e, { index: index++ })
  return blob.digests()
}

/** The entries of one layer blob as pass 1 keeps them: headers, names cleaned, files hashed. */
class BlobIndex implements TarSink {
  readonly kept: IndexedEntry[] = []
  private file: { entry: IndexedEntry; digest: FileDigest } | null = null

  entry(h: TarHeader): void {
    const entry = headerOf(h) as IndexedEntry
    entry.index = this.kept.length
    this.kept.push(entry)
    if (h.type === '0') this.file = { entry, digest: new FileDigest(h.size) }
  }

  data(chunk: Buffer): void {
    this.file!.digest.update(chunk)
  }

  end(): void {
    if (!this.file) return
    this.file.entry.sha256 = this.file.digest.digest()
    this.file = null
  }
}

/**
 * Pass 1's read of one layer blob: its entries, its size and, for a gzip blob, its digests.
 * Parsed by pushing (TarParser), as this pass only looks: on the large benchmark image the pull
 * reader's promises per entry cost more than the hashing.
 *
 * An uncompressed blob is not hashed: its diff id is the one the config names at its place in
 * the manifest, and the hash would cost a third of the pass. What the hash would have caught is
 * caught all the same: every file the new layer takes is checked, in pass 2, against the sha256
 * this pass records, and every header against its checksum.
 */
async function indexBlob(body: AsyncIterable<Buffer>, gzip: boolean): Promise<{ kept: IndexedEntry[]; size: number; digests?: BlobDigests }> {
  const index = new BlobIndex()
  const parser = new TarParser(index)
  if (gzip) {
    const blob = blobTar(body, gzip)
    for await (const c of blob.tar) if (!parser.done) parser.write(c)
    parser.finish()
    const digests = await blob.digests()
    return { kept: index.kept, size: digests.size, digests }
  }
  let size = 0
  for await (const c of body) {
    size += c.length
    if (!parser.done) parser.write(c)
  }
  parser.finish()
  return { kept: index.kept, size }
}

/** Pass 1: index a `docker save` stream, keeping entries of the layers whose diff ids are in `keep`. */
export async function indexSave(source: AsyncIterable<Buffer>, keep: Set<string>, base: Set<string> = new Set()): Promise<SaveIndex> {
  const index: SaveIndex = {
    layers: new Map(),
    entries: new Map(),
    files: new Map(),
    symlinks: new Map(),
    base: new BaseContent(),
    image: { config: Buffer.alloc(0), layers: [] },
  }
  // Which layer a blob is shows only at the end (manifest.json comes last): every blob's entries
  // wait until then.
  const blobs = new Map<string, IndexedEntry[]>()
  let position = 0
  for await (const member of readTar(source)) {
    const name = cleanMemberName(member.name).toString('latin1')
    if (member.type === '2') index.symlinks.set(name, member.linkname.toString('latin1'))
    if (member.type !== '0') continue
    const { head, all } = await peek(member.body(), 512)
    const gzip = isGzip(head)
    if (gzip || isTar(head)) {
      const { kept, size, digests } = await indexBlob(all, gzip)
      // Filled in below for a blob that was not hashed.
      index.layers.set(name, { member: name, diffId: digests?.diffId ?? '', digest: digests?.digest ?? '', size, gzip, position: position++ })
      blobs.set(name, kept)
    } else if (member.size <= MAX_JSON) {
      const chunks: Buffer[] = []
      for await (const c of all) chunks.push(c)
      index.files.set(name, Buffer.concat(chunks))
    } else {
      for await (const _ of all) void _
    }
  }
  const { config, layers, diffIds } = savedLayers(index)
  index.image = { config, layers }
  for (const [i, layer] of layers.entries()) {
    const diffId = diffIds[i]
    if (layer.diffId === '') layer.diffId = layer.digest = diffId
    else if (layer.diffId !== diffId) {
      throw new DflattenError('bad-data', `malformed archive from the daemon: layer ${layer.member} is not the ${diffId} its config names`)
    }
    const kept = blobs.get(layer.member)!
    if (keep.has(diffId)) index.entries.set(diffId, kept)
    if (base.has(diffId)) {
      for (const e of kept) if (!baseName(e.name.toString('latin1')).startsWith(WHITEOUT_PREFIX)) index.base.add(e.name.toString('latin1'))
    }
  }
  return index
}

/** The header alone, names cleaned: what the merge keeps of each entry. */
function headerOf(e: TarHeader): TarHeader {
  return {
    name: cleanMemberName(e.name),
    type: e.type,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    size: e.size,
    mtime: e.mtime,
    linkname: e.type === '1' ? cleanMemberName(e.linkname) : e.linkname,
    devmajor: e.devmajor,
    devminor: e.devminor,
    xattrs: e.xattrs,
  }
}

function resolveMember(index: SaveIndex, name: string): string {
  let n = name.replace(/^\.\//, '')
  for (let hops = 0; index.symlinks.has(n); hops++) {
    if (hops > 16) throw new DflattenError('bad-data', `malformed archive from the daemon: a symlink loop at ${name}`)
    const target = index.symlinks.get(n)!
    n = target.startsWith('/') ? target.slice(1) : [...n.split('/').slice(0, -1), target].join('/')
    n = cleanMemberName(Buffer.from(n, 'latin1')).toString('latin1')
  }
  return n
}

function json<T>(index: SaveIndex, name: string): T {
  const data = index.files.get(resolveMember(index, name))
  if (!data) throw new DflattenError('bad-data', `malformed archive from the daemon: ${name} is missing`)
  try {
    return JSON.parse(data.toString('utf8')) as T
  } catch {
    throw new DflattenError('bad-data', `malformed archive from the daemon: ${name} is not JSON`)
  }
}

interface OciDescriptor {
  mediaType: string
  digest: string
  size: number
  platform?: { os?: string; architecture?: string }
}

/** The one image of a save archive: its config, and its layers with their diff ids, in order. */
function savedLayers(index: SaveIndex): { config: Buffer; layers: SavedLayer[]; diffIds: string[] } {
  const manifests = json<Array<{ Config: string; Layers: string[] }>>(index, 'manifest.json')
  if (!Array.isArray(manifests) || manifests.length !== 1) {
    throw new DflattenError('bad-data', 'malformed archive from the daemon: manifest.json should describe exactly one image')
  }
  const [m] = manifests
  const config = index.files.get(resolveMember(index, m.Config))
  if (!config) throw new DflattenError('bad-data', `malformed archive from the daemon: config ${m.Config} is missing`)
  const layers = m.Layers.map((l) => {
    const saved = index.layers.get(resolveMember(index, l))
    if (!saved) throw new DflattenError('bad-data', `malformed archive from the daemon: layer ${l} is missing`)
    return saved
  })
  const diffIds = json<{ rootfs?: { diff_ids?: unknown } }>(index, m.Config).rootfs?.diff_ids
  if (!Array.isArray(diffIds) || diffIds.length !== layers.length || !diffIds.every((d) => typeof d === 'string')) {
    throw new DflattenError('bad-data', `malformed archive from the daemon: config ${m.Config} does not name one diff id per layer`)
  }
  return { config, layers, diffIds: diffIds as string[] }
}

/** The image's layers as the archive describes them: member, diff id and stored descriptor. */
export function savedImage(index: SaveIndex): { config: Buffer; layers: Array<SavedLayer & { descriptor: LayerDescriptor }> } {
  const { config, layers } = index.image

  // An OCI layout says how the daemon stores each layer (gzip in the containerd store); the
  // loaded result must point at the base layers exactly so, or it cannot be pushed or saved.
  let oci: OciDescriptor[] | null = null
  if (index.files.has('index.json')) {
    let desc: OciDescriptor | undefined = json<{ manifests: OciDescriptor[] }>(index, 'index.json').manifests?.[0]
    for (let depth = 0; desc && depth < 4; depth++) {
      const doc: { manifests?: OciDescriptor[]; layers?: OciDescriptor[] } = json(index, `blobs/${desc.digest.replace(':', '/')}`)
      if (doc.layers) {
        oci = doc.layers
        break
      }
      desc = doc.manifests?.find((d: OciDescriptor) => d.platform?.os === 'linux') ?? doc.manifests?.[0]
    }
  }
  return {
    config,
    layers: layers.map((l, i) => ({
      ...l,
      descriptor: {
        mediaType: oci?.[i]?.mediaType ?? (l.gzip ? MEDIA_TYPES.dockerLayerGzip : MEDIA_TYPES.dockerLayer),
        digest: oci?.[i]?.digest ?? l.digest,
        size: oci?.[i]?.size ?? l.size,
        diffId: l.diffId,
      },
    })),
  }
}

interface Merged {
  header: TarHeader
  layer: SavedLayer
  index: number
  /** For a hardlink: the entry whose content it shares (layer and index). */
  content?: { layer: SavedLayer; index: number }
  whiteout?: true
}

/** The merged tree: one node a path, children by name (latin1, so bytes compare as bytes). */
interface Node {
  m?: Merged
  opaque?: boolean
  kids?: Map<string, Node>
}

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

function baseName(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1)
}

/**
 * Merge the layers above the base, lowest first, into the entries of one layer with the same
 * effect on the base. Within a layer, whiteouts and opaque markers act on the layers below it
 * only, so they are applied before the layer's own entries.
 */
export function mergeLayers(layers: Array<{ layer: SavedLayer; entries: IndexedEntry[] }>, base?: BaseContent): LayerEntry[] {
  const root: Node = {}
  for (const { layer, entries } of layers) {
    for (const e of entries) {
      const p = e.name.toString('latin1')
      const name = baseName(p)
      if (name === OPAQUE_MARKER) {
        const dir = nodeAt(root, parentOf(p), true)!
        dir.kids = undefined
        dir.opaque = true
      } else if (name.startsWith(WHITEOUT_PREFIX)) {
        const gone = (parentOf(p) ? parentOf(p) + '/' : '') + name.slice(WHITEOUT_PREFIX.length)
        const n = nodeAt(root, gone, true)!
        n.kids = undefined
        n.opaque = false
        n.m = { header: { ...e, name: Buffer.from(gone, 'latin1') }, layer, index: e.index, whiteout: true }
      }
    }
    for (const e of entries) {
      const p = e.name.toString('latin1')
      if (p === '' || baseName(p).startsWith(WHITEOUT_PREFIX)) continue
      const n = nodeAt(root, p, true)!
      const before = n.m
      if (e.type === '5') {
        // A directory over something this merge deleted or replaced must hide the base's copy.
        if (before && (before.whiteout || before.header.type !== '5')) n.opaque = true
        n.m = { header: e, layer, index: e.index }
        continue
      }
      n.kids = undefined
      n.opaque = false
      n.m = { header: e, layer, index: e.index }
      if (e.type === '1') {
        // Links come after their target in a tar; the target's node holds the version the link
        // shares, from this layer or an earlier one. A link to a base file stays a link.
        const target = nodeAt(root, e.linkname.toString('latin1'), false)?.m
        if (target && !target.whiteout && (target.header.type === '0' || target.content)) {
          n.m = {
            header: { ...target.header, name: e.name },
            layer,
            index: e.index,
            content: target.content ?? { layer: target.layer, index: target.index },
          }
        }
      }
    }
  }
  return layerOrder(root, base)
}

const KIND: Record<string, LayerEntry['kind']> = {
  '0': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'dir',
  '6': 'fifo',
}

function toEntry(m: Merged): LayerEntry | null {
  const h = m.header
  if (m.whiteout) return whiteoutEntry(h.name)
  const kind = m.content ? 'file' : KIND[h.type]
  if (!kind) return null // sockets and unknown types: nothing a layer can hold
  return {
    path: h.name,
    kind,
    mode: h.mode,
    uid: h.uid,
    gid: h.gid,
    mtime: h.mtime,
    size: kind === 'file' ? h.size : 0,
    linkname: kind === 'symlink' || kind === 'hardlink' ? h.linkname : undefined,
    devmajor: kind === 'char' || kind === 'block' ? h.devmajor : undefined,
    devminor: kind === 'char' || kind === 'block' ? h.devminor : undefined,
    xattrs: h.xattrs.length ? h.xattrs : undefined,
    sha256: kind === 'file' ? (h as IndexedEntry).sha256 : undefined,
  }
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
  const walk = (n: Node, path: string): void => {
    const m = n.m
    if (m && !m.whiteout && (m.header.type === '0' || m.content) && m.header.size > 0) {
      const source = m.content ?? { layer: m.layer, index: m.index }
      const key = `${source.layer.member}#${source.index}`
      const g = groups.get(key) ?? { source, members: [] }
      g.members.push([Buffer.from(path, 'latin1'), m])
      groups.set(key, g)
    } else if (m && !(m.whiteout && base && !base.has(path))) {
      const e = toEntry(m)
      if (e) meta.push(e)
    }
    if (n.opaque && (path === '' || m?.header.type === '5') && (!base || base.hasUnder(path))) {
      meta.push({ ...whiteoutEntry(Buffer.from(path, 'latin1')), kind: 'opaque' })
    }
    for (const k of [...(n.kids?.keys() ?? [])].sort()) walk(n.kids!.get(k)!, path ? `${path}/${k}` : k)
  }
  walk(root, '')

  const content: LayerEntry[] = []
  const links: LayerEntry[] = []
  const ordered = [...groups.values()].sort(
    (a, b) => a.source.layer.position - b.source.layer.position || a.source.index - b.source.index,
  )
  for (const g of ordered) {
    // Members are in walk order already; the first carries the content.
    const [[firstPath, first], ...rest] = g.members
    const e = toEntry({ ...first, content: first.content ?? { layer: first.layer, index: first.index } })!
    content.push({ ...e, path: firstPath, from: { member: g.source.layer.member, index: g.source.index } })
    for (const [p] of rest) {
      links.push({ path: p, kind: 'hardlink', linkname: firstPath, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, size: 0 })
    }
  }
  links.sort((a, b) => Buffer.compare(a.path, b.path))
  return [...meta, ...content, ...links]
}

/**
 * Pass 2: the content of the kept files from a second `docker save` stream. Asked for entries in
 * the order the stream delivers them (the entries file's order), it only ever moves forward, and
 * checks on the way that every layer it reads is the one pass 1 indexed.
 */
export class SaveContent {
  private readonly it: AsyncGenerator<{ member: string; index: number; entry: TarEntry }>

  constructor(source: AsyncIterable<Buffer>, expected: Map<string, string>) {
    this.it = SaveContent.walk(source, expected)
  }

  private static async *walk(source: AsyncIterable<Buffer>, expected: Map<string, string>) {
    for await (const member of readTar(source)) {
      const name = cleanMemberName(member.name).toString('latin1')
      const diffId = expected.get(name)
      if (member.type !== '0' || !diffId) continue
      const { head, all } = await peek(member.body(), 2)
      const gen = blobEntries(all, isGzip(head))
      let r = await gen.next()
      for (; !r.done; r = await gen.next()) yield { member: name, index: r.value.index, entry: r.value }
      if (r.value.diffId !== diffId) {
        throw new DflattenError('bad-data', `the daemon's second docker save gave a different layer ${name}; was the image changed?`)
      }
    }
  }

  async body(from: { member: string; index: number }): Promise<AsyncGenerator<Buffer>> {
    for (;;) {
      const r = await this.it.next()
      if (r.done) throw new DflattenError('bad-data', `docker save ended before entry ${from.index} of ${from.member}`)
      if (r.value.member === from.member && r.value.index === from.index) return r.value.entry.body()
    }
  }

  /** Read the rest, so the last layers are verified and docker save can finish. */
  async finish(): Promise<void> {
    while (!(await this.it.next()).done);
  }
}
