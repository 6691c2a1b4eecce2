// --layers, --message and --dry-run against the real daemon, with every method and the stage
// chain: the same filesystem as the original, the kept layers and their history untouched, the
// cache found again, and a dry run that lists the build cache a later layer deleted.
import t, { type Test } from 'tap'
import { compareFs, configOf, exportFs } from '../helpers/export.js'
import { docker, imageExists, inspect, removeImage } from '../helpers/docker.js'
import { chain, dflatten, leftovers } from '../helpers/cli.js'
import { buildSquash, CACHE_DIR, CACHE_FILE, historyOf, OVERWRITTEN, SQUASH } from '../helpers/squash-images.js'
import type { DryRunReport } from '../../src/dry-run.js'

const METHODS = ['overlay', 'overlay-copy', 'save']
const source = await buildSquash(SQUASH, false)
const src = await inspect(source)
const srcHistory = await historyOf(source)

async function clean(t: Test): Promise<void> {
  const left = await leftovers()
  t.same(left, { mounts: [], dirs: [], containers: [] }, 'nothing is left mounted, no work dir, no container')
}

/** The result keeps the first `kept` layers and their history, then one entry for the new layer. */
async function checkSquashed(t: Test, target: string, kept: number): Promise<void> {
  const differences = compareFs(await exportFs(source), await exportFs(target), { labels: [source, target] })
  t.same(differences, [], 'docker export of the original and of the result hold the same entries')
  t.same(await configOf(target), await configOf(source), 'the config is the same')
  const res = await inspect(target)
  t.equal(res.RootFS.Layers?.length, kept + 1, `the result has the ${kept} kept layers plus one`)
  t.same(res.RootFS.Layers?.slice(0, kept), src.RootFS.Layers?.slice(0, kept), 'the kept layers are the original first layers')
  const history = await historyOf(target)
  // The original's entries up to the kept layers' last: base, LABEL first, the first RUN.
  const upTo = srcHistory.findIndex((h) => h.createdBy.includes('mkdir -p /root/.cache'))
  t.same(history.slice(0, -1).map((h) => h.createdBy), srcHistory.slice(0, upTo + 1).map((h) => h.createdBy), 'the kept layers\' history entries, metadata ones between them included, unchanged')
  t.equal(history.length, upTo + 2, 'then one entry for the new layer, and nothing else')
}

const realBytes: Record<string, number> = {}
const ids: Record<string, string> = {}

for (const method of METHODS) {
  t.test(`--layers 2 with ${method}`, async (t) => {
    const target = `dft-sq-${method}:1`
    await removeImage(target)
    const r = await dflatten([source, '--layers', '2', '-t', target, '-m', method, '--no-cache', '--json'])
    t.equal(r.exitCode, 0, r.stderr)
    const result = JSON.parse(r.stdout) as { layerBytes: number; imageId: string; base: { ref: null; id: null; layers: number; from: string } }
    t.same(result.base, { ref: null, id: null, layers: 2, from: 'layers' }, 'the result says it kept the first 2 layers')
    realBytes[method] = result.layerBytes
    ids[method] = result.imageId
    await clean(t)
    await checkSquashed(t, target, 2)
    const top = (await historyOf(target)).at(-1)
    t.match(top?.comment, `dflatten: flattened ${src.Id} onto the first 2 layers of ${src.Id} (${method})`, 'the marker names the kept layers')
    const again = await dflatten([source, '--layers', '2', '-t', target, '-m', method])
    t.match(again.stdout, /from an earlier run \(cache\)/, 'a second run comes from the cache')
    const other = await dflatten([source, '-t', target, '-m', method, '--json'])
    t.equal((JSON.parse(other.stdout) as { outcome: string }).outcome, 'flattened', 'the nearest tagged ancestor is another result, not the cached one')
    await removeImage(target)
  })
}

t.test('the stage chain with --layers gives the same image as the overlay method', async (t) => {
  const target = 'dft-sq-chain:1'
  await removeImage(target)
  const r = await chain([`resolve ${source} --layers 2 -t ${target} -m overlay`, 'mount', 'diff', 'pack', 'load'])
  t.equal(r.exitCode, 0, r.stderr)
  await clean(t)
  await checkSquashed(t, target, 2)
  t.equal((await inspect(target)).Id, ids.overlay, 'the same image id as dflatten --layers 2 -m overlay')
  const plan = JSON.parse((await chain([`resolve ${source} --layers 2 -m save`])).stdout) as { base: object; marker: string }
  t.same(plan.base, { from: 'layers', ref: null, id: null, layers: src.RootFS.Layers?.slice(0, 2) }, 'the plan names the kept layers')
  await removeImage(target)
})

