// The save method's second pass through `docker export`, without a daemon: content is taken in
// the export's order, checked against what pass 1 recorded, and the export is read no further
// than the last file needed.
import t from 'tap'
import { createHash } from 'node:crypto'
import { layerStream } from '../../src/layer-tar.js'
import { ExportContent, exportCanSupply, hiddenInContainers } from '../../src/methods/save/export.js'
import { mergeLayers } from '../../src/methods/save/merge.js'
import type { IndexedEntry, SavedLayer } from '../../src/methods/save/first-pass.js'
import type { LayerEntry } from '../../src/entry.js'

const digest = (s: string): string => createHash('sha256').update(s).digest('base64')

function file(path: string, content: string): LayerEntry & { content: string } {
  return { path: Buffer.from(path), kind: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 1, size: Buffer.byteLength(content), content }
}

/** A tar as an export streams it: entries in walk order, files with their content. */
async function bytes(entries: Array<LayerEntry & { content?: string }>): Promise<Buffer> {
  async function* content(e: LayerEntry & { content?: string }): AsyncGenerator<Buffer> {
    yield Buffer.from(e.content ?? '')
  }
  const out: Buffer[] = []
  for await (const c of layerStream(entries, content)) out.push(c as Buffer)
  return Buffer.concat(out)
}

/** A source that counts how many bytes were pulled from it. */
function counted(b: Buffer): { source: AsyncGenerator<Buffer>; pulled: () => number } {
  let pulled = 0
  async function* source(): AsyncGenerator<Buffer> {
    for (let i = 0; i < b.length; i += 512) {
      pulled += Math.min(512, b.length - i)
      yield b.subarray(i, i + 512)
    }
  }
  return { source: source(), pulled: () => pulled }
}

/** What ExportContent hands out for `wanted`: [path, content] in order. */
async function take(source: AsyncIterable<Buffer>, wanted: LayerEntry[]): Promise<Array<[string, string]>> {
  const content = new ExportContent(source)
  const got: Array<[string, string]> = []
  for await (const e of content.entries(new Map(wanted.map((w) => [w.path.toString('latin1'), w])), (w) => w)) {
    const parts: Buffer[] = []
    for await (const c of content.body(e)) parts.push(c)
    got.push([e.path.toString(), Buffer.concat(parts).toString()])
  }
  return got
}

t.test('content comes in the order of the export, and the export is read only as far as needed', async (t) => {
  const files = [file('a', 'alpha'), file('b/c', 'gamma'), file('b/d', 'delta'), file('z', 'z'.repeat(100_000))]
  const tar = await bytes(files)
  const wanted = [files[2], files[0]].map((f) => ({ ...f, sha256: digest(f.content), from: { member: 'm', index: 0 } }))
  const { source, pulled } = counted(tar)
  t.same(await take(source, wanted), [
    ['a', 'alpha'],
    ['b/d', 'delta'],
  ])
  t.ok(pulled() < 10_000, `the 100 kB file after the last one needed is not read (${pulled()} bytes pulled)`)
})

t.test('content that does not match pass 1 fails the run, naming the path', async (t) => {
  const files = [file('etc/x', 'right'), file('etc/y', 'same size')]
  const tar = await bytes(files)
  const want = (f: LayerEntry, over: Partial<LayerEntry> = {}): LayerEntry => ({ ...f, from: { member: 'm', index: 0 }, ...over })

  await t.rejects(take(counted(tar).source, [want(files[0], { sha256: digest('wrong') })]), /disagree on \/etc\/x: the content differs/)
  await t.rejects(take(counted(tar).source, [want(files[1], { size: 3 })]), /disagree on \/etc\/y: the export has 9 bytes, the layers 3/)
  await t.rejects(take(counted(tar).source, [want(file('etc/none', 'x'))]), /disagree on \/etc\/none: the export does not hold it/)
  t.same(await take(counted(tar).source, [want(files[0], { sha256: digest('right') })]), [['etc/x', 'right']], 'and matching content passes')

  const linked = await bytes([files[0], { path: Buffer.from('etc/l'), kind: 'hardlink', linkname: Buffer.from('etc/x'), mode: 0o644, uid: 0, gid: 0, mtime: 1, size: 0 }])
  await t.rejects(take(counted(linked).source, [want(file('etc/l', 'right'))]), /disagree on \/etc\/l: the export has it as a hardlink to \/etc\/x/)
  const dir = await bytes([{ path: Buffer.from('etc/d'), kind: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 1, size: 0 }])
  await t.rejects(take(counted(dir).source, [want(file('etc/d', 'x'))]), /as something other than a file/)
})

t.test("paths a container covers with Docker's own files send the content to a second save", async (t) => {
  for (const p of ['etc/hosts', 'etc/hostname', 'etc/resolv.conf', '.dockerenv', 'dev/console', 'etc/mtab', 'etc/hosts/inside']) {
    t.ok(hiddenInContainers(Buffer.from(p)), p)
  }
  for (const p of ['etc/hosts.allow', 'etc', 'etc/host', 'dev', 'proc/x', 'etc/mtab2']) t.notOk(hiddenInContainers(Buffer.from(p)), p)
  const from = { member: 'm', index: 0 }
  t.same(exportCanSupply([{ ...file('etc/hosts.allow', 'x'), from }, { ...file('etc/hosts', ''), kind: 'whiteout' }]), { ok: true }, 'a deletion needs no content')
  const no = exportCanSupply([{ ...file('etc/hosts', 'x'), from }])
  t.equal(no.ok, false)
  t.equal(!no.ok && no.path.toString(), 'etc/hosts')
})

t.test('the merge hands each file its content digest, through hardlinks whose target was replaced', async (t) => {
  const layer = (n: number): SavedLayer => ({ member: `l${n}`, diffId: `d${n}`, digest: `d${n}`, size: 0, gzip: false, position: n })
  const entry = (index: number, name: string, over: Partial<IndexedEntry>): IndexedEntry => ({
    name: Buffer.from(name),
    type: '0',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: 0,
    mtime: 1,
    linkname: Buffer.alloc(0),
    devmajor: 0,
    devminor: 0,
    xattrs: [],
    index,
    ...over,
  })
  const entries = [...mergeLayers([
    { layer: layer(1), entries: [entry(0, 'a', { size: 3, sha256: digest('old') }), entry(1, 'b', { type: '1', linkname: Buffer.from('a') })] },
    { layer: layer(2), entries: [entry(0, 'a', { size: 3, sha256: digest('new') })] },
  ])]
  const byPath = Object.fromEntries(entries.map((e) => [e.path.toString(), e]))
  t.equal(byPath.a.sha256, digest('new'))
  t.equal(byPath.b.kind, 'file', 'b keeps the old content as a file of its own')
  t.equal(byPath.b.sha256, digest('old'), 'with the old digest')
})
