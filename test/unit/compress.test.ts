// The layer codecs: gzip and zstd blobs that decompress to their input, whose bytes depend only
// on the input and the level (never on how the input was chunked), and the option parsing.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { gunzipSync } from 'node:zlib'
import { execa } from 'execa'
import { gzip, GZIP_BLOCK } from '../../src/compress/gzip.js'
import { compress, measure, mediaTypeSuffix, parseCompression } from '../../src/compress/index.js'
import { DflattenError } from '../../src/errors.js'

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const c of it) parts.push(c)
  return Buffer.concat(parts)
}

async function* chunked(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size)
}

/** Half random, half repetitive text: compresses, but not to nothing. */
function sample(n: number): Buffer {
  const text = Buffer.from('the quick brown fox jumps over the lazy dog 0123456789\n'.repeat(Math.ceil(n / 110)))
  return Buffer.concat([randomBytes(Math.floor(n / 2)), text]).subarray(0, n)
}

const SIZES = [0, 1, 100, GZIP_BLOCK - 1, GZIP_BLOCK, GZIP_BLOCK + 1, 3 * GZIP_BLOCK + 12345]

t.test('gzip: every size decompresses to its input with a valid header and trailer', async (t) => {
  for (const n of SIZES) {
    const input = sample(n)
    const out = await collect(gzip(chunked(input, 65536), { level: 6 }))
    t.ok(gunzipSync(out).equals(input), `${n} bytes round-trip (gunzip checks the CRC and length)`)
    t.same([...out.subarray(0, 10)], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff], `${n} bytes: no name, no time, OS unknown`)
  }
})

t.test('gzip: the bytes follow the input, not its chunking or the parallelism', async (t) => {
  const input = sample(2 * GZIP_BLOCK + 777)
  const whole = await collect(gzip(chunked(input, input.length), { level: 6 }))
  for (const size of [1000, 4096, 65536, GZIP_BLOCK + 3]) {
    t.ok((await collect(gzip(chunked(input, size), { level: 6 }))).equals(whole), `chunks of ${size}`)
  }
  t.ok((await collect(gzip(chunked(input, 65536), { level: 6, parallel: 1 }))).equals(whole), 'one block at a time')
  // Blocks are assembled in buffers used again once compressed: many blocks, few buffers.
  const longer = sample(7 * GZIP_BLOCK + 4321)
  const longWhole = await collect(gzip(chunked(longer, longer.length), { level: 6 }))
  for (const parallel of [1, 2, 3]) {
    const out = await collect(gzip(chunked(longer, 100000), { level: 6, parallel }))
    t.ok(out.equals(longWhole) && gunzipSync(out).equals(longer), `${parallel} at once, eight blocks assembled from pieces`)
  }
  const other = await collect(gzip(chunked(input, 65536), { level: 1 }))
  t.notOk(other.equals(whole), 'another level gives other bytes')
})

t.test('gzip: blocks keep the ratio of one stream (each primed with the last 32 KiB)', async (t) => {
  // Repeats at a distance below the window but across block edges: without the dictionary each
  // block would have to spell its first repeat out again.
  const unit = randomBytes(20000)
  const input = Buffer.concat(Array.from({ length: Math.ceil((4 * GZIP_BLOCK) / unit.length) }, () => unit))
  const out = await collect(gzip(chunked(input, 65536), { level: 6 }))
  t.ok(out.length < 3 * unit.length, `${input.length} bytes of a repeated 20000-byte unit gzip to ${out.length}`)
})

