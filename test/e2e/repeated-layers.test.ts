// Images that hold one layer twice (the same diff id at two places of RootFS.Layers: two RUN
// steps that wrote the same bytes with the same mtimes). Docker 20.10's save stores such a layer
// once and the second place's layer.tar as a symlink to the first copy; the save method follows
// exactly that, inside the archive, and refuses every other symlink (issue 13, item 1).
// First without a daemon, on hand-made archives; then every method on real images, on Docker
// 20.10 and on Docker 26's containerd store, with the layer repeated above the base, in the
// base and above it, and twice in the base.
import t from 'tap'
import { createHash } from 'node:crypto'
import tar from 'tar-stream'
import { execa } from 'execa'
import { layerStream } from '../../src/layer-tar.js'
import { mergeLayers } from '../../src/methods/save/merge.js'
import { indexSave, resolveMember, savedImage } from '../../src/methods/save/first-pass.js'
import { buildRepeated, REPEATED, REPEATED_BASE, REPEATED_BASE2, REPEATED_ON, REPEATED_OVER, BASE } from '../helpers/images.js'
import { inspect } from '../helpers/docker.js'
import { exportFs } from '../helpers/export.js'
import { leftovers } from '../helpers/cli.js'
import { daemons, flattenChecked, onDaemon } from '../helpers/every-method.js'

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(c)
  return Buffer.concat(chunks)
}

async function* from(b: Buffer): AsyncGenerator<Buffer> {
  yield b
}

const sha = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex')

async function layer(name: string, content: string): Promise<Buffer> {
  const e = { path: Buffer.from(name), kind: 'file' as const, mode: 0o644, uid: 0, gid: 0, mtime: 1, size: content.length }
  return collect(layerStream([e], () => from(Buffer.from(content))))
}

/**
 * A save archive as Docker 20.10 writes it, with `links` (member -> symlink target) among the
 * layer dirs; manifest.json lists `layers` in order.
 */
async function legacySave(blobs: Record<string, Buffer>, links: Record<string, string>, layers: string[], diffIds: string[]): Promise<Buffer> {
  const pack = tar.pack()
  for (const [name, data] of Object.entries(blobs)) pack.entry({ name }, data)
  for (const [name, target] of Object.entries(links)) pack.entry({ name, type: 'symlink', linkname: target })
  pack.entry({ name: 'cfg.json' }, Buffer.from(JSON.stringify({ rootfs: { type: 'layers', diff_ids: diffIds } })))
  pack.entry({ name: 'manifest.json' }, Buffer.from(JSON.stringify([{ Config: 'cfg.json', Layers: layers }])))
  pack.finalize()
  return collect(pack as unknown as AsyncIterable<Buffer>)
}

t.test('a layer held twice: its second layer.tar, a symlink to the first copy, is followed', async (t) => {
  const [base, rep, mid] = [await layer('etc/base', 'b'), await layer('rep/f', 'same'), await layer('rep/g', 'mid')]
  const ids = [sha(base), sha(rep), sha(mid)]
  const archive = await legacySave(
    { 'a/layer.tar': base, 'b/layer.tar': rep, 'c/layer.tar': mid },
    { 'd/layer.tar': '../b/layer.tar', 'e/layer.tar': './../d/layer.tar' },
    ['a/layer.tar', 'b/layer.tar', 'c/layer.tar', 'd/layer.tar', './e/layer.tar'],
    [ids[0], ids[1], ids[2], ids[1], ids[1]],
  )
  const index = await indexSave(from(archive), new Set(ids.slice(1)), new Set([ids[0]]))
  const image = savedImage(index)
  t.same(image.layers.map((l) => [l.member, l.diffId]), [
    ['a/layer.tar', ids[0]],
    ['b/layer.tar', ids[1]],
    ['c/layer.tar', ids[2]],
    ['b/layer.tar', ids[1]],
    ['b/layer.tar', ids[1]],
  ], 'each place of the layer is the one blob, through a symlink and a symlink to a symlink')
  const entries = [...mergeLayers(image.layers.slice(1).map((l) => ({ layer: l, entries: index.entries.get(l.diffId) ?? [] })), index.base)]
  t.same(entries.map((e) => [e.path.toString(), e.from?.member]), [['rep/f', 'b/layer.tar'], ['rep/g', 'c/layer.tar']], 'merged once, content from the one copy')
})

