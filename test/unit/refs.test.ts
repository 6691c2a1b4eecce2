// Image references as users type them, and the result's name derived from them.
import t from 'tap'
import { defaultTarget, isImageId, normaliseTarget, parseRef, sameName } from '../../src/refs.js'

const DIGEST = 'sha256:' + 'ab'.repeat(32)

t.test('a reference splits into repository, tag and digest', async (t) => {
  t.same(parseRef('app'), { repo: 'app', tag: undefined, digest: undefined })
  t.same(parseRef('app:1.0'), { repo: 'app', tag: '1.0', digest: undefined })
  t.same(parseRef('team/app:v2-rc_1'), { repo: 'team/app', tag: 'v2-rc_1', digest: undefined })
  t.same(parseRef(`app@${DIGEST}`), { repo: 'app', tag: undefined, digest: DIGEST })
  t.same(parseRef(`app:1@${DIGEST}`), { repo: 'app', tag: '1', digest: DIGEST })
})

t.test('a domain with a port is not mistaken for a tag', async (t) => {
  t.same(parseRef('localhost:5000/app'), { repo: 'localhost:5000/app', tag: undefined, digest: undefined })
  t.same(parseRef('registry.example.com:443/a/b/c:7'), { repo: 'registry.example.com:443/a/b/c', tag: '7', digest: undefined })
  t.same(parseRef('localhost/app:1'), { repo: 'localhost/app', tag: '1', digest: undefined }, 'localhost is a domain')
  t.same(parseRef('[::1]:5000/app'), { repo: '[::1]:5000/app', tag: undefined, digest: undefined }, 'an IPv6 host, as registry references take it')
  t.equal(parseRef('-x.example.com/app'), null, 'a host label does not start with a dash')
})

t.test('what Docker refuses as a reference is refused', async (t) => {
  for (const bad of ['', ':tag', 'App', 'app:', 'app:bad tag', 'app:-x', 'a//b', 'app/', '/app', 'app@sha256:xyz', 'a__-b', 'app:' + 'x'.repeat(129)]) {
    t.equal(parseRef(bad), null, JSON.stringify(bad))
  }
  t.not(parseRef('app:' + 'x'.repeat(128)), null, 'a tag of 128 characters is the longest allowed')
  t.not(parseRef('a_b.c-d__e--f'), null, 'separators inside a path component')
})

t.test('image ids, short and long, with or without the algorithm', async (t) => {
  t.ok(isImageId('0123456789ab'))
  t.ok(isImageId('sha256:' + 'f'.repeat(64)))
  t.ok(isImageId('f'.repeat(64)))
  t.notOk(isImageId('0123456789a'), 'eleven hex digits are too few')
  t.notOk(isImageId('0123456789AB'), 'ids are lower case')
  t.notOk(isImageId('app:1'))
})

t.test('a result name gets latest when it has no tag, and never takes a digest', async (t) => {
  t.equal(normaliseTarget('app'), 'app:latest')
  t.equal(normaliseTarget('host:5000/app'), 'host:5000/app:latest')
  t.equal(normaliseTarget('app:2'), 'app:2')
  for (const bad of [`app@${DIGEST}`, 'Bad', 'app:bad tag']) {
    t.throws(() => normaliseTarget(bad), { code: 'bad-reference', message: /not a valid image name/ }, bad)
  }
})

t.test('the default result name keeps the registry and the tag', async (t) => {
  t.equal(defaultTarget('app:1.0', []), 'app_flatten:1.0')
  t.equal(defaultTarget('app', []), 'app_flatten:latest')
  t.equal(defaultTarget('localhost:5000/team/app:2', []), 'localhost:5000/team/app_flatten:2')
  t.equal(defaultTarget(`app@${DIGEST}`, ['other:1']), 'app_flatten:latest', 'the typed name wins over the tags')
  t.equal(defaultTarget('sha256:' + 'e'.repeat(64), ['web:3', 'web:4']), 'web_flatten:3', 'an id takes its first tag')
  t.throws(() => defaultTarget('0123456789ab', []), { code: 'usage', message: /give one with -t NAME\[:TAG\]/ }, 'an untagged id: the user must name it')
})

t.test('app and app:latest are the same name, other tags and digests are not', async (t) => {
  t.ok(sameName('app', 'app:latest'))
  t.ok(sameName('host:5000/app:1', 'host:5000/app:1'))
  t.notOk(sameName('app:1', 'app:2'))
  t.notOk(sameName('a/app:1', 'b/app:1'))
  t.notOk(sameName(`app@${DIGEST}`, 'app'))
  t.ok(sameName('0123456789ab', '0123456789ab'), 'ids compare as text')
  t.notOk(sameName('0123456789ab', '0123456789ac'))
})
