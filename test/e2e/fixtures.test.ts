// The end-to-end fixtures themselves: the images hold every corner case they claim to, and the
// comparer sees a difference when there is one (a comparer that always says "equal" would let
// every flatten test pass).
import t from 'tap'
import { createHash } from 'node:crypto'
import { inspect } from '../helpers/docker.js'
import { BASE, BASE_MTIME, CORNER, CORNER_PATHS as P, MANY, SIMPLE, XATTRS_ADDED, buildBase, buildCorner, buildManyLayers, buildSimple } from '../helpers/images.js'
import { compareFs, configOf, exportFs, key } from '../helpers/export.js'
import type { FsEntry, FsMap } from '../helpers/export.js'

const sha = (s: string | Buffer): string => createHash('sha256').update(s).digest('hex')

function get(map: FsMap, path: string | Buffer): FsEntry {
  const e = map.get(key(path))
  if (e === undefined) throw new Error(`${String(path)} is not in the export`)
  return e
}

const started = Date.now()
await buildBase()
await buildSimple()
await buildCorner()
await buildManyLayers()
t.comment(`images ready in ${((Date.now() - started) / 1000).toFixed(1)} s`)

const base = await exportFs(BASE)
const corner = await exportFs(CORNER)

t.test('the comparer', async (t) => {
  t.same(compareFs(base, await exportFs(BASE)), [], 'two exports of the base are equal')
  t.same(compareFs(corner, await exportFs(CORNER)), [], 'two exports of the corner image are equal')

  const diff = compareFs(base, corner, { labels: ['base', 'corner'] })
  t.ok(diff.length > 0)
  t.ok(diff.includes('only in base: /data/old (directory, 2 entries below)'), 'a deleted dir, once, with its count')
  t.ok(diff.includes('only in base: /usr/share/doc/x/README (file)'), 'a deleted file')
  t.ok(diff.includes('only in corner: /tmp/tmpfile (file)'), 'an added file')
  t.ok(diff.some((l) => /^only in corner: \/corner \(directory, \d+ entries below\)$/.test(l)), 'an added dir, once')
  t.ok(diff.includes('/data/file2dir: type file in base, directory in corner'))
  t.ok(diff.includes('/data/mode-only: mode 0644 in base, 0755 in corner'))
  t.ok(diff.includes('/data/owner-only: owner 0:0 in base, 1234:5678 in corner'))
  t.ok(diff.some((l) => l.startsWith('/data/samesize: content sha256 ')), 'same size, same mtime, other content')
  t.notOk(diff.some((l) => l.startsWith('/data/samesize: size') || l.startsWith('/data/samesize: mtime')))
  t.ok(diff.includes('/data/hl-base: hardlinks none in base, [/corner/hl-to-base, /data/hl-base] in corner'))
  t.ok(diff.includes('/data/link2: target ../etc/app/conf in base, /etc/app/conf2 in corner'))
  t.ok(compareFs(base, corner, { mtime: false }).some((l) => l.startsWith('/data/samesize: content')), 'content is compared without mtimes too')
  t.notOk(compareFs(base, corner, { ignore: (p) => p !== '/data/owner-only' }).some((l) => !l.startsWith('/data/owner-only')), 'ignore')

  // Each field on its own, so that none is silently left out of the comparison.
  const file = get(base, '/etc/passwd')
  const mutations: Array<[string, Partial<FsEntry>, RegExp]> = [
    ['mode', { mode: 0o600 }, /^\/etc\/passwd: mode 0644 in a, 0600 in b$/],
    ['uid', { uid: 1 }, /owner 0:0 in a, 1:0 in b/],
    ['gid', { gid: 1 }, /owner 0:0 in a, 0:1 in b/],
    ['size', { size: file.size + 1 }, /size/],
    ['content', { sha256: sha('other') }, /content sha256/],
    ['mtime', { mtime: file.mtime + 1 }, /mtime 1600000000 in a, 1600000001 in b/],
    ['xattrs', { xattrs: { 'user.x': '00' } }, /xattrs \{\} in a, \{user.x=0x00\} in b/],
    ['hardlinks', { hardlinks: ['/etc/passwd', '/x'] }, /hardlinks none in a, \[\/etc\/passwd, \/x\] in b/],
    ['type', { type: 'fifo' }, /type file in a, fifo in b/],
  ]
  for (const [what, change, expected] of mutations) {
    const other = new Map(base)
    other.set(file.path, { ...file, ...change })
    const d = compareFs(base, other)
    t.equal(d.length, 1, `one difference for ${what}: ${d.join(' | ')}`)
    t.match(d[0], expected, what)
  }
  const dev = get(corner, P.charDevice)
  const other = new Map(corner)
  other.set(dev.path, { ...dev, devminor: 5 })
  t.same(compareFs(corner, other), ['/corner/special/null: device 1,3 in a, 1,5 in b'])
  const link = get(corner, P.symlinkAbsolute)
  other.set(link.path, { ...link, linkname: '/elsewhere' })
  t.ok(compareFs(corner, other).includes('/corner/links/abs: target /etc/app/conf2 in a, /elsewhere in b'))
  const missing = new Map(base)
  missing.delete(key('/etc/passwd'))
  t.same(compareFs(base, missing), ['only in a: /etc/passwd (file)'])
  t.same(compareFs(missing, base), ['only in b: /etc/passwd (file)'])
  const init = new Map(base)
  init.set('/etc/hosts', { ...get(base, '/etc/hosts'), mtime: 1 })
  t.same(compareFs(base, init), [], 'the init layer sets the mtime of /etc/hosts: never compared')
})

