// The client against a real registry over plain HTTP on 127.0.0.1: push and read back, HEAD
// skips, cross-repository mounts, a large streamed upload with flat memory, Content-Range
// chunks, cancelled uploads, indexes, and the failures that must each be one line.
import t from 'tap'
import { Readable } from 'node:stream'
import { randomBytes } from 'node:crypto'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { connect, parseRegistryRef, parseManifest, findPlatform, MEDIA_TYPES, sha256, type RegistryClient, type ConnectOptions } from '../../../src/registry/index.js'
import { failsWith, startCuttingProxy, freePort, uploadsLeft, useRegistry } from '../../helpers/registry.js'
import { makeImage, pushImage, sha } from '../../helpers/registry-image.js'

const fast: ConnectOptions = { retries: { attempts: 3, baseMillis: 50, maxMillis: 2000 } }
const reg = await useRegistry(t)
const open = (path: string, opts: ConnectOptions = {}): Promise<RegistryClient> => connect(parseRegistryRef(`docker://${reg.host}/${path}`), { ...fast, ...opts })

/** Read a stream to its end. */
async function collect(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const c of s) parts.push(c as Buffer)
  return Buffer.concat(parts)
}

/** `n` bytes of pseudo-random data in 64 KB pieces, made as they are read. */
function generated(n: number, onChunk?: (sent: number) => void): Readable {
  let sent = 0
  const piece = randomBytes(65536)
  return new Readable({
    read() {
      if (sent >= n) return void this.push(null)
      const len = Math.min(piece.length, n - sent)
      piece.writeUInt32BE(sent, 0) // every piece differs
      sent += len
      onChunk?.(sent)
      this.push(Buffer.from(piece.subarray(0, len)))
    },
  })
}

t.test('push an image and read it back', async (t) => {
  const c = await open('app:1')
  const image = await makeImage([{ 'a.txt': 'hello' }, { 'b.txt': 'world' }])
  const digest = await pushImage(c, image, '1')
  t.equal(digest, image.digest)
  const m = await c.getManifest()
  t.same(m, { bytes: image.manifest, mediaType: MEDIA_TYPES.ociManifest, digest: image.digest })
  t.same(await c.getManifest(image.digest), m, 'by digest, checked')
  t.same(await c.headManifest('1'), { digest: image.digest, mediaType: MEDIA_TYPES.ociManifest, size: image.manifest.length })
  const parsed = parseManifest(m.bytes, m.mediaType, c.label)
  t.equal(parsed.kind, 'image')
  for (const [i, l] of image.layers.entries()) {
    const blob = await c.getBlob(sha(l), { size: l.length })
    t.same(await collect(blob.stream), l, `layer ${i}`)
  }
  t.same(await c.tags(), ['1'])

  const d = await open('docker-app:1')
  const dockerImage = await makeImage([{ 'c.txt': 'docker family' }], 'docker')
  await pushImage(d, dockerImage, '1')
  t.equal((await d.getManifest()).mediaType, MEDIA_TYPES.dockerManifest, 'a Docker v2 manifest stays one')
})

t.test('HEAD skips, mounts across repositories, streams across registries', async (t) => {
  const src = await open('base:1')
  const image = await makeImage([{ 'base.txt': 'base layer' }])
  await pushImage(src, image, '1')
  const layer = sha(image.layers[0])
  t.equal(await src.copyBlob(src, layer), 'exists')

  const before = reg.requests().length
  const dst = await open('other:1', { session: src.session })
  t.equal(await dst.copyBlob(src, layer), 'mounted')
  const seen = reg.requests().slice(before)
  t.ok(seen.some((r) => r.startsWith(`POST /v2/other/blobs/uploads/?mount=${encodeURIComponent(layer)}&from=base 201`) || r.startsWith(`POST /v2/other/blobs/uploads/?mount=${layer}&from=base 201`)), 'POST ?mount=&from= in the access log')
  t.notOk(seen.some((r) => r.startsWith('PATCH')), 'no PATCH: nothing was sent')
  t.ok(await dst.headBlob(layer))
  t.equal(await dst.copyBlob(src, layer), 'exists', 'second time: HEAD says it is there')

  t.equal(await dst.mountBlob(sha256(Buffer.from('nowhere')), 'base'), false, 'a blob the source lacks is not mounted')
  t.ok(reg.requests().some((r) => /^DELETE \/v2\/other\/blobs\/uploads\/\S+ 204/.test(r)), 'and the upload it opened is cancelled')

  // Another registry: the blob is streamed across.
  const other = await useRegistry(t)
  const far = await connect(parseRegistryRef(`docker://${other.host}/copy:1`), fast)
  t.equal(await far.copyBlob(src, layer, { size: image.layers[0].length }), 'copied')
  t.same(await collect((await far.getBlob(layer)).stream), image.layers[0])
  t.ok(other.requests().some((r) => r.startsWith('PATCH /v2/copy/blobs/uploads/')))
})

