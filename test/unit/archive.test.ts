// The formats dflatten writes, without a daemon: layer tar headers and sizes, and the image
// archive docker load reads (its names, manifests, and ids that depend on nothing but the input).
import t from 'tap'
import { Readable } from 'node:stream'
import tar from 'tar-stream'
import { EMPTY_LAYER_BYTES, encodeHeader, entryTarBytes, layerSize, layerStream, sha256, tarName } from '../../src/layer-tar.js'
import { fullyQualified, imageArchive, stableJson } from '../../src/image-archive.js'
import type { LayerEntry } from '../../src/entry.js'

async function collect(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

async function* from<T>(items: T[]): AsyncGenerator<T> {
  yield* items
}

const meta = { mode: 0o644, uid: 0, gid: 0, mtime: 1, size: 0 }

/** The members of a tar, in order, with their content. */
async function members(archive: Buffer): Promise<Array<{ name: string; type: string; linkname: string | null; body: string }>> {
  const out: Array<{ name: string; type: string; linkname: string | null; body: string }> = []
  const ex = tar.extract()
  const done = (async () => {
    for await (const entry of ex) {
      const body = await collect(entry)
      out.push({ name: entry.header.name, type: entry.header.type, linkname: entry.header.linkname, body: body.toString() })
    }
  })()
  ex.end(archive)
  await done
  return out
}

async function archiveOf(content: string, tags: string[], config: object = { os: 'linux' }): Promise<{ bytes: Buffer; imageId: string; diffId: string }> {
  const entries: LayerEntry[] = [{ ...meta, kind: 'file', path: Buffer.from('f'), size: content.length }]
  let result = { imageId: '', diffId: '' }
  const stream = layerStream(entries, () => from([Buffer.from(content)]))
  const archive = imageArchive({
    baseLayers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: 'sha256:' + '1'.repeat(64), size: 99, diffId: 'sha256:' + '2'.repeat(64) }],
    layer: { size: await layerSize(entries), stream },
    config: (diffId) => ({ ...config, rootfs: { type: 'layers', diff_ids: ['sha256:' + '2'.repeat(64), diffId] } }),
    tags,
    onDone: (r) => (result = r),
  })
  const bytes = await collect(archive)
  return { bytes, ...result }
}

t.test('a layer that fails mid-stream fails the archive, with its own error', async (t) => {
  const entries: LayerEntry[] = Array.from({ length: 3 }, (_, i) => ({
    path: Buffer.from(`f${i}`), kind: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 2 * 1024 * 1024,
  }))
  let served = 0
  const stream = layerStream(entries, async function* () {
    if (served++ === 1) throw new Error('the daemon went away')
    yield Buffer.alloc(2 * 1024 * 1024)
  })
  const archive = imageArchive({ baseLayers: [], layer: { size: await layerSize(entries), stream }, config: () => ({}), tags: ['x:1'] })
  await t.rejects(collect(archive), /the daemon went away/)
})

t.test('header encoding at the ustar limits', async (t) => {
  const base: Omit<LayerEntry, 'path'> = { kind: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 1, size: 0 }
  t.equal(encodeHeader({ ...base, path: Buffer.from('a'.repeat(100)) }).length, 512, '100 bytes fit ustar')
  t.equal(encodeHeader({ ...base, path: Buffer.from('d/' + 'a'.repeat(100)) }).length, 512, 'split into prefix and name')
  t.ok(encodeHeader({ ...base, path: Buffer.from('a'.repeat(101)) }).length > 512, 'an unsplittable name needs PAX')
  t.ok(encodeHeader({ ...base, path: Buffer.from('é') }).length > 512, 'non-ASCII names go in PAX')
  t.ok(encodeHeader({ ...base, path: Buffer.from('x'), uid: 0o7777777 + 1 }).length > 512, 'large uids go in PAX')
  t.equal(encodeHeader({ ...base, path: Buffer.from('x'), uid: 0o7777777 }).length, 512)
})

t.test('more fields that do not fit ustar go in PAX: link targets, sizes, times, xattrs', async (t) => {
  const plain = encodeHeader({ ...meta, kind: 'symlink', path: Buffer.from('l'), linkname: Buffer.from('t'.repeat(100)) })
  t.equal(plain.length, 512, 'a 100-byte link target fits')
  const pax = (e: LayerEntry): string => encodeHeader(e).subarray(512).toString('latin1')
  t.match(pax({ ...meta, kind: 'symlink', path: Buffer.from('l'), linkname: Buffer.from('t'.repeat(101)) }), / linkpath=t{101}\n/)
  t.match(pax({ ...meta, kind: 'file', path: Buffer.from('f'), size: 0o77777777777 + 1 }), / size=8589934592\n/, 'a file of 8 GiB')
  t.match(pax({ ...meta, kind: 'file', path: Buffer.from('f'), mtime: -1 }), / mtime=-1\n/, 'a time before 1970')
  t.ok(pax({ ...meta, kind: 'file', path: Buffer.from('f'), xattrs: [['user.k', Buffer.from([0, 0xff])]] }).includes(' SCHILY.xattr.user.k=\x00\xff\n'), 'an xattr, its value raw')
  t.equal(encodeHeader({ ...meta, kind: 'file', path: Buffer.from('f'), gid: 0o7777777 + 1 }).length, 1536, 'PAX header, its record, the ustar block')
})

