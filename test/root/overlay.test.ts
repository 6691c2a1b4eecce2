// The default (overlay) method without a daemon: random layer stacks written out as overlay2
// stores them (whiteouts as 0/0 character devices, opaque dirs by xattr), mounted read-only as
// the method mounts them, and the entries it finds applied to the base in the layer model. They
// must give what applying the layers one by one gives. Needs root (mount, mknod, trusted.*).
import t from 'tap'
import { execa } from 'execa'
import { link, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { directEntries } from '../../src/methods/overlay/entries.js'
import type { LayerEntry } from '../../src/entry.js'
import { apply, asModel, randomLayer, rng, show, type Fs, type RawLayer } from '../helpers/model.js'
import { needsRoot } from '../helpers/root.js'
import { must } from '../helpers/must.js'

const CASES = 150

async function writeFs(root: string, fs: Fs): Promise<void> {
  await mkdir(root, { recursive: true })
  for (const [p, n] of [...fs].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const at = join(root, p)
    if (n.type === 'dir') await mkdir(at, { recursive: true })
    else if (n.type === 'symlink') await symlink(must(n.content, 'a symlink target'), at)
    else await writeFile(at, n.content ?? '')
  }
}

/** One layer as overlay2 keeps it on disk. */
async function writeLayer(root: string, layer: RawLayer): Promise<void> {
  await mkdir(root, { recursive: true })
  for (const e of layer) {
    const at = join(root, e.name)
    const name = e.name.slice(e.name.lastIndexOf('/') + 1)
    await mkdir(dirname(at), { recursive: true })
    if (name === '.wh..wh..opq') await execa('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', dirname(at)])
    else if (name.startsWith('.wh.')) await execa('mknod', [join(dirname(at), name.slice(4)), 'c', '0', '0'])
    else if (e.type === 'dir') await mkdir(at, { recursive: true })
    else if (e.type === 'symlink') await symlink(must(e.content, 'a symlink target'), at)
    else if (e.type === 'link') await link(join(root, must(e.link, 'a link target')), at)
    else await writeFile(at, e.content ?? '')
  }
}

/** A directory made opaque and left empty: the case a global tree of touched paths missed. */
function emptiesADir(layer: RawLayer): boolean {
  return layer.some((e) => {
    if (!e.name.endsWith('/.wh..wh..opq')) return false
    const dir = e.name.slice(0, -'/.wh..wh..opq'.length)
    return !layer.some((x) => x !== e && x.name.startsWith(dir + '/'))
  })
}

const skip = needsRoot('mount -t overlay, mknod and trusted.overlay.opaque for layer stacks as overlay2 keeps them')

t.test('the entries found have the same effect on the base as the layers, one by one', { skip }, async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'dflatten-test-overlay-'))
  t.teardown(async () => {
    await execa('umount', [join(root, 'view')], { reject: false })
    await rm(root, { recursive: true, force: true })
  })
  let agreed = 0
  let emptied = 0
  for (let seed = 1; seed <= CASES; seed++) {
    const r = rng(seed * 7919)
    const base: Fs = new Map()
    apply(base, randomLayer(base, r, 'base'))
    apply(base, randomLayer(base, r, 'base2'))
    const layered = new Map(base)
    const raws: RawLayer[] = []
    for (let j = 0, n = 1 + Math.floor(r() * 4); j < n; j++) {
      const raw = randomLayer(layered, r, `L${j}.`)
      apply(layered, raw)
      raws.push(raw)
    }
    if (raws.some(emptiesADir)) emptied++

    const dir = join(root, String(seed))
    const view = join(root, 'view')
    await writeFs(join(dir, 'base'), base)
    const uppers = raws.map((_, j) => join(dir, `layer${j}`))
    for (const [j, raw] of raws.entries()) await writeLayer(uppers[j], raw)
    await mkdir(join(dir, 'empty'), { recursive: true })
    await mkdir(view, { recursive: true })
    const lowers = [...uppers].reverse().concat(join(dir, 'base'), join(dir, 'empty'))
    await execa('mount', ['-t', 'overlay', 'overlay', '-o', `ro,redirect_dir=off,metacopy=off,index=off,lowerdir=${lowers.join(':')}`, view])
    try {
      const entries: LayerEntry[] = []
      const content = new Map<string, string>()
      for await (const e of directEntries({ sourceView: view, baseView: join(dir, 'base') }, uppers)) {
        entries.push(e)
        if (e.kind === 'file') content.set(e.path.toString(), await readFile(must(e.source, 'a file source'), 'utf8'))
      }
      const flat = new Map(base)
      apply(flat, entries.map((e) => asModel(e, content.get(e.path.toString()))))
      if (show(flat).join('\n') !== show(layered).join('\n')) {
        t.same(show(flat), show(layered), `seed ${seed}`)
        break
      }
      agreed++
    } finally {
      await execa('umount', [view])
      await rm(dir, { recursive: true, force: true })
    }
  }
  t.equal(agreed, CASES, 'every random stack agrees')
  t.ok(emptied > 0, `some stacks empty a directory (${emptied})`)
})
