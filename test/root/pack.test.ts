// Pack on a synthetic upper dir, made as root the way overlayfs leaves one: 0/0 character device
// whiteouts, an opaque dir, hardlinks, xattrs (kept and overlay-private), devices, long and odd
// names. GNU tar, an independent implementation, reads the result back.
import t from 'tap'
import { execa } from 'execa'
import { mkdtemp, mkdir, writeFile, symlink, link, lstat, readFile, readdir, rm, readlink, utimes } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { upperDirEntries } from '../../src/methods/overlay-copy/copy.js'
import { layerSize, layerStream } from '../../src/layer-tar.js'
import { readTreeXattrs, readXattrsOf, withXattrs } from '../../src/xattrs.js'
import { readEntries, writeEntries, type LayerEntry } from '../../src/entry.js'
import { needsRoot } from '../helpers/root.js'

const LONG_COMPONENT = 'c'.repeat(220)
const DEEP = join('deep', 'a'.repeat(90), 'b'.repeat(90), 'c'.repeat(90), 'leaf-with-a-long-name.txt')
const UNICODE = 'café-日本語-🚀 name'
const BAD_UTF8 = Buffer.concat([Buffer.from('bad-'), Buffer.from([0xff, 0xfe]), Buffer.from('.bin')])
const LONG_LINK_TARGET = '/' + 'target/'.repeat(30) + 'end'

async function sh(cmd: string, args: string[]): Promise<void> {
  await execa(cmd, args)
}

async function makeUpper(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'dflatten-test-upper-'))
  await mkdir(join(root, 'dir/sub'), { recursive: true })
  await writeFile(join(root, 'dir/file.txt'), 'hello\n')
  await writeFile(join(root, 'dir/sub/empty'), '')
  await link(join(root, 'dir/file.txt'), join(root, 'hardlink'))
  await sh('mknod', [join(root, 'deleted'), 'c', '0', '0'])
  await sh('mknod', [join(root, 'dir/sub/also-deleted'), 'c', '0', '0'])
  await mkdir(join(root, 'opaque'))
  await writeFile(join(root, 'opaque/new'), 'new\n')
  await sh('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(root, 'opaque')])
  await sh('setfattr', ['-n', 'trusted.overlay.origin', '-v', '0x00fb', join(root, 'dir/file.txt')])
  await sh('setfattr', ['-n', 'user.text', '-v', 'some words', join(root, 'dir/file.txt')])
  await sh('setfattr', ['-n', 'user.binary', '-v', '0x00ff10fe', join(root, 'dir/file.txt')])
  await sh('mknod', [join(root, 'null'), 'c', '1', '3'])
  await sh('mknod', [join(root, 'loop200'), 'b', '7', '200'])
  await sh('mkfifo', [join(root, 'fifo')])
  await writeFile(join(root, LONG_COMPONENT), 'long component\n')
  await mkdir(join(root, DEEP, '..'), { recursive: true })
  await writeFile(join(root, DEEP), 'deep\n')
  await writeFile(join(root, UNICODE), 'unicode\n')
  await writeFile(Buffer.concat([Buffer.from(root + '/'), BAD_UTF8]), 'bad utf8\n')
  await writeFile(join(root, 'with\nnewline'), 'newline\n')
  await symlink(LONG_LINK_TARGET, join(root, 'long-link'))
  await symlink('dir/file.txt', join(root, 'rel-link'))
  await writeFile(join(root, 'big-ids'), 'ids\n')
  await sh('chown', ['300000:300001', join(root, 'big-ids')])
  await writeFile(join(root, 'setuid'), '#!/bin/sh\n', { mode: 0o755 })
  await sh('chmod', ['4755', join(root, 'setuid')])
  await writeFile(join(root, 'old'), 'before 1970\n')
  await utimes(join(root, 'old'), -86400 * 365, -86400 * 365)
  await writeFile(join(root, 'blocks'), Buffer.alloc(3 * 512 + 7, 0xab))
  return root
}

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

const skip = needsRoot('mknod, chown, setuid bits and trusted.* xattrs in a synthetic upper dir')
const upper = skip ? await mkdtemp(join(tmpdir(), 'dflatten-test-upper-')) : await makeUpper()
const work = await mkdtemp(join(tmpdir(), 'dflatten-test-out-'))
t.teardown(async () => {
  await rm(upper, { recursive: true, force: true })
  await rm(work, { recursive: true, force: true })
})

