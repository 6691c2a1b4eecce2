/**
 * Pass 1 of the save method: index `docker save` as it streams. Its layer blobs arrive in no
 * useful order and their names do not say which layer they are until manifest.json, which comes
 * last; so every blob is parsed as it passes (decompressed when gzip), every file's content
 * hashed, and once manifest.json and the config say which layer each blob is, the entries'
 * metadata is kept for the layers above the base (merge.ts then merges them). Memory grows with
 * the number of paths, never with content.
 */
import { DflattenError } from '../../errors.js'
import { digestInName, MEDIA_TYPES, type LayerDescriptor } from '../../image-archive.js'
import { cleanMemberName, readTar, TarParser, type TarHeader, type TarSink } from '../../tar/index.js'
import { WHITEOUT_PREFIX } from '../../whiteout.js'
import { FileDigest } from './digest.js'
import { blobTar, isGzip, isTar, peek } from './blob.js'
import { PackedHeaders, type DigestSlot } from './packed.js'

/** Small non-layer members (manifests, configs) are kept whole; larger ones are not metadata. */
const MAX_JSON = 8 * 1024 * 1024

export type { IndexedEntry } from './packed.js'

export interface SavedLayer {
  member: string
  diffId: string
  /** The blob as the archive (and so the daemon) has it. */
  digest: string
  size: number
  /** The layer's tar bytes (absent: the blob's own size, as it is not compressed). */
  tarSize?: number
  gzip: boolean
  /** Order of arrival in the save stream. */
  position: number
}

export interface SaveIndex {
  /** Every layer blob seen, by member name. */
  layers: Map<string, SavedLayer>
  /** Entries of the layers asked for, by diff id. */
  entries: Map<string, PackedHeaders>
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

/** The entries of one layer blob as pass 1 keeps them: headers, names cleaned, files hashed. */
class BlobIndex implements TarSink {
  readonly kept = new PackedHeaders()
  private file: { slot: DigestSlot; digest: FileDigest } | null = null

  entry(h: TarHeader): void {
    const slot = this.kept.add(cleanHeader(h))
    if (slot) this.file = { slot, digest: new FileDigest(h.size) }
  }

  data(chunk: Buffer): void {
    // eslint-disable-next-line @typescript-eslint/no-non-null-assertion -- the parser sends data only after a regular file's header (decode.ts: only files carry content), which set this.file
    this.file!.digest.update(chunk)
  }

