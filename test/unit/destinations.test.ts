// Destinations without a daemon: what -t names, which compression a destination gets, and the
// image archive with a compressed layer (manifest digests, sizes and media types, the config's
// diff ids, and the same bytes on every run).
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { gunzipSync } from 'node:zlib'
import { Readable } from 'node:stream'
import tar from 'tar-stream'
import { parseTarget } from '../../src/destinations/target.js'
import { archiveStream, compressionFor } from '../../src/destinations/archive.js'
import { baseMediaType, formatFor } from '../../src/destinations/layer.js'
import type { ResultImage } from '../../src/destinations/destination.js'
import { DflattenError } from '../../src/errors.js'

const sha = (b: Buffer | string): string => 'sha256:' + createHash('sha256').update(b).digest('hex')

t.test('parseTarget', async (t) => {
  t.same(parseTarget(undefined), { kind: 'daemon' })
  t.same(parseTarget('app:1'), { kind: 'daemon', name: 'app:1' })
  const r = parseTarget('docker://127.0.0.1:5000/team/app:2')
  t.equal(r.kind, 'registry')
  if (r.kind === 'registry') {
    t.equal(r.ref.registry, '127.0.0.1:5000')
    t.equal(r.ref.repository, 'team/app')
    t.equal(r.ref.tag, '2')
    t.equal(r.name, '127.0.0.1:5000/team/app:2')
  }
  const hub = parseTarget('docker://app')
  t.equal(hub.kind === 'registry' && hub.name, 'docker.io/library/app:latest', 'Docker Hub names normalised, latest by default')
  t.same(parseTarget('oci:/tmp/x:v1'), { kind: 'oci', dir: '/tmp/x', tag: 'v1' })
  t.same(parseTarget('oci:rel/dir'), { kind: 'oci', dir: 'rel/dir', tag: 'latest' })
  for (const bad of ['docker://h:5000/a@sha256:' + '0'.repeat(64), 'docker://H/UPPER', 'oci:', 'oci:/d:bad tag']) {
    t.throws(() => parseTarget(bad), DflattenError, bad)
  }
})

const traits = (keepsBlobs: boolean, accepts = ['gzip', 'zstd', 'none'] as const) => ({ label: 'X', keepsBlobs, needsSize: true, accepts })

t.test('compressionFor: defaults and refusals', async (t) => {
  t.same(compressionFor(traits(true), undefined), { kind: 'gzip' })
  t.same(compressionFor(traits(false), undefined), { kind: 'none' })
  t.same(compressionFor(traits(false), { kind: 'zstd', level: 5 }), { kind: 'zstd', level: 5 })
  t.throws(() => compressionFor({ ...traits(false), accepts: ['gzip', 'none'] }, { kind: 'zstd' }), /does not take zstd layers; zstd layers go to a registry/)
  const once = { open: () => Readable.from([]), size: 10, reopenable: false }
  t.throws(() => compressionFor(traits(true), undefined, once), /read twice, and this method reads it once/)
  t.same(compressionFor(traits(false), undefined, once), { kind: 'none' }, 'uncompressed, one read will do')
  t.throws(() => compressionFor(traits(false), undefined, { ...once, size: null }), /learns the layer's size only as it streams/)
})

t.test('media types follow the manifest family', async (t) => {
  t.equal(formatFor('docker', 'gzip'), 'docker')
  t.equal(formatFor('docker', 'zstd'), 'oci', 'Docker v2 has no zstd')
  t.equal(baseMediaType('application/vnd.docker.image.rootfs.diff.tar.gzip', 'oci'), 'application/vnd.oci.image.layer.v1.tar+gzip')
  t.equal(baseMediaType('application/vnd.oci.image.layer.v1.tar', 'docker'), 'application/vnd.docker.image.rootfs.diff.tar')
  t.equal(baseMediaType('application/vnd.oci.image.layer.nondistributable.v1.tar', 'docker'), 'application/vnd.oci.image.layer.nondistributable.v1.tar')
})

async function entries(stream: Readable): Promise<{ names: string[]; files: Map<string, Buffer>; links: Map<string, string> }> {
  const extract = tar.extract()
  const files = new Map<string, Buffer>()
  const links = new Map<string, string>()
  const names: string[] = []
  stream.on('error', (e) => extract.destroy(e))
  stream.pipe(extract)
  for await (const e of extract) {
    names.push(e.header.name)
    if (e.header.type === 'link') links.set(e.header.name, e.header.linkname)
    const parts: Buffer[] = []
    for await (const c of e) parts.push(c as Buffer)
    files.set(e.header.name, Buffer.concat(parts))
  }
  return { names, files, links }
}

/** An archive entry's bytes; a missing one fails the test. */
function entry(files: Map<string, Buffer>, name: string): Buffer {
  const b = files.get(name)
  if (!b) throw new Error(`the archive has no ${name}`)
  return b
}

const layerBytes = Buffer.concat([randomBytes(300_000), Buffer.alloc(900_000, 'layer text ')])
const baseLayer = { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha('base'), size: 4, diffId: sha('base') }

function image(): ResultImage {
  return {
    layer: { open: () => Readable.from([layerBytes.subarray(0, 70_000), layerBytes.subarray(70_000)]), size: layerBytes.length, reopenable: true },
    baseLayers: [baseLayer],
    base: { open: () => Promise.resolve(Readable.from([Buffer.from('base')])) },
    config: (diffId) => ({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [baseLayer.diffId, diffId] } }),
    tags: ['app:1'],
  }
}

