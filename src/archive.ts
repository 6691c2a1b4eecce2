/**
 * The one module that knows the bytes of the formats dflatten writes:
 *  - the layer tar (ustar + PAX), encoded here so that its exact size is known from metadata
 *    alone before any content is read, which lets the layer stream into the image archive
 *    with no temp file;
 *  - the image archive that `docker load` reads (OCI layout plus Docker's manifest.json).
 *
 * The layer encoder is our own rather than tar-stream's because tar-stream writes PAX records
 * as UTF-8 strings: file names that are not UTF-8 and binary xattr values (security.capability)
 * would not survive. tar-stream still writes the outer archive, whose names are plain ASCII.
 */
import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import { closeSync, openSync, readSync } from 'node:fs'
import { Readable, Transform, type TransformCallback } from 'node:stream'
import tar from 'tar-stream'
import type { LayerEntry } from './entry.js'
import { opaquePath, whiteoutPath } from './whiteout.js'
import { DflattenError } from './errors.js'

const BLOCK = 512
const END_OF_ARCHIVE = 2 * BLOCK
const ZERO_BLOCK = Buffer.alloc(BLOCK)
const MAX_OCTAL_7 = 0o7777777
const MAX_OCTAL_11 = 0o77777777777
const READ_CHUNK = 1024 * 1024

function padding(n: number): number {
  return (BLOCK - (n % BLOCK)) % BLOCK
}

function isPlainAscii(b: Buffer): boolean {
  for (const c of b) if (c < 0x20 || c > 0x7e) return false
  return true
}

const TYPEFLAG: Record<LayerEntry['kind'], string> = {
  file: '0',
  whiteout: '0',
  opaque: '0',
  hardlink: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
}

/** The name an entry has in the layer tar. */
export function tarName(e: LayerEntry): Buffer {
  switch (e.kind) {
    case 'whiteout':
      return whiteoutPath(e.path)
    case 'opaque':
      return opaquePath(e.path)
    case 'dir':
      return Buffer.concat([e.path, Buffer.from('/')])
    default:
      return e.path
  }
}

/** One PAX record: `<len> <key>=<value>\n`, where len counts the whole record. */
function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.byteLength(key) + value.length + 3 // space, '=', newline
  let len = body + String(body).length
  if (String(len).length !== String(body).length) len = body + String(len).length
  return Buffer.concat([Buffer.from(`${len} ${key}=`), value, Buffer.from('\n')])
}

/** Split a name into ustar's prefix (155) and name (100) fields, or null if it cannot be. */
function splitUstarName(name: Buffer): [Buffer, Buffer] | null {
  if (name.length <= 100) return [Buffer.alloc(0), name]
  // The split must fall on a slash; the slash itself is dropped.
  for (let i = Math.min(name.length - 1, 155); i > 0; i--) {
    if (name[i] === 0x2f && name.length - i - 1 <= 100 && name.length - i - 1 > 0) {
      return [name.subarray(0, i), name.subarray(i + 1)]
    }
  }
  return null
}

/** A deterministic ASCII stand-in for a name that lives in a PAX record. */
function placeholder(name: Buffer): Buffer {
  const tail = name.length > 100 ? name.subarray(name.length - 100) : Buffer.from(name)
  const out = Buffer.from(tail)
  for (let i = 0; i < out.length; i++) if (out[i] < 0x20 || out[i] > 0x7e) out[i] = 0x5f
  return out
}

function writeOctal(buf: Buffer, offset: number, width: number, value: number): void {
  // width includes the terminating NUL, as in GNU tar.
  const s = value.toString(8).padStart(width - 1, '0')
  buf.write(s, offset, width - 1, 'ascii')
  buf[offset + width - 1] = 0
}

interface UstarFields {
  name: Buffer
  prefix: Buffer
  mode: number
  uid: number
  gid: number
  size: number
  mtime: number
  typeflag: string
  linkname: Buffer
  devmajor: number
  devminor: number
}

function ustarBlock(f: UstarFields): Buffer {
  const b = Buffer.alloc(BLOCK)
  f.name.copy(b, 0, 0, 100)
  writeOctal(b, 100, 8, f.mode)
  writeOctal(b, 108, 8, f.uid)
  writeOctal(b, 116, 8, f.gid)
  writeOctal(b, 124, 12, f.size)
  writeOctal(b, 136, 12, f.mtime)
  b.fill(0x20, 148, 156) // checksum is computed with its own field as spaces
  b.write(f.typeflag, 156, 1, 'ascii')
  f.linkname.copy(b, 157, 0, 100)
  b.write('ustar\u000000', 257, 8, 'ascii')
  writeOctal(b, 329, 8, f.devmajor)
  writeOctal(b, 337, 8, f.devminor)
  f.prefix.copy(b, 345, 0, 155)
  let sum = 0
  for (const c of b) sum += c
  b.write(sum.toString(8).padStart(6, '0'), 148, 6, 'ascii')
  b[154] = 0
  b[155] = 0x20
  return b
}

