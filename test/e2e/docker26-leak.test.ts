// Docker 26's `docker export` leaks (moby #48516): on the classic store every export leaves the
// container's layer mounted and its dirs under overlay2/ until the daemon restarts. The save
// method must leave that daemon's mounts and dirs as it found them (it takes its content from a
// second save there, and -v says why), and still give the same filesystem; on Docker 20.10 and
// on the containerd store it keeps using the export. Earlier runs may have leaked already (the
// test helpers' exportFs reads through docker cp on this daemon for that reason), so counts are
// compared before and after, never against a number. Set DFLATTEN_SKIP_DOCKER26=1 to leave these out.
import t from 'tap'
import { execa } from 'execa'
import { readFile, readdir } from 'node:fs/promises'
import { buildCorner, buildSimple } from '../helpers/images.js'
import { removeImage } from '../helpers/docker.js'
import { compareFs, exportFs } from '../helpers/export.js'
import { dflatten, leftovers } from '../helpers/cli.js'
import { must } from '../helpers/must.js'
import { DOCKER26_LEFT_OUT, startDocker26, useDaemon } from '../helpers/docker26.js'

/** What a leaking export leaves behind: overlay mounts under the data root, and layer dirs and their short links. */
async function storage(root: string): Promise<{ mounts: number; dirs: number; links: number }> {
  const under = `${root}/overlay2/`
  const mounts = (await readFile('/proc/mounts', 'utf8'))
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f[2] === 'overlay' && f[1]?.startsWith(under)).length
  const dirs = (await readdir(under)).filter((n) => n !== 'l').length
  const links = (await readdir(`${under}l`)).length
  return { mounts, dirs, links }
}

const d26 = await startDocker26()
if (!d26) {
  t.comment(DOCKER26_LEFT_OUT)
} else {
  t.ok(d26.started, d26.said)
  const classic = d26.classic

  t.test('Docker 26, classic store: the save method leaves mounts and layer dirs as it found them', { skip: classic ? false : 'the daemon did not start' }, async (t) => {
    useDaemon(t, classic)
    const env = { DOCKER_HOST: must(classic, 'the daemon address') }
    const root = (await execa('docker', ['info', '--format', '{{.DockerRootDir}}'], { env })).stdout.trim()
    for (const ref of [await buildSimple(), await buildCorner()]) {
      const target = 'dft-result-d26-leak:1'
      await removeImage(target)
      const original = await exportFs(ref)
      const before = await storage(root)
      const r = await dflatten([ref, '-t', target, '-m', 'save', '--no-cache', '-v'], { env })
      t.equal(r.exitCode, 0, `${ref}: ${r.stderr.split('\n').slice(r.exitCode ? -25 : -2).join(' ')}`)
      t.match(
        r.stderr,
        /content from a second docker save: docker export on Docker 26\.\S* with the classic image store leaves each exported container's layer mounted and on disk until the daemon restarts \(moby #48516\)/,
        '-v says where the content comes from, and why',
      )
      if (r.exitCode === 0) t.same(compareFs(original, await exportFs(target), { labels: [ref, target] }), [], `${ref}: same filesystem`)
      // The result's own layer is a dir of overlay2/ until the result goes; a leaked export's stays.
      await removeImage(target)
      t.same(await storage(root), before, `${ref}: the same overlay mounts under ${root} and dirs under its overlay2/ once the result is removed`)
    }
    t.same(await leftovers(), { mounts: [], dirs: [], containers: [] })
  })

  const others: Array<[string, string | undefined, boolean]> = [
    ['Docker 26, containerd image store', d26.containerd, true],
    ['Docker 20.10 (the default daemon)', undefined, false],
  ]
  for (const [name, host, needsHost] of others) {
    t.test(`${name}: the save method keeps reading content through docker export`, { skip: needsHost && !host ? 'the daemon did not start' : false }, async (t) => {
      useDaemon(t, host)
      const env: Record<string, string> = host ? { DOCKER_HOST: host } : {}
      const ref = await buildSimple()
      const target = 'dft-result-d26-leak:1'
      await removeImage(target)
      const r = await dflatten([ref, '-t', target, '-m', 'save', '--no-cache', '-v'], { env })
      t.equal(r.exitCode, 0, `${ref}: ${r.stderr.split('\n').slice(r.exitCode ? -25 : -2).join(' ')}`)
      t.match(r.stderr, /content from docker export of a container of the image/)
      t.notMatch(r.stderr, /moby #48516/)
      await removeImage(target)
      t.same(await leftovers(), { mounts: [], dirs: [], containers: [] })
    })
  }
}
