// From lstat to a layer entry: device numbers, times, xattrs kept, hardlinks.
import t from 'tap'
import type { BigIntStats } from 'node:fs'
import { LinkTracker, devNumbers, joinPath, keptXattrs, seconds, whiteoutEntry } from '../../src/methods/stat.js'

/** glibc's gnu_dev_makedev() (32-bit numbers, 64-bit dev_t), written out apart from the code under test. */
function makedev(major: number, minor: number): bigint {
  const M = BigInt(major)
  const m = BigInt(minor)
  return ((M & 0xfffn) << 8n) | ((M & 0xfffff000n) << 32n) | (m & 0xffn) | ((m & 0xffffff00n) << 12n)
}

t.test("device numbers decode as glibc's major() and minor()", async (t) => {
  // Linux's own range: 12 bits of major, 20 of minor.
  for (const [major, minor] of [[0, 0], [1, 3], [7, 200], [8, 17], [259, 65536], [4095, 255], [254, 256], [4095, 1048575]]) {
    t.same(devNumbers(makedev(major, minor)), { devmajor: major, devminor: minor }, `${major},${minor}`)
  }
  t.same(devNumbers(1992n), { devmajor: 7, devminor: 200 }, 'a value as stat(1) prints it')
})

t.test('device numbers outside Linux\'s range decode as glibc does over a 64-bit dev_t', async (t) => {
  const max = 0xffffffff
  for (const [major, minor] of [[4096, 0], [0, 1048576], [4096, 1048576], [max, 0], [0, max], [max, max], [0x12345678, 0x9abcdef0]]) {
    t.same(devNumbers(makedev(major, minor)), { devmajor: major, devminor: minor }, `${major},${minor}`)
  }
  // Each number's high bits stay its own.
  t.same(devNumbers(1n << 44n), { devmajor: 4096, devminor: 0 }, 'the lowest of the major\'s high bits')
  t.same(devNumbers(1n << 32n), { devmajor: 0, devminor: 1048576 }, 'the lowest of the minor\'s high bits')
  t.same(devNumbers((1n << 64n) - 1n), { devmajor: max, devminor: max }, 'every bit set')
  // dev_t is 64 bits: what lies above them is not there (as in a uint64_t), a negative value is its two's complement.
  t.same(devNumbers((1n << 64n) | 1992n), { devmajor: 7, devminor: 200 }, 'bits above 64')
  t.same(devNumbers(-1n), { devmajor: max, devminor: max }, '-1 as a uint64_t')
})

t.test('mtimes round down to whole seconds, before 1970 too', async (t) => {
  const at = (ns: bigint): number => seconds({ mtimeNs: ns } as BigIntStats)
  t.equal(at(0n), 0)
  t.equal(at(1_999_999_999n), 1)
  t.equal(at(1_600_000_000_000_000_000n), 1_600_000_000)
  t.equal(at(-1n), -1, 'a nanosecond before the epoch is in second -1')
  t.equal(at(-1_000_000_000n), -1, 'exactly one second before')
  t.equal(at(-1_500_000_000n), -2)
})

t.test("xattrs kept in a layer: sorted by name, without overlayfs's", async (t) => {
  const got = keptXattrs(new Map([
    ['user.z', Buffer.from('1')],
    ['trusted.overlay.origin', Buffer.from([0])],
    ['security.capability', Buffer.from([1])],
    ['user.a', Buffer.from('2')],
  ]))
  t.same(got?.map(([k]) => k), ['security.capability', 'user.a', 'user.z'])
  t.equal(keptXattrs(new Map([['trusted.overlay.opaque', Buffer.from('y')]])), undefined, 'none left: no field at all')
  t.equal(keptXattrs(new Map()), undefined)
  t.equal(keptXattrs(undefined), undefined)
})

t.test('paths join with one slash, the root having none', async (t) => {
  t.equal(joinPath(null, Buffer.from('etc')).toString(), 'etc')
  t.equal(joinPath(Buffer.from('etc'), Buffer.from('hosts')).toString(), 'etc/hosts')
  t.same(joinPath(Buffer.from([0xff]), Buffer.from([0xfe])), Buffer.from([0xff, 0x2f, 0xfe]))
})

t.test('a whiteout carries fixed metadata, so the layer does not depend on when it ran', async (t) => {
  const p = Buffer.from('gone')
  t.same(whiteoutEntry(p), { path: p, kind: 'whiteout', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 0 })
})

function st(dev: bigint, ino: bigint, nlink: bigint, dir = false): BigIntStats {
  return { dev, ino, nlink, isDirectory: () => dir } as unknown as BigIntStats
}

t.test('hardlinks: the first name carries the content, later ones point at it', async (t) => {
  const links = new LinkTracker()
  t.equal(links.seen(st(1n, 10n, 3n), Buffer.from('a')), null, 'the first name')
  t.equal(links.seen(st(1n, 10n, 3n), Buffer.from('b'))?.toString(), 'a')
  t.equal(links.seen(st(1n, 10n, 3n), Buffer.from('c'))?.toString(), 'a', 'every later name points at the first')
  t.equal(links.seen(st(2n, 10n, 2n), Buffer.from('d')), null, 'the same inode number on another device is another file')
  t.equal(links.seen(st(1n, 11n, 1n), Buffer.from('e')), null, 'one link: not tracked')
  t.equal(links.seen(st(1n, 11n, 1n), Buffer.from('f')), null)
  t.equal(links.seen(st(1n, 12n, 5n, true), Buffer.from('g')), null, 'directories are never hardlinks')
  t.equal(links.seen(st(1n, 12n, 5n, true), Buffer.from('h')), null)
})
