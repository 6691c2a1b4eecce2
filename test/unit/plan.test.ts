// The documents stage commands hand each other: a stage fed the wrong one says which it wanted.
import t from 'tap'
import { DOC_VERSION, expectDoc, parseDoc } from '../../src/plan.js'

const badInput = (message: RegExp): { code: string; message: RegExp } => ({ code: 'bad-input', message })

t.test('the document a stage wants passes through as it is', async (t) => {
  for (const kind of ['plan', 'mounted', 'diffed'] as const) {
    const doc = { dflatten: kind, version: DOC_VERSION, extra: [1] }
    t.equal(expectDoc(doc, kind, 'dflatten x'), doc, kind)
  }
})

t.test('another stage\'s document names the stage that made it', async (t) => {
  t.throws(() => expectDoc({ dflatten: 'plan', version: DOC_VERSION }, 'mounted', 'dflatten diff'), badInput(/^dflatten diff reads the output of `dflatten mount`; got the output of `dflatten resolve`$/))
  t.throws(() => expectDoc({ dflatten: 'diffed', version: DOC_VERSION }, 'plan', 'dflatten mount'), badInput(/got the output of `dflatten diff`/))
  t.throws(() => expectDoc({ dflatten: 'mounted', version: DOC_VERSION }, 'diffed', 'dflatten pack'), badInput(/reads the output of `dflatten diff`; got the output of `dflatten mount`/))
  t.throws(() => expectDoc({ dflatten: 'other', version: DOC_VERSION }, 'plan', 'dflatten mount'), badInput(/got the output of `something else`/), 'a kind no stage writes')
})

t.test('a kind named like an Object.prototype property is something else too', async (t) => {
  for (const kind of ['toString', 'constructor', '__proto__']) {
    t.throws(() => expectDoc({ dflatten: kind, version: DOC_VERSION }, 'plan', 'dflatten mount'), badInput(/got the output of `something else`$/), kind)
  }
})

t.test('what is not a dflatten document is refused as such', async (t) => {
  for (const doc of [null, undefined, 'plan', 42, [], { version: DOC_VERSION }]) {
    t.throws(() => expectDoc(doc, 'plan', 'dflatten mount'), badInput(/its input is not a dflatten document/), typeof doc === 'object' ? JSON.stringify(doc) : String(doc))
  }
})

t.test('another version is refused, naming both', async (t) => {
  const other = DOC_VERSION + 1
  t.throws(() => expectDoc({ dflatten: 'plan', version: other }, 'plan', 'dflatten mount'), badInput(new RegExp(`got document version ${other}, this dflatten reads version ${DOC_VERSION}$`)))
  t.throws(() => expectDoc({ dflatten: 'plan' }, 'plan', 'dflatten mount'), badInput(/version undefined/), 'no version at all')
  t.throws(() => expectDoc({ dflatten: 'plan', version: String(DOC_VERSION) }, 'plan', 'dflatten mount'), badInput(new RegExp(`version ${DOC_VERSION},`)), 'the right version, as a string')
})

t.test('input that is not JSON says to pipe the previous stage in', async (t) => {
  t.same(parseDoc('{"a":[1,2]}', 'dflatten mount'), { a: [1, 2] })
  for (const text of ['', '{', 'plan', '{"a":1}\n{"b":2}']) {
    t.throws(() => parseDoc(text, 'dflatten mount'), badInput(/^dflatten mount: its input is not JSON/), JSON.stringify(text))
  }
})
