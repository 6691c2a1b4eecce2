/**
 * `npm run bench`: build the images (idempotent), then per image make the floor's archive and
 * time every command for BENCH_ROUNDS rounds, alternating the commands, writing the report after
 * each run. Never part of the tests.
 *
 * Knobs (environment):
 *   BENCH_SCALE     size factor of the images (default 1; 0.05 makes them tiny)
 *   BENCH_ROUNDS    rounds of all commands per image (default 3)
 *   BENCH_ONLY      comma list of images: medium, large, many (default all)
 *   BENCH_LAYERS    layers of the "many" image (default 100)
 *   BENCH_COMMANDS  comma list of commands (default all: overlay, overlay-copy, save, floor,
 *                   export-import, docker-save)
 *   BENCH_SETTLE    seconds to wait after removing results, before each run (default 60)
 *   BENCH_CACHE     warm (read inputs before each run, default) or drop (drop the page cache)
 *   BENCH_WORKDIR   scratch space: debootstrap root, floor archives (default $TMPDIR/dfb-bench)
 *   BENCH_OUT       where results.md, chart.svg, results.json go (default bench/)
 */
import { mkdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { execa } from 'execa'
import { BASE_REF, ensureImages, imageFacts, imageSpecs, removeImage } from './images.js'
import {
  COMMANDS,
  defaultDiskPaths,
  defaultMethod,
  dockerdPid,
  dropCaches,
  flatTags,
  makeFloorArchive,
  measure,
  removeExported,
  resultOf,
  settle,
  warm,
  type ImageRun,
  type MeasureContext,
} from './measure.js'
import { machineInfo, writeReport, type ReportData } from './report.js'

const REPO = fileURLToPath(new URL('../..', import.meta.url))

function list(v: string | undefined): string[] | null {
  const items = (v ?? '').split(',').map((s) => s.trim()).filter(Boolean)
  return items.length ? items : null
}

function num(name: string, dflt: number): number {
  const v = process.env[name]
  if (v === undefined || v === '') return dflt
  const n = Number(v)
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${v} is not a number`)
  return n
}

/** The items a comma list names, in their own order; a name that is not there is an error. */
function pick<T extends { key: string }>(knob: string, names: string[] | null, items: T[]): T[] {
  const unknown = (names ?? []).filter((n) => !items.some((i) => i.key === n))
  if (unknown.length) throw new Error(`${knob}: unknown ${unknown.join(', ')}; choose from ${items.map((i) => i.key).join(', ')}`)
  return items.filter((i) => !names || names.includes(i.key))
}

const config = {
  scale: num('BENCH_SCALE', 1),
  rounds: Math.max(1, Math.round(num('BENCH_ROUNDS', 3))),
  manyLayers: Math.max(1, Math.round(num('BENCH_LAYERS', 100))),
  settleS: num('BENCH_SETTLE', 60),
  cache: process.env.BENCH_CACHE === 'drop' ? ('drop' as const) : ('warm' as const),
  only: list(process.env.BENCH_ONLY),
  commands: list(process.env.BENCH_COMMANDS),
  workDir: process.env.BENCH_WORKDIR || join(tmpdir(), 'dfb-bench'),
  outDir: process.env.BENCH_OUT || join(REPO, 'bench'),
}

function log(line: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${line}\n`)
}

