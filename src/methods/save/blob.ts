/**
 * Layer blobs as `docker save` sends them: gzip or plain tar, told apart by their first bytes,
 * with the digests a reader asks for computed on the way.
 */
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { gunzipLayer } from '../../compress/gunzip.js'
import { isZeroBlock, readTar, type TarEntry } from '../../tar/index.js'

async function* hashing(source: AsyncIterable<Buffer>, hash: ReturnType<typeof createHash>): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    hash.update(chunk)
    yield chunk
  }
}

/** The first bytes of a body, and the whole body again as a stream. */
export async function peek(body: AsyncGenerator<Buffer>, n: number): Promise<{ head: Buffer; all: AsyncGenerator<Buffer> }> {
  const first: Buffer[] = []
  let have = 0
  while (have < n) {
    const r = await body.next()
    if (r.done) break
    first.push(r.value)
    have += r.value.length
  }
  const head = Buffer.concat(first)
  async function* all(): AsyncGenerator<Buffer> {
    if (head.length) yield head
    yield* body
  }
  return { head, all: all() }
}

export function isGzip(head: Buffer): boolean {
  return head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b
}

export function isTar(head: Buffer): boolean {
  if (head.length < 512) return false
  return head.toString('latin1', 257, 262) === 'ustar' || isZeroBlock(head)
}

export interface BlobDigests {
  /** The blob's digest; absent when it was not asked for. */
  digest?: string
  /** Its tar's digest (the diff id); absent when it was not asked for. */
  diffId?: string
  size: number
}

/** Which digests a read of a blob computes on the way. */
export interface BlobHashes {
  blob: boolean
  tar: boolean
}

/**
 * A layer blob's tar bytes (gunzipped when gzip), with its size counted and the digests
 * `hashes` asks for computed on the way: `digests` reads what the tar reader left (the blob's
 * end) and gives them.
 */
export function blobTar(body: AsyncIterable<Buffer>, gzip: boolean, hashes: BlobHashes = { blob: true, tar: true }): { tar: AsyncIterable<Buffer>; digests(): Promise<BlobDigests> } {
  // An uncompressed blob is its own tar: one digest serves as both.
  const raw = hashes.blob || (!gzip && hashes.tar) ? createHash('sha256') : null
  const plain = gzip && hashes.tar ? createHash('sha256') : null
  let size = 0
  const counted = (async function* () {
    for await (const c of raw ? hashing(body, raw) : body) {
      size += c.length
      yield c
    }
  })()
  const tarBytes: AsyncIterable<Buffer> = gzip ? Readable.from(counted).pipe(gunzipLayer()) : counted
  return {
    tar: plain ? hashing(tarBytes, plain) : tarBytes,
    async digests() {
      // Whatever follows the end-of-archive blocks still belongs to the blob and its digest.
      for await (const _ of counted) {
        // read to the end, bytes unkept
      }
      const digest = raw ? 'sha256:' + raw.digest('hex') : undefined
      const diffId = plain ? 'sha256:' + plain.digest('hex') : gzip ? undefined : digest
      return { ...(digest ? { digest } : {}), ...(diffId ? { diffId } : {}), size }
    },
  }
}

/** One layer blob's entries (for a second save, pass 2), then its digests. */
export async function* blobEntries(body: AsyncIterable<Buffer>, gzip: boolean): AsyncGenerator<TarEntry & { index: number }, BlobDigests> {
  const blob = blobTar(body, gzip)
  let index = 0
  for await (const e of readTar(blob.tar)) yield Object.assign(e, { index: index++ })
  return blob.digests()
}
