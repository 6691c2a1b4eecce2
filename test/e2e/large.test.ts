// An image with a 2 GB file and 100,000 small files flattens correctly, and dflatten's memory
// does not grow with it (content streams; only metadata is held).
import t from 'tap'
import { execa } from 'execa'
import { buildLarge } from '../helpers/images.js'
import { inspect, removeImage } from '../helpers/docker.js'
import { compareFs, exportFs } from '../helpers/export.js'
import { BIN, leftovers } from '../helpers/cli.js'

const large = await buildLarge()
const target = 'dft-result-large:1'

t.test('2 GB file and 100,000 files', async (t) => {
  await removeImage(target)
  const r = await execa('/usr/bin/time', ['-f', 'maxrss=%M', BIN, large, '-t', target, '--no-cache'], { reject: false })
  t.equal(r.exitCode, 0, r.stderr)
  const rss = Number(/maxrss=(\d+)/.exec(r.stderr)?.[1] ?? 0)
  t.comment(`dflatten peak RSS: ${(rss / 1024).toFixed(0)} MB`)
  // A bound, not a timing: an implementation that held content in memory would need > 2 GB.
  t.ok(rss > 0 && rss < 512 * 1024, 'memory stays far below the content size')
  t.same(await leftovers(), { mounts: [], dirs: [], containers: [] })
  const [a, b] = await Promise.all([exportFs(large), exportFs(target)])
  t.ok(a.size > 100_000, `the export lists ${a.size} entries (100,000 of them in /files)`)
  t.same(compareFs(a, b, { labels: [large, target] }), [], 'the same entries, content and metadata')
  t.equal((await inspect(target)).RootFS.Layers?.length, 2)
  await removeImage(target)
})