async function* from<T>(items: T[]): AsyncGenerator<T> {
  yield* items
}

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

const entries = skip ? [] : await all(upperDirEntries(upper))
const bytes = await collect(layerStream(entries))
const tarPath = join(work, 'layer.tar')
await writeFile(tarPath, bytes)

t.test('the size computed from metadata is the size produced', { skip }, async (t) => {
  t.equal(await layerSize(entries), bytes.length)
  t.equal(bytes.length % 512, 0)
  t.equal(await layerSize([]), 1024, 'an empty layer is just the end-of-archive blocks')
  t.equal((await collect(layerStream([]))).length, 1024)
})

t.test('the same upper dir gives the same bytes', { skip }, async (t) => {
  const again = await collect(layerStream(upperDirEntries(upper)))
  t.ok(again.equals(bytes))
})

t.test('entries come depth first in byte order, markers where OCI wants them', { skip }, async (t) => {
  const { stdout } = await execa('tar', ['--quoting-style=literal', '-tf', tarPath], { env: { LC_ALL: 'C' }, encoding: 'buffer' })
  const names = Buffer.from(stdout).toString('latin1').split('\n').filter(Boolean)
  t.ok(names.includes('.wh.deleted'), 'a 0/0 device becomes .wh.<name>')
  t.ok(names.includes('dir/sub/.wh.also-deleted'))
  t.notOk(names.includes('deleted'), 'the device itself is not stored')
  const opq = names.indexOf('opaque/')
  t.equal(names[opq + 1], 'opaque/.wh..wh..opq', 'the opaque marker follows its directory, before its children')
  t.equal(names[opq + 2], 'opaque/new')
  t.ok(names.indexOf('dir/') < names.indexOf('dir/file.txt'), 'a directory comes before its content')
  t.ok(names.includes(BAD_UTF8.toString('latin1')), 'a name that is not UTF-8 keeps its bytes')
  t.ok(names.includes(DEEP), 'a path over 300 bytes is kept')
  t.ok(names.includes(LONG_COMPONENT))
  t.ok(names.includes(Buffer.from(UNICODE).toString('latin1')))
  const kinds = entries.map((e) => e.kind)
  t.ok(kinds.includes('hardlink'))
  t.equal(entries.find((e) => e.kind === 'hardlink')?.path.toString(), 'hardlink')
  t.equal(entries.find((e) => e.kind === 'hardlink')?.linkname?.toString(), 'dir/file.txt', 'links point at the first name in order')
})

t.test('GNU tar extracts exactly the upper dir (less overlay bookkeeping)', { skip }, async (t) => {
  const out = join(work, 'x')
  await mkdir(out)
  await execa('tar', ['--xattrs', "--xattrs-include=*", '--numeric-owner', '-xpf', tarPath, '-C', out])
  const upperX = await readTreeXattrs(upper)
  const outX = await readTreeXattrs(out)

  const check = async (rel: Buffer): Promise<void> => {
    const a = Buffer.concat([Buffer.from(upper + '/'), rel])
    const b = Buffer.concat([Buffer.from(out + '/'), rel])
    const sa = await lstat(a, { bigint: true })
    const name = rel.toString('latin1')
    if (sa.isCharacterDevice() && sa.rdev === 0n) {
      const wh = Buffer.concat([Buffer.from(out + '/'), rel.subarray(0, rel.lastIndexOf(0x2f) + 1), Buffer.from('.wh.'), rel.subarray(rel.lastIndexOf(0x2f) + 1)])
      t.equal((await lstat(wh)).size, 0, `${name}: whiteout is an empty file`)
      return
    }
    const sb = await lstat(b, { bigint: true })
    t.equal(sb.mode, sa.mode, `${name}: type and mode`)
    t.equal(sb.uid, sa.uid, `${name}: uid`)
    t.equal(sb.gid, sa.gid, `${name}: gid`)
    t.equal(sb.rdev, sa.rdev, `${name}: device numbers`)
    if (!sa.isDirectory() && !sa.isSymbolicLink()) t.equal(sb.mtimeMs / 1000n, sa.mtimeMs / 1000n, `${name}: mtime`)
    if (sa.isFile()) t.ok((await readFile(b)).equals(await readFile(a)), `${name}: content`)
    if (sa.isSymbolicLink()) t.equal(await readlink(b), await readlink(a), `${name}: link target`)
    const xa = new Map([...(upperX.get(name) ?? [])].filter(([k]) => !k.startsWith('trusted.overlay.')))
    t.same(outX.get(name) ?? new Map(), xa, `${name}: xattrs`)
    if (sa.isDirectory()) {
      for (const n of await readdir(a, { encoding: 'buffer' })) await check(Buffer.concat([rel, Buffer.from('/'), n]))
    }
  }
  for (const n of await readdir(upper, { encoding: 'buffer' })) await check(n)

  const linked = await lstat(join(out, 'hardlink'))
  t.equal(linked.ino, (await lstat(join(out, 'dir/file.txt'))).ino, 'hardlinks stay one inode')
  t.equal(outX.get('opaque')?.has('trusted.overlay.opaque') ?? false, false, 'overlay xattrs never reach the layer')
  t.same(outX.get('dir/file.txt')?.get('user.binary'), Buffer.from([0x00, 0xff, 0x10, 0xfe]), 'binary xattr values survive')
})

