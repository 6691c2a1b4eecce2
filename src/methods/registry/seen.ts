/**
 * What the layer being read held so far, by path: for a hardlink, the entry of the same layer
 * that it names. Every entry of a layer is recorded and few are ever asked for, so the paths are
 * kept as bytes in one growing buffer, found through a hash table of offsets: nothing per entry
 * for the garbage collector to trace, which on a layer of many files cost more than the merge.
 */

/** An earlier entry: a file (`as`: the name its content went out under), or a hardlink. */
export type Seen = { index: number; as?: Buffer } | { link: string }

/** Record: hash (u32), path length (u32), value (i32), then the path's bytes. */
const HEAD = 12
/** The value of a record whose Seen is kept whole in `rare`. */
const RARE = -1

function hashOf(path: Buffer): number {
  // FNV-1a, 32 bits.
  let h = 0x811c9dc5
  for (let i = 0; i < path.length; i++) h = Math.imul(h ^ path[i], 0x01000193)
  return h >>> 0
}

export class LayerSeen {
  private bytes = Buffer.allocUnsafe(64 * 1024)
  private used = 0
  /** Slots of offset + 1 into `bytes` (0: empty), probed linearly; at most half full. */
  private table = new Int32Array(1024)
  private count = 0
  /** Links, and files whose content went out under another name than their own: few. */
  private readonly rare = new Map<string, Seen>()

  set(path: Buffer, seen: Seen): void {
    let value = RARE
    if ('link' in seen || (seen.as && !seen.as.equals(path))) this.rare.set(path.toString('latin1'), seen)
    else value = seen.index * 2 + (seen.as ? 1 : 0)
    const hash = hashOf(path)
    const slot = this.find(path, hash)
    const at = this.table[slot]
    if (at) {
      this.bytes.writeInt32LE(value, at - 1 + 8)
      return
    }
    if (this.used + HEAD + path.length > this.bytes.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.used + HEAD + path.length))
      this.bytes.copy(grown, 0, 0, this.used)
      this.bytes = grown
    }
    const o = this.used
    this.bytes.writeUInt32LE(hash, o)
    this.bytes.writeUInt32LE(path.length, o + 4)
    this.bytes.writeInt32LE(value, o + 8)
    path.copy(this.bytes, o + HEAD)
    this.used += HEAD + path.length
    this.table[slot] = o + 1
    if (++this.count * 2 > this.table.length) this.rehash()
  }

  get(path: Buffer): Seen | undefined {
    const at = this.table[this.find(path, hashOf(path))]
    if (!at) return undefined
    const value = this.bytes.readInt32LE(at - 1 + 8)
    if (value === RARE) return this.rare.get(path.toString('latin1'))
    return value & 1 ? { index: value >>> 1, as: path } : { index: value >>> 1 }
  }

  /** The slot that holds `path`, or the empty one where it would go. */
  private find(path: Buffer, hash: number): number {
    const mask = this.table.length - 1
    for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
      const at = this.table[slot]
      if (!at) return slot
      const o = at - 1
      if (
        this.bytes.readUInt32LE(o) === hash &&
        this.bytes.readUInt32LE(o + 4) === path.length &&
        this.bytes.compare(path, 0, path.length, o + HEAD, o + HEAD + path.length) === 0
      ) {
        return slot
      }
    }
  }

  private rehash(): void {
    const old = this.table
    this.table = new Int32Array(old.length * 2)
    const mask = this.table.length - 1
    for (const at of old) {
      if (!at) continue
      let slot = this.bytes.readUInt32LE(at - 1) & mask
      while (this.table[slot]) slot = (slot + 1) & mask
      this.table[slot] = at
    }
  }
}
