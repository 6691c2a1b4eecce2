/**
 * The little of protobuf's wire format the containerd API calls here need (src/containerd-api.ts):
 * varints, strings, bytes, nested messages and string maps, written field by field, and a flat
 * reader of a message's fields. Numbers stay below 2^53 (sizes and offsets), so plain numbers do.
 */

const VARINT = 0
const FIXED64 = 1
const LENGTH = 2
const FIXED32 = 5

function varint(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`protobuf: ${n} is not a varint this encoder writes`)
  const out: number[] = []
  while (n > 0x7f) {
    out.push((n % 0x80) | 0x80)
    n = Math.floor(n / 0x80)
  }
  out.push(n)
  return Buffer.from(out)
}

const key = (field: number, wire: number): Buffer => varint(field * 8 + wire)

/** A message as a list of fields; zero values are left out, as proto3 does. */
export class Message {
  private readonly parts: Buffer[] = []

  uint(field: number, n: number): this {
    if (n !== 0) this.parts.push(key(field, VARINT), varint(n))
    return this
  }

  bool(field: number, b: boolean): this {
    return this.uint(field, b ? 1 : 0)
  }

  bytes(field: number, b: Buffer | string): this {
    const buf = typeof b === 'string' ? Buffer.from(b, 'utf8') : b
    if (buf.length) this.parts.push(key(field, LENGTH), varint(buf.length), buf)
    return this
  }

  message(field: number, m: Message): this {
    const buf = m.encode()
    this.parts.push(key(field, LENGTH), varint(buf.length), buf)
    return this
  }

  /** A `map<string, string>`: one entry message (key 1, value 2) per pair. */
  map(field: number, entries: Record<string, string>): this {
    for (const [k, v] of Object.entries(entries)) this.message(field, new Message().bytes(1, k).bytes(2, v))
    return this
  }

  /** The encoded bytes in pieces, as written (a bytes field's buffer is not copied). */
  pieces(): readonly Buffer[] {
    return this.parts
  }

  encode(): Buffer {
    return Buffer.concat(this.parts)
  }
}

/** A field as read: a number for varints, the raw bytes for everything length-delimited. */
export type FieldValue = number | Buffer

/** Every field of a message, by number; a repeated field keeps its last value. */
export function decode(buf: Buffer): Map<number, FieldValue> {
  const fields = new Map<number, FieldValue>()
  let at = 0
  const readVarint = (): number => {
    let n = 0
    let scale = 1
    for (;;) {
      if (at >= buf.length) throw new RangeError('protobuf: message ends inside a varint')
      const b = buf[at++]
      n += (b & 0x7f) * scale
      if (b < 0x80) return n
      scale *= 0x80
    }
  }
  while (at < buf.length) {
    const k = readVarint()
    const field = Math.floor(k / 8)
    const wire = k % 8
    if (wire === VARINT) fields.set(field, readVarint())
    else if (wire === LENGTH) {
      const len = readVarint()
      if (at + len > buf.length) throw new RangeError('protobuf: a field runs past the message')
      fields.set(field, buf.subarray(at, at + len))
      at += len
    } else if (wire === FIXED64) at += 8
    else if (wire === FIXED32) at += 4
    else throw new RangeError(`protobuf: wire type ${wire} is not read here`)
  }
  return fields
}

/** A string field of a decoded message ('' when absent). */
export function text(fields: Map<number, FieldValue>, field: number): string {
  const v = fields.get(field)
  return Buffer.isBuffer(v) ? v.toString('utf8') : ''
}

/** A varint field of a decoded message (0 when absent). */
export function uint(fields: Map<number, FieldValue>, field: number): number {
  const v = fields.get(field)
  return typeof v === 'number' ? v : 0
}
