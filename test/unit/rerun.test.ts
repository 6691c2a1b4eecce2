// The re-run rule: a result name that already names exactly what this run gives is not a clash;
// the name the user typed for an original, or an original's other name the run would move, is.
import t from 'tap'
import { flattenMarker, isThisFlatten, keptLayersOf, sameFlatten, takesOwnName, type ClashQuestion } from '../../src/rerun.js'
import { newLayerEntry } from '../../src/history.js'

const id = (c: string): string => `sha256:${c.repeat(64)}`
const BASE = ['sha256:b1', 'sha256:b2']
const marker = flattenMarker(id('a'), id('b'), 'overlay')
/** The newest history entry an earlier run with `m` (and `message`) wrote, as docker history shows it. */
const entryOf = (m: string, message: string | null = null) => {
  const e = newLayerEntry({ marker: m, message, squashed: 2 }, '')
  return { created_by: e.created_by ?? '', comment: e.comment ?? '' }
}

function ask(over: Partial<ClashQuestion>): Promise<boolean> {
  return takesOwnName({
    typed: 'app:1',
    tags: ['app:1'],
    target: 'app_flatten:1',
    layers: [...BASE, 'sha256:top'],
    baseLayers: BASE,
    marker,
    entry: () => Promise.resolve({ created_by: '', comment: '' }),
    ...over,
  })
}

t.test('sameFlatten: same base, method and message, whatever was flattened', async (t) => {
  const want = { marker }
  t.ok(sameFlatten(entryOf(flattenMarker(id('c'), id('b'), 'overlay')), want), 'an earlier result of another source on the same base')
  t.notOk(sameFlatten(entryOf(flattenMarker(id('c'), id('d'), 'overlay')), want), 'another base')
  t.notOk(sameFlatten(entryOf(flattenMarker(id('c'), id('b'), 'save')), want), 'another method')
  t.notOk(sameFlatten(entryOf(flattenMarker(id('c'), null, 'overlay')), want), 'scratch is another base')
  t.notOk(sameFlatten({ created_by: '', comment: '' }, want), 'no comment')
  t.notOk(sameFlatten({ created_by: '', comment: 'dflatten: flattened app:1 onto x (overlay)' }, want), 'not a marker')
  const earlier = entryOf(flattenMarker(id('c'), id('b'), 'overlay'), 'v2')
  t.ok(sameFlatten(earlier, { marker, message: 'v2' }), 'with a message: the marker is read from CREATED BY')
  t.notOk(sameFlatten(earlier, want), 'a message where this run has none')
  t.notOk(sameFlatten(earlier, { marker, message: 'v3' }), 'another message')
})

t.test('isThisFlatten (the cache): the very marker, kept layers and message', async (t) => {
  const kept = flattenMarker(id('a'), keptLayersOf(id('a'), 2), 'overlay')
  t.ok(isThisFlatten(entryOf(kept), { marker: kept }), 'the entry --layers 2 writes')
  t.ok(isThisFlatten(entryOf(kept, 'hi'), { marker: kept, message: 'hi' }), 'and with a message')
  t.notOk(isThisFlatten(entryOf(kept, 'hi'), { marker: kept }), 'a message where this run has none')
  t.notOk(isThisFlatten(entryOf(kept), { marker: kept, message: 'hi' }), 'no message where this run has one')
  t.notOk(isThisFlatten(entryOf(flattenMarker(id('a'), keptLayersOf(id('a'), 3), 'overlay')), { marker: kept }), 'other kept layers')
  t.notOk(isThisFlatten(entryOf(flattenMarker(id('c'), id('b'), 'overlay')), { marker }), 'another source on the same base')
  t.ok(isThisFlatten(entryOf(marker, ''), { marker, message: '' }), 'an empty message is none')
})

t.test('a target that names nothing of the image is never a clash', async (t) => {
  t.notOk(await ask({}))
  t.notOk(await ask({ target: 'other:1', layers: BASE }), 'nothing above the base either')
})

t.test('nothing above the base: a name already on the image is the result, the typed name is not', async (t) => {
  // The first run tagged app_flatten:1 onto the original itself.
  t.notOk(await ask({ layers: BASE, tags: ['app:1', 'app_flatten:1'] }), 'the repeat of `dflatten app:1`')
  t.notOk(await ask({ layers: BASE, tags: ['app:1', 'app:flat'], target: 'app:flat' }), 'the repeat of `dflatten app:1 -t app:flat`')
  t.ok(await ask({ layers: BASE, target: 'app:1' }), '`dflatten app:1 -t app:1` is still refused')
  t.ok(await ask({ layers: BASE, typed: 'app', target: 'app:latest', tags: ['app:latest'] }), 'app is app:latest')
})

t.test('layers above the base: a name on the image is its own, unless the image is this flatten\'s result', async (t) => {
  t.ok(await ask({ target: 'app:1' }), '`dflatten app:1 -t app:1`')
  t.ok(await ask({ tags: ['app:1', 'app:latest'], target: 'app:latest' }), 'another name of the original would move')
  const earlier = () => Promise.resolve(entryOf(flattenMarker(id('c'), id('b'), 'overlay')))
  // After `dflatten app:1 -t app:1 --force`, app:1 is that result; the same command again repeats it.
  t.notOk(await ask({ target: 'app:1', entry: earlier }), 'the image is an earlier result of this flatten')
  t.ok(await ask({ target: 'app:1', entry: earlier, marker: flattenMarker(id('a'), id('b'), 'save') }), 'by another method: a clash')
  t.ok(await ask({ target: 'app:1', entry: earlier, layers: [...BASE, 'sha256:x', 'sha256:y'] }), 'more than one layer above the base: not a result')
  t.ok(await ask({ target: 'app:1', entry: earlier, message: 'v2' }), 'this run has a message the earlier result has not: a clash')
})
