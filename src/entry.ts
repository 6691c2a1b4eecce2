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
  /** Where to read a regular file's content from, at pack time. */
  source?: Buffer | string
}

export function comparePaths(a: Buffer, b: Buffer): number {
  return Buffer.compare(a, b)
}
