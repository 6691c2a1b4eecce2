// --layers and --dry-run on Docker 26 with the containerd image store (scripts/docker26.sh), with
// the snapshots method and with save: the squash tests' image as a pull leaves it (gzip layers),
// kept layers with no image of their own, the dry run's new layer the size the real run streams,
// and both methods listing the same reclaimed files. Set DFLATTEN_SKIP_DOCKER26=1 to leave it out.
import t from 'tap'
import { execa } from 'execa'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { imageExists, inspect, removeImage } from '../helpers/docker.js'
import { compareFs, exportFs } from '../helpers/export.js'
import { dflatten } from '../helpers/cli.js'
import { buildSquash, CACHE_DIR, CACHE_FILE, historyOf, SQUASH } from '../helpers/squash-images.js'
import { ctrdDaemon } from '../helpers/containerd-store.js'
import { DOCKER26_LEFT_OUT } from '../helpers/docker26.js'
import type { DryRunReport } from '../../src/dry-run.js'

const CTR = '/opt/dflatten-docker26/root/usr/bin/ctr'
const ADDRESS = '/run/dflatten-d26-ctrd/containerd/containerd.sock'
const METHODS = ['snapshots', 'save']

/** What `--dry-run --json` prints: the library's report. */
type Report = DryRunReport

const daemon = await ctrdDaemon()
if (daemon === null) t.comment(DOCKER26_LEFT_OUT)
else if (daemon.host === undefined) t.fail(daemon.skip ?? 'no Docker 26 daemon')
else await run(daemon.host)

async function run(host: string): Promise<void> {
  const scratch = await mkdtemp(join(tmpdir(), 'dft-sq-ctrd-'))
  const workRoot = join(scratch, 'work')
  t.teardown(() => rm(scratch, { recursive: true, force: true }))
  await execa('mkdir', [workRoot])
  const env = { DOCKER_HOST: host, DFLATTEN_CTR: CTR, DFLATTEN_CONTAINERD_ADDRESS: ADDRESS, DFLATTEN_TMPDIR: workRoot }
  const views = async (): Promise<string[]> =>
    (await execa(CTR, ['-a', ADDRESS, '-n', 'moby', 'snapshots', 'ls'])).stdout.split('\n').filter((l) => l.includes('dflatten-view-'))

  // Built on the default daemon by the classic builder, carried over as a pull leaves it.
  await buildSquash(SQUASH, false)
  const file = join(scratch, 'squash.tar')
  await execa('skopeo', ['copy', '-q', '--dest-compress', '--dest-compress-format', 'gzip', `docker-daemon:${SQUASH}`, `oci-archive:${file}:docker.io/library/dftq-squash:1`], {
    env: { ...process.env, DOCKER_HOST: '' },
  })
  await execa('docker', ['load', '-i', file], { env: { ...process.env, DOCKER_HOST: host } })
  const source = 'dftq-squash:1'
  process.env.DOCKER_HOST = host // exportFs and the docker helpers follow it from here
  t.teardown(() => {
    delete process.env.DOCKER_HOST
  })
  const src = await inspect(source)
  const total = src.RootFS.Layers?.length ?? 0
  const kept = total - 3
  const original = await exportFs(source)
  const before = await views()
  const realBytes: Record<string, number> = {}
  const reports: Partial<Record<string, Report>> = {}

  for (const method of METHODS) {
    t.test(`--layers 3 and --dry-run --layers 3 with ${method} on the containerd store`, async (t) => {
      const target = `dftq-sq-${method}:1`
      await removeImage(target)
      const r = await dflatten([source, '--layers', '3', '-t', target, '-m', method, '--no-cache', '--json'], { env })
      t.equal(r.exitCode, 0, r.stderr.split('\n').slice(-4).join(' '))
      if (r.exitCode) return
      const result = JSON.parse(r.stdout) as { layerBytes: number; base: object }
      t.same(result.base, { ref: null, id: null, layers: kept, from: 'layers' }, 'the first layers kept, no base image')
      realBytes[method] = result.layerBytes
      t.same(compareFs(original, await exportFs(target), { labels: [source, target] }), [], 'the same filesystem')
      const res = await inspect(target)
      t.same(res.RootFS.Layers?.slice(0, kept), src.RootFS.Layers?.slice(0, kept), 'the kept layers are the original first layers')
      t.equal(res.RootFS.Layers?.length, kept + 1, 'plus one')
      const history = await historyOf(target)
      const srcHistory = await historyOf(source)
      const upTo = srcHistory.findIndex((h) => h.createdBy.includes('mkdir -p /root/.cache'))
      // The kept layers' entries end with the base's last layer: LABEL dft.stage=first, after it, goes.
      const keptEntries = history.length - 1
      t.ok(keptEntries < upTo, 'no entry of a squashed step is kept')
      t.same(history.slice(0, -1).map((h) => h.createdBy), srcHistory.slice(0, keptEntries).map((h) => h.createdBy), "the kept layers' history, unchanged")
      t.match(history.at(-1)?.comment, `dflatten: flattened ${src.Id} onto the first ${kept} layers of ${src.Id} (${method}`, 'the marker names the kept layers')
      await removeImage(target)

      const dry = await dflatten([source, '--layers', '3', '--dry-run', '--json', '-m', method, '-t', 'dftq-sq-dry:1'], { env })
      t.equal(dry.exitCode, 0, dry.stderr.split('\n').slice(-4).join(' '))
      if (dry.exitCode) return
      const rep = JSON.parse(dry.stdout) as Report
      t.equal(rep.layerBytes, realBytes[method], "the new layer's size is the real run's layerBytes")
      t.equal(rep.squashed.length, 3)
      t.equal(rep.reclaimedBytes, rep.squashedBytes - rep.layerBytes)
      t.same(rep.reclaimed[0], { path: CACHE_DIR, bytes: CACHE_FILE.bytes, layer: rep.reclaimed[0]?.layer, files: 1 }, 'the deleted build cache comes first, at its size')
      t.notOk(await imageExists('dftq-sq-dry:1'), 'nothing is tagged')
      reports[method] = rep
      t.same(await views(), before, 'no view snapshot left')
      t.same(await readdir(workRoot), [], 'no work dir left')
    })
  }

  t.test('snapshots and save report the same squashed layers and reclaimed files', async (t) => {
    const [a, b] = METHODS.map((m) => reports[m])
    if (!a || !b) {
      t.fail('a dry run failed above')
      return
    }
    t.same(a.reclaimed, b.reclaimed)
    t.same(a.squashed, b.squashed, "each squashed layer's tar size: containerd's blob decompressed, docker save's tar")
  })
}
