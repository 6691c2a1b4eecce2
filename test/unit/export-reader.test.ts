// The tests' own tar reader (test/helpers/export.ts), which every end-to-end comparison rests
// on, against GNU tar's output: no daemon, no root (user.* xattrs on a temp dir).
import t from 'tap'
import { createReadStream } from 'node:fs'
import { link, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { compareFs, key, readTar } from '../helpers/export.js'
import type { FsMap } from '../helpers/export.js'

t.test('the tar reader keeps names and xattr values byte for byte', async (t) => {
  // tar-stream alone would turn both 0xff below into U+FFFD: Docker (like GNU tar here) puts
  // such names and every xattr in PAX records.
  const dir = await mkdtemp(join(tmpdir(), 'dft-rawtar-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const bad = Buffer.concat([Buffer.from(join(dir, 'in/bad-')), Buffer.from([0xff]), Buffer.from('-é')])
  await mkdir(join(dir, 'in'))
  // execa takes no Buffer arguments: set the xattr under a plain name, then rename
  await writeFile(join(dir, 'in/plain'), 'x')
  await execa('setfattr', ['-n', 'user.bin', '-v', '0x00ff7f80c328', join(dir, 'in/plain')])
  await rename(join(dir, 'in/plain'), bad)
  await execa('tar', ['-C', join(dir, 'in'), '--xattrs', '--xattrs-include=*', '--format=posix', '-cf', join(dir, 'a.tar'), '.'])
  const map = await readTar(createReadStream(join(dir, 'a.tar')))
  const name = key(Buffer.concat([Buffer.from('/bad-'), Buffer.from([0xff]), Buffer.from('-é')]))
  t.ok(map.has(name), 'the name, raw')
  t.same(map.get(name)?.xattrs, { 'user.bin': '00ff7f80c328' }, 'the binary value, raw')

  // Which name of a hardlinked file the tar holds as the file depends on the walk order.
  await writeFile(join(dir, 'in/one'), 'linked')
  await link(join(dir, 'in/one'), join(dir, 'in/two'))
  const order = async (names: string[], out: string): Promise<FsMap> => {
    await execa('tar', ['-C', join(dir, 'in'), '--no-recursion', '-cf', join(dir, out), ...names])
    return readTar(createReadStream(join(dir, out)))
  }
  const [ab, ba] = [await order(['one', 'two'], 'ab.tar'), await order(['two', 'one'], 'ba.tar')]
  t.equal(ab.get('/two')?.type, 'file', 'a link entry reads as the file it names')
  t.same(ab.get('/two')?.hardlinks, ['/one', '/two'])
  t.same(compareFs(ab, ba), [], 'the order of the names does not matter')
})