t.test('xattrs read for a list of names are those of the whole-tree walk', { skip }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'dflatten-test-xattrs-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'plain'), '')
  await writeFile(join(dir, 'with\nnewline'), '')
  await writeFile(Buffer.concat([Buffer.from(dir + '/'), BAD_UTF8]), '')
  await writeFile(join(dir, 'none'), '')
  await writeFile(join(dir, 'not-asked'), '')
  // The shell makes the name's bytes: a command line from Node can only carry UTF-8.
  await execa('sh', ['-c', `cd "$1" && setfattr -n user.a -v one plain && setfattr -n trusted.overlay.origin -v 0x00 plain &&
    setfattr -n user.nl -v 0x0a00ff "$(printf 'with\\nnewline')" && setfattr -n user.bad -v two "$(printf 'bad-\\377\\376.bin')" &&
    setfattr -n user.x -v three not-asked`, 'sh', dir])
  const whole = await readTreeXattrs(dir)
  t.equal(whole.size, 4, 'the fixture has xattrs on four names')
  const names = [Buffer.from('plain'), Buffer.from('with\nnewline'), BAD_UTF8, Buffer.from('none')]
  const some = await readXattrsOf(dir, names)
  t.same([...some.keys()].sort(), ['plain', 'with\nnewline', BAD_UTF8.toString('latin1')].sort(), 'only the names asked for, only those with xattrs')
  for (const k of some.keys()) t.same(some.get(k), whole.get(k), JSON.stringify(k))
  t.ok(some.get(BAD_UTF8.toString('latin1'))?.get('user.bad')?.equals(Buffer.from('two')), 'a name that is not UTF-8')

  // withXattrs: order kept across batches, overlayfs's own dropped, links and markers left alone.
  const e = (path: string | Buffer, kind: LayerEntry['kind']): LayerEntry => ({ path: Buffer.from(path), kind, mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 0 })
  const cycle = [e('plain', 'file'), e('plain', 'hardlink'), e('none', 'file'), e('gone', 'whiteout'), e(BAD_UTF8, 'file')]
  const out: LayerEntry[] = []
  for await (const x of withXattrs(from(Array.from({ length: 5000 }, (_, i) => cycle[i % 5])), dir)) out.push(x)
  t.equal(out.length, 5000)
  t.same(out.slice(-5).map((x) => x.kind), cycle.map((x) => x.kind), 'order kept')
  t.same(out[4995].xattrs, [['user.a', Buffer.from('one')]], 'kept: not trusted.overlay.*')
  t.notOk(out[4996].xattrs, 'a hardlink carries none')
  t.notOk(out[4997].xattrs || out[4998].xattrs)
  t.same(out[4999].xattrs, [['user.bad', Buffer.from('two')]])

  await t.rejects(async () => {
    for await (const _ of withXattrs(from([e('not-there', 'file')]), dir)) {
      // read to the end
    }
  }, /getfattr failed/, 'a name that is not there fails the run')
})

t.test('entries survive the trip through the entries file', { skip }, async (t) => {
  const file = join(work, 'entries')
  const counts = await writeEntries(file, upperDirEntries(upper))
  const back = await all(readEntries(file))
  t.same(back, entries)
  t.equal(counts.deleted, 2, 'two whiteouts')
  t.equal(counts.changed, entries.filter((e) => e.kind !== 'whiteout' && e.kind !== 'opaque').length)
})