t.test('gzip: blocks that do not compress are stored, the others still deflated', async (t) => {
  const noise = randomBytes(2 * GZIP_BLOCK)
  const text = Buffer.from('a line of a text file, as /usr/share is full of\n'.repeat(GZIP_BLOCK / 32)).subarray(0, GZIP_BLOCK)
  const input = Buffer.concat([noise.subarray(0, GZIP_BLOCK), text, noise.subarray(GZIP_BLOCK)])
  const out = await collect(gzip(chunked(input, 65536), { level: 6 }))
  t.ok(gunzipSync(out).equals(input), 'round-trips')
  // Stored: 5 bytes of block header per 64 KiB; the text block shrinks to almost nothing.
  const stored = 2 * GZIP_BLOCK * (1 + 5 / 65535)
  t.ok(out.length > stored && out.length < stored + 1024 + GZIP_BLOCK / 100, `${input.length} bytes, two of three blocks noise, gzip to ${out.length}`)
  const level1 = await collect(gzip(chunked(input, 65536), { level: 1 }))
  t.ok(level1.subarray(10, 10 + GZIP_BLOCK).equals(out.subarray(10, 10 + GZIP_BLOCK)), 'a stored block is the same bytes at every level')
})

t.test('gzip: a failing source fails the stream', async (t) => {
  async function* broken(): AsyncGenerator<Buffer> {
    yield sample(GZIP_BLOCK * 2)
    throw new Error('disk gone')
  }
  await t.rejects(collect(gzip(broken(), { level: 6 })), /disk gone/)
})

const haveZstd = (await execa('zstd', ['--version'], { reject: false })).exitCode === 0

t.test('zstd: round-trips and is deterministic', { skip: haveZstd ? false : 'zstd is not installed' }, async (t) => {
  const input = sample(3 * GZIP_BLOCK)
  const a = await collect(compress(chunked(input, 65536), { kind: 'zstd' }))
  const b = await collect(compress(chunked(input, 1000), { kind: 'zstd' }))
  t.ok(a.equals(b), 'same bytes whatever the chunking')
  const back = await execa('zstd', ['-d', '-c'], { input: a, encoding: 'buffer' })
  t.ok(Buffer.from(back.stdout).equals(input), 'zstd -d gives the input back')
  t.ok(a.length < input.length, 'and it is smaller')
})

t.test('zstd: a missing program is one line that says how to get it', async (t) => {
  const run = collect(compress(chunked(sample(100), 10), { kind: 'zstd' }, { zstdCommand: '/nonexistent/zstd' }))
  const e = await run.then(() => null, (err: unknown) => err)
  t.ok(e instanceof DflattenError, 'a DflattenError')
  t.equal((e as DflattenError).code, 'tool-missing')
  t.match((e as Error).message, /apt-get install zstd/)
})

t.test('none passes the stream through', async (t) => {
  const input = sample(5000)
  t.ok((await collect(compress(chunked(input, 100), { kind: 'none' }))).equals(input))
})

t.test('measure: sizes and digests of both sides, equal to what the stream gives', async (t) => {
  const input = sample(GZIP_BLOCK + 5)
  for (const kind of ['gzip', 'none', ...(haveZstd ? ['zstd' as const] : [])] as const) {
    const m = await measure(chunked(input, 4096), { kind })
    const blob = await collect(compress(chunked(input, 4096), { kind }))
    const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`
    t.same(m.raw, { size: input.length, digest: sha(input) }, `${kind}: raw side`)
    t.same(m.blob, { size: blob.length, digest: sha(blob) }, `${kind}: blob side`)
  }
})

t.test('parseCompression', async (t) => {
  t.same(parseCompression('gzip'), { kind: 'gzip' })
  t.same(parseCompression('zstd:19'), { kind: 'zstd', level: 19 })
  t.same(parseCompression('gzip:1'), { kind: 'gzip', level: 1 })
  t.same(parseCompression('none'), { kind: 'none' })
  for (const bad of ['', 'xz', 'gzip:0', 'gzip:10', 'gzip:x', 'zstd:20', 'none:1', 'gzip:6:1', 'GZIP']) {
    t.throws(() => parseCompression(bad), { code: 'usage' }, `refuses ${JSON.stringify(bad)}`)
  }
  t.equal(mediaTypeSuffix('gzip'), '+gzip')
  t.equal(mediaTypeSuffix('zstd'), '+zstd')
  t.equal(mediaTypeSuffix('none'), '')
})
