// Hardlink groups of every size come out of every method as they went in (issue 13, item 2: the
// save method made separate files of the names of an empty file). First without a daemon: the
// save method's merge, and the walkers of the overlay methods over plain directories; then every
// method on a real image, on Docker 20.10 and on Docker 26's containerd store, whose groups are
// made in one layer, across renames, with a deleted first name, and with a name from the base
// (overlay-copy took the base's content for a base file rewritten with its size and mtime kept
// and given a second name: rsync's -H linked the new name to the stack's copy, which overlayfs
// copied up as the base had it).
import t, { type Test } from 'tap'
import { link, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { LayerEntry } from '../../src/entry.js'
import { mergeLayers } from '../../src/methods/save/merge.js'
import type { IndexedEntry, SavedLayer } from '../../src/methods/save/first-pass.js'
import { upperDirEntries } from '../../src/methods/overlay-copy/copy.js'
import { directEntries } from '../../src/methods/overlay/entries.js'
import { buildHardlinks, HARDLINKS_BASE } from '../helpers/images.js'
import { exportFs } from '../helpers/export.js'
import { leftovers } from '../helpers/cli.js'
import { daemons, flattenChecked, onDaemon } from '../helpers/every-method.js'

/**
 * The hardlink groups entries describe (sorted names, groups of two or more), after checking
 * that every hardlink names a file that comes before it.
 */
function groupsOf(t: Test, entries: LayerEntry[]): string[][] {
  const fileAt = new Map<string, number>()
  const groups = new Map<string, string[]>()
  entries.forEach((e, i) => {
    const p = e.path.toString()
    if (e.kind === 'file') fileAt.set(p, i)
    if (e.kind !== 'hardlink') return
    if (!e.linkname) {
      t.fail(`${p} is a hardlink without a target`)
      return
    }
    const target = e.linkname.toString()
    const at = fileAt.get(target)
    if (at === undefined) return // a link to a file outside these entries (the base's)
    t.ok(at < i, `${p} comes after ${target}, the file it links to`)
    groups.set(target, [...(groups.get(target) ?? [target]), p])
  })
  return [...groups.values()].map((g) => g.sort()).sort((a, b) => (a[0] < b[0] ? -1 : 1))
}

t.test('save: the merge keeps the names of an inode one inode, empty or not', async (t) => {
  const layer = (member: string, position: number): SavedLayer => ({ member, diffId: member, digest: member, size: 0, gzip: false, position })
  const e = (index: number, name: string, type: string, size = 0, link = ''): IndexedEntry => ({
    name: Buffer.from(name), type, mode: 0o644, uid: 0, gid: 0, size, mtime: 7, linkname: Buffer.from(link), devmajor: 0, devminor: 0, xattrs: [], index,
    ...(type === '0' ? { sha256: `sha-${name}` } : {}),
  })
  const entries = [...mergeLayers([
    {
      layer: layer('l1', 0),
      entries: [
        e(0, 'hl', '5'),
        e(1, 'hl/e', '0'),
        e(2, 'hl/e2', '1', 0, 'hl/e'),
        e(3, 'hl/t1', '0'),
        e(4, 'hl/t2', '1', 0, 'hl/t1'),
        e(5, 'hl/t3', '1', 0, 'hl/t1'),
        e(6, 'hl/n', '0', 2),
        e(7, 'hl/n2', '1', 0, 'hl/n'),
        e(8, 'hl/lone', '0'),
        e(9, 'hl/r-moved', '0'),
        e(10, 'hl/r2', '1', 0, 'hl/r-moved'),
      ],
    },
    {
      layer: layer('l2', 1),
      entries: [
        e(0, 'hl', '5'),
        e(1, 'hl/.wh.t1', '0'),
        e(2, 'hl/a0', '1', 0, 'hl/t2'),
        e(3, 'hl/e3', '1', 0, 'hl/e'),
        e(4, 'hl/to-base', '1', 0, 'base/f'),
      ],
    },
  ])]
  t.same(groupsOf(t, entries), [
    ['hl/a0', 'hl/t2', 'hl/t3'],
    ['hl/e', 'hl/e2', 'hl/e3'],
    ['hl/n', 'hl/n2'],
    ['hl/r-moved', 'hl/r2'],
  ], 'every group, the empty ones too, whichever layer added a name and whichever name is gone')
  const at = (p: string): LayerEntry | undefined => entries.find((x) => x.path.toString() === p)
  t.match(at('hl/to-base'), { kind: 'hardlink', linkname: Buffer.from('base/f') }, 'a second name for a base file stays a link to it')
  t.match(at('hl/lone'), { kind: 'file', size: 0 }, 'an empty file with one name stays a file')
  t.notOk(at('hl/e')?.from, 'an empty file has no content to read')
  t.match(at('hl/n'), { kind: 'file', size: 2, from: { member: 'l1', index: 6 } })
  t.same(entries.filter((x) => x.kind === 'hardlink').map((x) => x.path.toString()), ['hl/to-base', 'hl/e2', 'hl/e3', 'hl/n2', 'hl/r2', 'hl/t2', 'hl/t3'],
    'the extra names come last, by name (a link to the base where it was)')
})

t.test('overlay and overlay-copy: the walkers keep the names of an inode one inode, empty or not', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'dft-hardlinks-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  const tree = join(root, 'tree')
  const empty = join(root, 'empty')
  await mkdir(join(tree, 'hl/sub'), { recursive: true })
  await mkdir(empty)
  for (const f of ['hl/e', 'hl/t1', 'hl/lone']) await writeFile(join(tree, f), '')
  await writeFile(join(tree, 'hl/n'), 'x\n')
  for (const [from, to] of [['hl/e', 'hl/e2'], ['hl/e', 'hl/sub/e3'], ['hl/t1', 'hl/a0'], ['hl/t1', 'hl/t2'], ['hl/n', 'hl/n2']]) {
    await link(join(tree, from), join(tree, to))
  }
  const want = [['hl/a0', 'hl/t1', 'hl/t2'], ['hl/e', 'hl/e2', 'hl/sub/e3'], ['hl/n', 'hl/n2']]
  const all = async (g: AsyncIterable<LayerEntry>): Promise<LayerEntry[]> => {
    const out: LayerEntry[] = []
    for await (const x of g) out.push(x)
    return out
  }
  // overlay-copy reads the upper dir of its stack; overlay the source view, where the layers
  // above the base say what to look at. A plain directory stands in for each.
  const copied = await all(upperDirEntries(tree))
  t.same(groupsOf(t, copied), want, 'overlay-copy: every group')
  const direct = await all(directEntries({ sourceView: tree, baseView: empty }, [tree]))
  t.same(groupsOf(t, direct), want, 'overlay: every group')
  for (const entries of [copied, direct]) t.match(entries.find((x) => x.path.toString() === 'hl/lone'), { kind: 'file' })
})