t.test('symlinks that leave the archive, loop, or lead to no layer are refused, one line each', async (t) => {
  const [base, rep] = [await layer('etc/base', 'b'), await layer('rep/f', 'same')]
  const ids = [sha(base), sha(rep), sha(rep)]
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['an absolute symlink', { 'c/layer.tar': '/b/layer.tar' }, /^malformed archive from the daemon: the symlink c\/layer.tar -> \/b\/layer.tar points outside the archive$/],
    ['one that climbs out', { 'c/layer.tar': '../../b/layer.tar' }, /^malformed archive from the daemon: the symlink c\/layer.tar -> ..\/..\/b\/layer.tar points outside the archive$/],
    ['one that climbs out and back in', { 'c/layer.tar': '../../x/../b/layer.tar' }, /points outside the archive/],
    ['a loop', { 'c/layer.tar': '../d/layer.tar', 'd/layer.tar': '../c/layer.tar' }, /^malformed archive from the daemon: a symlink loop at c\/layer.tar$/],
    ['a symlink to itself', { 'c/layer.tar': 'layer.tar' }, /a symlink loop at c\/layer.tar/],
    ['a symlink to the config', { 'c/layer.tar': '../cfg.json' }, /^malformed archive from the daemon: layer c\/layer.tar is a symlink to cfg.json, which is not a layer of the archive$/],
    ['a symlink to a directory', { 'c/layer.tar': '../b' }, /layer c\/layer.tar is a symlink to b, which is not a layer of the archive/],
    ['a dangling symlink', { 'c/layer.tar': '../z/layer.tar' }, /layer c\/layer.tar is a symlink to z\/layer.tar, which is not a layer/],
  ]
  for (const [what, links, message] of cases) {
    const archive = await legacySave({ 'a/layer.tar': base, 'b/layer.tar': rep }, links, ['a/layer.tar', 'b/layer.tar', 'c/layer.tar'], ids)
    const err = await indexSave(from(archive), new Set(ids.slice(1))).then(() => null, (e: unknown) => e as Error & { code?: string })
    t.match(err?.message, message, `${what}: refused, saying why`)
    t.equal(err?.code, 'bad-data', `${what}: as bad data`)
  }
  // The same layer at two places must be the same layer: a symlink to another one is caught.
  const mid = await layer('rep/g', 'mid')
  const archive = await legacySave({ 'a/layer.tar': base, 'b/layer.tar': rep, 'm/layer.tar': mid }, { 'c/layer.tar': '../m/layer.tar' }, ['a/layer.tar', 'b/layer.tar', 'm/layer.tar', 'c/layer.tar'], [ids[0], ids[1], sha(mid), ids[1]])
  await t.rejects(indexSave(from(archive), new Set([ids[1]])), /layer m\/layer.tar is not the sha256:\w+ its config names/)
})

t.test('resolving a member name stays inside the archive', async (t) => {
  const links = new Map([
    ['x/layer.tar', '../y/layer.tar'],
    ['y/layer.tar', './/..//z/./layer.tar'],
    ['deep/er/layer.tar', '../../z/layer.tar'],
  ])
  t.equal(resolveMember(links, 'x/layer.tar'), 'z/layer.tar')
  t.equal(resolveMember(links, './deep//er/layer.tar'), 'z/layer.tar')
  t.equal(resolveMember(links, 'plain/layer.tar'), 'plain/layer.tar', 'a member that is no symlink is itself')
  t.throws(() => resolveMember(links, '../x'), /climbs out/, 'a name that climbs out is refused before any symlink is followed')
})

// ---- on the daemons ------------------------------------------------------------------------

const CASES: Array<[string, string, string]> = [
  // image, base, what it shows
  [REPEATED, BASE, 'a layer held twice above the base (three times on the classic store)'],
  [REPEATED_OVER, REPEATED_BASE, 'a layer of the base held again above it'],
  [REPEATED_ON, REPEATED_BASE2, 'a base that holds a layer twice, and its layers again above it'],
  [REPEATED_ON, BASE, 'the same, with that base flattened too'],
  [REPEATED_ON, 'scratch', 'everything squashed'],
]

for (const d of await daemons()) {
  t.test(`every method on images with a repeated layer: ${d.name}`, { skip: d.skip ?? false }, async (t) => {
    await onDaemon(d, async (env) => {
      await buildRepeated()
      const repeats = async (ref: string): Promise<string[]> => {
        const layers = (await inspect(ref)).RootFS.Layers ?? []
        return layers.filter((l, i) => layers.indexOf(l) !== i)
      }
      t.ok((await repeats(REPEATED)).length > 0, `${REPEATED} holds a layer twice`)
      const base = (await inspect(REPEATED_BASE)).RootFS.Layers ?? []
      t.ok((await repeats(REPEATED_OVER)).some((l) => base.includes(l)), `${REPEATED_OVER} holds a layer of its base again`)
      t.ok((await repeats(REPEATED_BASE2)).length > 0, `${REPEATED_BASE2} holds a layer twice`)
      if (!d.host) {
        // What the fix is about: the classic store's save writes the second copy as a symlink.
        const listing = await execa('bash', ['-o', 'pipefail', '-c', `docker save ${REPEATED} | tar -tv`])
        t.match(listing.stdout, /^l\S+ .* \w+\/layer\.tar -> \.\.\/\w+\/layer\.tar$/m, 'docker save links the repeated layer.tar to the first')
      }
      for (const [ref, onto, what] of CASES) {
        const original = await exportFs(ref)
        t.comment(what)
        for (const method of d.methods) await flattenChecked(t, ref, onto, method, original, env)
      }
      t.same(await leftovers(), { mounts: [], dirs: [], containers: [] }, 'nothing is left behind')
    })
  })
}
