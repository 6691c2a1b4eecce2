/**
 * The save method's diff (pass 1 and the merge) on a `docker save` archive kept in a file, with
 * no daemon: what it holds at its peak, and where. A run of the whole method takes a minute on
 * the large image and measures the daemon's pace as much as dflatten's; this isolates the part
 * whose memory grows with the number of paths, so a change to it can be measured in seconds.
 *
 *   docker save dfb-large:s1 > /tmp/large.tar
 *   node --max-semi-space-size=2 --optimize-for-size dist/bench/save-memory.js /tmp/large.tar 1
 *
 * Run it with the flags bin/dflatten.js gives node (and its MALLOC_MMAP_THRESHOLD_), or the
 * figures are not the CLI's. The second argument is how many layers the base has; a third, a
 * file to keep the entries in (to compare the merge's output before and after a change).
 */
import { createReadStream } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { writeEntries } from '../src/entry.js'
import { indexSave, savedImage } from '../src/methods/save/first-pass.js'
import { mergeLayers } from '../src/methods/save/merge.js'
import { cleanMemberName, readTar } from '../src/tar/index.js'

/** The heap in use, after a full collection when node runs with --expose-gc: what is live. */
function heapMB(): number {
  ;(globalThis as { gc?: () => void }).gc?.()
  return Math.round(process.memoryUsage().heapUsed / 2 ** 20)
}

async function vmHwmMB(): Promise<number> {
  const m = /VmHWM:\s+(\d+) kB/.exec(await readFile('/proc/self/status', 'utf8'))
  return m ? Math.round(Number(m[1]) / 1024) : NaN
}

/** The diff ids, from a first read of the archive that keeps only manifest.json and the config. */
async function diffIds(archive: string): Promise<string[]> {
  const small = new Map<string, Buffer>()
  for await (const member of readTar(createReadStream(archive))) {
    const name = cleanMemberName(member.name).toString('latin1')
    const chunks: Buffer[] = []
    for await (const c of member.body()) if (member.size < 1 << 20) chunks.push(c)
    if (chunks.length) small.set(name, Buffer.concat(chunks))
  }
  const manifest = JSON.parse(String(small.get('manifest.json'))) as Array<{ Config: string }>
  const config = JSON.parse(String(small.get(manifest[0].Config))) as { rootfs: { diff_ids: string[] } }
  return config.rootfs.diff_ids
}

async function* asAsync<T>(items: Iterable<T>): AsyncGenerator<T> {
  for (const i of items) yield await Promise.resolve(i)
}

async function main(): Promise<void> {
  const archive = process.argv.at(2)
  if (!archive) throw new Error('usage: save-memory.js ARCHIVE [BASE_LAYERS]')
  const k = Number(process.argv.at(3) ?? 1)
  const ids = await diffIds(archive)
  const start = process.hrtime.bigint()
  const seconds = (): string => (Number(process.hrtime.bigint() - start) / 1e9).toFixed(1)

  const index = await indexSave(createReadStream(archive), new Set(ids.slice(k)), new Set(ids.slice(0, k)))
  const image = savedImage(index)
  const kept = image.layers.slice(k).reduce((n, l) => n + (index.entries.get(l.diffId)?.length ?? 0), 0)
  process.stderr.write(
    `pass 1: ${seconds()} s, ${kept} headers above the base, peak RSS ${await vmHwmMB()} MB, heap ${heapMB()} MB\n`,
  )

  const dir = await mkdtemp(join(tmpdir(), 'dflatten-save-memory-'))
  try {
    const merged = mergeLayers(
      image.layers.slice(k).map((layer) => ({ layer, entries: index.entries.get(layer.diffId) ?? [] })),
      index.base,
    )
    const counts = await writeEntries(process.argv.at(4) ?? join(dir, 'entries'), asAsync(merged))
    process.stderr.write(
      `merge: ${seconds()} s, ${counts.changed} changed, ${counts.deleted} deleted, peak RSS ${await vmHwmMB()} MB, heap ${heapMB()} MB\n`,
    )
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
