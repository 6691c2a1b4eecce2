/**
 * sha256 digests of bytes and of streams as they pass, with the size: what every blob and
 * manifest is named and checked by.
 */
import { createHash, type Hash } from 'node:crypto'
import { Transform, type TransformCallback } from 'node:stream'

/** `sha256:<hex>` of some bytes. */
export function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

/** A pass-through that hashes and counts what goes through it; `digest` is ready at the end. */
export class Digester extends Transform {
  private readonly hash: Hash = createHash('sha256')
  /** Bytes passed so far. */
  size = 0
  private result?: string

  constructor(private readonly check?: (digest: string, size: number) => Error | undefined) {
    super()
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk)
    this.size += chunk.length
    cb(null, chunk)
  }

  override _flush(cb: TransformCallback): void {
    this.result = `sha256:${this.hash.digest('hex')}`
    cb(this.check?.(this.result, this.size) ?? null)
  }

  /** The digest; only once the stream ended. */
  get digest(): string {
    if (!this.result) throw new Error('Digester: digest read before the end of the stream')
    return this.result
  }
}
