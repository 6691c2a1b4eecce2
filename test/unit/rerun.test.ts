// The re-run rule: a result name that already names exactly what this run gives is not a clash;
// the name the user typed for an original, or an original's other name the run would move, is.
import t from 'tap'
import { flattenMarker, sameFlatten, takesOwnName, type ClashQuestion } from '../../src/rerun.js'

const id = (c: string): string => `sha256:${c.repeat(64)}`
const BASE = ['sha256:b1', 'sha256:b2']
const marker = flattenMarker(id('a'), id('b'), 'overlay')

function ask(over: Partial<ClashQuestion>): Promise<boolean> {
  return takesOwnName({
    typed: 'app:1',
    tags: ['app:1'],
    target: 'app_flatten:1',
    layers: [...BASE, 'sha256:top'],
    baseLayers: BASE,
    marker,
    comment: () => Promise.resolve(''),
    ...over,
  })
}

t.test('sameFlatten: same base and method, whatever was flattened', async (t) => {
  t.ok(sameFlatten(flattenMarker(id('c'), id('b'), 'overlay'), marker), 'an earlier result of another source on the same base')
  t.notOk(sameFlatten(flattenMarker(id('c'), id('d'), 'overlay'), marker), 'another base')
  t.notOk(sameFlatten(flattenMarker(id('c'), id('b'), 'save'), marker), 'another method')
  t.notOk(sameFlatten(flattenMarker(id('c'), null, 'overlay'), marker), 'scratch is another base')
  t.notOk(sameFlatten('', marker), 'no comment')
  t.notOk(sameFlatten('dflatten: flattened app:1 onto x (overlay)', marker), 'not a marker')
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
  const earlier = () => Promise.resolve(flattenMarker(id('c'), id('b'), 'overlay'))
  // After `dflatten app:1 -t app:1 --force`, app:1 is that result; the same command again repeats it.
  t.notOk(await ask({ target: 'app:1', comment: earlier }), 'the image is an earlier result of this flatten')
  t.ok(await ask({ target: 'app:1', comment: earlier, marker: flattenMarker(id('a'), id('b'), 'save') }), 'by another method: a clash')
  t.ok(await ask({ target: 'app:1', comment: earlier, layers: [...BASE, 'sha256:x', 'sha256:y'] }), 'more than one layer above the base: not a result')
})