  end(): void {
    if (!this.file) return
    PackedHeaders.setDigest(this.file.slot, this.file.digest.digest())
    this.file = null
  }
}

/**
 * Pass 1's read of one layer blob: its entries, its size and its tar's size, and the blob's own
 * digest when `hashBlob` asks (a blob whose name does not carry it). Parsed by pushing
 * (TarParser), as this pass only looks: on an image of many small files the pull reader's
 * promises per entry cost more than the hashing.
 *
 * No blob's tar is hashed: its diff id is the one the config names at its place in the
 * manifest, and two more sha256 streams over every byte would be a large part of the pass, which
 * shares the machine with the daemon's own work on the save. What the hash would have caught is
 * caught all the same: gzip's CRC-32 covers a compressed blob's tar; every file the new layer
 * takes is checked, in pass 2, against the sha256 this pass records; every header against its
 * checksum.
 */
async function indexBlob(body: AsyncIterable<Buffer>, gzip: boolean, hashBlob: boolean): Promise<{ kept: PackedHeaders; size: number; tarSize: number; digest?: string }> {
  const index = new BlobIndex()
  const parser = new TarParser(index)
  if (gzip) {
    const blob = blobTar(body, gzip, { blob: hashBlob, tar: false })
    let tarSize = 0
    for await (const c of blob.tar) {
      tarSize += c.length
      if (!parser.done) parser.write(c)
    }
    parser.finish()
    const { size, digest } = await blob.digests()
    return { kept: index.kept.seal(), size, tarSize, ...(digest ? { digest } : {}) }
  }
  let size = 0
  for await (const c of body) {
    size += c.length
    if (!parser.done) parser.write(c)
  }
  parser.finish()
  return { kept: index.kept.seal(), size, tarSize: size }
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
  const blobs = new Map<string, PackedHeaders>()
  let position = 0
  for await (const member of readTar(source)) {
    const name = cleanMemberName(member.name).toString('latin1')
    if (member.type === '2') index.symlinks.set(name, member.linkname.toString('latin1'))
    if (member.type !== '0') continue
    const { head, all } = await peek(member.body(), 512)
    const gzip = isGzip(head)
    if (gzip || isTar(head)) {
      const named = digestInName(name)
      const { kept, size, tarSize, digest } = await indexBlob(all, gzip, gzip && !named)
      // The diff id (and a plain blob's digest, the same) are filled in below from the config.
      index.layers.set(name, { member: name, diffId: '', digest: named ?? digest ?? '', size, tarSize, gzip, position: position++ })
      blobs.set(name, kept)
    } else if (member.size <= MAX_JSON) {
      const chunks: Buffer[] = []
      for await (const c of all) chunks.push(c)
      index.files.set(name, Buffer.concat(chunks))
    } else {
      for await (const _ of all) {
        // read to the end, bytes unkept
      }
    }
  }
  const { config, layers, diffIds } = savedLayers(index)
  index.image = { config, layers }
  for (const [i, layer] of layers.entries()) {
    const diffId = diffIds[i]
    if (layer.diffId === '') {
      layer.diffId = diffId
      if (layer.digest === '') layer.digest = diffId
    } else if (layer.diffId !== diffId) {
      throw new DflattenError('bad-data', `malformed archive from the daemon: layer ${layer.member} is not the ${diffId} its config names`)
    }
    // eslint-disable-next-line @typescript-eslint/no-non-null-assertion -- savedLayers returns only layers of index.layers, and each was set together with its blobs entry above
    const kept = blobs.get(layer.member)!
    if (keep.has(diffId)) index.entries.set(diffId, kept)
    if (base.has(diffId)) {
      for (const e of kept) if (!baseName(e.name.toString('latin1')).startsWith(WHITEOUT_PREFIX)) index.base.add(e.name.toString('latin1'))
    }
  }
  return index
}

/** The header with its names cleaned, as the merge compares them. */
function cleanHeader(e: TarHeader): TarHeader {
  return { ...e, name: cleanMemberName(e.name), linkname: e.type === '1' ? cleanMemberName(e.linkname) : e.linkname }
}

/**
 * A member's name once the archive's own symlinks are followed. Docker 20.10's legacy save
 * stores a layer that the image holds twice (the same diff id at two places: two RUN steps that
 * wrote the same bytes with the same mtimes) once, and makes the second place's
 * `<id2>/layer.tar` a relative symlink to the first copy, `../<id1>/layer.tar`. A target is
 * resolved lexically from the symlink's own directory and must stay a member of the same archive:
 * an absolute one, one that climbs above the archive's root, and a loop are refused.
 */
export function resolveMember(symlinks: Map<string, string>, name: string): string {
  let n = cleanMemberName(Buffer.from(name, 'latin1')).toString('latin1')
  const seen = new Set<string>()
  for (let target = symlinks.get(n); target !== undefined; target = symlinks.get(n)) {
    if (seen.has(n)) throw new DflattenError('bad-data', `malformed archive from the daemon: a symlink loop at ${name}`)
    seen.add(n)
    const leaves = (): DflattenError =>
      new DflattenError('bad-data', `malformed archive from the daemon: the symlink ${n} -> ${target} points outside the archive`)
    if (target.startsWith('/')) throw leaves()
    const parts = n.split('/').slice(0, -1)
    for (const p of target.split('/')) {
      if (p === '' || p === '.') continue
      if (p !== '..') parts.push(p)
      else if (parts.pop() === undefined) throw leaves()
    }
    n = parts.join('/')
  }
  return n
}

function json<T>(index: SaveIndex, name: string): T {
  const data = index.files.get(resolveMember(index.symlinks, name))
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
  const config = index.files.get(resolveMember(index.symlinks, m.Config))
  if (!config) throw new DflattenError('bad-data', `malformed archive from the daemon: config ${m.Config} is missing`)
  const layers = m.Layers.map((l) => {
    const member = resolveMember(index.symlinks, l)
    const saved = index.layers.get(member)
    if (saved) return saved
    // A repeated layer's symlink must lead to another layer blob, not to a config or a dir.
    const what = index.symlinks.has(cleanMemberName(Buffer.from(l, 'latin1')).toString('latin1'))
      ? `is a symlink to ${member}, which is not a layer of the archive`
      : 'is missing'
    throw new DflattenError('bad-data', `malformed archive from the daemon: layer ${l} ${what}`)
  })
  const diffIds = json<{ rootfs?: { diff_ids?: unknown } }>(index, m.Config).rootfs?.diff_ids
  if (!Array.isArray(diffIds) || diffIds.length !== layers.length || !diffIds.every((d) => typeof d === 'string')) {
    throw new DflattenError('bad-data', `malformed archive from the daemon: config ${m.Config} does not name one diff id per layer`)
  }
  return { config, layers, diffIds }
}

/** The image's layers as the archive describes them: member, diff id and stored descriptor. */
export function savedImage(index: SaveIndex): { config: Buffer; layers: Array<SavedLayer & { descriptor: LayerDescriptor }> } {
  const { config, layers } = index.image

  // An OCI layout says how the daemon stores each layer (gzip in the containerd store); the
  // loaded result must point at the base layers exactly so, or it cannot be pushed or saved.
  let oci: OciDescriptor[] | null = null
  if (index.files.has('index.json')) {
    let desc: OciDescriptor | undefined = json<{ manifests?: OciDescriptor[] }>(index, 'index.json').manifests?.[0]
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

export function baseName(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1)
}