t.test('--message goes into the new entry\'s comment, and into what the cache matches', async (t) => {
  const target = 'dft-sq-msg:1'
  await removeImage(target)
  const first = await dflatten([source, '--layers', '3', '--message', 'squashed by the test', '-t', target, '--json'])
  t.equal(first.exitCode, 0, first.stderr)
  const top = (await historyOf(target)).at(-1)
  t.equal(top?.comment, 'squashed by the test', 'docker history shows the message as the comment')
  t.match(top?.createdBy, /^dflatten: flattened sha256:.* onto the first 1 layers of sha256:/, 'and the marker as CREATED BY')
  const again = await dflatten([source, '--layers', '3', '--message', 'squashed by the test', '-t', target])
  t.match(again.stdout, /from an earlier run \(cache\)/, 'the same message comes from the cache')
  const other = await dflatten([source, '--layers', '3', '--message', 'another message', '-t', target, '--json'])
  // Built now, or found from an earlier run of this test: either way not the first message's.
  const o = JSON.parse(other.stdout) as { outcome: string; imageId: string }
  t.not(o.imageId, (JSON.parse(first.stdout) as { imageId: string }).imageId, 'another message is another result')
  t.equal((await historyOf(target)).at(-1)?.comment, 'another message')
  const noMsg = await dflatten([source, '--layers', '3', '-t', target, '--json'])
  t.not((JSON.parse(noMsg.stdout) as { imageId: string }).imageId, o.imageId, 'and so is none')
  t.match((await historyOf(target)).at(-1)?.comment, /^dflatten: flattened /, 'whose comment is the marker, as before')
  await removeImage(target)
})

/** What `--dry-run --json` prints: the library's report. */
type Report = DryRunReport

const reports: Record<string, Report> = {}
for (const method of METHODS) {
  t.test(`--dry-run with ${method}`, async (t) => {
    const images = (await docker(['images', '-q', '--no-trunc'])).split('\n').sort()
    const r = await dflatten([source, '--layers', '2', '--dry-run', '--json', '-m', method, '-t', 'dft-sq-dry:1'])
    t.equal(r.exitCode, 0, r.stderr)
    const rep = JSON.parse(r.stdout) as Report
    t.equal(rep.layerBytes, realBytes[method], 'the new layer\'s size is the real run\'s layerBytes')
    t.equal(rep.squashed.length, 2)
    t.equal(rep.reclaimedBytes, rep.squashedBytes - rep.layerBytes)
    t.ok(rep.reclaimedBytes > OVERWRITTEN.bytes / 2, 'it reclaims most of the overwritten file')
    t.same(rep.reclaimed[0], { path: OVERWRITTEN.path, bytes: OVERWRITTEN.bytes, layer: rep.reclaimed[0]?.layer }, 'the overwritten file comes first')
    t.match(rep.reclaimed[0]?.layer, /^\/bin\/sh -c echo v1 > \/app.conf && dd if=\/dev\/zero/, 'with the RUN line that added it')
    t.notOk(await imageExists('dft-sq-dry:1'), 'nothing is tagged')
    t.same((await docker(['images', '-q', '--no-trunc'])).split('\n').sort(), images, 'nothing is loaded')
    await clean(t)

    // Onto the nearest tagged ancestor (the base): the cache file the last layer deleted.
    const all = await dflatten([source, '--dry-run', '--json', '-m', method, '--top', '3'])
    t.equal(all.exitCode, 0, all.stderr)
    const full = JSON.parse(all.stdout) as Report
    t.equal(full.reclaimed.length, 3, '--top 3 lists three')
    t.same(full.reclaimed[0], { path: CACHE_DIR, bytes: CACHE_FILE.bytes, layer: full.reclaimed[0]?.layer, files: 1 }, 'the deleted build cache comes first, at its size')
    t.match(full.reclaimed[0]?.layer, /^\/bin\/sh -c mkdir -p \/root\/.cache\/build && dd if=/, 'with the RUN line that added it')
    t.ok((full.reclaimed[0]?.layer.length ?? 0) <= 60, 'cut to 60 characters')
    reports[method] = full
    await clean(t)
  })
}

t.test('every method reports the same reclaimed files', async (t) => {
  const lists = METHODS.map((m) => reports[m].reclaimed)
  for (const l of lists.slice(1)) t.same(l, lists[0])
  const text = await dflatten([source, '--dry-run'])
  t.equal(text.exitCode, 0)
  t.match(text.stdout, new RegExp(`reclaimed\\t${CACHE_FILE.bytes}\\t${CACHE_DIR.replace(/\./g, '\\.')}\\t`), 'plain lines when stdout is not a terminal')
})

t.test('--layers refusals: one line, exit 2, before any work', async (t) => {
  for (const args of [['--layers', '0'], ['--layers', '-1'], ['--layers', 'abc'], ['--layers', '2.5'], ['--layers', '5'], ['--layers', '2', '--base', 'scratch']]) {
    for (const cmd of [[source], ['resolve', source]]) {
      const r = await dflatten([...cmd, ...args])
      t.equal(r.exitCode, 2, `${[...cmd, ...args].join(' ')} exits 2`)
      t.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr.trim()}`)
    }
  }
  const r = await dflatten([source, '--layers', '5'])
  t.match(r.stderr, /has only 4 layers/)
  const top = await dflatten([source, '--top', '3'])
  t.equal(top.exitCode, 2, '--top without --dry-run is refused')
})

t.test('--layers 1 says it only rewrites the top layer', async (t) => {
  const r = await dflatten([source, '--layers', '1', '--dry-run'])
  t.equal(r.exitCode, 0, r.stderr)
  t.match(r.stderr, /onto its first 3 layers, squashing the top 1 layer\n/)
  t.match(r.stderr, /--layers 1 only rewrites the top layer/)
  t.match(r.stdout, /^reclaimed files: 0 \(0 bytes\)$/m, 'and reclaims no file')
})
