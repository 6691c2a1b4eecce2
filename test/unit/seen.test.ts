// What a layer held so far, by path: kept as bytes and offsets, it must still answer exactly.
import t from 'tap'
import { LayerSeen } from '../../src/methods/registry/seen.js'

t.test('every path answers with what was last set for it, through the table growing', (t) => {
  const seen = new LayerSeen()
  const n = 50000
  const path = (i: number): Buffer => Buffer.from(`dir-${i % 101}/file-${i}`)
  for (let i = 0; i < n; i++) seen.set(path(i), i % 3 ? { index: i, as: path(i) } : { index: i })
  for (let i = 0; i < n; i += 7) seen.set(path(i), { index: i + 1 })
  let wrong = 0
  for (let i = 0; i < n; i++) {
    const s = seen.get(path(i))
    const want = i % 7 === 0 ? { index: i + 1 } : i % 3 ? { index: i, as: path(i) } : { index: i }
    if (JSON.stringify(s) !== JSON.stringify(want)) wrong++
  }
  t.equal(wrong, 0)
  t.equal(seen.get(Buffer.from('dir-1/file-50001')), undefined, 'a path never set is not there')
  t.equal(seen.get(Buffer.from('dir-1/file-1x')), undefined, 'nor one that only starts like one')
  t.end()
})

t.test('links, and content that went out under another name, come back whole', (t) => {
  const seen = new LayerSeen()
  const odd = Buffer.from([0x61, 0xff, 0x00, 0x2f, 0x62])
  seen.set(Buffer.from('a'), { link: 'b/c' })
  seen.set(odd, { index: 4, as: Buffer.from('elsewhere') })
  seen.set(Buffer.from(''), { index: 0 })
  t.same(seen.get(Buffer.from('a')), { link: 'b/c' })
  t.same(seen.get(odd), { index: 4, as: Buffer.from('elsewhere') })
  t.same(seen.get(Buffer.from('')), { index: 0 })
  seen.set(Buffer.from('a'), { index: 9, as: Buffer.from('a') })
  t.same(seen.get(Buffer.from('a')), { index: 9, as: Buffer.from('a') }, 'a later entry at the path replaces the link')
  seen.set(Buffer.from('a'), { link: 'd' })
  t.same(seen.get(Buffer.from('a')), { link: 'd' }, 'and a later link replaces that')
  t.end()
})
