import { closeSync, createReadStream, createWriteStream, openSync, readSync } from 'node:fs'
import { once } from 'node:events'
import type { TarHeader } from './tar/index.js'

/**
 * The value every diff method produces and pack consumes: one entry of the new layer.
 *
 * Paths are Buffers, not strings, because Linux file names are bytes: a name that is not
 * valid UTF-8 must come out of the layer exactly as it went in.
 */
export type EntryKind =
  | 'file'
  | 'dir'
  | 'symlink'
  | 'hardlink'
  | 'fifo'
  | 'char'
  | 'block'
  /** `.wh.<name>`: the path existed below and is deleted. `path` is the deleted path. */
  | 'whiteout'
  /** `<dir>/.wh..wh..opq`: hide everything below `path` from lower layers. */
  | 'opaque'

export interface LayerEntry {
  /** Relative to the image root, no leading `/` or `./`, no trailing slash. */
  path: Buffer
  kind: EntryKind
  /** Permission bits including setuid, setgid and sticky (no file-type bits). */
  mode: number
  uid: number
  gid: number
  /** Whole seconds: Docker's own layers carry no sub-second times. */
  mtime: number
  /** Content bytes; 0 for everything but regular files. */
  size: number
  /** Symlink target, or for a hardlink the path of the entry it links to. */
  linkname?: Buffer
  devmajor?: number
  devminor?: number
  /** Extended attributes to record, sorted by name. */
  xattrs?: Array<[string, Buffer]>
  /** Where to read a regular file's content from, at pack time: a path on this host... */
  source?: Buffer | string
  /** ...or the `index`th entry of layer blob `member` of a `docker save` stream (save method). */
  from?: { member: string; index: number }
  /** The content's sha256 (base64) where known: content read from another view is checked against it. */
  sha256?: string
}

/** What each tar type flag is as a layer entry; the decoder reads '7' (contiguous) as '0'. */
const TAR_KINDS: Partial<Record<string, EntryKind>> = {
  '0': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'dir',
  '6': 'fifo',
}

/** A tar header as a layer entry at `path`; null for what a layer cannot hold (sockets, unknown types). */
export function entryFromHeader(h: TarHeader, path: Buffer = h.name): LayerEntry | null {
  const kind = TAR_KINDS[h.type]
  if (!kind) return null
  return {
    path,
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
  }
}

/*
 * Entries travel from diff to pack through a file in the workspace, one JSON object a line, so
 * pack can read them twice (once for the layer's size, once to stream it) with flat memory, and
 * so the stage commands can hand them on. Byte strings are kept as UTF-8 text when they are
 * valid UTF-8 (readable when debugging) and as base64 under a `b64:` prefix when not.
 */

function encodeBytes(b: Buffer): string {
  const s = b.toString('utf8')
  return Buffer.from(s, 'utf8').equals(b) && !s.startsWith('b64:') ? s : 'b64:' + b.toString('base64')
}

function decodeBytes(s: string): Buffer {
  return s.startsWith('b64:') ? Buffer.from(s.slice(4), 'base64') : Buffer.from(s, 'utf8')
}

export function entryToJson(e: LayerEntry): string {
  return JSON.stringify({
    ...e,
    path: encodeBytes(e.path),
    linkname: e.linkname && encodeBytes(e.linkname),
    source: e.source === undefined ? undefined : encodeBytes(Buffer.from(e.source)),
    xattrs: e.xattrs?.map(([k, v]) => [k, v.toString('base64')]),
  })
}