t.test('a 50 MB stream uploads in one PATCH with flat memory', async (t) => {
  // Through a counting proxy: how far the source runs ahead of what reached the registry is
  // what the upload buffers (ours and the kernel's), and must stay far below the stream.
  const proxy = await startCuttingProxy(reg.port)
  t.teardown(() => proxy.stop())
  const c = await connect(parseRegistryRef(`docker://${proxy.host}/big:1`), fast)
  await c.headBlob(sha256(Buffer.from('warm up')))
  const size = 50 * 1024 * 1024
  let lead = 0
  const base = proxy.toRegistry
  const source = generated(size, (made) => (lead = Math.max(lead, made - (proxy.toRegistry - base))))
  // Live memory too, not garbage: collect before each sample (array buffers are swept lazily,
  // so this one is only a loose bound).
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const live = (): number => {
    gc()
    const m = process.memoryUsage()
    return m.heapUsed + m.arrayBuffers
  }
  const start = live()
  let peak = start
  const timer = setInterval(() => (peak = Math.max(peak, live())), 50)
  const before = reg.requests().length
  const r = await c.upload(source)
  clearInterval(timer)
  t.equal(r.size, size)
  t.ok(lead < 16 * 1024 * 1024, `the source ran at most ${(lead / 1048576).toFixed(1)} MB ahead of the registry`)
  t.ok(peak - start < 40 * 1024 * 1024, `live memory grew by at most ${((peak - start) / 1048576).toFixed(1)} MB`)
  const verify = await c.getBlob(r.digest)
  let n = 0
  for await (const chunk of verify.stream) n += (chunk as Buffer).length
  t.equal(n, size, 'read back, digest checked')
  const seen = reg.requests().slice(before)
  t.equal(seen.filter((x) => x.startsWith('PATCH')).length, 1, 'one streamed PATCH')
  t.ok(seen.some((x) => x.startsWith('PUT /v2/big/blobs/uploads/') && (x.includes(`digest=${encodeURIComponent(r.digest)}`) || x.includes(`digest=${r.digest}`))))
  await c.session.close()
})

t.test('Content-Range chunks when asked', async (t) => {
  const c = await open('chunks:1', { chunkSize: 1024 * 1024 })
  const data = randomBytes(3 * 1024 * 1024 + 123)
  const before = reg.requests().length
  const r = await c.upload(Readable.from([data.subarray(0, 1000), data.subarray(1000)]))
  t.equal(r.digest, sha256(data))
  t.equal(reg.requests().slice(before).filter((x) => x.startsWith('PATCH')).length, 4)
  t.same(await collect((await c.getBlob(r.digest)).stream), data)
})

t.test('an aborted upload sends DELETE and leaves nothing', async (t) => {
  const c = await open('aborted:1')
  const ac = new AbortController()
  const before = reg.requests().length
  const source = generated(1024 * 1024 * 1024, (sent) => sent >= 5 * 1024 * 1024 && ac.abort())
  await failsWith(t, c.upload(source, { signal: ac.signal }), 'interrupted', /upload cancelled/)
  t.ok(source.destroyed, 'the source is destroyed')
  const seen = reg.requests().slice(before)
  t.ok(seen.some((x) => /^DELETE \/v2\/aborted\/blobs\/uploads\/\S+ 204/.test(x)), 'DELETE sent')
  t.same(await uploadsLeft(reg, 'aborted'), [], 'no upload session left in the registry')
  t.same(await c.tags(), [], 'no tag')

  await failsWith(t, c.upload(Readable.from([Buffer.from('x')]), { digest: sha256(Buffer.from('y')) }), 'bad-data', /hashes to/)
  t.same(await c.tags(), [])
})

