// Pass 1's packed headers give back exactly the headers put in, in order, with their positions
// and the file digests filled in after the headers; across chunk boundaries and for odd headers.
import t from 'tap'
import { createHash } from 'node:crypto'
import { PackedHeaders } from '../../src/methods/save/packed.js'
import type { TarHeader } from '../../src/tar/index.js'

const header = (over: Partial<TarHeader>): TarHeader => ({
  name: Buffer.from('x'),
  type: '0',
  mode: 0o644,
  uid: 0,
  gid: 0,
  size: 0,
  mtime: 0,
  linkname: Buffer.alloc(0),
  devmajor: 0,
  devminor: 0,
  xattrs: [],
  ...over,
})

const sha = (s: string): string => createHash('sha256').update(s).digest('base64')

t.test('odd headers come back as they went in', (t) => {
  const headers: TarHeader[] = [
    header({ name: Buffer.from([0x66, 0xff, 0xfe, 0x0a]), size: 2 ** 40 + 3, mtime: 4102444800, uid: 2 ** 32 - 1, gid: 65534, mode: 0o7777 }),
    header({ name: Buffer.from('d'), type: '5', mode: 0o1777 }),
    header({ name: Buffer.from('d/l'), type: '2', linkname: Buffer.from('../' + 'n'.repeat(300)) }),
    header({ name: Buffer.from('d/h'), type: '1', linkname: Buffer.from('d/f') }),
    header({ name: Buffer.from('dev/null'), type: '3', devmajor: 1, devminor: 3, mode: 0o666 }),
    header({ name: Buffer.from('dev/zero-major'), type: '4', devmajor: 0, devminor: 7 }),
    header({
      name: Buffer.from('p/' + 'é'.repeat(2000)),
      xattrs: [
        ['security.capability', Buffer.from([1, 0, 0, 2, 0, 0x20, 0, 0])],
        ['user.ünï', Buffer.alloc(0)],
      ],
    }),
    header({ name: Buffer.from('fifo'), type: '6' }),
  ]
  const packed = new PackedHeaders()
  const slots = headers.map((h) => packed.add(h))
  slots.forEach((s, i) => s && PackedHeaders.setDigest(s, sha(`content ${i}`)))
  t.equal(packed.length, headers.length)
  const back = [...packed.seal()]
  t.equal(back.length, headers.length)
  back.forEach((e, i) => {
    const h = headers[i]
    t.same(
      { ...e, at: undefined, name: [...e.name], linkname: [...e.linkname], xattrs: e.xattrs.map(([k, v]) => [k, [...v]]) },
      {
        ...h,
        name: [...h.name],
        linkname: [...h.linkname],
        xattrs: h.xattrs.map(([k, v]) => [k, [...v]]),
        index: i,
        at: undefined,
        ...(h.type === '0' ? { sha256: sha(`content ${i}`) } : {}),
      },
      `header ${i} (type ${h.type})`,
    )
  })
  t.same([...packed].map((e) => e.index), headers.map((_, i) => i), 'it can be read again')
  for (const e of packed) {
    // eslint-disable-next-line @typescript-eslint/no-non-null-assertion -- the iterator sets at on every header
    t.same({ ...packed.header(e.at!, e.index), at: e.at }, e, `header ${e.index} read back from where it is`)
  }
  t.end()
})

t.test('many headers span chunks and keep their order and digests', (t) => {
  const packed = new PackedHeaders()
  const n = 30000
  for (let i = 0; i < n; i++) {
    const slot = packed.add(header({ name: Buffer.from(`dir${i % 97}/file-${i}`), size: i, type: i % 5 ? '0' : '5' }))
    if (slot) PackedHeaders.setDigest(slot, sha(String(i)))
  }
  let i = 0
  let bad = 0
  for (const e of packed.seal()) {
    if (e.name.toString() !== `dir${i % 97}/file-${i}` || e.size !== i || e.index !== i || e.sha256 !== (i % 5 ? sha(String(i)) : undefined)) bad++
    i++
  }
  t.equal(i, n, 'every header comes back')
  t.equal(bad, 0, 'each with its own name, size, position and digest')
  let misread = 0
  for (const e of packed) {
    // eslint-disable-next-line @typescript-eslint/no-non-null-assertion -- the iterator sets at on every header
    if (packed.header(e.at!, e.index).name.toString() !== e.name.toString()) misread++
  }
  t.equal(misread, 0, 'a header is found again by where it is, in any chunk')
  t.throws(() => packed.add(header({})), /after seal/, 'nothing is added once sealed')
  t.end()
})

t.test('whiteouts and the rest are read apart, each with its place in the layer', (t) => {
  const names = ['.wh.top', 'etc', 'etc/.wh.gone', 'etc/x.wh.not', 'etc/.wh..wh..opq', '.wh', 'a/.wh', 'a/b/.wh.c' + 'd'.repeat(200), 'a/.wh./f']
  const packed = new PackedHeaders()
  for (const [i, name] of names.entries()) packed.add(header({ name: Buffer.from(name), xattrs: i % 2 ? [['user.k', Buffer.from('v')]] : [] }))
  packed.seal()
  const read = (whiteouts: boolean | null): string[] => [...packed.select(whiteouts)].map((e) => `${e.index} ${e.name.toString()}`)
  t.same(read(true), ['0 .wh.top', '2 etc/.wh.gone', '4 etc/.wh..wh..opq', `7 a/b/.wh.c${'d'.repeat(200)}`])
  t.same(read(false), ['1 etc', '3 etc/x.wh.not', '5 .wh', '6 a/.wh', '8 a/.wh./f'])
  t.same(read(null), names.map((n, i) => `${i} ${n}`))
  t.end()
})

t.test('an unsealed store is not read', (t) => {
  const packed = new PackedHeaders()
  packed.add(header({}))
  t.throws(() => [...packed], /before seal/)
  t.end()
})
