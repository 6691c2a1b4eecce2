// Entries travel from diff to pack as one JSON object a line: every byte of a name, link target
// and xattr value must come back as it went, whatever it is.
import t from 'tap'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { EntriesFile, entryFromJson, entryToJson, readEntries, readEntriesAt, writeEntries, type LayerEntry } from '../../src/entry.js'

const base = { mode: 0o644, uid: 0, gid: 0, mtime: 1, size: 0 }

/** The entry as plain data: Buffers as hex, absent and undefined fields alike. */
function plain(e: LayerEntry): Record<string, unknown> {
  return JSON.parse(
    JSON.stringify(e, (_k, v: unknown) => (v && typeof v === 'object' && 'type' in v && v.type === 'Buffer' ? Buffer.from(v as unknown as Uint8Array).toString('hex') : v)),
  ) as Record<string, unknown>
}

function roundTrip(e: LayerEntry): LayerEntry {
  const line = entryToJson(e)
  if (line.includes('\n')) throw new Error('an entry must stay on one line')
  return entryFromJson(line)
}

async function* from<T>(items: T[]): AsyncGenerator<T> {
  yield* items
}

const odd: Array<[string, Buffer]> = [
  ['plain ASCII', Buffer.from('usr/bin/env')],
  ['UTF-8', Buffer.from('café/日本語/🚀')],
  ['not UTF-8', Buffer.from([0x62, 0x61, 0x64, 0xff, 0xfe])],
  ['a lone continuation byte', Buffer.from([0x80])],
  ['an overlong encoding', Buffer.from([0xc0, 0xaf])],
  ['a newline and a carriage return', Buffer.from('a\nb\rc')],
  ['a NUL byte', Buffer.from([0x61, 0x00, 0x62])],
  ['what looks like the base64 marker', Buffer.from('b64:aGVsbG8=')],
  ['a backslash and quotes', Buffer.from('a\\"b\'')],
  ['the replacement character itself', Buffer.from('\ufffd')],
]

t.test('names of any bytes come back byte for byte', async (t) => {
  for (const [what, path] of odd) {
    const back = roundTrip({ ...base, kind: 'file', path })
    t.ok(back.path.equals(path), what)
  }
})

t.test('link targets and content sources of any bytes come back too', async (t) => {
  for (const [what, bytes] of odd) {
    const link = roundTrip({ ...base, kind: 'symlink', path: Buffer.from('l'), linkname: bytes })
    t.ok(link.linkname?.equals(bytes), `link target: ${what}`)
    const file = roundTrip({ ...base, kind: 'file', path: Buffer.from('f'), source: bytes })
    t.ok(Buffer.from(file.source ?? '').equals(bytes), `source: ${what}`)
  }
  const fromString = roundTrip({ ...base, kind: 'file', path: Buffer.from('f'), source: '/var/lib/docker/overlay2/x/diff/f' })
  t.equal(Buffer.from(fromString.source ?? '').toString(), '/var/lib/docker/overlay2/x/diff/f', 'a source given as a string')
})

t.test('readable names stay readable in the file, others are base64', async (t) => {
  t.match(entryToJson({ ...base, kind: 'file', path: Buffer.from('etc/hosts') }), /"path":"etc\/hosts"/)
  t.match(entryToJson({ ...base, kind: 'file', path: Buffer.from([0xff]) }), /"path":"b64:\/w=="/)
  t.match(entryToJson({ ...base, kind: 'file', path: Buffer.from('b64:x') }), /"path":"b64:YjY0Ong="/, 'the marker is never ambiguous')
})