t.test('PAX record lengths count the whole record, across a change in digits', async (t) => {
  // For some name lengths the record's length grows a digit by counting itself.
  for (let n = 85; n <= 1000; n += 1) {
    const path = Buffer.from('é' + 'p'.repeat(n))
    const h = encodeHeader({ ...meta, kind: 'file', path })
    const body = h.subarray(512).toString('latin1')
    const len = Number(body.slice(0, body.indexOf(' ')))
    const record = Buffer.from(body, 'latin1').subarray(0, len)
    if (!record.toString('latin1').endsWith('\n') || !Buffer.from(record.toString('latin1').slice(String(len).length + 6, -1), 'latin1').equals(path)) {
      t.fail(`name of ${path.length} bytes: record of length ${len} does not hold it`)
      return
    }
  }
  t.pass('every length from 87 to 1002 bytes')
})

t.test('tar names: directories end in a slash, deletions become OCI whiteouts', async (t) => {
  const name = (kind: LayerEntry['kind'], path: string): string => tarName({ ...meta, kind, path: Buffer.from(path) }).toString()
  t.equal(name('dir', 'usr/lib'), 'usr/lib/')
  t.equal(name('file', 'usr/lib/x'), 'usr/lib/x')
  t.equal(name('whiteout', 'usr/lib/x'), 'usr/lib/.wh.x')
  t.equal(name('opaque', 'usr/lib'), 'usr/lib/.wh..wh..opq')
  t.equal(name('hardlink', 'a'), 'a')
  t.equal(name('symlink', 'b'), 'b')
})

t.test('the layer size is known from metadata alone, and is what streams', async (t) => {
  const entries: LayerEntry[] = [
    { ...meta, kind: 'dir', path: Buffer.from('d') },
    { ...meta, kind: 'file', path: Buffer.from('d/0'), size: 0 },
    { ...meta, kind: 'file', path: Buffer.from('d/1'), size: 1 },
    { ...meta, kind: 'file', path: Buffer.from('d/512'), size: 512 },
    { ...meta, kind: 'file', path: Buffer.from('d/513'), size: 513 },
    { ...meta, kind: 'whiteout', path: Buffer.from('d/gone') },
    { ...meta, kind: 'symlink', path: Buffer.from('d/' + 'é'.repeat(80)), linkname: Buffer.from('x'.repeat(300)) },
  ]
  t.same(entries.map(entryTarBytes), [512, 512, 1024, 1024, 1536, 512, 1536])
  t.equal(await layerSize(entries), 512 * 13 + EMPTY_LAYER_BYTES)
  t.equal(await layerSize(from(entries)), await layerSize(entries), 'from an async source too')
  const bytes = await collect(layerStream(entries, (e) => from([Buffer.alloc(e.size, 0x61)])))
  t.equal(bytes.length, await layerSize(entries))
  t.equal(EMPTY_LAYER_BYTES, 1024)
  t.equal((await collect(layerStream([]))).length, EMPTY_LAYER_BYTES, 'an empty layer is the end-of-archive blocks')
})

t.test('the archive: layer first, its blob a link to it, then config, manifest, index, manifest.json', async (t) => {
  const { bytes, imageId, diffId } = await archiveOf('hello', ['app:1'])
  const m = await members(bytes)
  const blob = (d: string): string => `blobs/sha256/${d.slice(7)}`
  t.same(m.map((x) => x.name), ['oci-layout', 'dflatten/layer.tar', blob(diffId), blob(imageId), m[4].name, 'index.json', 'manifest.json'])
  t.same([m[2].type, m[2].linkname], ['link', 'dflatten/layer.tar'])
  t.equal(sha256(m[3].body), imageId, 'the image id is the sha256 of the config bytes')
  const manifest = JSON.parse(m[4].body) as { config: { digest: string }; layers: Array<{ digest: string; size: number; mediaType: string }> }
  t.equal(manifest.config.digest, imageId)
  t.same(manifest.layers.map((l) => l.digest), ['sha256:' + '1'.repeat(64), diffId], "the base's layers as the daemon stores them, then the new one")
  t.equal(sha256(m[4].body), 'sha256:' + m[4].name.slice('blobs/sha256/'.length))
  const index = JSON.parse(m[5].body) as { manifests: Array<{ annotations?: Record<string, string> }> }
  t.same(index.manifests[0].annotations, { 'io.containerd.image.name': 'docker.io/library/app:1', 'org.opencontainers.image.ref.name': '1' })
  // The legacy loader finds each layer by the blob that holds it, as the OCI manifest names it.
  t.same(JSON.parse(m[6].body), [{ Config: blob(imageId), RepoTags: ['app:1'], Layers: [blob('sha256:' + '1'.repeat(64)), blob(diffId)] }])
  t.equal(sha256(Buffer.from(m[1].body)), diffId, "the diff id is the layer tar's sha256")
})

