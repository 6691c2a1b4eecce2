// Interoperability with a registry client nobody here wrote: skopeo copies what our client
// pushed (an image and an index) to an OCI layout with every digest checked, and our client
// reads what skopeo pushed.
import t from 'tap'
import { execa } from 'execa'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { connect, parseRegistryRef, parseManifest, MEDIA_TYPES, type RegistryClient } from '../../../src/registry/index.js'
import { useRegistry, useTempDir } from '../../helpers/registry.js'
import { makeImage, pushImage, sha } from '../../helpers/registry-image.js'

const reg = await useRegistry(t)
const dir = await useTempDir(t, 'dflatten-skopeo-test-')

const skopeo = (args: string[]) => execa('skopeo', ['--insecure-policy', ...args], { reject: false })
const client = (path: string): Promise<RegistryClient> => connect(parseRegistryRef(`docker://${reg.host}/${path}`))

t.test('skopeo copies an image our client pushed', async (t) => {
  const c = await client('ours:1')
  const image = await makeImage([{ 'etc/os-release': 'ID=test\n' }, { 'app/run.sh': '#!/bin/sh\necho hi\n' }])
  await pushImage(c, image, '1')
  const r = await skopeo(['copy', '--src-tls-verify=false', `docker://${reg.host}/ours:1`, `oci:${join(dir, 'ours')}:1`])
  t.equal(r.exitCode, 0, r.stderr)
  const index = JSON.parse(await readFile(join(dir, 'ours/index.json'), 'utf8')) as { manifests: { digest: string }[] }
  t.equal(index.manifests[0].digest, image.digest, 'the same manifest bytes')
  for (const l of image.layers) t.same(await readFile(join(dir, 'ours/blobs/sha256', sha(l).slice(7))), l)

  const raw = await skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/ours:1`])
  t.equal(raw.stdout, image.manifest.toString())
})

t.test('skopeo copies an index our client pushed, with --all', async (t) => {
  const c = await client('multi:1')
  const amd = await makeImage([{ f: 'amd64' }], 'docker', 'amd64')
  const arm = await makeImage([{ f: 'arm64' }], 'docker', 'arm64')
  for (const img of [amd, arm]) await pushImage(c, img, img.digest)
  const list = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.dockerList,
      manifests: [amd, arm].map((img, i) => ({ mediaType: img.mediaType, digest: img.digest, size: img.manifest.length, platform: { architecture: ['amd64', 'arm64'][i], os: 'linux' } })),
    }),
  )
  await c.putManifest('1', list, MEDIA_TYPES.dockerList)
  const r = await skopeo(['copy', '--all', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${reg.host}/multi:1`, `docker://${reg.host}/multi-copy:1`])
  t.equal(r.exitCode, 0, r.stderr)
  const back = await (await client('multi-copy:1')).getManifest()
  t.equal(back.mediaType, MEDIA_TYPES.dockerList)
  t.equal(back.digest, sha(list), 'skopeo kept the list byte for byte')
})

t.test('our client reads an image skopeo pushed', async (t) => {
  const r = await skopeo(['copy', '--dest-tls-verify=false', `oci:${join(dir, 'ours')}:1`, `docker://${reg.host}/theirs:1`])
  t.equal(r.exitCode, 0, r.stderr)
  const c = await client('theirs:1')
  const m = await c.getManifest()
  const parsed = parseManifest(m.bytes, m.mediaType, c.label)
  if (parsed.kind !== 'image') throw new Error('not an image')
  for (const d of [parsed.manifest.config, ...parsed.manifest.layers]) {
    const blob = await c.getBlob(d.digest, { size: d.size })
    let n = 0
    for await (const chunk of blob.stream) n += (chunk as Buffer).length
    t.equal(n, d.size, `${d.mediaType} read, digest checked`)
  }
  t.same(await c.tags(), ['1'])
})
