// The pure parts of the snapshots method and --platform: platform names and matching, which of
// containerd's snapshots are the image's layers, and the dirs a view's mounts name.
import t from 'tap'
import { chainIds } from '../../src/docker-store.js'
import { formatPlatform, parsePlatform, pickManifest, samePlatform } from '../../src/platform.js'
import { layerDirsOf, walkChain } from '../../src/methods/snapshots/chain.js'
import { lowerDirs } from '../../src/containerd.js'

function code(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (e) {
    return (e as { code?: string }).code
  }
  return undefined
}

t.test('platforms', async (t) => {
  t.same(parsePlatform('linux/amd64'), { os: 'linux', architecture: 'amd64' })
  t.same(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64' }, 'arm64/v8 is arm64')
  t.same(parsePlatform('Linux/x86_64'), { os: 'linux', architecture: 'amd64' }, 'aliases and case')
  t.same(parsePlatform('linux/arm'), { os: 'linux', architecture: 'arm', variant: 'v7' }, 'arm is v7 unless named')
  t.equal(formatPlatform(parsePlatform('linux/arm/v6')), 'linux/arm/v6')
  for (const bad of ['linux', 'linux/', '/amd64', 'a/b/c/d', 'linux/amd 64']) {
    t.equal(code(() => parsePlatform(bad)), 'usage', `${bad} refused`)
  }
  t.ok(samePlatform({ os: 'linux', architecture: 'aarch64' }, { os: 'linux', architecture: 'arm64', variant: 'v8' }))
  t.notOk(samePlatform({ os: 'linux', architecture: 'arm', variant: 'v6' }, { os: 'linux', architecture: 'arm' }))
  const index = [
    { digest: 'a', platform: { os: 'linux', architecture: 'amd64' } },
    { digest: 'att' },
    { digest: 'b', platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
  ]
  t.equal(pickManifest(index, parsePlatform('linux/arm64'))?.digest, 'b')
  t.equal(pickManifest(index, parsePlatform('linux/s390x')), null)
})

const d = (n: number): string => 'sha256:' + String(n).repeat(64).slice(0, 64)

t.test('the snapshots that are the layers', async (t) => {
  const diffIds = [d(1), d(2), d(3)]
  const chain = chainIds(diffIds)
  const clean = new Map([
    [chain[0], ''],
    [chain[1], chain[0]],
    [chain[2], chain[1]],
    ['other', chain[1]],
  ])
  const walk = walkChain(clean, diffIds)
  t.same(walk, { ok: true, keys: [chain[2], chain[1], chain[0]], chain, skipped: 0 })
  if (walk.ok) {
    t.same(layerDirsOf(walk, ['/s/3', '/s/2', '/s/1']), ['/s/1', '/s/2', '/s/3'], 'base first')
    t.equal(layerDirsOf(walk, ['/s/3']), null, 'a view that shows another number of dirs')
  }
  // A layer committed from a container sits on that container's init snapshot.
  const built = new Map([
    [chain[0], ''],
    ['c1-init', chain[0]],
    [chain[1], 'c1-init'],
    [chain[2], chain[1]],
  ])
  const w2 = walkChain(built, diffIds)
  t.equal(w2.ok && w2.skipped, 1, 'the init snapshot is not a layer')
  if (w2.ok) t.same(layerDirsOf(w2, ['/s/4', '/s/3', '/s/2', '/s/1']), ['/s/1', '/s/3', '/s/4'])
  const notUnpacked = walkChain(new Map([[chain[0], '']]), diffIds)
  t.match(notUnpacked, { ok: false, reason: /not unpacked/ })
  const broken = walkChain(new Map([[chain[2], 'gone']]), diffIds)
  t.match(broken, { ok: false, reason: /broken/ })
  const other = walkChain(new Map([[chain[2], chain[0]], [chain[0], '']]), diffIds)
  t.match(other, { ok: false, reason: /do not hold layer 2/ })
  t.same(walkChain(new Map(), []), { ok: true, keys: [], chain: [], skipped: 0 }, 'no layers, nothing to view')
})

t.test("a view's mounts", async (t) => {
  t.same(lowerDirs([{ Type: 'overlay', Source: 'overlay', Options: ['index=off', 'lowerdir=/a/fs:/b/fs'] }]), ['/a/fs', '/b/fs'])
  t.same(lowerDirs([{ Type: 'bind', Source: '/a/fs', Options: ['ro', 'rbind'] }]), ['/a/fs'], 'one layer: a bind mount')
  t.equal(code(() => lowerDirs([{ Type: 'erofs', Source: '/x' }])), 'refused-driver')
})