// ---- on the daemons ------------------------------------------------------------------------

/** Groups of empty files that dft-hardlinks:1 has (overlayfs splits the others: see its recipe). */
const EMPTY_GROUPS = [
  ['/hl/e', '/hl/e3'],
  ['/hl/late2', '/hl/late3'],
  ['/hl/r-moved', '/hl/r2'],
  ['/hl/to-base-empty', '/hlb/empty'],
  ['/hlb/pair1', '/hlb/pair3'],
]

for (const d of await daemons()) {
  t.test(`every method keeps every hardlink group: ${d.name}`, { skip: d.skip ?? false }, async (t) => {
    await onDaemon(d, async (env) => {
      const ref = await buildHardlinks()
      const original = await exportFs(ref)
      for (const g of EMPTY_GROUPS) t.same(original.get(g[0])?.hardlinks, g, `the original has the empty group ${g.join(' ')}`)
      t.same(original.get('/hl/fp3')?.hardlinks, ['/hl/fp3', '/hlb/fp1'], 'and groups with content, one name from the base')
      t.same(original.get('/hlb/same')?.hardlinks, ['/hl/same-link', '/hlb/same'], 'and a base file rewritten with its size and mtime, given a second name')
      // compareFs compares every path's group (test/helpers/export.ts: the export's hardlink entries).
      for (const method of d.methods) await flattenChecked(t, ref, HARDLINKS_BASE, method, original, env)
      for (const method of d.methods) await flattenChecked(t, ref, 'scratch', method, original, env)
      t.same(await leftovers(), { mounts: [], dirs: [], containers: [] }, 'nothing is left behind')
    })
  })
}
