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
import { constants, crc32, createDeflateRaw, deflateRaw, type ZlibOptions } from 'node:zlib'
import { once } from 'node:events'
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
 * The buffers blocks are assembled in, used again once their block is compressed: a fresh
 * megabyte per block would be mapped and unmapped each time (the CLI fixes glibc's mmap
 * threshold below that size), which costs the system more than the copy into it.
 */
class BlockBuffers {
  private readonly free: Buffer[] = []
  private readonly ours = new WeakSet<Buffer>()

  constructor(private readonly size: number) {}

  take(): Buffer {
    const b = this.free.pop() ?? Buffer.allocUnsafeSlow(this.size)
    this.ours.add(b)
    return b
  }

  /** Give back a block's buffer; a block that is the source's own piece is left alone. */
  give(block: Buffer): void {
    if (this.ours.has(block)) this.free.push(block)
  }
}

/**
 * Cut a stream into blocks of exactly `size` bytes (the last may be shorter). A piece that is a
 * whole block is used as it is: what a stream has handed on is not written again.
 */
async function* blocks(source: AsyncIterable<Buffer>, size: number, buffers: BlockBuffers): AsyncGenerator<Buffer> {
  let block: Buffer | null = null
  let have = 0
  for await (const chunk of source) {
    let c = chunk
    while (c.length) {
      if (have === 0 && c.length >= size) {
        yield c.subarray(0, size)
        c = c.subarray(size)
        continue
      }
      block ??= buffers.take()
      const take = Math.min(size - have, c.length)
      c.copy(block, have, 0, take)
      have += take
      c = c.subarray(take)
      if (have === size) {
        yield block
        block = null
        have = 0
      }
    }
  }
  if (block && have) yield block.subarray(0, have)
}

/** Whether deflate would gain next to nothing on `block`, judged on a few slices of it. */
async function incompressible(block: Buffer): Promise<boolean> {
  if (block.length < SAMPLE * SAMPLES * 4) return false
  const step = Math.floor(block.length / SAMPLES)
  const parts = Array.from({ length: SAMPLES }, (_, i) => block.subarray(i * step, i * step + SAMPLE))
  const sample = Buffer.concat(parts, SAMPLE * SAMPLES)
  // Below the mmap threshold the CLI sets: the sample's output comes from the heap.
  const out = await deflate(sample, { level: 1, chunkSize: sample.length + 1024 })
  return out.length >= sample.length * INCOMPRESSIBLE
}

/**
 * One block's raw deflate, sync-flushed so the next block's output can follow it. The output
 * buffer has room for a stored block, so the pool's thread does the block in one go; it is
 * handed on as zlib leaves it, a view of that buffer, not copied again: at most `parallel` of
 * them wait.
 */
function deflateBlock(block: Buffer, level: number, dictionary: Buffer | undefined): Promise<Buffer> {
  return incompressible(block).then((stored) => {
    const z = createDeflateRaw({ level: stored ? 0 : level, chunkSize: GZIP_BLOCK + 64 * 1024, finishFlush: constants.Z_SYNC_FLUSH, ...(dictionary ? { dictionary } : {}) })
    const out: Buffer[] = []
    z.on('data', (c: Buffer) => out.push(c))
    z.end(block)
    return once(z, 'end').then(() => (out.length === 1 ? out[0] : Buffer.concat(out)))
  })
}

/** The gzip member for `source`, as a stream of buffers. */
export async function* gzip(source: AsyncIterable<Buffer>, opts: GzipOptions): AsyncGenerator<Buffer> {
  const parallel = opts.parallel ?? 2 * availableParallelism()
  const buffers = new BlockBuffers(GZIP_BLOCK)
  const inFlight: Array<{ block: Buffer; job: Promise<Buffer> }> = []
  const next = async (): Promise<Buffer> => {
    // eslint-disable-next-line @typescript-eslint/no-non-null-assertion -- called only while blocks are in flight
    const { block, job } = inFlight.shift()!
    const out = await job
    buffers.give(block)
    return out
  }
  let crc = 0
  let length = 0
  let dictionary: Buffer | undefined
  yield HEADER
  for await (const block of blocks(source, GZIP_BLOCK, buffers)) {
    crc = crc32(block, crc)
    length = (length + block.length) % 2 ** 32
    const job = deflateBlock(block, opts.level, dictionary)
    // A copy: this block's buffer may hold another block before the next one's deflate starts.
    dictionary = Buffer.from(block.subarray(block.length - WINDOW))
    // Settled by the consumer in order; a failure must not surface as unhandled meanwhile.
    job.catch(() => undefined)
    inFlight.push({ block, job })
    if (inFlight.length >= parallel) yield await next()
  }
  while (inFlight.length) yield await next()
  const trailer = Buffer.alloc(8)
  trailer.writeUInt32LE(crc >>> 0, 0)
  trailer.writeUInt32LE(length >>> 0, 4)
  yield Buffer.concat([FINAL_BLOCK, trailer])
}