/**
 * The header blocks of one entry: a ustar block, preceded by a PAX extended header when a
 * field does not fit ustar (long or non-ASCII names and link targets, large ids, sizes or
 * times, xattrs).
 */
export function encodeHeader(e: LayerEntry): Buffer {
  const name = tarName(e)
  const link = e.linkname ?? Buffer.alloc(0)
  const records: Buffer[] = []

  let split = isPlainAscii(name) ? splitUstarName(name) : null
  if (!split) {
    records.push(paxRecord('path', name))
    split = [Buffer.alloc(0), placeholder(name)]
  }
  let ustarLink = link
  if (link.length > 100 || !isPlainAscii(link)) {
    records.push(paxRecord('linkpath', link))
    ustarLink = placeholder(link)
  }
  const numeric = (key: string, value: number, max: number): number => {
    if (value >= 0 && value <= max) return value
    records.push(paxRecord(key, Buffer.from(String(value))))
    return 0
  }
  const uid = numeric('uid', e.uid, MAX_OCTAL_7)
  const gid = numeric('gid', e.gid, MAX_OCTAL_7)
  const size = numeric('size', e.size, MAX_OCTAL_11)
  const mtime = numeric('mtime', e.mtime, MAX_OCTAL_11)
  for (const [k, v] of e.xattrs ?? []) records.push(paxRecord(`SCHILY.xattr.${k}`, v))

  const ustar = ustarBlock({
    name: split[1],
    prefix: split[0],
    mode: e.mode & 0o7777,
    uid,
    gid,
    size,
    mtime,
    typeflag: TYPEFLAG[e.kind],
    linkname: ustarLink,
    devmajor: e.devmajor ?? 0,
    devminor: e.devminor ?? 0,
  })
  if (records.length === 0) return ustar

  const pax = Buffer.concat(records)
  const paxHeader = ustarBlock({
    name: placeholder(Buffer.concat([Buffer.from('PaxHeaders/'), split[1]])),
    prefix: Buffer.alloc(0),
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: pax.length,
    mtime,
    typeflag: 'x',
    linkname: Buffer.alloc(0),
    devmajor: 0,
    devminor: 0,
  })
  return Buffer.concat([paxHeader, pax, Buffer.alloc(padding(pax.length)), ustar])
}

/** Bytes of content an entry carries in the tar. */
function contentSize(e: LayerEntry): number {
  return e.kind === 'file' ? e.size : 0
}

/** The bytes one entry takes in the layer tar: header blocks, content, padding. */
export function entryTarBytes(e: LayerEntry): number {
  const n = contentSize(e)
  return encodeHeader(e).length + n + padding(n)
}

/** The exact byte size of the layer tar, from metadata alone. */
export async function layerSize(entries: Iterable<LayerEntry> | AsyncIterable<LayerEntry>): Promise<number> {
  let total = END_OF_ARCHIVE
  for await (const e of entries) total += entryTarBytes(e)
  return total
}

/** Bytes of an empty layer tar: just the end-of-archive blocks. */
export const EMPTY_LAYER_BYTES = END_OF_ARCHIVE

/** Where pack gets a file's bytes: by default from the path in `entry.source`. */
export type ContentSource = (e: LayerEntry) => Promise<AsyncIterable<Buffer>> | AsyncIterable<Buffer>

/** A file's content from the host, read up to its recorded size (more is caught below). */
export async function* fileContent(e: LayerEntry): AsyncGenerator<Buffer> {
  if (e.source === undefined) throw new Error(`entry ${e.path.toString()} has no content source`)
  const fh = await open(e.source, 'r')
  try {
    let position = 0
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.min(READ_CHUNK, Math.max(e.size - position, 1)))
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, position)
      if (bytesRead === 0) return
      position += bytesRead
      yield chunk.subarray(0, bytesRead)
    }
  } finally {
    await fh.close()
  }
}