async function archive(kind: 'gzip' | 'zstd' | 'none', layerOnly: boolean): Promise<Buffer> {
  const { stream } = await archiveStream(image(), { compression: { kind }, layerOnly })
  const parts: Buffer[] = []
  for await (const c of stream) parts.push(c as Buffer)
  return Buffer.concat(parts)
}

t.test('archive with a gzip layer: descriptors, diff ids, same bytes twice', async (t) => {
  const bytes = await archive('gzip', true)
  t.ok(bytes.equals(await archive('gzip', true)), 'two runs give identical bytes')
  const { files } = await entries(Readable.from([bytes]))
  const index = JSON.parse(entry(files, 'index.json').toString()) as { manifests: Array<{ digest: string }> }
  const manifest = JSON.parse(entry(files, `blobs/sha256/${index.manifests[0].digest.slice(7)}`).toString()) as {
    config: { digest: string }
    layers: Array<{ mediaType: string; digest: string; size: number }>
  }
  const top = manifest.layers[1]
  t.equal(top.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip')
  const blob = entry(files, `blobs/sha256/${top.digest.slice(7)}`)
  t.equal(sha(blob), top.digest, 'the blob hashes to its descriptor')
  t.equal(blob.length, top.size)
  t.ok(blob.length < layerBytes.length, 'and is smaller than the tar')
  t.ok(gunzipSync(blob).equals(layerBytes), 'it is the layer, gzipped')
  const config = JSON.parse(entry(files, `blobs/sha256/${manifest.config.digest.slice(7)}`).toString()) as { rootfs: { diff_ids: string[] } }
  t.same(config.rootfs.diff_ids, [baseLayer.diffId, sha(layerBytes)], 'the diff id is the uncompressed tar\'s')
  const legacy = JSON.parse(entry(files, 'manifest.json').toString()) as Array<{ Layers: string[] }>
  t.equal(legacy[0].Layers[1], `blobs/sha256/${top.digest.slice(7)}`, 'manifest.json names the blob')
  t.notOk(files.has(`blobs/sha256/${baseLayer.digest.slice(7)}`), 'layer-only: no base blob')
})

t.test('archive, uncompressed: the layer under its diff id, as before', async (t) => {
  const { files, links } = await entries(Readable.from([await archive('none', true)]))
  t.equal(links.get(`blobs/sha256/${sha(layerBytes).slice(7)}`), 'dflatten/layer.tar')
  t.ok(entry(files, 'dflatten/layer.tar').equals(layerBytes))
})

t.test('a complete archive holds the base blob, checked against its digest', async (t) => {
  const { files } = await entries(Readable.from([await archive('zstd', false)]))
  t.equal(files.get(`blobs/sha256/${baseLayer.digest.slice(7)}`)?.toString(), 'base')
  const bad = image()
  bad.base = { open: () => Promise.resolve(Readable.from([Buffer.from('evil')])) }
  const { stream } = await archiveStream(bad, { compression: { kind: 'none' } })
  await t.rejects(entries(stream), /hashes to/)
})

t.test('CLI: --compress and --output-layer-only', async (t) => {
  const { parseFlattenArgs } = await import('../../src/cli/flatten.js')
  const { parsePackArgs } = await import('../../src/cli/pack.js')
  t.same(parseFlattenArgs(['img:1', '--compress', 'zstd:5']), { image: 'img:1', method: undefined, compress: 'zstd:5' })
  t.same(parsePackArgs(['--compress', 'gzip']), { compress: 'gzip' })
  t.throws(() => parseFlattenArgs(['img:1', '--compress', 'brotli']), /unknown compression/)
  t.throws(() => parseFlattenArgs(['img:1', '--compress', 'gzip:12']), /gzip levels go from 1 to 9/)
  t.same(parseFlattenArgs(['img:1', '--output', 'f.tar', '--output-layer-only']), { image: 'img:1', method: undefined, output: 'f.tar', 'output-layer-only': true })
})