t.test('dft-base:1', async (t) => {
  const img = await inspect(BASE)
  t.equal(img.RootFS.Layers?.length, 1)
  const bb = get(base, '/bin/busybox')
  t.equal(bb.mode, 0o755)
  t.equal(get(base, '/bin/sh').linkname, 'busybox')
  for (const applet of ['ls', 'cat', 'rm', 'mkdir', 'mv', 'cp', 'ln', 'chmod', 'chown', 'touch', 'mknod', 'mkfifo', 'echo', 'dd', 'head', 'sleep', 'true', 'printf', 'sed', 'find']) {
    t.equal(get(base, `/bin/${applet}`).type, 'symlink', applet)
  }
  t.same(get(base, '/data/pair1').hardlinks, ['/data/pair1', '/data/pair2'])
  t.match(get(base, '/data/private'), { mode: 0o600, uid: 1000, gid: 1000 })
  t.equal(get(base, '/data/link').linkname, 'old/a')
  t.equal(get(base, '/tmp').mode, 0o1777)
  t.equal(get(base, '/data/samesize').mtime, BASE_MTIME)
  t.equal(get(base, '/usr/share/doc/x/README').mtime, BASE_MTIME, 'mtimes are fixed')
})

t.test('dft-corner:1 holds every corner case', async (t) => {
  const has = (p: string | Buffer): boolean => corner.has(key(p))

  t.test('deletions, opaque dirs, type changes', async (t) => {
    t.notOk(has(P.deletedFile))
    t.ok(has(P.keptSibling))
    t.ok(base.has(P.deletedDir + '/a'))
    t.notOk(has(P.deletedDir), 'a deleted base dir')
    t.notOk(has(P.deletedDir + '/a'))
    t.equal(get(corner, P.opaqueDir).type, 'directory')
    t.ok(has(P.opaqueNew))
    for (const p of P.opaqueGone) t.notOk(has(p), `${p} is gone with the old dir`)
    t.equal(get(corner, P.emptiedDir).type, 'directory')
    for (const p of P.emptiedGone) t.ok(base.has(key(p)) && !has(p), `${p} is gone from the emptied dir`)
    t.equal(get(corner, P.fileToDir).type, 'directory')
    t.ok(has(P.fileToDir + '/inside'))
    t.equal(get(corner, P.dirToFile).type, 'file')
    t.notOk(has(P.dirToFile + '/inner'))
    t.equal(get(base, P.fileDirFile).type, 'file')
    t.match(get(corner, P.fileDirFile), { type: 'file', sha256: sha('flip is a file again\n') }, 'file, dir, file')
    t.notOk(has(P.fileDirFile + '/x'))
    t.equal(get(corner, P.dirFileDir).type, 'directory', 'dir, file, dir')
    t.ok(has(P.dirFileDir + '/again'))
    t.notOk(has(P.dirFileDir + '/inner'))
    t.notOk(has(P.renamedDirFrom))
    t.ok(has(P.renamedDirTo + '/moved-file'), 'a renamed dir')
    t.notOk(has(P.addedThenDeleted), 'added, then deleted in a later layer')
  })

  t.test('hardlinks', async (t) => {
    for (const group of [P.hardlinkLater, P.hardlinkToBase, P.baseHardlinkPair, P.unicodeHardlink]) {
      const keys = group.map(key).sort()
      for (const p of group) t.same(get(corner, p).hardlinks, keys, `${p} in its group`)
      t.equal(get(corner, group[0]).sha256, get(corner, group[1]).sha256)
    }
    const [one, two] = P.splitPair.map((p) => get(corner, p))
    t.equal(one.hardlinks, null, 'writing one name of a lower hardlink copies it up alone')
    t.equal(two.hardlinks, null)
    t.not(one.sha256, two.sha256)
  })

  t.test('metadata-only changes', async (t) => {
    const [bm, cm] = [get(base, P.modeOnly), get(corner, P.modeOnly)]
    t.match([bm.mode, cm.mode], [0o644, 0o755])
    t.equal(cm.sha256, bm.sha256)
    t.equal(cm.mtime, bm.mtime, 'chmod keeps the mtime')
    const [bo, co] = [get(base, P.ownerOnly), get(corner, P.ownerOnly)]
    t.match([bo.uid, bo.gid, co.uid, co.gid], [0, 0, 1234, 5678])
    t.equal(co.sha256, bo.sha256)
  })

  t.test('same size, same mtime, other content', async (t) => {
    const [b, c] = [get(base, P.sameSizeSameMtimeBase), get(corner, P.sameSizeSameMtimeBase)]
    t.equal(c.size, b.size)
    t.equal(c.mtime, b.mtime)
    t.equal(c.mtime, BASE_MTIME)
    t.not(c.sha256, b.sha256)
    t.equal(c.sha256, sha('BBBBBBBBBBBBBBBB\n'))
    t.match(get(corner, P.sameSizeSameMtimeLayers), { size: 16, mtime: BASE_MTIME, sha256: sha('secnd-version-16') }, 'also between two layers of the image')
  })

  t.test('special files', async (t) => {
    t.equal(get(corner, P.fifo).type, 'fifo')
    t.match(get(corner, P.charDevice), { type: 'character-device', devmajor: 1, devminor: 3 })
    t.match(get(corner, P.blockDevice), { type: 'block-device', devmajor: 7, devminor: 200 })
  })

  t.test('names', async (t) => {
    const long = get(corner, P.longComponent)
    t.ok((long.path.split('/').pop() ?? '').length >= 200, 'a 200+ byte component')
    t.ok(get(corner, P.longPath).path.length > 300, 'a path over 300 bytes')
    for (const p of P.unicode) t.ok(has(p), p)
    t.ok(corner.has('/corner/names/caf\u00c3\u00a9'), 'keys are bytes: é is two of them')
    for (const p of [P.space, P.edgeSpaces, P.newline, P.backslash]) t.ok(has(p), JSON.stringify(p))
    const bad = get(corner, P.invalidUtf8)
    t.ok(bad.path.includes('\u00ff'), 'the 0xff byte, not U+FFFD')
    t.equal(bad.sha256, sha('bad\n'))
  })

  t.test('symlinks', async (t) => {
    t.equal(get(corner, P.symlinkAbsolute).linkname, '/etc/app/conf2')
    t.equal(get(corner, P.symlinkRelative).linkname, '../special/fifo')
    t.equal(get(corner, P.symlinkDangling).linkname, '/nonexistent/target')
    t.notOk(has('/nonexistent/target'), 'dangling')
    t.equal(get(corner, P.symlinkToDir).linkname, '/corner/names')
    t.equal(get(corner, '/corner/names').type, 'directory')
    t.equal(get(corner, P.symlinkLongTarget).linkname, P.longTarget)
    t.ok(P.longTarget.length > 100, 'longer than the tar header field')
    t.equal(get(corner, P.symlinkRetargeted).linkname, '/etc/app/conf2')
  })

  t.test('modes, owners, sizes, /tmp and /run', async (t) => {
    t.equal(get(corner, P.setuid).mode, 0o4755)
    t.equal(get(corner, P.setgid).mode, 0o2755)
    t.match(get(corner, P.sgidDir), { type: 'directory', mode: 0o2775 })
    t.match(get(corner, P.stickyDir), { type: 'directory', mode: 0o1777 })
    t.equal(get(corner, P.noPerms).mode, 0)
    t.match(get(corner, P.emptyFile), { type: 'file', size: 0, sha256: sha('') })
    t.equal(get(corner, P.emptyDir).type, 'directory')
    t.equal(get(corner, P.random5M).size, 5 * 1024 * 1024)
    t.match(get(corner, P.bigIds), { uid: 300000, gid: 300000 })
    t.match(get(corner, P.hugeIds), { uid: 3000000, gid: 3000000 })
    t.ok(has(P.tmpFile))
    t.ok(has(P.runFile))
    t.ok(has(P.volumeSeed))
    t.equal(get(corner, P.workdir).type, 'directory')
  })

  t.test('xattrs', async (t) => {
    t.same(get(corner, P.xattrCap).xattrs, XATTRS_ADDED.cap, 'security.capability survives ADD')
    // Docker's archiver records security.capability only: the user.* xattrs of xattrs.tar are
    // dropped when the ADD step is committed (and `docker export` would not show them anyway).
    for (const p of [P.xattrDir, P.xattrText, P.xattrBinary]) {
      const kept = Object.keys(get(corner, p).xattrs)
      if (kept.length > 0) t.comment(`${p}: this Docker keeps ${kept.join(', ')}`)
    }
  })

  t.test('config', async (t) => {
    const c = await configOf(CORNER)
    t.match(c, {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'DFT_A=1', 'DFT_B=two words'],
      Entrypoint: ['/bin/sh', '-c'],
      Cmd: ['echo corner'],
      WorkingDir: '/corner/workdir',
      User: '0',
      ExposedPorts: { '8080/tcp': {} },
      Volumes: { '/vol': {} },
      Healthcheck: { Test: ['CMD-SHELL', 'true'], Interval: 30e9, Timeout: 5e9 },
      StopSignal: 'SIGUSR1',
      Labels: { 'org.example.fixture': 'corner', 'dft.note': 'a label with spaces' },
      Os: 'linux',
    })
    t.same(await configOf(CORNER), c, 'stable')
  })
})

t.test('dft-simple:1', async (t) => {
  t.equal((await inspect(SIMPLE)).RootFS.Layers?.length, 4)
  const fs = await exportFs(SIMPLE)
  t.notOk(fs.has('/etc/app/extra'))
  t.notOk(fs.has('/simple/two'))
  t.equal(fs.get('/simple')?.mode, 0o700)
  t.equal(fs.get('/simple/three')?.mode, 0o640)
  t.same(compareFs(base, fs, { ignore: (p) => p.startsWith('/simple') || p === '/etc/app' }), ['only in a: /etc/app/extra (file)'])
})

t.test('dft-many:1', async (t) => {
  t.equal((await inspect(MANY)).RootFS.Layers?.length, 120, 'the base and 119 RUN layers')
  const fs = await exportFs(MANY)
  t.equal(fs.get('/many/f1')?.sha256, sha('1\n'))
  t.notOk(fs.has('/many/f5'), 'deleted by step 10')
  t.equal(fs.get('/many/f2')?.mode, 0o600, 'chmod by step 3')
  t.same([...fs.keys()].filter((p) => p.startsWith('/many/dir/')), ['/many/dir/gen117'], 'the dir made again by step 117 alone')
})