export function entryFromJson(line: string): LayerEntry {
  const o = JSON.parse(line) as Omit<LayerEntry, 'path' | 'linkname' | 'source' | 'xattrs'> & {
    path: string
    linkname?: string
    source?: string
    xattrs?: Array<[string, string]>
  }
  // Every field named, in one order: a spread of the parsed object gave each entry a hidden
  // class of its own under --optimize-for-size, which cost more than the entry where many are held.
  return {
    path: decodeBytes(o.path),
    kind: o.kind,
    mode: o.mode,
    uid: o.uid,
    gid: o.gid,
    mtime: o.mtime,
    size: o.size,
    linkname: o.linkname === undefined ? undefined : decodeBytes(o.linkname),
    devmajor: o.devmajor,
    devminor: o.devminor,
    xattrs: o.xattrs?.map(([k, v]) => [k, Buffer.from(v, 'base64')]),
    source: o.source === undefined ? undefined : decodeBytes(o.source),
    from: o.from && { member: member(o.from.member), index: o.from.index },
    sha256: o.sha256,
  }
}

/** The last layer member name read: entries of one layer come together, so they share one string. */
let lastMember = ''

function member(name: string): string {
  if (name !== lastMember) lastMember = name
  return lastMember
}

export interface EntryCounts {
  /** Entries that add or change something. */
  changed: number
  /** Whiteouts: paths deleted from the base. */
  deleted: number
  /** Content bytes of the regular files. */
  bytes: number
}

/** Write entries to `file`, counting them on the way. */
export async function writeEntries(file: string, entries: AsyncIterable<LayerEntry>, signal?: AbortSignal): Promise<EntryCounts> {
  const out = createWriteStream(file, { mode: 0o600 })
  const counts: EntryCounts = { changed: 0, deleted: 0, bytes: 0 }
  try {
    for await (const e of entries) {
      signal?.throwIfAborted()
      if (e.kind === 'whiteout') counts.deleted++
      else if (e.kind !== 'opaque') counts.changed++
      if (e.kind === 'file') counts.bytes += e.size
      if (!out.write(entryToJson(e) + '\n')) await once(out, 'drain')
    }
  } finally {
    out.end()
    await once(out, 'close')
  }
  return counts
}

export async function* readEntries(file: string): AsyncGenerator<LayerEntry> {
  for await (const { entry } of readEntriesAt(file)) yield entry
}

const NEWLINE = 0x0a

/** Each entry of an entries file with where its line starts, for `EntriesFile.at` to read it again. */
export async function* readEntriesAt(file: string): AsyncGenerator<{ entry: LayerEntry; offset: number }> {
  let offset = 0
  let rest: Buffer = Buffer.alloc(0)
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) {
    const b = rest.length ? Buffer.concat([rest, chunk]) : chunk
    let start = 0
    for (let nl = b.indexOf(NEWLINE); nl !== -1; nl = b.indexOf(NEWLINE, start)) {
      if (nl > start) yield { entry: entryFromJson(b.toString('utf8', start, nl)), offset }
      offset += nl + 1 - start
      start = nl + 1
    }
    rest = b.subarray(start)
  }
  if (rest.length) yield { entry: entryFromJson(rest.toString('utf8')), offset }
}

/**
 * An entries file read at places `readEntriesAt` gave: where many entries wait for something, a
 * number each instead of the entry.
 */
export class EntriesFile {
  private readonly fd: number
  private buf = Buffer.allocUnsafe(4096)

  constructor(file: string) {
    this.fd = openSync(file, 'r')
  }

  /** The entry whose line starts at `offset`. Read at once: a line is small, and in the page cache. */
  at(offset: number): LayerEntry {
    let have = 0
    for (;;) {
      const n = readSync(this.fd, this.buf, have, this.buf.length - have, offset + have)
      const nl = this.buf.indexOf(NEWLINE, have)
      have += n
      if (nl !== -1 && nl < have) return entryFromJson(this.buf.toString('utf8', 0, nl))
      if (n === 0) return entryFromJson(this.buf.toString('utf8', 0, have))
      if (have === this.buf.length) this.buf = Buffer.concat([this.buf, Buffer.allocUnsafe(this.buf.length)])
    }
  }

  close(): void {
    closeSync(this.fd)
  }
}
