/**
 * Stage 4, pack: turn the writable branch's upper dir into layer entries, in a fixed order, and
 * stream the image archive: the new layer, its config, the manifests. The layer's size is known
 * before any content is read, so the archive needs no temp file.
 */
import { lstat, readdir, readlink } from 'node:fs/promises'
import { Duplex, type Readable } from 'node:stream'
import type { BigIntStats } from 'node:fs'
import type { LayerEntry } from '../entry.js'
import { imageArchive, layerSize, layerStream, type ImageArchiveResult } from '../archive.js'
import { isOverlayOpaque, isOverlayWhiteout, isPrivateXattr, isReservedName } from '../whiteout.js'
import { readTreeXattrs, type XattrMap } from '../xattrs.js'
import { DflattenError } from '../errors.js'
import { expectDoc, type Diffed } from '../plan.js'
import { destroy } from '../cleanup.js'

function join(dir: Buffer | null, name: Buffer): Buffer {
  return dir ? Buffer.concat([dir, Buffer.from('/'), name]) : name
}

/** Linux's dev_t encoding, as glibc's major() and minor() read it. */
function devNumbers(rdev: bigint): { devmajor: number; devminor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)
  return { devmajor: Number(major), devminor: Number(minor) }
}

function seconds(st: BigIntStats): number {
  // Floor, also for times before 1970.
  const ns = st.mtimeNs
  const s = ns / 1_000_000_000n
  return Number(ns < 0n && s * 1_000_000_000n !== ns ? s - 1n : s)
}

function keptXattrs(all: Map<string, Buffer> | undefined): Array<[string, Buffer]> | undefined {
  if (!all) return undefined
  const kept = [...all].filter(([k]) => !isPrivateXattr(k)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return kept.length ? kept : undefined
}

/**
 * The upper dir of a writable overlay as layer entries: depth first, names in byte order, each
 * directory before its contents and its opaque marker right after it. Whiteouts come from
 * overlayfs' 0/0 character devices (checked before hardlinks: overlayfs may share one whiteout
 * inode between many names).
 */
export async function upperDirEntries(upper: string, xattrs?: XattrMap): Promise<LayerEntry[]> {
  const attrs = xattrs ?? (await readTreeXattrs(upper))
  const entries: LayerEntry[] = []
  const firstLink = new Map<string, Buffer>()
  const root = Buffer.from(upper + '/')

  const walk = async (dir: Buffer | null): Promise<void> => {
    const abs = dir ? Buffer.concat([root, dir]) : root
    const names = (await readdir(abs, { encoding: 'buffer' })).sort(Buffer.compare)
    for (const name of names) {
      const path = join(dir, name)
      const full = Buffer.concat([root, path])
      const st = await lstat(full, { bigint: true })
      const meta = {
        path,
        mode: Number(st.mode & 0o7777n),
        uid: Number(st.uid),
        gid: Number(st.gid),
        mtime: seconds(st),
        size: 0,
      }
      if (isOverlayWhiteout(st)) {
        entries.push({ ...meta, kind: 'whiteout', mode: 0o644, uid: 0, gid: 0, mtime: 0 })
        continue
      }
      if (isReservedName(name)) {
        throw new DflattenError(`cannot store ${path.toString()} in a layer: names starting with .wh. mean deletions`)
      }
      const x = attrs.get(path.toString('latin1'))
      const xattrs = keptXattrs(x)
      if (st.isDirectory()) {
        entries.push({ ...meta, kind: 'dir', xattrs })
        if (isOverlayOpaque(x)) entries.push({ ...meta, kind: 'opaque', mode: 0o644, uid: 0, gid: 0, mtime: 0 })
        await walk(path)
        continue
      }
      if (st.nlink > 1n) {
        const key = `${st.dev}:${st.ino}`
        const first = firstLink.get(key)
        if (first) {
          entries.push({ ...meta, kind: 'hardlink', linkname: first })
          continue
        }
        firstLink.set(key, path)
      }
      if (st.isFile()) {
        entries.push({ ...meta, kind: 'file', size: Number(st.size), xattrs, source: full })
      } else if (st.isSymbolicLink()) {
        entries.push({ ...meta, kind: 'symlink', linkname: await readlink(full, { encoding: 'buffer' }), xattrs })
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        entries.push({ ...meta, kind: st.isCharacterDevice() ? 'char' : 'block', ...devNumbers(st.rdev), xattrs })
      } else if (st.isFIFO()) {
        entries.push({ ...meta, kind: 'fifo', xattrs })
      }
      // Sockets cannot be stored in a tar; Docker's own layers drop them too.
    }
  }
  await walk(null)
  return entries
}

export interface PackOptions {
  /** Leave the workspace mounted after packing (for debugging with the stage commands). */
  keep?: boolean
  /** Extra names the loaded image gets, besides the plan's target. */
  tags?: string[]
  onDone?: (result: PackResult) => void
}

export interface PackResult extends ImageArchiveResult {
  entries: number
}

/** The new image's config: the original's, on the base's layers plus the new one. */
export function flattenedConfig(d: Diffed, diffId: string): object {
  const created = (d.config.created as string | undefined) ?? d.source.created
  return {
    ...d.config,
    rootfs: { type: 'layers', diff_ids: [...d.base.layers, diffId] },
    history: [
      ...d.base.history,
      {
        created,
        created_by: `dflatten: ${d.source.layers.length - d.base.layers.length} layers squashed into one`,
        comment: d.marker,
      },
    ],
  }
}

/** The image archive for a diffed workspace, as a stream. */
export async function pack(d: Diffed, opts: PackOptions = {}): Promise<Readable> {
  const entries = await upperDirEntries(d.workspace.upper)
  return imageArchive({
    baseLayers: d.baseDescriptors,
    layer: { size: layerSize(entries), stream: layerStream(entries) },
    config: (diffId) => flattenedConfig(d, diffId),
    tags: [d.target, ...(opts.tags ?? [])],
    onDone: (r) => opts.onDone?.({ ...r, entries: entries.length }),
  })
}

/** The stage: a diffed document in, the archive's bytes out; the workspace goes when done. */
export function packStage(opts: PackOptions = {}): Duplex {
  return Duplex.from(async function* (docs: AsyncIterable<unknown>) {
    for await (const doc of docs) {
      const d = expectDoc(doc, 'diffed', 'dflatten pack')
      try {
        yield* await pack(d, opts)
      } finally {
        if (!opts.keep) await destroy(d.workspace.dir)
      }
    }
  })
}
