// --layers, --message and --dry-run without a daemon: option parsing and refusals, the history
// cut, the new entry, and the reclaimed files of layer listings (OCI whiteout rules).
import t from 'tap'
import { checkSelection, keptLayers, parseLayerCount, selectionNote, ontoText } from '../../src/select.js'
import { historyUpToLayer, layerLabels, newLayerEntry, entryFacts } from '../../src/history.js'
import { fromLayerListings, ReclaimTally, type ListedEntry } from '../../src/reclaim.js'
import { parseFlattenArgs } from '../../src/cli/flatten.js'
import { parseResolveArgs } from '../../src/cli/resolve.js'
import { renderDryRun } from '../../src/cli/dry-run.js'
import { DflattenError } from '../../src/errors.js'
import type { DryRunReport } from '../../src/dry-run.js'

const usage = (fn: () => unknown): boolean => {
  try {
    fn()
    return false
  } catch (e) {
    return e instanceof DflattenError && e.code === 'usage' && !e.message.includes('\n')
  }
}

t.test('--layers N: a whole number from 1 up, at most the layers the image has', async (t) => {
  t.equal(parseLayerCount('3'), 3)
  t.equal(parseLayerCount('1'), 1)
  for (const bad of ['0', '-1', 'abc', '2.5', '', '1e3', ' ', '0x2']) t.ok(usage(() => parseLayerCount(bad)), `refuses ${JSON.stringify(bad)}`)
  t.equal(keptLayers(2, 5, 'x'), 3)
  t.equal(keptLayers(5, 5, 'x'), 0, 'every layer: none kept')
  t.ok(usage(() => keptLayers(6, 5, 'x')), 'more than the image has')
  t.ok(usage(() => keptLayers(0, 5, 'x')), 'zero, from the library too')
  t.ok(usage(() => keptLayers(-2, 5, 'x')), 'negative, from the library too')
  t.ok(usage(() => checkSelection({ base: 'scratch', layers: 1 })), '--base with --layers')
  t.doesNotThrow(() => checkSelection({ base: 'x' }))
  t.doesNotThrow(() => checkSelection({ layers: 2 }))
})

t.test('the command lines take --layers, --message, --dry-run and --top', async (t) => {
  t.match(parseFlattenArgs(['img', '--layers', '2', '--message', 'hi']), { image: 'img', layers: 2, message: 'hi' })
  t.match(parseFlattenArgs(['img', '--dry-run', '--top', '5']), { 'dry-run': true, top: 5 })
  t.match(parseResolveArgs(['img', '--layers', '4', '--message', 'm']), { image: 'img', layers: 4, message: 'm' })
  for (const argv of [
    ['img', '--layers', '0'],
    ['img', '--layers', '-1'],
    ['img', '--layers', 'x'],
    ['img', '--layers'],
    ['img', '--layers', '2', '-b', 'base'],
    ['img', '--top', '3'],
    ['img', '--dry-run', '--top', 'many'],
    ['img', '--dry-run', '--output', 'f.tar'],
    ['img', '--message'],
    ['img', '-m', 'overlay', '--message'],
  ]) {
    t.ok(usage(() => parseFlattenArgs(argv)), `dflatten ${argv.join(' ')}: one usage line`)
  }
  for (const argv of [['img', '--layers', '0'], ['img', '--layers', '1', '--base', 'scratch'], ['img', '--dry-run']]) {
    t.ok(usage(() => parseResolveArgs(argv)), `dflatten resolve ${argv.join(' ')}: one usage line`)
  }
})

t.test('the kept history: up to the last kept layer\'s entry, metadata entries between them kept', async (t) => {
  const h = [
    { created_by: 'ADD base' },
    { created_by: 'LABEL a', empty_layer: true },
    { created_by: 'RUN one' },
    { created_by: 'ENV x', empty_layer: true },
    { created_by: 'RUN two' },
    { created_by: 'CMD', empty_layer: true },
  ]
  t.same(historyUpToLayer(h, 0), [])
  t.same(historyUpToLayer(h, 1).map((e) => e.created_by), ['ADD base'])
  t.same(historyUpToLayer(h, 2).map((e) => e.created_by), ['ADD base', 'LABEL a', 'RUN one'])
  t.same(historyUpToLayer(h, 3).map((e) => e.created_by), ['ADD base', 'LABEL a', 'RUN one', 'ENV x', 'RUN two'])
  t.same(layerLabels(h, 3), ['ADD base', 'RUN one', 'RUN two'])
  t.same(layerLabels(h, 4), ['layer 1', 'layer 2', 'layer 3', 'layer 4'], 'a history that does not match the layers')
  const long = layerLabels([{ created_by: '/bin/sh -c ' + 'x'.repeat(100) }], 1)[0]
  t.equal(long.length, 60, 'cut to 60 characters')
})

