/**
 * Layer codecs on one layer tar: size and wall time of the block-parallel gzip at levels 1, 3,
 * 6 and 9, zstd 3 (the zstd program, all cores), and `gzip -6` (one core) for reference. Each
 * is run ROUNDS times and the median printed. Not a test.
 *
 *   node dist/bench/compress.js FILE.tar      (or BENCH_TAR=FILE)
 *   npm run build && tar -C /usr -cf /tmp/usr.tar . && node dist/bench/compress.js /tmp/usr.tar
 */
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { execa } from 'execa'
import { compress, type CompressionChoice } from '../src/compress/index.js'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

async function ours(file: string, choice: CompressionChoice): Promise<{ bytes: number; seconds: number }> {
  const t0 = performance.now()
  let bytes = 0
  for await (const c of compress(createReadStream(file, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>, choice)) bytes += c.length
  return { bytes, seconds: (performance.now() - t0) / 1000 }
}

async function gnuGzip(file: string): Promise<{ bytes: number; seconds: number }> {
  const t0 = performance.now()
  const r = await execa('bash', ['-c', `gzip -6 -c < '${file}' | wc -c`])
  return { bytes: Number(r.stdout.trim()), seconds: (performance.now() - t0) / 1000 }
}

async function main(): Promise<void> {
  const file = process.argv[2] ?? process.env.BENCH_TAR
  if (!file) throw new Error('give a layer tar: node dist/bench/compress.js FILE.tar')
  const size = (await stat(file)).size
  // Read once so the page cache holds it for every run.
  await pipeline(createReadStream(file), new Writable({ write: (_c, _e, cb) => cb() }))
  const runs: Array<[string, () => Promise<{ bytes: number; seconds: number }>]> = [
    ...[1, 3, 6, 9].map((level): [string, () => Promise<{ bytes: number; seconds: number }>] => [`gzip ${level} (ours, parallel)`, () => ours(file, { kind: 'gzip', level })]),
    ['zstd 3 (zstd -T0)', () => ours(file, { kind: 'zstd', level: 3 })],
    ['gzip -6 (GNU, one core)', () => gnuGzip(file)],
  ]
  console.log(`${file}: ${(size / 1e6).toFixed(1)} MB, medians of ${ROUNDS} runs`)
  console.log('| codec | size | ratio | time | MB/s |')
  console.log('| --- | ---: | ---: | ---: | ---: |')
  for (const [name, run] of runs) {
    const results = []
    for (let i = 0; i < ROUNDS; i++) results.push(await run())
    const bytes = results[0].bytes
    const seconds = median(results.map((r) => r.seconds))
    console.log(`| ${name} | ${(bytes / 1e6).toFixed(1)} MB | ${(bytes / size).toFixed(3)} | ${seconds.toFixed(2)} s | ${(size / 1e6 / seconds).toFixed(0)} |`)
  }
}

await main()