t.test('same input, same image id; other content or config, another', async (t) => {
  const a = await archiveOf('hello', ['app:1'])
  const b = await archiveOf('hello', ['app:1'])
  t.equal(a.imageId, b.imageId)
  t.ok(a.bytes.equals(b.bytes), 'byte for byte')
  t.equal((await archiveOf('hello', ['other:2'])).imageId, a.imageId, 'the tag is not part of the image')
  t.not((await archiveOf('hellO', ['app:1'])).imageId, a.imageId)
  t.not((await archiveOf('hello', ['app:1'], { os: 'linux', Env: ['A=1'] })).imageId, a.imageId)
  t.equal((await archiveOf('hello', [], { b: 1, a: 2 })).imageId, (await archiveOf('hello', [], { a: 2, b: 1 })).imageId, 'key order does not matter')
})

t.test('an archive without tags loads untagged', async (t) => {
  const m = await members((await archiveOf('x', [])).bytes)
  const index = JSON.parse(m[5].body) as { manifests: Array<Record<string, unknown>> }
  t.equal(index.manifests.length, 1)
  t.notOk('annotations' in index.manifests[0])
  t.same((JSON.parse(m[6].body) as Array<{ RepoTags: string[] }>)[0].RepoTags, [])
})

t.test('a layer that is not the size it was said to be fails the archive', async (t) => {
  const entries: LayerEntry[] = [{ ...meta, kind: 'file', path: Buffer.from('f'), size: 3 }]
  const size = await layerSize(entries)
  const archive = imageArchive({ baseLayers: [], layer: { size: size + 512, stream: Readable.from([Buffer.alloc(size)]) }, config: () => ({}), tags: [] })
  await t.rejects(collect(archive))
})

t.test('stable JSON: keys sorted at every level, arrays in their order', async (t) => {
  t.equal(stableJson({ b: 1, a: { d: [{ z: 1, y: 2 }], c: null } }), '{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}')
  t.equal(stableJson([3, 1, 2]), '[3,1,2]')
  t.equal(stableJson({ u: undefined, s: 'é' }), '{"s":"é"}')
  t.equal(stableJson('x'), '"x"')
  t.equal(stableJson({ B: 1, a: 1, _: 1 }), '{"B":1,"_":1,"a":1}', 'code unit order, as JSON.stringify of sorted keys')
})

t.test('names are fully qualified as Docker normalises them', async (t) => {
  t.equal(fullyQualified('app:1'), 'docker.io/library/app:1')
  t.equal(fullyQualified('me/app:1'), 'docker.io/me/app:1')
  t.equal(fullyQualified('host:5000/app:1'), 'host:5000/app:1')
  t.equal(fullyQualified('registry.example.com/a/b:1'), 'registry.example.com/a/b:1')
  t.equal(fullyQualified('localhost/app:1'), 'localhost/app:1')
  t.equal(fullyQualified('a/b/c:1'), 'docker.io/a/b/c:1')
})

t.test('sha256 digests are prefixed and hex', async (t) => {
  t.equal(sha256(''), 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
  t.equal(sha256(Buffer.from('abc')), sha256('abc'))
})

t.test('layer stream: small files across chunk edges and large ones between, exact bytes, a reused source buffer copied', async (t) => {
  // Small files fill the 1 MiB output chunks (some straddle their edges); large ones pass as they come.
  const sizes = [...Array.from({ length: 40 }, (_, i) => 30_000 + i * 997), 700_000, 5, 2_000_000, ...Array.from({ length: 30 }, () => 100_000), 0, 1]
  const entries: LayerEntry[] = sizes.map((size, i) => ({ ...meta, kind: 'file', path: Buffer.from(`d/f${i}`), size }))
  const fill = (i: number, n: number): Buffer => Buffer.alloc(n, (i % 250) + 1)
  const scratch = Buffer.alloc(64 * 1024)
  const content = async function* (e: LayerEntry): AsyncGenerator<Buffer> {
    const i = Number(e.path.toString().slice(3))
    if (e.size > 256 * 1024) {
      yield fill(i, e.size)
      return
    }
    // A source that hands out one buffer again and again: what it gave must already be copied.
    for (let at = 0; at < e.size; at += scratch.length) {
      const n = Math.min(scratch.length, e.size - at)
      scratch.fill((i % 250) + 1, 0, n)
      yield scratch.subarray(0, n)
      scratch.fill(0)
    }
  }
  const bytes = await collect(layerStream(entries, content))
  t.equal(bytes.length, await layerSize(entries), 'as long as layerSize says')
  const got = await members(bytes)
  t.same(got.map((m) => m.name), entries.map((e) => e.path.toString()), 'every entry, in order')
  t.ok(got.every((m, i) => m.body === fill(i, sizes[i]).toString()), 'every file holds its own bytes')
})
