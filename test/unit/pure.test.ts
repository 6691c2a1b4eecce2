// Pure pieces: names, base choice, stage documents, getfattr parsing, stable JSON.
import t from 'tap'
import { defaultTarget, normaliseTarget, parseRef, sameName } from '../../src/refs.js'
import { nearestTaggedAncestor } from '../../src/stages/resolve.js'
import { expectDoc, DOC_VERSION } from '../../src/plan.js'
import { parseGetfattr } from '../../src/xattrs.js'
import { stableJson, fullyQualified } from '../../src/image-archive.js'
import { parseLoadOutput } from '../../src/docker.js'
import { chainIds } from '../../src/docker-store.js'
import type { ImageInspect } from '../../src/docker.js'

t.test('the default result name', async (t) => {
  t.equal(defaultTarget('app:1.0', []), 'app_flatten:1.0')
  t.equal(defaultTarget('app', []), 'app_flatten:latest')
  t.equal(defaultTarget('registry.local:5000/team/app:2', []), 'registry.local:5000/team/app_flatten:2')
  t.equal(defaultTarget('app@sha256:' + 'a'.repeat(64), []), 'app_flatten:latest')
  t.equal(defaultTarget('0123456789ab', ['web:3']), 'web_flatten:3', 'an id takes the name of its first tag')
  t.throws(() => defaultTarget('0123456789ab', []), /give one with -t/)
})

t.test('references', async (t) => {
  t.same(parseRef('localhost:5000/a/b:tag'), { repo: 'localhost:5000/a/b', tag: 'tag', digest: undefined })
  t.equal(parseRef('Upper:case'), null, 'repositories are lower case')
  t.equal(parseRef('app:bad tag'), null)
  t.equal(normaliseTarget('app'), 'app:latest')
  t.throws(() => normaliseTarget('app@sha256:' + 'b'.repeat(64)), /not a valid image name/)
  t.ok(sameName('app', 'app:latest'))
  t.notOk(sameName('app:1', 'app:2'))
  t.equal(fullyQualified('app:1'), 'docker.io/library/app:1')
  t.equal(fullyQualified('me/app:1'), 'docker.io/me/app:1')
  t.equal(fullyQualified('host:5000/app:1'), 'host:5000/app:1')
})

function img(id: string, tags: string[], layers: string[]): ImageInspect {
  return {
    Id: id,
    RepoTags: tags,
    RepoDigests: [],
    Created: '',
    Size: 0,
    Os: 'linux',
    Architecture: 'amd64',
    Config: null,
    GraphDriver: { Name: 'overlay2', Data: null },
    RootFS: { Type: 'layers', Layers: layers },
  }
}

t.test('the nearest tagged ancestor', async (t) => {
  const source = img('s', ['app:1'], ['a', 'b', 'c', 'd'])
  const tagged = [img('x', ['os:1'], ['a']), img('y', ['runtime:1'], ['a', 'b']), img('z', ['other:1'], ['a', 'q']), source]
  t.equal(nearestTaggedAncestor(source, tagged)?.Id, 'y', 'the longest prefix wins')
  t.equal(nearestTaggedAncestor(source, [source]), null, 'the image is not its own ancestor')
  const twin = img('w', ['twin:1'], ['a', 'b', 'c', 'd'])
  t.equal(nearestTaggedAncestor(source, [...tagged, twin])?.Id, 'w', 'same layers, other metadata: nothing above the base')
  t.equal(nearestTaggedAncestor(img('s', [], ['q']), tagged), null, 'no shared layers, no ancestor')
  const tie = [img('m', ['b-name:1'], ['a', 'b']), img('n', ['a-name:1'], ['a', 'b'])]
  t.equal(nearestTaggedAncestor(source, tie)?.Id, 'n', 'ties break on the name, so the choice is stable')
})

t.test('stage documents say which stage they wanted', async (t) => {
  t.throws(() => expectDoc({ dflatten: 'plan', version: DOC_VERSION }, 'mounted', 'dflatten diff'), {
    message: /dflatten diff reads the output of `dflatten mount`; got the output of `dflatten resolve`/,
  })
  t.throws(() => expectDoc('garbage', 'plan', 'dflatten mount'), { message: /not a dflatten document/ })
  t.throws(() => expectDoc({ dflatten: 'plan', version: 99 }, 'plan', 'dflatten mount'), { message: /version 99/ })
  t.doesNotThrow(() => expectDoc({ dflatten: 'diffed', version: DOC_VERSION }, 'diffed', 'dflatten pack'))
})

t.test('getfattr output, escapes and all', async (t) => {
  const out = Buffer.concat([
    Buffer.from('# file: /up\n\n# file: /up/a\\012b\nuser.x=0x00ff\ntrusted.overlay.opaque=0x79\n\n# file: /up/bad'),
    Buffer.from([0xff]),
    Buffer.from('\nuser.empty\n\n'),
  ])
  const map = parseGetfattr(out, '/up')
  t.same(map.get('a\nb')?.get('user.x'), Buffer.from([0, 0xff]))
  t.equal(map.get('a\nb')?.get('trusted.overlay.opaque')?.toString(), 'y')
  t.same(map.get(Buffer.from([0x62, 0x61, 0x64, 0xff]).toString('latin1'))?.get('user.empty'), Buffer.alloc(0))
  t.equal(map.size, 2, 'the root itself is not an entry')
})

t.test('stable JSON and chain ids', async (t) => {
  t.equal(stableJson({ b: 1, a: { d: [{ z: 1, y: 2 }], c: null } }), '{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}')
  const [c0, c1] = chainIds(['sha256:aa', 'sha256:bb'])
  t.equal(c0, 'sha256:aa')
  t.match(c1, /^sha256:[0-9a-f]{64}$/)
})

t.test('docker load output', async (t) => {
  t.same(parseLoadOutput('Loaded image: app_flatten:1\n'), { tags: ['app_flatten:1'], ids: [] })
  t.same(parseLoadOutput('Loaded image ID: sha256:' + 'c'.repeat(64)), { tags: [], ids: ['sha256:' + 'c'.repeat(64)] })
})
