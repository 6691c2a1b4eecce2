// The records of things made outside a work dir: written before the thing exists, read back,
// and released (the thing removed, then the record), or kept when the removal fails.
import t from 'tap'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ownedName, workRecord } from '../../src/work-record.js'
import { isDflattenError } from '../../src/errors.js'

t.test('a record is read back, released once, and kept when its removal fails', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'dflatten-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const removed: string[] = []
  let fail = false
  const rec = workRecord<{ id: string }>(
    'thing',
    (r) => {
      if (fail) return Promise.reject(new Error('daemon gone'))
      removed.push(r.id)
      return Promise.resolve()
    },
    (r) => `could not remove the thing ${r.id}`,
  )
  t.equal(await rec.read(dir), null, 'nothing recorded yet')
  await rec.release(dir)
  t.same(removed, [], 'releasing nothing removes nothing')
  await rec.write(dir, { id: 'a' })
  t.same(await rec.read(dir), { id: 'a' })
  fail = true
  const err = await rec.release(dir).catch((e: unknown) => e)
  t.ok(isDflattenError(err, 'host'), 'a host error')
  t.equal((err as Error).message, `could not remove the thing a (daemon gone); not removing ${dir}`)
  t.same(await readdir(dir), ['thing'], 'the record stays for a later cleanup')
  fail = false
  await rec.release(dir)
  t.same(removed, ['a'])
  t.same(await readdir(dir), [], 'then the record goes')
})

t.test('an owned name carries the work dir id and a random tail', async (t) => {
  const a = ownedName('dflatten-x-', '/tmp/dflatten-Ab12Cd')
  t.match(a, /^dflatten-x-Ab12Cd-[0-9a-f]{8}$/)
  t.not(a, ownedName('dflatten-x-', '/tmp/dflatten-Ab12Cd'))
})
