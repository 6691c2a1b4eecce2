// Pure pieces: names, stage documents, getfattr parsing, stable JSON (chain ids, docker load's
// output and the base choice: docker-parse.test.ts).
import t from 'tap'
import { defaultTarget, normaliseTarget, parseRef, sameName } from '../../src/refs.js'
import { expectDoc, DOC_VERSION } from '../../src/plan.js'
import { parseGetfattr } from '../../src/xattrs.js'
import { stableJson, fullyQualified } from '../../src/image-archive.js'

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

t.test('stable JSON', async (t) => {
  t.equal(stableJson({ b: 1, a: { d: [{ z: 1, y: 2 }], c: null } }), '{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}')
})