t.test('indexes: push one, read it, pick a platform', async (t) => {
  const c = await open('multi:1')
  const amd = await makeImage([{ 'f': 'amd64' }], 'oci', 'amd64')
  const arm = await makeImage([{ 'f': 'arm64' }], 'oci', 'arm64')
  for (const img of [amd, arm]) await pushImage(c, img, img.digest)
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociIndex,
      manifests: [
        { mediaType: amd.mediaType, digest: amd.digest, size: amd.manifest.length, platform: { architecture: 'amd64', os: 'linux' } },
        { mediaType: arm.mediaType, digest: arm.digest, size: arm.manifest.length, platform: { architecture: 'arm64', os: 'linux', variant: 'v8' } },
      ],
    }),
  )
  await c.putManifest('1', index, MEDIA_TYPES.ociIndex)
  const got = await c.getManifest()
  t.equal(got.mediaType, MEDIA_TYPES.ociIndex)
  const parsed = parseManifest(got.bytes, got.mediaType, c.label)
  if (parsed.kind !== 'index') throw new Error('not an index')
  t.equal(findPlatform(parsed.index, 'linux/arm64')?.digest, arm.digest)
  t.equal(findPlatform(parsed.index, 'linux/arm64/v8')?.digest, arm.digest)
  t.equal(findPlatform(parsed.index, 'linux/s390x'), undefined)
  t.same((await c.getManifest(arm.digest)).bytes, arm.manifest)
})

t.test('failures are one line', async (t) => {
  const c = await open('app:nosuchtag')
  await failsWith(t, c.getManifest(), 'image-not-found', new RegExp(`^${reg.host}/app:nosuchtag: not found on registry ${reg.host} \\(404 MANIFEST_UNKNOWN`))
  t.equal(await c.headManifest(), undefined)
  await failsWith(t, (await open('app:1')).getBlob(sha256(Buffer.from('absent'))), 'registry', /blob sha256:.*not found on registry .* \(404 BLOB_UNKNOWN/)

  const closed = await freePort()
  const t0 = Date.now()
  const gone = await connect(parseRegistryRef(`docker://127.0.0.1:${closed}/app:1`), fast)
  await failsWith(t, gone.getManifest(), 'registry', new RegExp(`^127.0.0.1:${closed}/app:1: cannot connect to registry 127.0.0.1:${closed} \\(connection refused\\)$`))
  t.ok(Date.now() - t0 < 5000, 'bounded retries')
})

t.test('a connection cut mid-blob is one line, and no tag is pushed', async (t) => {
  const src = await open('cut:1')
  const image = await makeImage([{ 'big.bin': randomBytes(2 * 1024 * 1024) }])
  await pushImage(src, image, '1')
  const proxy = await startCuttingProxy(reg.port, 0)
  t.teardown(() => proxy.stop())
  const viaProxy = await connect(parseRegistryRef(`docker://${proxy.host}/cut:1`), fast)
  await viaProxy.getManifest() // settle the scheme and a connection before cutting
  proxy.cutAfter = 512 * 1024
  const blob = await viaProxy.getBlob(sha(image.layers[0]))
  await failsWith(t, collect(blob.stream), 'registry', /blob sha256:.*: the connection to registry .* broke after \d+ of \d+ bytes/)

  const other = await useRegistry(t)
  const dst = await connect(parseRegistryRef(`docker://${other.host}/cut:1`), fast)
  const fresh = await connect(parseRegistryRef(`docker://${proxy.host}/cut:1`), fast)
  proxy.cutAfter = 0
  await fresh.getManifest()
  proxy.cutAfter = 512 * 1024
  await failsWith(t, dst.copyBlob(fresh, sha(image.layers[0])), 'registry', /broke after/)
  t.same(await dst.tags(), [], 'no tag on the target')
  t.notOk(await dst.headBlob(sha(image.layers[0])), 'no blob either')
  t.ok(other.requests().some((x) => /^DELETE \/v2\/cut\/blobs\/uploads\/\S+ 204/.test(x)), 'DELETE sent')
  t.same(await uploadsLeft(other, 'cut'), [], 'no upload session left in the registry')
})