t.test('the new entry: the marker as comment, or the message as comment and the marker as created_by', async (t) => {
  const plan = { marker: 'dflatten: flattened A onto B (overlay)', message: null, source: { layers: ['a', 'b', 'c'] }, base: { layers: ['a'] } }
  t.same(newLayerEntry(entryFacts(plan), 'T'), { created: 'T', created_by: 'dflatten: 2 layers squashed into one', comment: plan.marker })
  t.same(newLayerEntry(entryFacts({ ...plan, message: 'hello' }), 'T'), { created: 'T', created_by: plan.marker, comment: 'hello' })
  t.equal(selectionNote({ from: 'layers' }, 1)?.startsWith('--layers 1 only rewrites the top layer'), true)
  t.equal(selectionNote({ from: 'layers' }, 2), null)
  t.equal(ontoText({ from: 'layers', ref: null, layers: ['a', 'b'] }, 1), 'its first 2 layers, squashing the top 1 layer')
})

const f = (name: string, size = 10): ListedEntry => ({ name: Buffer.from(name), type: '0', size })
const d = (name: string): ListedEntry => ({ name: Buffer.from(name), type: '5', size: 0 })
const l = (name: string): ListedEntry => ({ name: Buffer.from(name), type: '2', size: 0 })

function reclaimed(layers: ListedEntry[][], top = 20) {
  const tally = new ReclaimTally(top)
  fromLayerListings(layers.map((entries, i) => ({ layer: i + 1, entries })), tally)
  return tally.result([])
}

t.test('reclaimed files of layer listings', async (t) => {
  const r = reclaimed([
    [d('cache'), f('cache/big', 1000), f('cache/small', 5), f('keep', 7), f('over', 50), d('dir'), f('dir/a', 3), f('tofile/x', 4), d('opq'), f('opq/in', 8)],
    [f('over', 60), f('.wh.cache', 0), f('dir/b', 1), f('tofile', 2), d('opq'), f('opq/.wh..wh..opq', 0), f('opq/new', 9)],
    [l('keep2')],
  ])
  t.same(
    r.top.map((x) => [x.path, x.bytes, x.layer]),
    [
      ['/cache/', 1005, 1],
      ['/over', 50, 1],
      ['/opq/in', 8, 1],
      ['/tofile/', 4, 1],
    ],
    'a deleted dir as one item, overwritten, under an opaque dir, a dir replaced by a file as one item; largest first',
  )
  t.same(r.top[0].files, 2, 'the deleted dir says how many files it held')
  t.equal(r.files, 5)
  t.equal(r.bytes, 1067)
  t.same(reclaimed([[f('a')], [f('b')]]).top, [], 'nothing reclaimed when nothing is hidden')
  t.same(reclaimed([[f('a', 1)], [f('a', 2)], [f('a', 3)]]).top.map((x) => [x.bytes, x.layer]), [[2, 2], [1, 1]], 'every overwritten version')
  t.same(reclaimed([[f('a', 1)], [f('.wh.a', 0)], [f('a', 3)]]).top.map((x) => x.layer), [1], 'deleted, then made again')
  const top2 = reclaimed([[f('x', 1), f('y', 3), f('z', 2)], [f('.wh.x'), f('.wh.y'), f('.wh.z')]], 2)
  t.same(top2.top.map((x) => x.path), ['/y', '/z'], 'only the largest K are kept')
  t.equal(top2.files, 3, 'but all are counted')
})

t.test('the dry run report as text', async (t) => {
  const r: DryRunReport = {
    source: { ref: 'app:1', id: 'sha256:1', layers: 4, size: 100 },
    base: { ref: null, id: null, layers: 2, from: 'layers' },
    target: 'app_flatten:1',
    method: 'overlay',
    squashed: [{ layer: 3, diffId: 'sha256:3', createdBy: 'RUN a', bytes: 3000 }, { layer: 4, diffId: 'sha256:4', createdBy: 'RUN b', bytes: 1000 }],
    layerBytes: 1500,
    squashedBytes: 4000,
    reclaimedBytes: 2500,
    reclaimedFiles: 1,
    reclaimedFileBytes: 2400,
    reclaimed: [{ path: '/cache/x', bytes: 2400, layer: 'RUN a' }],
    timings: {},
  }
  const plain = renderDryRun(r, false)
  t.match(plain, /^new layer bytes: 1500$/m)
  t.match(plain, /^reclaimed bytes: 2500$/m)
  t.match(plain, /^reclaimed\t2400\t\/cache\/x\tRUN a$/m)
  const table = renderDryRun(r, true)
  t.match(table, /onto its first 2 layers/)
  t.match(table, /^ *SIZE +PATH +ADDED BY$/m)
  t.match(table, /^2\.4 kB +\/cache\/x +RUN a$/m)
})
