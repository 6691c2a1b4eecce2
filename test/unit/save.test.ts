// The save method's pieces without a daemon: the tar reader (round trip with our writer, and
// hostile input), and the layer merge, checked against a model of how a daemon applies layers.
import t from 'tap'
import { readTar, cleanMemberName, TarParser, type TarHeader } from '../../src/tar/index.js'
import { FileDigest } from '../../src/methods/save/digest.js'
import { layerStream } from '../../src/layer-tar.js'
import { digestInName } from '../../src/image-archive.js'
import { BaseContent, indexSave, savedImage, type IndexedEntry, type SavedLayer } from '../../src/methods/save/first-pass.js'
import { mergeLayers } from '../../src/methods/save/merge.js'
import { PackedHeaders } from '../../src/methods/save/packed.js'
import { createHash } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import tar from 'tar-stream'
import type { LayerEntry } from '../../src/entry.js'
import { apply, asModel, randomLayer, rng, show, type Fs } from '../helpers/model.js'
import { must } from '../helpers/must.js'

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(c)
  return Buffer.concat(chunks)
}

async function* once(b: Buffer): AsyncGenerator<Buffer> {
  // Odd chunk sizes, so no header arrives in one piece.
  for (let i = 0; i < b.length; i += 777) yield b.subarray(i, i + 777)
}

const sample: LayerEntry[] = [
  { path: Buffer.from('dir'), kind: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 1600000000, size: 0 },
  { path: Buffer.from([0x64, 0x69, 0x72, 0x2f, 0xff, 0xfe]), kind: 'file', mode: 0o4755, uid: 300000, gid: 3000000, mtime: 1, size: 0 },
  { path: Buffer.from('dir/' + 'x'.repeat(250)), kind: 'symlink', mode: 0o777, uid: 0, gid: 0, mtime: 2, size: 0, linkname: Buffer.from('/' + 'y'.repeat(200)) },
  { path: Buffer.from('café'), kind: 'char', mode: 0o600, uid: 0, gid: 0, mtime: 3, size: 0, devmajor: 1, devminor: 3 },
  {
    path: Buffer.from('caps'),
    kind: 'file',
    mode: 0o755,
    uid: 0,
    gid: 0,
    mtime: 4,
    size: 0,
    xattrs: [
      ['security.capability', Buffer.from([0x01, 0x00, 0x00, 0x02, 0xff, 0x00])],
      ['user.note', Buffer.from('é=\n')],
    ],
  },
]

t.test('the reader gives back, byte for byte, what the writer wrote', async (t) => {
  const tar = await collect(layerStream(sample))
  const got = []
  for await (const e of readTar(once(tar))) got.push(e)
  t.equal(got.length, sample.length)
  for (const [i, e] of sample.entries()) {
    const r = got[i]
    const name = e.kind === 'dir' ? Buffer.concat([e.path, Buffer.from('/')]) : e.path
    t.ok(cleanMemberName(r.name).equals(cleanMemberName(name)), `name ${i}`)
    t.same([r.mode, r.uid, r.gid, r.mtime], [e.mode, e.uid, e.gid, e.mtime], `metadata ${i}`)
    if (e.linkname) t.ok(r.linkname.equals(e.linkname), `link target ${i}`)
    if (e.devmajor !== undefined) t.same([r.devmajor, r.devminor], [e.devmajor, e.devminor])
    t.same(r.xattrs, e.xattrs ?? [], `xattrs ${i}`)
  }
})

