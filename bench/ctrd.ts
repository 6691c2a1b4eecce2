/**
 * `npm run bench:ctrd`: the benchmark on Docker's containerd image store (issue 14's targets).
 * The medium and large images are built on the classic daemon (images.ts), pushed by skopeo to a
 * local registry (gzip layers) and pulled into the Docker 26 containerd-store daemon, as a pull
 * leaves them. Per image and round, each command runs once, alternating, under the shared daemon
 * lock (held per image round, so the commands of a round follow the same conditions):
 *
 *   snapshots    dflatten --method snapshots (the kernel method on this store; auto as root)
 *   save         dflatten --method save
 *   floor        docker load -i of dflatten's own --output-layer-only archive of the result (the
 *                new compressed layer, config, manifests): what any flattener onto this base pays
 *   docker-save  docker save > /dev/null
 *
 * Each run records wall, CPU, peak RSS (GNU time), and the result's `docker image inspect .Size`.
 * Output: bench/results-ctrd.{md,json}, bench/chart-ctrd.svg. The pulled images and the
 * registry's storage stay for the next run (registry.ts uses them too); `BENCH_CLEAN=1` removes
 * them at the end.
 *
 * Knobs: BENCH_ROUNDS (3; BENCH_ROUNDS_MEDIUM, BENCH_ROUNDS_LARGE per image), BENCH_ONLY (medium,large), BENCH_COMMANDS, BENCH_SETTLE (15 s),
 * BENCH_NOTE (what else ran on the machine, for the report),
 * BENCH_LOCK (/tmp/dflatten-daemon.lock; empty: none), BENCH_REGISTRY_PORT (5055),
 * BENCH_CTRD_ROOT (the daemon's containerd root, read to warm the page cache), BENCH_WORKDIR,
 * BENCH_OUT; the daemon is DFLATTEN_D26_CTRD_HOST (else scripts/docker26.sh env).
 */
import { rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { execa } from 'execa'
import { inspect, removeImage } from './images.js'
import { measure, settle, warm, type MeasureContext } from './measure.js'
import { benchSetup, list, log, num, pick, type BenchImageRef } from './setup.js'
import { writeCtrdReport, type CtrdData, type CtrdImage } from './ctrd-report.js'
import { machineInfo } from './report.js'

interface CtrdRun {
  img: BenchImageRef
  dflatten: string[]
  floorArchive: string
  floorTag: string
}

interface CtrdCommand {
  key: string
  label: string
  isDflatten: boolean
  argv(r: CtrdRun): string[]
  /** The name the result goes under, when the command makes one. */
  result?(r: CtrdRun): string
}

const flatTag = (r: CtrdRun, m: string): string => `dfb-flat-${r.img.key}:${m}`

function dflattenCommand(method: string): CtrdCommand {
  return {
    key: method,
    label: `dflatten --method ${method}`,
    isDflatten: true,
    argv: (r) => [...r.dflatten, r.img.ref, '-t', flatTag(r, method), '--base', r.img.base, '--method', method, '--no-cache', '--json'],
    result: (r) => flatTag(r, method),
  }
}

const COMMANDS: Array<CtrdCommand & { key: string }> = [
  dflattenCommand('snapshots'),
  dflattenCommand('save'),
  {
    key: 'floor',
    label: 'floor: docker load -i (new gzip layer only)',
    isDflatten: false,
    argv: (r) => ['docker', 'load', '-q', '-i', r.floorArchive],
    result: (r) => r.floorTag,
  },
  {
    key: 'docker-save',
    label: 'docker save > /dev/null',
    isDflatten: false,
    argv: (r) => ['bash', '-o', 'pipefail', '-c', `docker save ${r.img.ref} > /dev/null`],
  },
]

async function removeResults(r: CtrdRun): Promise<void> {
  for (const c of COMMANDS) if (c.result) await removeImage(c.result(r))
}

/** The new layer's diff id, from the floor archive's config (the last of its diff ids). */
async function newDiffId(archive: string): Promise<string> {
  const read = async (member: string): Promise<string> => (await execa('tar', ['-xOf', archive, member])).stdout
  const [m] = JSON.parse(await read('manifest.json')) as Array<{ Config: string }>
  const ids = (JSON.parse(await read(m.Config)) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids
  return ids[ids.length - 1]
}

/**
 * Refuse to measure when another image already holds the result's new layer: its unpacked
 * snapshot would let every load skip the unpack (a floor of a second instead of the real one).
 */
async function refuseHeldLayer(r: CtrdRun): Promise<void> {
  const diffId = await newDiffId(r.floorArchive)
  const ids = (await execa('docker', ['images', '-q', '--no-trunc'])).stdout.split('\n').filter(Boolean)
  for (const id of new Set(ids)) {
    const img = await inspect(id)
    if (img?.RootFS.Layers?.includes(diffId)) {
      throw new Error(`image ${img.RepoTags?.join(', ') || id} already holds the new layer of ${r.img.ref} (${diffId.slice(0, 19)}): remove it, or every load skips the unpack`)
    }
  }
}

async function main(): Promise<void> {
  const rounds = Math.max(1, Math.round(num('BENCH_ROUNDS', 3)))
  const settleS = num('BENCH_SETTLE', 15)
  const commands = pick('BENCH_COMMANDS', list(process.env.BENCH_COMMANDS), COMMANDS)
  const s = await benchSetup('ctrd')
  const ctx: MeasureContext = { dockerd: s.dockerd, diskPaths: [s.workDir, s.ctrdRoot], scratchDir: s.workDir }
  const data: CtrdData = {
    command: s.command('npm run bench:ctrd'),
    startedAt: new Date().toISOString(),
    finishedAt: null,
    interrupted: false,
    machine: { ...(await machineInfo(s.ctrdRoot, s.repo)), load: s.loadNote() },
    settings: { scale: 1, rounds, manyLayers: 100, settleS, cache: 'warm', commands: commands.map(({ key, label, isDflatten }) => ({ key, label, isDflatten })) },
    images: [],
    runs: [],
  }
  const save = (): Promise<void> => writeCtrdReport(s.outDir, data)
  try {
    for (const img of s.images) {
      if (s.stopping()) break
      const r: CtrdRun = { img, dflatten: s.dflatten, floorArchive: join(s.workDir, `floor-ctrd-${img.key}.tar`), floorTag: `dfb-floor-${img.key}:1` }
      const info = await s.withLock(`${img.key}: floor archive`, async () => {
        const orig = await inspect(img.ref)
        const base = await inspect(img.base)
        if (!orig || !base) throw new Error(`${img.ref} or ${img.base} is missing in the containerd-store daemon`)
        log(`${img.key}: writing the floor's archive (untimed)`)
        await rm(r.floorArchive, { force: true })
        const out = await execa(r.dflatten[0], [...r.dflatten.slice(1), img.ref, '-t', r.floorTag, '--base', img.base, '--output', r.floorArchive, '--output-layer-only', '--no-cache', '--json'])
        const res = JSON.parse(out.stdout) as { layerBytes: number; blob?: { mediaType: string; size: number } }
        await removeResults(r)
        await refuseHeldLayer(r)
        const method = JSON.parse((await execa(r.dflatten[0], [...r.dflatten.slice(1), 'resolve', img.ref, '--base', img.base])).stdout) as { method: { name: string } }
        const i: CtrdImage = {
          key: img.key,
          ref: img.ref,
          description: img.description,
          layers: orig.RootFS.Layers?.length ?? 0,
          sizeB: orig.Size,
          baseRef: img.base,
          baseSizeB: base.Size,
          flatLayerB: res.layerBytes,
          floorArchiveB: (await stat(r.floorArchive)).size,
          flatImageId: '',
          defaultMethod: method.method.name,
          blob: res.blob ?? null,
        }
        return i
      })
      data.images.push(info)
      await save()
      try {
        const imgRounds = Math.max(1, Math.round(num(`BENCH_ROUNDS_${img.key.toUpperCase()}`, rounds)))
        for (let round = 1; round <= imgRounds && !s.stopping(); round++) {
          await s.withLock(`${img.key} round ${round}`, async () => {
            for (const cmd of commands) {
              if (s.stopping()) break
              await removeResults(r)
              await settle(settleS)
              await warm([s.ctrdRoot, r.floorArchive])
              const sample = await measure(cmd.argv(r), ctx)
              const made = cmd.result && sample.ok ? await inspect(cmd.result(r)) : null
              let timings: Record<string, number> | undefined
              if (cmd.isDflatten && sample.ok) timings = (JSON.parse(sample.stdout) as { timings?: Record<string, number> }).timings
              data.runs.push({
                image: img.key,
                command: cmd.key,
                round,
                ok: sample.ok,
                ...(sample.error ? { error: sample.error } : {}),
                wallS: sample.wallS,
                cpuS: sample.cpuS,
                maxRssKB: cmd.isDflatten ? sample.maxRssKB : null,
                dockerdCpuS: sample.dockerdCpuS,
                peakDiskB: sample.peakDiskB,
                keptDiskB: sample.keptDiskB,
                load1: sample.load1,
                ...(made ? { result: { id: made.Id, topLayer: made.RootFS.Layers?.at(-1) ?? '' }, resultSizeB: made.Size } : {}),
                ...(timings ? { timings } : {}),
              })
              await save()
              log(`${img.key} round ${round}/${imgRounds} ${cmd.key}: ` + (sample.ok ? `${sample.wallS.toFixed(2)} s wall, ${sample.cpuS.toFixed(2)} s CPU, ${(sample.maxRssKB / 1024).toFixed(0)} MiB RSS, load ${sample.load1.toFixed(1)}` : `FAILED ${sample.error ?? ''}`))
            }
            await removeResults(r)
          })
        }
      } finally {
        await rm(r.floorArchive, { force: true })
      }
    }
  } finally {
    data.finishedAt = s.stopping() ? null : new Date().toISOString()
    data.interrupted = s.stopping()
    // The registry must stop even when the report cannot be written, or the process never exits.
    try {
      await save()
    } finally {
      await s.finish()
    }
  }
  log(`report: ${join(s.outDir, 'results-ctrd.md')}`)
}

main().catch((e: unknown) => {
  log(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`)
  process.exitCode = 1
})
