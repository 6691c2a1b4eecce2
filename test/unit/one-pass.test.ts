// The one-pass merge (registry method) against the model of a daemon applying layers: random
// layer stacks read top-down once, written as a real layer tar and read back, must give the same
// filesystem as applying the layers one by one; and the hardlink cases a top-down read must
// think about, by hand.
import t from 'tap'
import { onePassMerge, type LayerTars } from '../../src/methods/registry/one-pass.js'
import { layerStream } from '../../src/layer-tar.js'
import type { LayerEntry } from '../../src/entry.js'
import { modelTar, tarModel } from '../helpers/oci.js'
import { apply, randomLayer, rng, show, type Fs, type ModelEntry, type RawLayer } from '../helpers/model.js'

async function* chunks(b: Buffer): AsyncGenerator<Buffer> {
  for (let i = 0; i < b.length; i += 333) yield b.subarray(i, i + 333)
}

/** Layers bottom first, as applied; the merge reads them top first. Returns the model entries of the merged layer and how often each layer was opened. */
async function merged(layers: ModelEntry[][], baseLayers: ModelEntry[][] = []): Promise<{ entries: ModelEntry[]; opens: number[] }> {
  const tars = layers.map(modelTar).reverse()
  const baseTars = baseLayers.map(modelTar).reverse()
  const opens = tars.map(() => 0)
  const source: LayerTars = {
    count: tars.length,
    open: async (r) => {
      opens[r]++
      return chunks(tars[r])
    },
    base: { count: baseTars.length, open: async (r) => chunks(baseTars[r]) },
  }
  const m = onePassMerge(source)
  const bytes: Buffer[] = []
  for await (const c of layerStream(m.entries, m.content)) bytes.push(c as Buffer)
  return { entries: await tarModel(Buffer.concat(bytes)), opens }
}

/** Also links to files of earlier layers (randomLayer only links within a layer). */
function withCrossLinks(fs: Fs, layer: RawLayer, r: () => number, tag: string): RawLayer {
  if (r() < 0.5) return layer
  const files = [...fs].filter(([, n]) => n.type === 'file').map(([p]) => p)
  if (!files.length) return layer
  const target = files[Math.floor(r() * files.length)]
  const name = `${target}-x${tag}`
  const after = new Map(fs)
  apply(after, layer)
  const dir = name.includes('/') ? name.slice(0, name.lastIndexOf('/')) : ''
  if (after.get(target) !== fs.get(target) || after.has(name) || (dir && after.get(dir)?.type !== 'dir')) return layer
  return [...layer, { name, type: 'link', link: target }]
}

t.test('a one-pass read of random layer stacks has the same effect as applying them one by one', async (t) => {
  let cases = 0
  for (let seed = 1; seed <= 600; seed++) {
    const r = rng(seed)
    const base: Fs = new Map()
    const baseLayers: RawLayer[] = []
    for (const tag of ['base', 'base2']) {
      const l = randomLayer(base, r, tag)
      apply(base, l)
      baseLayers.push(l)
    }
    const layered = new Map(base)
    const layers: RawLayer[] = []
    const count = 1 + Math.floor(r() * 5)
    for (let j = 0; j < count; j++) {
      const raw = withCrossLinks(layered, randomLayer(layered, r, `L${j}.`), r, String(j))
      apply(layered, raw)
      layers.push(raw)
    }
    const { entries } = await merged(layers, baseLayers)
    const flat = new Map(base)
    apply(flat, entries)
    if (show(flat).join('\n') !== show(layered).join('\n')) {
      t.same(show(flat), show(layered), `seed ${seed}`)
      break
    }
    cases++
  }
  t.equal(cases, 600, 'every random case agrees')
})

const dir = (name: string): ModelEntry => ({ name, type: 'dir' })
const file = (name: string, content: string): ModelEntry => ({ name, type: 'file', content })
const link = (name: string, to: string): ModelEntry => ({ name, type: 'link', link: to })
const wh = (name: string): ModelEntry => ({ name: name.includes('/') ? name.replace(/([^/]+)$/, '.wh.$1') : `.wh.${name}`, type: 'file' })

