// An image built by BuildKit has no image per layer (`docker history` shows <missing> below the
// top), so only --layers (or scratch) can keep some of its layers. Flatten it with every method
// and check the filesystem; skipped with a reason where the buildx plugin cannot be had.
import t from 'tap'
import { fileURLToPath } from 'node:url'
import { execa } from 'execa'
import { compareFs, configOf, exportFs } from '../helpers/export.js'
import { inspect, removeImage } from '../helpers/docker.js'
import { dflatten, leftovers } from '../helpers/cli.js'
import { buildSquash, CACHE_DIR, historyOf, SQUASH_KIT } from '../helpers/squash-images.js'

const script = fileURLToPath(new URL('../../scripts/buildx.sh', import.meta.url))
const buildx = await execa('bash', [script], { reject: false })

if (buildx.exitCode !== 0) {
  t.plan(0, `the docker buildx plugin cannot be had here: ${buildx.stderr.trim().split('\n').at(-1) ?? ''}`)
} else {
  const source = await buildSquash(SQUASH_KIT, true)
  const src = await inspect(source)

  t.test('BuildKit left no image for the lower layers', async (t) => {
    const ids = (await historyOf(source)).map((h) => h.id)
    t.ok(ids.slice(0, -1).every((id) => id === '<missing>'), 'docker history shows <missing> below the top')
  })

  for (const method of ['overlay', 'overlay-copy', 'save']) {
    t.test(`--layers 3 of a BuildKit image with ${method}`, async (t) => {
      const target = `dft-sq-kit-${method}:1`
      await removeImage(target)
      const r = await dflatten([source, '--layers', '3', '-t', target, '-m', method, '--no-cache'])
      t.equal(r.exitCode, 0, r.stderr)
      t.same(await leftovers(), { mounts: [], dirs: [], containers: [] }, 'nothing is left behind')
      t.same(compareFs(await exportFs(source), await exportFs(target), { labels: [source, target] }), [], 'the same filesystem')
      t.same(await configOf(target), await configOf(source), 'the same config')
      const res = await inspect(target)
      t.same(res.RootFS.Layers?.slice(0, 1), src.RootFS.Layers?.slice(0, 1), 'the first layer kept')
      t.equal(res.RootFS.Layers?.length, 2)
      const dry = await dflatten([source, '--layers', '3', '--dry-run', '--json', '-m', method])
      t.equal(dry.exitCode, 0, dry.stderr)
      const rep = JSON.parse(dry.stdout) as { reclaimed: Array<{ path: string; bytes: number; layer: string }> }
      t.same(rep.reclaimed[0]?.path, CACHE_DIR, 'the dry run lists the deleted build cache first')
      t.match(rep.reclaimed[0]?.layer, /^RUN \/bin\/sh -c mkdir -p \/root\/.cache/, "with BuildKit's CREATED BY")
      await removeImage(target)
    })
  }
}
