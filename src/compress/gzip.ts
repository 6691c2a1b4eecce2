/**
 * Deterministic gzip that uses every core, the way pigz does: the input is cut into fixed-size
 * blocks, each block is deflated on its own (primed with the previous block's last 32 KiB, so the
 * ratio stays that of one stream) and ended with a sync flush, so the blocks' outputs simply
 * concatenate. Node runs the async zlib calls on libuv's thread pool, so blocks in flight
 * compress at once without worker threads.
 *
 * A block whose samples do not shrink (random data, files that are compressed already) is
 * stored rather than deflated: deflate spends as long failing on such data as it spends
 * halving text (bench/compress.ts), and images are full of it.
 *
 * The output depends only on the input bytes and the level: the block size is fixed and never
 * follows how the input happened to be chunked, and the header carries no name and no time. So
 * compressing the same layer twice gives the same bytes, which is what lets a first pass learn
 * the blob's size and digest and a second pass stream it.
 */
import { constants, crc32, deflateRaw, type ZlibOptions } from 'node:zlib'
import { availableParallelism } from 'node:os'
import { promisify } from 'node:util'

const deflate = promisify<Buffer, ZlibOptions, Buffer>(deflateRaw)

/** Input bytes per block: large enough that the sync flush costs nothing measurable. */
export const GZIP_BLOCK = 1024 * 1024
/** deflate's window: the most of the previous block a block can refer back to. */
const WINDOW = 32 * 1024

/** Bytes taken from each of SAMPLES places in a block to tell whether it compresses. */
const SAMPLE = 16 * 1024
const SAMPLES = 4
/** A block whose samples shrink to no less than this share of their size is stored. */
const INCOMPRESSIBLE = 0.97

/** ID1 ID2, CM=deflate, no flags, MTIME=0, XFL=0, OS=255 (unknown): nothing about this host. */
const HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])
/** An empty final fixed-Huffman block: ends the deflate stream after the sync-flushed blocks. */
const FINAL_BLOCK = Buffer.from([0x03, 0x00])

export interface GzipOptions {
  /** zlib level, 1 (fastest) to 9 (smallest). */
  level: number
  /** Blocks compressing at once; default: twice the cores, so the pool never waits on us. */
  parallel?: number
}

/**
 * Cut a stream into blocks of exactly `size` bytes (the last may be shorter). A piece that is a
 * whole block is used as it is: what a stream has handed on is not written again.
 */
async function* blocks(source: AsyncIterable<Buffer>, size: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = []
  let have = 0
  for await (const chunk of source) {
    let c = chunk
    while (c.length) {
      const take = Math.min(size - have, c.length)
      parts.push(c.subarray(0, take))
      have += take
      c = c.subarray(take)
      if (have === size) {
        yield parts.length === 1 ? parts[0] : Buffer.concat(parts, have)
        parts = []
        have = 0
      }
    }
  }
  if (have) yield Buffer.concat(parts, have)
}

/** Whether deflate would gain next to nothing on `block`, judged on a few slices of it. */
async function incompressible(block: Buffer): Promise<boolean> {
  if (block.length < SAMPLE * SAMPLES * 4) return false
  const step = Math.floor(block.length / SAMPLES)
  const parts = Array.from({ length: SAMPLES }, (_, i) => block.subarray(i * step, i * step + SAMPLE))
  const sample = Buffer.concat(parts, SAMPLE * SAMPLES)
  const out = await deflate(sample, { level: 1, chunkSize: 2 * sample.length })
  return out.length >= sample.length * INCOMPRESSIBLE
}

/** One block's raw deflate, sync-flushed so the next block's output can follow it. */
async function deflateBlock(block: Buffer, level: number, dictionary: Buffer | undefined): Promise<Buffer> {
  const chosen = (await incompressible(block)) ? 0 : level
  // Room for a stored block's output in one buffer; a smaller output is copied out of it, so
  // the blocks waiting to be handed on hold what they say.
  const out = await deflate(block, { level: chosen, chunkSize: GZIP_BLOCK + 64 * 1024, finishFlush: constants.Z_SYNC_FLUSH, ...(dictionary ? { dictionary } : {}) })
  return out.length * 2 < out.buffer.byteLength ? Buffer.from(out) : out
}

/** The gzip member for `source`, as a stream of buffers. */
export async function* gzip(source: AsyncIterable<Buffer>, opts: GzipOptions): AsyncGenerator<Buffer> {
  const parallel = opts.parallel ?? 2 * availableParallelism()
  const inFlight: Array<Promise<Buffer>> = []
  let crc = 0
  let length = 0
  let previous: Buffer | null = null
  yield HEADER
  for await (const block of blocks(source, GZIP_BLOCK)) {
    crc = crc32(block, crc)
    length = (length + block.length) % 2 ** 32
    const dictionary = previous ? previous.subarray(previous.length - WINDOW) : undefined
    const job = deflateBlock(block, opts.level, dictionary)
    // Settled by the consumer in order; a failure must not surface as unhandled meanwhile.
    job.catch(() => undefined)
    inFlight.push(job)
    previous = block
    if (inFlight.length >= parallel) yield await (inFlight.shift() as Promise<Buffer>)
  }
  for (const job of inFlight) yield await job
  const trailer = Buffer.alloc(8)
  trailer.writeUInt32LE(crc >>> 0, 0)
  trailer.writeUInt32LE(length >>> 0, 4)
  yield Buffer.concat([FINAL_BLOCK, trailer])
}