t.test('every field survives: kinds, devices, xattrs, content origin and digest', async (t) => {
  const entries: LayerEntry[] = [
    { ...base, kind: 'dir', path: Buffer.from('d'), mode: 0o2775, uid: 4294967294, gid: 3000000, mtime: -86400 },
    { ...base, kind: 'char', path: Buffer.from('d/null'), devmajor: 1, devminor: 3 },
    { ...base, kind: 'block', path: Buffer.from('d/loop'), devmajor: 259, devminor: 65536 },
    { ...base, kind: 'fifo', path: Buffer.from('d/fifo') },
    { ...base, kind: 'hardlink', path: Buffer.from('d/h'), linkname: Buffer.from('d/f') },
    { ...base, kind: 'whiteout', path: Buffer.from('gone') },
    { ...base, kind: 'opaque', path: Buffer.from('d') },
    {
      ...base,
      kind: 'file',
      path: Buffer.from('d/f'),
      size: 2 ** 40,
      xattrs: [
        ['security.capability', Buffer.from([0x01, 0x00, 0x00, 0x02, 0xff, 0x00])],
        ['user.empty', Buffer.alloc(0)],
        ['user.text', Buffer.from('é=\n')],
      ],
      from: { member: 'abc/layer.tar', index: 17 },
      sha256: 'n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=',
    },
  ]
  for (const e of entries) t.same(plain(roundTrip(e)), plain(e), e.kind)
})

t.test('the entries file: written in order, counted, read back the same', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'dflatten-test-entries-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const entries: LayerEntry[] = [
    { ...base, kind: 'dir', path: Buffer.from('a') },
    { ...base, kind: 'file', path: Buffer.from('a/one'), size: 10 },
    { ...base, kind: 'file', path: Buffer.from([0x61, 0x2f, 0xff]), size: 5 },
    { ...base, kind: 'whiteout', path: Buffer.from('a/old') },
    { ...base, kind: 'opaque', path: Buffer.from('a') },
    { ...base, kind: 'symlink', path: Buffer.from('a/l'), linkname: Buffer.from('one\nline') },
  ]
  const file = join(dir, 'entries')
  const counts = await writeEntries(file, from(entries))
  t.same(counts, { changed: 4, deleted: 1, bytes: 15 }, 'opaque markers are neither changes nor deletions')
  t.equal((await readFile(file, 'utf8')).split('\n').length, entries.length + 1, 'one line each')
  t.equal((await stat(file)).mode & 0o777, 0o600, 'the file is private')
  const back: LayerEntry[] = []
  for await (const e of readEntries(file)) back.push(e)
  t.same(back.map(plain), entries.map(plain))
})

t.test('the entries file read again at the places its reading gave', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'dflatten-test-entries-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  // Enough entries to span the read stream's chunks, one line longer than the reader's buffer.
  const entries: LayerEntry[] = Array.from({ length: 3000 }, (_, i) => ({
    ...base,
    kind: 'file' as const,
    path: i === 7 ? Buffer.from([0x64, 0xff, 0x2f, 0x66]) : Buffer.from(`dir/file-${i}`),
    size: i,
    from: { member: `blobs/sha256/${i % 3}`, index: i },
    ...(i === 1234 ? { xattrs: [['user.big', Buffer.alloc(9000, 7)] as [string, Buffer]] } : {}),
  }))
  const file = join(dir, 'entries')
  await writeEntries(file, from(entries))
  const seen: Array<{ entry: LayerEntry; offset: number }> = []
  for await (const x of readEntriesAt(file)) seen.push(x)
  t.same(seen.map((x) => plain(x.entry)), entries.map(plain), 'every entry, in order')
  const at = new EntriesFile(file)
  t.teardown(() => at.close())
  let wrong = 0
  for (const x of [...seen].reverse()) if (JSON.stringify(plain(at.at(x.offset))) !== JSON.stringify(plain(x.entry))) wrong++
  t.equal(wrong, 0, 'each read again from its offset, in any order')
})

t.test('writing stops when the run is aborted', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'dflatten-test-entries-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const ac = new AbortController()
  async function* entries(): AsyncGenerator<LayerEntry> {
    yield { ...base, kind: 'file', path: Buffer.from('x') }
    ac.abort(new Error('stop here'))
    yield { ...base, kind: 'file', path: Buffer.from('y') }
  }
  await t.rejects(writeEntries(join(dir, 'entries'), entries(), ac.signal), /stop here/)
})