t.test('hostile or broken archives fail with a message, never silently', async (t) => {
  const tar = await collect(layerStream([{ path: Buffer.from('f'), kind: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 0 }]))
  const read = async (b: Buffer): Promise<void> => {
    for await (const e of readTar(once(b))) await e.skip()
  }
  const badSum = Buffer.from(tar)
  badSum[0] = 0x67
  await t.rejects(read(badSum), /checksum does not match/)
  await t.rejects(read(tar.subarray(0, 700)), /ends in the middle/)

  const huge = Buffer.from(tar)
  huge.write('77777777777\0', 124, 'latin1') // 8 GiB - 1 bytes declared, none there
  for (let i = 148; i < 156; i++) huge[i] = 0x20
  let sum = 0
  for (let i = 0; i < 512; i++) sum += huge[i]
  huge.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1')
  await t.rejects(read(huge.subarray(0, 512 + 1024)), /ends in the middle of a file/)

  const absurd = Buffer.from(tar)
  absurd[124] = 0x80 // GNU base-256 size: 2^60 bytes
  absurd.fill(0, 125, 136)
  absurd[128] = 0x10
  for (let i = 148; i < 156; i++) absurd[i] = 0x20
  let s2 = 0
  for (let i = 0; i < 512; i++) s2 += absurd[i]
  absurd.write(s2.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1')
  await t.rejects(read(absurd), /an entry of \d+ bytes/, 'an absurd size is refused before anything is read')

  t.throws(() => cleanMemberName(Buffer.from('../../etc/passwd')), /climbs out/)
  t.throws(() => cleanMemberName(Buffer.from('a/../../b')), /climbs out/)
  t.equal(cleanMemberName(Buffer.from('./a//b/')).toString(), 'a/b')
})

// ---- one parser, two APIs: the push parser (pass 1) and the pull API built on it --------------

/** A raw ustar header block with a correct checksum, for records our writer never makes. */
function rawHeader(name: string, type: string, size: number): Buffer {
  const b = Buffer.alloc(512)
  b.write(name, 0, 'latin1')
  b.write('0000644\0', 100, 'latin1')
  b.write('0000000\0', 108, 'latin1')
  b.write('0000000\0', 116, 'latin1')
  b.write(size.toString(8).padStart(11, '0') + '\0', 124, 'latin1')
  b.write('00000000000\0', 136, 'latin1')
  b.write(type, 156, 'latin1')
  b.write('ustar\x0000', 257, 'latin1')
  b.fill(0x20, 148, 156)
  let sum = 0
  for (let i = 0; i < 512; i++) sum += b[i]
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1')
  return b
}

function record(name: string, type: string, data: Buffer): Buffer {
  const pad = Buffer.alloc((512 - (data.length % 512)) % 512)
  return Buffer.concat([rawHeader(name, type, data.length), data, pad])
}

const pax = (key: string, value: string): Buffer => {
  const body = ` ${key}=${value}\n`
  let len = body.length + 1
  while (String(len).length + body.length !== len) len = String(len).length + body.length
  return Buffer.from(String(len) + body, 'latin1')
}

/** Every kind of record the readers know: ustar, PAX (local and global), GNU long names, content. */
async function mixedArchive(): Promise<Buffer> {
  const contents = [0, 1, 511, 512, 513, 70000].map((n) => Buffer.alloc(n, n % 251))
  const files: LayerEntry[] = contents.map((c, i) => ({
    path: Buffer.from(`f${i}-` + 'n'.repeat(i * 40)),
    kind: 'file',
    mode: 0o640,
    uid: i,
    gid: 2 * i,
    mtime: 1000 + i,
    size: c.length,
  }))
  const written = await collect(layerStream([...sample, ...files], (e) => from([contents[files.indexOf(e)]])))
  const body = written.subarray(0, written.length - 1024) // without the end-of-archive blocks
  const long = 'L/'.repeat(120) + 'gnu'
  return Buffer.concat([
    record('pax_global_header', 'g', pax('uid', '4242')),
    body,
    record('././@LongLink', 'L', Buffer.from(long + '\0')),
    record('././@LongLink', 'K', Buffer.from('target/' + 'k'.repeat(150) + '\0')),
    rawHeader('short', '1', 0),
    record('gnu-file', '0', Buffer.from('hello')),
    Buffer.alloc(1024),
    Buffer.from('trailing padding the readers must not look at'),
  ])
}

interface Seen {
  header: TarHeader
  content: Buffer
}

async function pulled(chunks: AsyncIterable<Buffer>): Promise<Seen[]> {
  const out: Seen[] = []
  for await (const e of readTar(chunks)) {
    // eslint-disable-next-line @typescript-eslint/unbound-method -- the methods are left out, never called
    const { body: _b, skip: _s, ...header } = e
    out.push({ header, content: await collect(e.body()) })
  }
  return out
}

function pushed(chunks: Buffer[]): Seen[] {
  const out: Seen[] = []
  let parts: Buffer[] = []
  const parser = new TarParser({
    entry: (header) => out.push({ header, content: Buffer.alloc(0) }),
    data: (c) => parts.push(Buffer.from(c)),
    end: () => {
      out[out.length - 1].content = Buffer.concat(parts)
      parts = []
    },
  })
  for (const c of chunks) parser.write(c)
  parser.finish()
  return out
}

function split(b: Buffer, size: number): Buffer[] {
  const out: Buffer[] = []
  for (let i = 0; i < b.length; i += size) out.push(b.subarray(i, i + size))
  return out
}

async function* from(chunks: Buffer[]): AsyncGenerator<Buffer> {
  yield* chunks
}

/** What the push parser made of `chunks` before it refused them (if it did). */
function pushedUntil(chunks: Buffer[]): { seen: Seen[]; error?: Error } {
  const seen: Seen[] = []
  let parts: Buffer[] = []
  const parser = new TarParser({
    entry: (header) => seen.push({ header, content: Buffer.alloc(0) }),
    data: (c) => parts.push(Buffer.from(c)),
    end: () => {
      seen[seen.length - 1].content = Buffer.concat(parts)
      parts = []
    },
  })
  try {
    for (const c of chunks) parser.write(c)
    parser.finish()
  } catch (e) {
    return { seen, error: e as Error }
  }
  return { seen }
}

/** The same through the pull API: the headers it gave, then its error. */
async function pulledUntil(chunks: Buffer[]): Promise<{ names: string[]; error?: Error }> {
  const names: string[] = []
  try {
    for await (const e of readTar(from(chunks))) {
      names.push(e.name.toString('latin1'))
      await collect(e.body())
    }
  } catch (e) {
    return { names, error: e as Error }
  }
  return { names }
}

/** The pull API's headers when a consumer reads only the first `pieces` of each body, or none. */
async function pulledPartly(chunks: AsyncIterable<Buffer>, pieces: number): Promise<TarHeader[]> {
  const out: TarHeader[] = []
  for await (const e of readTar(chunks)) {
    // eslint-disable-next-line @typescript-eslint/unbound-method -- the methods are left out, never called
    const { body: _b, skip: _s, ...header } = e
    out.push(header)
    if (pieces === 0) continue
    let n = 0
    for await (const _ of e.body()) if (++n === pieces) break
  }
  return out
}

t.test('the pull API reads what the push parser reads, however the bytes are split', async (t) => {
  const tar = await mixedArchive()
  const want = pushed([tar])
  t.equal(want.length, sample.length + 6 + 2, 'every entry, the GNU ones included')
  t.equal(must(want.at(-2), 'the GNU long-name entry').header.name.toString(), 'L/'.repeat(120) + 'gnu', 'a GNU long name applies to the next entry')
  t.match(must(want.at(-2), 'the GNU long-name entry').header.linkname.toString(), /^target\/k+$/)
  t.equal(must(want.at(-1), 'the last entry').header.name.toString(), 'gnu-file', 'and to that entry only')
  t.same(new Set(want.map((e) => e.header.uid)), new Set([4242]), 'a global PAX record applies to every entry after it')
  t.same(must(want.at(-3), 'the 70000-byte file').content, Buffer.alloc(70000, 70000 % 251), 'content across many blocks')
  for (const size of [1, 3, 511, 512, 513, 777, 4096, tar.length]) {
    t.same(pushed(split(tar, size)), want, `push: pieces of ${size} bytes`)
    t.same(await pulled(from(split(tar, size))), want, `pull: pieces of ${size} bytes`)
  }
  const random = rng(11)
  const pieces: Buffer[] = []
  for (let i = 0; i < tar.length; ) {
    const n = 1 + Math.floor(random() * 2000)
    pieces.push(tar.subarray(i, i + n))
    i += n
  }
  t.same(pushed(pieces), want, 'push: pieces of random sizes')
  t.same(await pulled(from(pieces)), want, 'pull: pieces of random sizes')

  // The stream broken in two: at every byte of the first and last records (headers, PAX and
  // GNU records, padding, the end), at every 509th in between. Pieces of 1 byte above already
  // split every header; this splits them one at a time, as real streams do.
  const fingerprint = (seen: Seen[]): string => {
    const hex = (_k: string, v: unknown): unknown => (v && (v as { type?: string }).type === 'Buffer' ? Buffer.from((v as { data: number[] }).data).toString('hex') : v)
    return JSON.stringify(seen.map((e) => ({ ...e, content: createHash('sha256').update(e.content).digest('hex') })), hex)
  }
  const wanted = fingerprint(want)
  const wrong: number[] = []
  for (let at = 1; at < tar.length; at += at < 3072 || at > tar.length - 3072 ? 1 : 509) {
    if (fingerprint(await pulled(from([tar.subarray(0, at), tar.subarray(at)]))) !== wanted) wrong.push(at)
  }
  t.same(wrong, [], 'pull: the stream split in two anywhere')

  const headers = want.map((e) => e.header)
  t.same(await pulledPartly(from(split(tar, 700)), 0), headers, 'bodies left unread are skipped')
  t.same(await pulledPartly(from(split(tar, 700)), 1), headers, 'so are the rests of bodies read in part')
})

t.test('the pull API pulls its source only as its consumer reads', async (t) => {
  const tar = await mixedArchive()
  const piece = 1000
  let offered = 0
  async function* source(): AsyncGenerator<Buffer> {
    for (const c of split(tar, piece)) {
      offered += c.length
      yield c
    }
  }
  let ahead = 0
  let held = false
  for await (const e of readTar(source())) {
    for await (const c of e.body()) {
      // Content comes as views into the source's chunks, so its place in the stream shows.
      t.equal(c.buffer, tar.buffer)
      ahead = Math.max(ahead, offered - (c.byteOffset - tar.byteOffset + c.length))
      if (!held && e.size === 70000) {
        held = true
        const before = offered
        for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
        t.equal(offered, before, 'a body not read holds the source')
      }
    }
  }
  t.ok(held)
  t.ok(ahead < piece, `never more than one chunk ahead of the consumer (${ahead} bytes)`)
  t.equal(offered, tar.length, 'what follows the end of the archive is read too')
})

t.test('damaged archives fail through the pull API as through the push parser, at the same place, with the same words', async (t) => {
  const tar = await mixedArchive()
  const damaged: Array<[string, Buffer]> = []
  const flip = Buffer.from(tar)
  flip[3] ^= 0x10
  damaged.push(['a flipped byte in a header', flip])
  const later = Buffer.from(tar)
  later[tar.lastIndexOf('gnu-file') + 1] ^= 0x01 // in the header of the last entry
  damaged.push(['a flipped byte in a later header', later])
  for (const cut of [100, 512 + 200, 3000, tar.length - 1200]) damaged.push([`cut at ${cut}`, tar.subarray(0, cut)])
  const badNumber = rawHeader('x', '0', 0)
  badNumber.write('12x4', 100, 'latin1')
  damaged.push(['a mode that is not octal', badNumber])
  for (const [what, b] of damaged) {
    for (const size of [100, 700, b.length]) {
      const push = pushedUntil(split(b, size))
      const pull = await pulledUntil(split(b, size))
      t.ok(push.error, `${what}, pieces of ${size}: the push parser refuses it`)
      t.equal(pull.error?.message, push.error?.message, `${what}, pieces of ${size}: so does the pull API, in the same words`)
      t.equal((pull.error as { code?: string } | undefined)?.code, 'bad-data')
      t.same(pull.names, push.seen.map((e) => e.header.name.toString('latin1')), `${what}, pieces of ${size}: after the same entries`)
    }
  }
})

t.test('a stream that ends early says where it ended', async (t) => {
  const file = record('f', '0', Buffer.from('hello'))
  const ext = Buffer.concat([record('PaxHeader/f', 'x', pax('path', 'long/name')), file])
  const cases: Array<[Buffer, string]> = [
    [file.subarray(0, 100), 'in the middle of a block'],
    [file.subarray(0, 514), 'in the middle of a file'],
    [file.subarray(0, 520), 'inside padding'],
    [ext.subarray(0, 515), 'inside an extended header'],
  ]
  for (const [b, where] of cases) {
    const message = `malformed archive from the daemon: the stream ends ${where}`
    t.equal(pushedUntil([b]).error?.message, message, `push: ${where}`)
    t.equal((await pulledUntil(split(b, 7))).error?.message, message, `pull: ${where}`)
  }
})

t.test('a file digest fed in pieces is the digest of the whole', async (t) => {
  const random = rng(5)
  for (const size of [0, 1, 64, 65536, 200000]) {
    const content = Buffer.from(Array.from({ length: size }, () => Math.floor(random() * 256)))
    const want = createHash('sha256').update(content).digest('base64')
    for (const piece of [1, 1000, size || 1]) {
      const d = new FileDigest(size)
      for (const c of split(content, piece)) d.update(c)
      t.equal(d.digest(), want, `${size} bytes in pieces of ${piece}`)
    }
  }
})

// ---- pass 1 over a whole save archive ---------------------------------------------------------

/** A save archive as Docker 20.10 writes it: layer dirs, the config, then manifest.json. */
async function saveArchive(layers: Buffer[], diffIds: string[]): Promise<Buffer> {
  const pack = tar.pack()
  layers.forEach((l, i) => pack.entry({ name: `${'abc'[i]}${i}/layer.tar` }, l))
  pack.entry({ name: 'cfg.json' }, Buffer.from(JSON.stringify({ rootfs: { type: 'layers', diff_ids: diffIds } })))
  pack.entry({ name: 'manifest.json' }, Buffer.from(JSON.stringify([{ Config: 'cfg.json', Layers: layers.map((_, i) => `${'abc'[i]}${i}/layer.tar`) }])))
  pack.finalize()
  // tar-stream's pack is a Readable of Buffers; its type says only `unknown` chunks.
  return collect(pack as AsyncIterable<Buffer>)
}

t.test('pass 1 learns which blob is which layer from the manifest and the config', async (t) => {
  const layer = (name: string, content: string): Promise<Buffer> =>
    collect(layerStream([{ path: Buffer.from(name), kind: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 1, size: content.length }], () => from([Buffer.from(content)])))
  const [base, top] = [await layer('etc/base', 'b'), await layer('app/top', 'top')]
  const sha = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex')
  const ids = [sha(base), sha(top)]

  for (const [what, blob] of [['plain', top], ['gzip', gzipSync(top)]] as const) {
    const index = await indexSave(from([await saveArchive([base, blob], ids)]), new Set([ids[1]]), new Set([ids[0]]))
    t.same([...index.entries.keys()], [ids[1]], `${what}: the layer above the base is kept`)
    t.same([...must(index.entries.get(ids[1]), 'the kept layer')].map((e) => [e.name.toString(), e.sha256]), [['app/top', createHash('sha256').update('top').digest('base64')]])
    t.ok(index.base.has('etc/base') && !index.base.has('app/top'), `${what}: the base's paths are known`)
    t.same(savedImage(index).layers.map((l) => [l.diffId, l.descriptor.digest]), [[ids[0], ids[0]], [ids[1], what === 'plain' ? ids[1] : sha(blob)]])
  }

  // No blob's tar is hashed: gzip's own check stands for it, and the config names the diff id.
  const other = 'sha256:' + '0'.repeat(64)
  const unhashed = await indexSave(from([await saveArchive([base, gzipSync(top)], [ids[0], other])]), new Set([other]))
  t.same(savedImage(unhashed).layers.map((l) => l.diffId), [ids[0], other], 'a gzip blob takes the diff id the config gives it')
  const broken = gzipSync(top)
  broken.writeUInt32LE(broken.readUInt32LE(broken.length - 8) ^ 1, broken.length - 8)
  await t.rejects(indexSave(from([await saveArchive([base, broken], ids)]), new Set([ids[1]])), /incorrect data check/, 'a gzip blob whose CRC-32 is wrong fails the pass')
  await t.rejects(indexSave(from([await saveArchive([base, top], [ids[0]])]), new Set()), /does not name one diff id per layer/)
})

t.test('pass 1 takes an OCI layout blob\'s digest from its name, and hashes a gzip blob that has none', async (t) => {
  const top = await collect(layerStream([{ path: Buffer.from('app/top'), kind: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 1, size: 3 }], () => from([Buffer.from('top')])))
  const blob = gzipSync(top)
  const sha = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex')
  // A name that is not the blob's hash shows that the name is what is taken.
  const named = 'blobs/sha256/' + 'ab'.repeat(32)
  const pack = tar.pack()
  pack.entry({ name: named }, blob)
  pack.entry({ name: 'cfg.json' }, Buffer.from(JSON.stringify({ rootfs: { type: 'layers', diff_ids: [sha(top)] } })))
  pack.entry({ name: 'manifest.json' }, Buffer.from(JSON.stringify([{ Config: 'cfg.json', Layers: [named] }])))
  pack.finalize()
  const index = await indexSave(from([await collect(pack as AsyncIterable<Buffer>)]), new Set([sha(top)]))
  t.same(savedImage(index).layers.map((l) => [l.diffId, l.descriptor.digest, l.size, l.tarSize]), [[sha(top), 'sha256:' + 'ab'.repeat(32), blob.length, top.length]])
  t.equal(digestInName('blobs/sha256/' + 'ab'.repeat(32)), 'sha256:' + 'ab'.repeat(32))
  for (const other of ['blobs/sha256/' + 'ab'.repeat(31), 'blobs/sha512/' + 'ab'.repeat(32), 'x/blobs/sha256/' + 'ab'.repeat(32), 'blobs/sha256/' + 'AB'.repeat(32), 'a1/layer.tar']) {
    t.equal(digestInName(other), null, `${other}: not a digest`)
  }
})

t.test('cleaning a member name: the shortcut for names already clean agrees with the long way', async (t) => {
  const pieces = ['a', 'b', '.', '..', '.a', 'a.', '...', '', '\xff']
  const random = rng(7)
  let checked = 0
  for (let i = 0; i < 20000; i++) {
    const parts = Array.from({ length: 1 + Math.floor(random() * 4) }, () => pieces[Math.floor(random() * pieces.length)])
    const name = Buffer.from(parts.join('/'), 'latin1')
    const kept = parts.filter((p) => p !== '' && p !== '.')
    const want = kept.includes('..') ? 'throws' : kept.join('/')
    let got: string
    try {
      got = cleanMemberName(name).toString('latin1')
    } catch {
      got = 'throws'
    }
    if (got !== want) {
      t.fail(`${JSON.stringify(parts.join('/'))}: got ${got}, want ${want}`)
      return
    }
    checked++
  }
  t.equal(checked, 20000, 'every random name cleans as the rule says')
})

// ---- merge, against a model of a daemon applying layers -------------------------------------

function asIndexed(layer: ReturnType<typeof randomLayer>): IndexedEntry[] {
  return layer.map((e, index) => ({
    name: Buffer.from(e.name),
    type: must({ dir: '5', file: '0', symlink: '2', link: '1' }[e.type], `a tar type for ${e.type}`),
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: e.type === 'file' ? 1 : 0,
    mtime: 0,
    linkname: Buffer.from(e.type === 'symlink' ? must(e.content, 'a symlink target') : (e.link ?? '')),
    devmajor: 0,
    devminor: 0,
    xattrs: [],
    index,
  }))
}

function packed(entries: IndexedEntry[]): PackedHeaders {
  const store = new PackedHeaders()
  for (const e of entries) store.add(e)
  return store.seal()
}

t.test('merging layers has the same effect on any base as applying them one by one', async (t) => {
  let cases = 0
  for (let seed = 1; seed <= 400; seed++) {
    const r = rng(seed)
    const base: Fs = new Map()
    apply(base, randomLayer(base, r, 'base'))
    apply(base, randomLayer(base, r, 'base2'))

    const layered = new Map(base)
    const layers: Array<{ layer: SavedLayer; entries: Iterable<IndexedEntry>; raw: ReturnType<typeof randomLayer> }> = []
    const count = 1 + Math.floor(r() * 4)
    for (let j = 0; j < count; j++) {
      const raw = randomLayer(layered, r, `L${j}.`)
      apply(layered, raw)
      const layer: SavedLayer = { member: `m${j}`, diffId: `d${j}`, digest: `d${j}`, size: 0, gzip: false, position: count - j }
      // Half the cases read the headers back from a packed store, as pass 1 keeps them.
      layers.push({ layer, entries: seed % 4 < 2 ? asIndexed(raw) : packed(asIndexed(raw)), raw })
    }
    const known = new BaseContent()
    for (const p of base.keys()) known.add(p)
    const merged = [...mergeLayers(layers, seed % 2 ? known : undefined)]
    const flat = new Map(base)
    const contentOf = (e: LayerEntry): string | undefined => {
      const from = e.from
      if (!from) return undefined
      const l = must(layers.find((x) => x.layer.member === from.member), `layer ${from.member}`)
      return l.raw[from.index].content
    }
    apply(flat, merged.map((e) => asModel(e, contentOf(e))))
    if (show(flat).join('\n') !== show(layered).join('\n')) {
      t.same(show(flat), show(layered), `seed ${seed}`)
      break
    }
    cases++
  }
  t.equal(cases, 400, 'every random case agrees')
})

t.test('with the base known, nothing hides what the base never had', async (t) => {
  const layer = (member: string, position: number): SavedLayer => ({ member, diffId: member, digest: member, size: 0, gzip: false, position })
  const e = (name: string, type: string, index: number): IndexedEntry => ({
    name: Buffer.from(name), type, mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0, linkname: Buffer.alloc(0), devmajor: 0, devminor: 0, xattrs: [], index,
  })
  const layers = [
    { layer: layer('l1', 0), entries: [e('tmp', '5', 0), e('tmp/scratch', '0', 1), e('etc', '5', 2), e('etc/conf', '0', 3)] },
    { layer: layer('l2', 1), entries: [e('tmp', '5', 0), e('tmp/.wh.scratch', '0', 1), e('etc', '5', 2), e('etc/.wh.conf', '0', 3), e('new', '5', 4), e('new/.wh..wh..opq', '0', 5)] },
  ]
  const base = new BaseContent()
  base.add('etc')
  base.add('etc/conf')
  base.add('tmp')
  const names = (entries: Iterable<LayerEntry>): string[] => [...entries].map((x) => `${x.kind} ${x.path.toString()}`)
  t.same(names(mergeLayers(layers, base)), ['dir etc', 'whiteout etc/conf', 'dir new', 'dir tmp'])
  t.same(names(mergeLayers(layers)), ['dir etc', 'whiteout etc/conf', 'dir new', 'opaque new', 'dir tmp', 'whiteout tmp/scratch'], 'unknown base: keep them all')
})

t.test('what a higher layer deletes is left out, but a surviving hardlink keeps its content', async (t) => {
  const layer = (member: string, position: number): SavedLayer => ({ member, diffId: member, digest: member, size: 0, gzip: false, position })
  const e = (name: string, type: string, index: number, size = 0, link = ''): IndexedEntry => ({
    name: Buffer.from(name), type, mode: 0o644, uid: 0, gid: 0, size, mtime: 0, linkname: Buffer.from(link), devmajor: 0, devminor: 0, xattrs: [], index,
  })
  const layers = [
    { layer: layer('l1', 0), entries: [e('cache', '5', 0), e('cache/a', '0', 1, 3), e('cache/b', '0', 2, 4), e('keep', '5', 3)] },
    { layer: layer('l2', 1), entries: [e('keep', '5', 0), e('keep/link', '1', 1, 0, 'cache/a')] },
    { layer: layer('l3', 2), entries: [e('.wh.cache', '0', 0)] },
    { layer: layer('l4', 3), entries: [e('cache', '5', 0), e('cache/new', '0', 1, 5)] },
  ]
  const show = (entries: Iterable<LayerEntry>): string[] =>
    [...entries].map((x) => `${x.kind} ${x.path.toString()}${x.from ? ` ${x.from.member}#${x.from.index}` : ''}`)
  const none = new BaseContent()
  t.same(show(mergeLayers(layers, none)), ['dir cache', 'dir keep', 'file keep/link l1#1', 'file cache/new l4#1'], 'the base never had cache: no trace of it')
  const had = new BaseContent()
  had.add('cache')
  had.add('cache/old')
  t.same(
    show(mergeLayers(layers, had)),
    ['dir cache', 'opaque cache', 'dir keep', 'file keep/link l1#1', 'file cache/new l4#1'],
    "the base's cache is hidden under the new one",
  )
  const packedLayers = layers.map((l) => ({ ...l, entries: packed(l.entries) }))
  t.same(show(mergeLayers(packedLayers, none)), show(mergeLayers(layers, none)), 'the same from packed headers')
})