t.test('hardlinks across layers, read top-down', async (t) => {
  const cases: Array<[string, Fs, ModelEntry[][], number[]?]> = [
    ['target deleted above the layer holding target and link', new Map(), [[file('t', 'x'), link('p', 't')], [wh('t')]], [1, 2]],
    ['target replaced above', new Map(), [[file('t', 'x'), link('p', 't')], [file('t', 'y')]], [1, 2]],
    ['link above, target in a lower layer', new Map(), [[file('t', 'x')], [link('p', 't')]]],
    ['link above, target lower and replaced above the link', new Map(), [[file('t', 'x')], [link('p', 't')], [file('t', 'z')]]],
    ['link above, target lower, its directory deleted above', new Map(), [[dir('d'), file('d/t', 'x')], [link('p', 'd/t')], [wh('d')]]],
    ['two links in two layers to one lower file, the file deleted', new Map(), [[file('t', 'x')], [link('p', 't')], [link('q', 't')], [wh('t')]]],
    ['links in two layers to two versions of a path', new Map(), [[file('t', 'x')], [link('p', 't')], [file('t', 'y')], [link('q', 't')], [wh('t')]]],
    // t's content streamed past before anything asked for it: the one case of a second read.
    ['a link to a link of a lower layer', new Map(), [[file('t', 'x'), link('u', 't')], [link('p', 'u')], [wh('t'), wh('u')]], [1, 1, 2]],
    ['a link to a base file', new Map([['b', { type: 'file', content: 'base' }]]), [[link('p', 'b')]]],
    ['a link to a base file a higher layer replaces', new Map([['b', { type: 'file', content: 'base' }]]), [[link('p', 'b')], [file('b', 'new')]]],
    ['a link whose target a lower layer deletes is the base file again', new Map([['b', { type: 'file', content: 'base' }]]), [[file('b', 'new'), link('p', 'b')], [wh('b')]], [1, 2]],
  ]
  for (const [what, base, layers, opens] of cases) {
    const layered = new Map(base)
    for (const l of layers) apply(layered, l)
    const got = await merged(layers, [[...base].map(([name, n]) => ({ name, type: n.type, content: n.content }))])
    const flat = new Map(base)
    apply(flat, got.entries)
    t.same(show(flat), show(layered), what)
    // Only a target hidden in its own layer costs a second read of that one blob.
    t.same(got.opens, opens ?? layers.map(() => 1), `${what}: blobs opened`)
  }
})

t.test('directories, whiteouts and opaque markers: what a top-down read must hide', async (t) => {
  const base: Fs = new Map([
    ['d', { type: 'dir' }],
    ['d/old', { type: 'file', content: 'o' }],
    ['e', { type: 'dir' }],
    ['e/f', { type: 'file', content: 'f' }],
  ])
  const cases: Array<[string, ModelEntry[][]]> = [
    ['dir replaced by a file, then a dir again', [[file('d', 'now a file')], [dir('d'), file('d/new', 'n')]]],
    ['dir deleted, then made again', [[wh('d')], [dir('d'), file('d/new', 'n')]]],
    ['opaque dir under a later plain dir', [[dir('d'), { name: 'd/.wh..wh..opq', type: 'file' }, file('d/a', 'a')], [dir('d'), file('d/b', 'b')]]],
    ['opaque at the root', [[{ name: '.wh..wh..opq', type: 'file' }, dir('x')], [dir('y')]]],
    ['file under a dir a later layer deletes, then a file there', [[dir('e'), file('e/g', 'g')], [wh('e')], [file('e', 'file')]]],
    ['a whiteout of what only the same layer adds below', [[dir('e'), file('e/h', 'h')], [dir('e'), wh('e/h'), wh('e/f')]]],
  ]
  for (const [what, layers] of cases) {
    const layered = new Map(base)
    for (const l of layers) apply(layered, l)
    const flat = new Map(base)
    apply(flat, (await merged(layers)).entries)
    t.same(show(flat), show(layered), what)
  }
})

t.test('the same layers give the same entries every time', async (t) => {
  const r = rng(7)
  const fs: Fs = new Map()
  const layers: RawLayer[] = []
  for (let j = 0; j < 4; j++) {
    const l = randomLayer(fs, r, `L${j}`)
    apply(fs, l)
    layers.push(l)
  }
  t.same((await merged(layers)).entries, (await merged(layers)).entries)
})

t.test('content is handed on as read; an entry without its content at hand is a bug, said so', async (t) => {
  const m = onePassMerge({ count: 1, open: async () => chunks(modelTar([file('a', 'hello')])) })
  const got: LayerEntry[] = []
  for await (const e of m.entries) got.push(e)
  t.equal(got.length, 1)
  t.throws(() => m.content(got[0]), /no content at hand/)
  t.same(m.counts, { changed: 1, deleted: 0, bytes: 5 })
})
