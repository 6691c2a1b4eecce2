// Beside the system's Docker 20.10: Debian 13's Docker 26, once with the classic store and once
// with the containerd image store (scripts/docker26.sh runs both). On each, build the test images,
// flatten them with every method that can work there, and check the result as everywhere:
// docker export, config, layers. On the containerd store the result must also be a complete
// image: `docker save` of it works. Set DFLATTEN_SKIP_DOCKER26=1 to leave these out.
import t from 'tap'
import { execa } from 'execa'
import { buildCorner, buildSimple } from '../helpers/images.js'
import { inspect, removeImage } from '../helpers/docker.js'
import { compareFs, configOf, exportFs } from '../helpers/export.js'
import { dflatten, leftovers } from '../helpers/cli.js'
import { must } from '../helpers/must.js'
import { DOCKER26_LEFT_OUT, startDocker26, useDaemon } from '../helpers/docker26.js'

const d26 = await startDocker26()
if (!d26) {
  t.comment(DOCKER26_LEFT_OUT)
} else {
  t.ok(d26.started, d26.said)

  const daemons: Array<[string, string | undefined, string[], string[]]> = [
    // name, DOCKER_HOST, methods that must work, methods that must refuse
    ['Docker 26, classic store', d26.classic, ['auto', 'overlay', 'overlay-copy', 'save'], []],
    ['Docker 26, containerd image store', d26.containerd, ['auto', 'save'], ['overlay']],
  ]

  for (const [name, host, works, refuses] of daemons) {
    t.test(name, { skip: host ? false : 'the daemon did not start' }, async (t) => {
      useDaemon(t, host)
      const env = { DOCKER_HOST: must(host, 'the daemon address') }
      const images = [await buildSimple(), await buildCorner()]
      for (const ref of images) {
        const original = await exportFs(ref)
        for (const method of works) {
          const target = `dft-result-d26-${method}:1`
          await removeImage(target)
          const r = await dflatten([ref, '-t', target, '-m', method, '--no-cache', '-v'], { env })
          t.equal(r.exitCode, 0, `${ref} with ${method}: ${r.stderr.split('\n').slice(r.exitCode ? -25 : -2).join(' ')}`)
          if (r.exitCode !== 0) continue
          // Docker 26's classic-store export leaks (moby #48516; test/docker26-leak.test.ts).
          if (method === 'save' && host === d26.classic) t.match(r.stderr, /content from a second docker save: .*moby #48516/, 'save reads content through a second save')
          else if (method === 'save') t.match(r.stderr, /content from docker export/, 'save reads content through docker export')
          if (method === 'auto') t.match(r.stderr, host === d26.containerd ? /method save:/ : /method overlay:/, 'auto picks what works')
          t.same(compareFs(original, await exportFs(target), { labels: [ref, target] }), [], `${ref} with ${method}: same filesystem`)
          t.same(await configOf(target), await configOf(ref), `${ref} with ${method}: same config`)
          const [src, res] = await Promise.all([inspect(ref), inspect(target)])
          t.equal(res.RootFS.Layers?.length, 2, 'the base layer plus one')
          t.equal(res.RootFS.Layers?.[0], src.RootFS.Layers?.[0], 'the base layer is shared')
          const save = await execa('bash', ['-c', `docker save ${target} | wc -c`], { env, reject: false })
          t.equal(save.exitCode, 0, 'the result is a complete image: docker save of it works')
          await removeImage(target)
        }
        for (const method of refuses) {
          const r = await dflatten([ref, '-t', 'dft-result-d26-refused:1', '-m', method], { env })
          t.equal(r.exitCode, 1)
          t.match(r.stderr, /cannot work here: it needs the overlay2 storage driver; this daemon uses the containerd image store; use --method save/)
        }
      }
      t.same(await leftovers(), { mounts: [], dirs: [], containers: [] })
    })
  }
}