/** Ctrl-C stops after the current run; the report then says the run was interrupted. */
let stopping = false
process.on('SIGINT', () => {
  if (stopping) process.exit(130)
  stopping = true
  log('interrupted: stopping after this run (Ctrl-C again to quit now)')
})

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root: dflatten mounts overlays, and the benchmark may drop caches')
  await execa('/usr/bin/time', ['true']).catch(() => {
    throw new Error('/usr/bin/time is missing: apt-get install time')
  })
  if (!(config.scale > 0)) throw new Error('BENCH_SCALE must be more than 0')
  const allSpecs = imageSpecs(config.scale, config.manyLayers)
  const specs = pick('BENCH_ONLY', config.only, allSpecs)
  const commands = pick('BENCH_COMMANDS', config.commands, COMMANDS)
  await mkdir(config.workDir, { recursive: true })
  await mkdir(config.outDir, { recursive: true })

  log(`images: ${specs.map((s) => s.ref).join(', ')}`)
  await ensureImages(specs, config.workDir, log)

  const dockerRoot = (await execa('docker', ['info', '--format', '{{.DockerRootDir}}'])).stdout.trim()
  const ctx: MeasureContext = {
    dockerd: await dockerdPid(),
    diskPaths: [...defaultDiskPaths(dockerRoot), config.workDir],
    scratchDir: config.workDir,
  }
  if (!ctx.dockerd) log("warning: cannot find dockerd's pid; its CPU time is not measured")
  const knobs = Object.entries(process.env).filter(([k]) => k.startsWith('BENCH_')).sort()
  const data: ReportData = {
    command: [...knobs.map(([k, v]) => `${k}=${v}`), 'npm run bench'].join(' '),
    startedAt: new Date().toISOString(),
    finishedAt: null,
    interrupted: false,
    machine: await machineInfo(dockerRoot, REPO),
    settings: { ...config, commands: commands.map(({ key, label, isDflatten }) => ({ key, label, isDflatten })) },
    images: [],
    runs: [],
  }
  const save = (): Promise<void> => writeReport(config.outDir, data)
  const base = await imageFacts(BASE_REF)

  for (const spec of specs) {
    if (stopping) break
    const r: ImageRun = {
      image: spec,
      facts: await imageFacts(spec.ref),
      // The executable itself, so its shebang's V8 flags apply as they do for users.
      dflatten: [join(REPO, 'bin/dflatten.js')],
      floorArchive: join(config.workDir, `floor-${spec.key}.tar`),
      floorTag: `dfb-floor-${spec.key}:1`,
    }
    try {
      log(`${spec.key}: writing the floor's archive (untimed)`)
      const floor = await makeFloorArchive(r)
      data.images.push({
        key: spec.key,
        ref: spec.ref,
        description: spec.description,
        layers: r.facts.layers,
        sizeB: r.facts.size,
        baseRef: spec.base,
        baseSizeB: base.size,
        flatLayerB: floor.layerBytes,
        floorArchiveB: floor.archiveBytes,
        flatImageId: floor.imageId,
        defaultMethod: await defaultMethod(r),
      })
      await save()
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- a signal handler sets stopping while this awaits
      for (let round = 1; round <= config.rounds && !stopping; round++) {
        for (const cmd of commands) {
          // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- as above
          if (stopping) break
          await cmd.prepare(r)
          await settle(config.settleS)
          if (config.cache === 'drop') await dropCaches()
          else await warm(cmd.inputs(r))
          const sample = await measure(cmd.argv(r), ctx)
          await cmd.after?.(r)
          let timings: Record<string, number> | undefined
          if (cmd.isDflatten && sample.ok) {
            try {
              timings = (JSON.parse(sample.stdout) as { timings?: Record<string, number> }).timings
            } catch {
              // --json printed something else: keep the run, without stage times.
            }
          }
          data.runs.push({
            image: spec.key,
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
            ...(sample.ok ? { result: (await resultOf(r, cmd.key)) ?? undefined } : {}),
            ...(timings ? { timings } : {}),
          })
          await save()
          log(
            `${spec.key} round ${round}/${config.rounds} ${cmd.key}: ` +
              (sample.ok ? `${sample.wallS.toFixed(2)} s wall, ${sample.cpuS.toFixed(2)} s CPU` : `FAILED ${sample.error}`),
          )
        }
      }
    } finally {
      // The results and the archive are big and only meaningful inside this run; the built
      // images stay for the next run.
      for (const t of flatTags(r)) await removeImage(t)
      await removeExported(r)
      await rm(r.floorArchive, { force: true })
    }
  }
  data.finishedAt = stopping ? null : new Date().toISOString()
  data.interrupted = stopping
  await save()
  if (stopping) process.exitCode = 130
  log(`report: ${join(config.outDir, 'results.md')}, ${join(config.outDir, 'chart.svg')}`)
}

main().catch((e: unknown) => {
  log(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`)
  process.exitCode = 1
})
