/** How the save method records a file's content in pass 1, and checks it in pass 2. */
import crypto, { createHash } from 'node:crypto'

/** sha256, base64: how `LayerEntry.sha256` holds a digest. */
const newHash = (): ReturnType<typeof createHash> => createHash('sha256')
const digestOf = (hash: ReturnType<typeof createHash>): string => hash.digest('base64')
// One call, no Hash object: most files of a layer arrive in one piece. (crypto.hash: Node 20.12+.)
const oneShot = (crypto as { hash?: (alg: string, data: Buffer, enc: 'base64') => string }).hash

/**
 * A file's content digest, as `LayerEntry.sha256` holds it, fed piece by piece (one call when
 * the file comes in one piece).
 */
export class FileDigest {
  private hash: ReturnType<typeof createHash> | null = null
  private result: string | null = null

  constructor(private readonly size: number) {}

  update(chunk: Buffer): void {
    if (!this.hash && chunk.length === this.size && oneShot) this.result = oneShot('sha256', chunk, 'base64')
    else (this.hash ??= newHash()).update(chunk)
  }

  digest(): string {
    if (this.result !== null) return this.result
    return digestOf(this.hash ?? newHash())
  }
}
