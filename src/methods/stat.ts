/**
 * From what lstat says about a file to a layer entry: the part every kernel-side method shares.
 */
import { readlink } from 'node:fs/promises'
import type { BigIntStats } from 'node:fs'
import type { LayerEntry } from '../entry.js'
import { isPrivateXattr } from '../whiteout.js'

/**
 * Linux's dev_t encoding, as glibc's gnu_dev_major() and gnu_dev_minor() read it: a 64-bit
 * dev_t, 32 bits of each number. The masks are bounded so that one number's bits never leak
 * into the other's.
 */
export function devNumbers(rdev: bigint): { devmajor: number; devminor: number } {
  const dev = BigInt.asUintN(64, rdev)
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n)
  const minor = (dev & 0xffn) | ((dev >> 12n) & 0xffffff00n)
  return { devmajor: Number(major), devminor: Number(minor) }
}

/** Whole seconds, rounded down also before 1970. */
export function seconds(st: BigIntStats): number {
  const ns = st.mtimeNs
  const s = ns / 1_000_000_000n
  return Number(ns < 0n && s * 1_000_000_000n !== ns ? s - 1n : s)
}

export function keptXattrs(all: Map<string, Buffer> | undefined): Array<[string, Buffer]> | undefined {
  if (!all) return undefined
  const kept = [...all].filter(([k]) => !isPrivateXattr(k)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return kept.length ? kept : undefined
}

export function joinPath(dir: Buffer | null, name: Buffer): Buffer {
  return dir ? Buffer.concat([dir, Buffer.from('/'), name]) : name
}

/** A whiteout for `path`, with fixed metadata so the layer's bytes do not depend on when it ran. */
export function whiteoutEntry(path: Buffer): LayerEntry {
  return { path, kind: 'whiteout', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 0 }
}

/**
 * Hardlinks: the first name of an inode in the output order carries the content, later names
 * link to it. Keyed by device and inode as the view that is read reports them.
 */
export class LinkTracker {
  private first = new Map<string, Buffer>()
  /** The earlier name of this inode, or null (and remember this one) when it is the first. */
  seen(st: BigIntStats, path: Buffer): Buffer | null {
    if (st.isDirectory() || st.nlink < 2n) return null
    const key = `${st.dev}:${st.ino}`
    const earlier = this.first.get(key)
    if (earlier) return earlier
    this.first.set(key, path)
    return null
  }
}

/**
 * The entry for a file as `lstat` saw it at `full` (null for a socket, which a tar cannot hold;
 * Docker's own layers drop sockets too). Content is read from `full` at pack time.
 */
export async function statEntry(
  path: Buffer,
  full: Buffer,
  st: BigIntStats,
  xattrs: Map<string, Buffer> | undefined,
  links: LinkTracker,
): Promise<LayerEntry | null> {
  const meta = {
    path,
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
    mtime: seconds(st),
    size: 0,
    xattrs: keptXattrs(xattrs),
  }
  const earlier = links.seen(st, path)
  if (earlier) return { ...meta, kind: 'hardlink', linkname: earlier, xattrs: undefined }
  if (st.isDirectory()) return { ...meta, kind: 'dir' }
  if (st.isFile()) return { ...meta, kind: 'file', size: Number(st.size), source: full }
  if (st.isSymbolicLink()) return { ...meta, kind: 'symlink', linkname: await readlink(full, { encoding: 'buffer' }) }
  if (st.isCharacterDevice()) return { ...meta, kind: 'char', ...devNumbers(st.rdev) }
  if (st.isBlockDevice()) return { ...meta, kind: 'block', ...devNumbers(st.rdev) }
  if (st.isFIFO()) return { ...meta, kind: 'fifo' }
  return null
}