async function* exactly(e: LayerEntry, content: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let got = 0
  for await (const chunk of content) {
    got += chunk.length
    if (got > e.size) break
    yield chunk
  }
  if (got !== e.size) {
    throw new DflattenError('bad-data', `${e.path.toString()} changed size while being packed (expected ${e.size} bytes)`)
  }
}

/** Output is handed on in chunks of about this size, whatever the size of the files. */
const OUT_CHUNK = 1024 * 1024
/** Files up to this size are read whole, synchronously: cheaper than three async round trips. */
const SMALL_FILE = 256 * 1024

/**
 * A small file's content from the host. Synchronous on purpose: for the many small files of a
 * typical image, the thread-pool round trips of open, read and close cost more than the read.
 */
function smallFileContent(e: LayerEntry): Buffer {
  if (e.source === undefined) throw new Error(`entry ${e.path.toString()} has no content source`)
  const fd = openSync(e.source, 'r')
  try {
    const buf = Buffer.allocUnsafe(e.size)
    let got = 0
    while (got < e.size) {
      const n = readSync(fd, buf, got, e.size - got, got)
      if (n === 0) break
      got += n
    }
    if (got !== e.size || readSync(fd, Buffer.alloc(1), 0, 1, e.size) !== 0) {
      throw new DflattenError('bad-data', `${e.path.toString()} changed size while being packed (expected ${e.size} bytes)`)
    }
    return buf
  } finally {
    closeSync(fd)
  }
}

/**
 * Stream the layer tar for `entries`, which must be in their final order. Headers, small files
 * and padding are gathered into chunks of about 1 MiB: every chunk passes several stream stages
 * on its way to docker load, and per-chunk costs would otherwise dominate for small files.
 */
export function layerStream(
  entries: Iterable<LayerEntry> | AsyncIterable<LayerEntry>,
  content: ContentSource = fileContent,
  /** Runs after the last entry, before the end-of-archive blocks: a failure fails the layer. */
  finish?: () => Promise<void>,
): Readable {
  async function* generate(): AsyncGenerator<Buffer> {
    let pending: Buffer[] = []
    let pendingBytes = 0
    const add = (b: Buffer): void => {
      pending.push(b)
      pendingBytes += b.length
    }
    const take = (): Buffer => {
      const out = pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingBytes)
      pending = []
      pendingBytes = 0
      return out
    }
    for await (const e of entries) {
      add(encodeHeader(e))
      const n = contentSize(e)
      if (n > 0) {
        if (content === fileContent && n <= SMALL_FILE) {
          add(smallFileContent(e))
        } else if (n <= SMALL_FILE) {
          // Copied, not kept as views: a source may reuse the memory it handed out.
          for await (const c of exactly(e, await content(e))) add(Buffer.from(c))
        } else {
          if (pendingBytes) yield take()
          yield* exactly(e, await content(e))
        }
        const pad = padding(n)
        if (pad) add(ZERO_BLOCK.subarray(0, pad))
      }
      if (pendingBytes >= OUT_CHUNK) yield take()
    }
    await finish?.()
    add(Buffer.alloc(END_OF_ARCHIVE))
    yield take()
  }
  return Readable.from(generate(), { objectMode: false, highWaterMark: OUT_CHUNK })
}

/** A pass-through that computes the sha256 and byte count of what flows through it. */
export class Digester extends Transform {
  private hash = createHash('sha256')
  bytes = 0
  digest = ''
  _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk)
    this.bytes += chunk.length
    cb(null, chunk)
  }
  _flush(cb: TransformCallback): void {
    this.digest = 'sha256:' + this.hash.digest('hex')
    cb()
  }
}

export function sha256(data: Buffer | string): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex')
}

/** JSON with object keys sorted at every level: the same value always gives the same bytes. */
export function stableJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const sorted: Record<string, unknown> = {}
      for (const k of Object.keys(v as object).sort()) sorted[k] = (v as Record<string, unknown>)[k]
      return sorted
    }
    return v
  })
}

export const MEDIA_TYPES = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
} as const

/** A layer the daemon already has, described as the daemon stores it. */
export interface LayerDescriptor {
  mediaType: string
  digest: string
  size: number
  diffId: string
}

export interface ImageArchiveInput {
  /** The base's layers, which stay out of the archive: the daemon has them. */
  baseLayers: LayerDescriptor[]
  /** The new layer: its exact size and its bytes. */
  layer: { size: number; stream: Readable }
  /** Builds the image config once the new layer's diff id is known. */
  config: (diffId: string) => object
  /** Full references (`name:tag`) the loaded image gets, or none. */
  tags: string[]
  /** Called once the archive is complete, with what it holds. */
  onDone?: (result: ImageArchiveResult) => void
}

