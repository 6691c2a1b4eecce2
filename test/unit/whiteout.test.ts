// How deletions are written: overlayfs's markers in, OCI whiteout names out.
import t from 'tap'
import type { Stats } from 'node:fs'
import {
  OPAQUE_MARKER,
  WHITEOUT_PREFIX,
  isOverlayOpaque,
  isOverlayWhiteout,
  isPrivateXattr,
  isReservedName,
  opaquePath,
  whiteoutPath,
} from '../../src/whiteout.js'

/** Just enough of an lstat result for the whiteout test. */
function stats(charDevice: boolean, rdev: number): Stats {
  return { isCharacterDevice: () => charDevice, rdev } as unknown as Stats
}

t.test('the whiteout of a path sits beside it, name bytes kept', async (t) => {
  t.equal(whiteoutPath(Buffer.from('etc/passwd')).toString(), 'etc/.wh.passwd')
  t.equal(whiteoutPath(Buffer.from('top')).toString(), '.wh.top', 'at the root')
  t.equal(whiteoutPath(Buffer.from('a/b/c/d')).toString(), 'a/b/c/.wh.d')
  const odd = Buffer.from([0x64, 0x2f, 0xff, 0x0a])
  t.same(whiteoutPath(odd), Buffer.concat([Buffer.from('d/.wh.'), Buffer.from([0xff, 0x0a])]), 'bytes that are not UTF-8 survive')
})

t.test('the opaque marker sits inside its directory', async (t) => {
  t.equal(opaquePath(Buffer.from('var/cache')).toString(), 'var/cache/.wh..wh..opq')
  t.equal(opaquePath(Buffer.alloc(0)).toString(), OPAQUE_MARKER, 'the root directory itself')
  t.equal(OPAQUE_MARKER, WHITEOUT_PREFIX + WHITEOUT_PREFIX + '.opq')
})

t.test('names that would read as deletions are reserved', async (t) => {
  t.ok(isReservedName(Buffer.from('.wh.x')))
  t.ok(isReservedName(Buffer.from(OPAQUE_MARKER)))
  t.notOk(isReservedName(Buffer.from('.wh')))
  t.notOk(isReservedName(Buffer.from('x.wh.y')))
  t.notOk(isReservedName(Buffer.alloc(0)))
})

t.test("overlayfs's bookkeeping xattrs are private, everything else is content", async (t) => {
  for (const k of ['trusted.overlay.opaque', 'trusted.overlay.origin', 'trusted.overlay.redirect', 'trusted.overlay.metacopy']) t.ok(isPrivateXattr(k), k)
  for (const k of ['security.capability', 'user.overlay.opaque', 'trusted.other', 'user.x']) t.notOk(isPrivateXattr(k), k)
})

t.test('an opaque dir is marked y by the trusted or the user xattr', async (t) => {
  t.ok(isOverlayOpaque(new Map([['trusted.overlay.opaque', Buffer.from('y')]])))
  t.ok(isOverlayOpaque(new Map([['user.overlay.opaque', Buffer.from('y')]])), 'userxattr mounts')
  t.notOk(isOverlayOpaque(new Map([['trusted.overlay.opaque', Buffer.from('n')]])))
  t.notOk(isOverlayOpaque(new Map([['trusted.overlay.opaque', Buffer.from('x')]])), 'x marks an impure dir, not an opaque one')
  t.notOk(isOverlayOpaque(new Map()))
  t.notOk(isOverlayOpaque(undefined))
})

t.test('a whiteout is a character device 0/0 and nothing else', async (t) => {
  t.ok(isOverlayWhiteout(stats(true, 0)))
  t.notOk(isOverlayWhiteout(stats(true, 259)), '/dev/null and friends stay devices')
  t.notOk(isOverlayWhiteout(stats(false, 0)), 'a file with rdev 0 is a file')
})
