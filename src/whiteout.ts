/**
 * The one place that knows how deletions are written down: by overlayfs in an upper dir,
 * and by the OCI image spec in a layer tar. Every diff method goes through here, so every
 * method writes deletions the same way.
 */
import type { Stats, BigIntStats } from 'node:fs'

/** OCI: an empty file `.wh.<name>` deletes `<name>` from the layers below. */
export const WHITEOUT_PREFIX = '.wh.'
/** OCI: `<dir>/.wh..wh..opq` hides every lower entry of `<dir>`. */
export const OPAQUE_MARKER = '.wh..wh..opq'

const OPAQUE_XATTRS = ['trusted.overlay.opaque', 'user.overlay.opaque']

/** overlayfs marks a deleted lower entry with a character device 0/0 in the upper dir. */
export function isOverlayWhiteout(st: Stats | BigIntStats): boolean {
  return st.isCharacterDevice() && Number(st.rdev) === 0
}

/** overlayfs marks a directory that replaced a lower one with `trusted.overlay.opaque=y`. */
export function isOverlayOpaque(xattrs: Map<string, Buffer> | undefined): boolean {
  if (!xattrs) return false
  return OPAQUE_XATTRS.some((k) => xattrs.get(k)?.toString() === 'y')
}

/**
 * overlayfs keeps its bookkeeping (opaque, redirect, origin, impure, metacopy...) in
 * `trusted.overlay.*`; none of it is file content, so none of it goes into a layer.
 */
export function isPrivateXattr(name: string): boolean {
  return name.startsWith('trusted.overlay.')
}

/** The tar name that deletes `path` (a Buffer, since names are bytes). */
export function whiteoutPath(path: Buffer): Buffer {
  const slash = path.lastIndexOf(0x2f)
  const dir = path.subarray(0, slash + 1)
  const base = path.subarray(slash + 1)
  return Buffer.concat([dir, Buffer.from(WHITEOUT_PREFIX), base])
}

/** The tar name of the opaque marker inside directory `dir`. */
export function opaquePath(dir: Buffer): Buffer {
  return dir.length ? Buffer.concat([dir, Buffer.from('/' + OPAQUE_MARKER)]) : Buffer.from(OPAQUE_MARKER)
}

/** Names starting with `.wh.` cannot be stored as files in a layer: they would read as deletions. */
export function isReservedName(name: Buffer): boolean {
  return name.subarray(0, WHITEOUT_PREFIX.length).toString('latin1') === WHITEOUT_PREFIX
}