export interface ImageArchiveResult {
  imageId: string
  diffId: string
  layerSize: number
  configJson: string
}

/** Name of the layer's tar entry; `blobs/sha256/<diff id>` is a hardlink to it. */
const LAYER_ENTRY = 'dflatten/layer.tar'
const EPOCH = new Date(0)

function addEntry(pack: tar.Pack, name: string, data: string): void {
  pack.entry({ name, mode: 0o644, mtime: EPOCH, uid: 0, gid: 0 }, data)
}

/**
 * The image archive `docker load` reads, as one stream: the new layer first (its digest is only
 * known once it has streamed through), then config, manifests and index. It is an OCI image
 * layout that names only the new layer's blob; both image stores accept that when they already
 * hold the base (see NOTES), and a Docker-style manifest.json rides along for daemons that read
 * only that.
 */
export function imageArchive(input: ImageArchiveInput): Readable {
  const pack = tar.pack()
  const run = async (): Promise<void> => {
    addEntry(pack, 'oci-layout', '{"imageLayoutVersion":"1.0.0"}')
    const digester = new Digester()
    await new Promise<void>((resolve, reject) => {
      const sink = pack.entry(
        { name: LAYER_ENTRY, size: input.layer.size, mode: 0o644, mtime: EPOCH, uid: 0, gid: 0 },
        (err) => (err ? reject(err) : resolve()),
      )
      // A failing layer destroys the archive, which destroys this entry: its error must land
      // here, not as an unhandled event.
      sink.on('error', reject)
      input.layer.stream.on('error', reject)
      digester.on('error', reject)
      input.layer.stream.pipe(digester).pipe(sink)
    })
    if (digester.bytes !== input.layer.size) {
      throw new Error(`layer size mismatch: computed ${input.layer.size}, wrote ${digester.bytes}`)
    }
    const diffId = digester.digest
    const blob = (d: string): string => `blobs/sha256/${d.slice('sha256:'.length)}`
    pack.entry({ name: blob(diffId), type: 'link', linkname: LAYER_ENTRY, mtime: EPOCH, mode: 0o644 })

    const configJson = stableJson(input.config(diffId))
    const configDigest = sha256(configJson)
    addEntry(pack, blob(configDigest), configJson)

    const layers = [
      ...input.baseLayers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
      { mediaType: MEDIA_TYPES.layer, digest: diffId, size: input.layer.size },
    ]
    const manifestJson = stableJson({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.manifest,
      config: { mediaType: MEDIA_TYPES.config, digest: configDigest, size: Buffer.byteLength(configJson) },
      layers,
    })
    const manifestDigest = sha256(manifestJson)
    addEntry(pack, blob(manifestDigest), manifestJson)

    const manifests = (input.tags.length ? input.tags : [undefined]).map((tag) => ({
      mediaType: MEDIA_TYPES.manifest,
      digest: manifestDigest,
      size: Buffer.byteLength(manifestJson),
      ...(tag ? { annotations: refAnnotations(tag) } : {}),
    }))
    addEntry(pack, 'index.json', stableJson({ schemaVersion: 2, mediaType: MEDIA_TYPES.index, manifests }))
    addEntry(
      pack,
      'manifest.json',
      stableJson([
        {
          Config: blob(configDigest),
          RepoTags: input.tags,
          Layers: [...input.baseLayers.map((l) => blob(l.diffId)), blob(diffId)],
        },
      ]),
    )
    pack.finalize()
    input.onDone?.({ imageId: configDigest, diffId, layerSize: input.layer.size, configJson })
  }
  run().catch((err: Error) => pack.destroy(err))
  return pack as unknown as Readable
}

/** containerd names images fully qualified; the OCI ref name is the tag alone. */
function refAnnotations(tag: string): Record<string, string> {
  return {
    'io.containerd.image.name': fullyQualified(tag),
    'org.opencontainers.image.ref.name': tag.slice(tag.lastIndexOf(':') + 1),
  }
}

/** `app:1` -> `docker.io/library/app:1`, as Docker's reference normalisation does. */
export function fullyQualified(ref: string): string {
  const slash = ref.indexOf('/')
  const first = slash === -1 ? '' : ref.slice(0, slash)
  const hasDomain = first.includes('.') || first.includes(':') || first === 'localhost'
  if (hasDomain) return ref
  return slash === -1 ? `docker.io/library/${ref}` : `docker.io/${ref}`
}
