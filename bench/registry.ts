/**
 * `npm run bench:registry`: the daemonless registry method (issue 16's targets). The medium and
 * large images and the base are pushed by skopeo to a local docker-registry (plain HTTP on
 * 127.0.0.1, gzip layers). Per image and round, alternating:
 *
 *   dflatten     dflatten docker://R/IMG --base docker://R/BASE -t docker://R/IMG-repo:flat --no-cache
 *   skopeo-read  skopeo copy docker://R/IMG oci:DIR (what reading the original costs)
 *   skopeo-write skopeo copy oci:FLAT docker://R/NEW-REPO:flat, FLAT being dflatten's own result
 *                written once (untimed) as an OCI dir, NEW-REPO a repository made for the run
 *
 * The target is dflatten's wall time against skopeo-read + skopeo-write. skopeo keeps a cache of
 * where it has seen blobs (/var/lib/containers/cache for root) and would mount the new layer from
 * an earlier round's repository instead of uploading it: skopeo-write runs in a mount namespace of
 * its own with an empty tmpfs over that dir, so every round uploads what a first push uploads.
 * The registry's access log gives each run's blob uploads, mounts and HEADs. No daemon is used
 * after the images are pushed; each round still holds the daemon lock, so the other sessions'
 * daemon tests do not run beside it (their other work still does).
 *
 * Output: bench/results-registry.{md,json}, bench/chart-registry.svg. Knobs as ctrd.ts.
 */
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { execa } from 'execa'
import { measure, settle, type MeasureContext } from './measure.js'
import { benchSetup, list, log, num, pick, type BenchImageRef } from './setup.js'
import { failures, header, median, ratio, resultsTable, stageLines, writeExtraReport, type CtrdData } from './ctrd-report.js'
import { machineInfo } from './report.js'
import { logOffset, skopeoCopy, trafficSince } from './pulled.js'

interface RegRun {
  img: BenchImageRef
  host: string
  dflatten: string[]
  flatDir: string
  readDir: string
  round: number
}

interface RegCommand {
  key: string
  label: string
  isDflatten: boolean
  argv(r: RegRun): string[]
}

const BLOB_CACHE = '/var/lib/containers/cache'
/**
 * Names this run's repositories: the registry's storage outlives a run, and a repository an
 * earlier run filled would take skopeo-write's push without an upload.
 */
const RUN = Date.now().toString(36)

const COMMANDS: RegCommand[] = [
  {
    key: 'dflatten',
    label: 'dflatten docker:// → docker://',
    isDflatten: true,
    argv: (r) => [
      ...r.dflatten,
      r.img.ref,
      '--base',
      r.img.base,
      '-t',
      `docker://${r.host}/${r.img.repo}:flat`,
      '--no-cache',
      '--json',
    ],
  },
  {
    key: 'skopeo-read',
    label: 'skopeo copy docker:// → oci: (original)',
    isDflatten: false,
    argv: (r) => skopeoCopy(r.img.ref, `oci:${r.readDir}:orig`),
  },
  {
    key: 'skopeo-write',
    label: 'skopeo copy oci: → docker:// (result, new repo)',
    isDflatten: false,
    argv: (r) => [
      'unshare',
      '-m',
      '--propagation',
      'private',
      'sh',
      '-c',
      `mkdir -p ${BLOB_CACHE} && mount -t tmpfs dfb-blob-cache ${BLOB_CACHE} && exec "$@"`,
      'sh',
      ...skopeoCopy(`oci:${r.flatDir}:flat`, `docker://${r.host}/dfb-skopeo-${r.img.key}-${RUN}-r${r.round}:flat`),
    ],
  },
]

function markdown(d: CtrdData): string {
  const out = header(d, 'dflatten benchmark: registry to registry, no daemon')
  const s = d.settings
  out.push('## How it was measured', '')
  out.push(
    `- ${s.rounds} round(s); per image and round the commands alternate (${s.commands.map((c) => c.key).join(', ')}). Medians, min–max in parentheses.`,
    '- A local docker-registry (distribution 2.8, plain HTTP on 127.0.0.1, filesystem storage on the same disk) holds the images, pushed by `skopeo copy docker-daemon:… docker://…` (gzip layers).',
    `- Before each run, untimed: the OCI dir skopeo-read writes is removed, \`sync\`, a ${s.settleS} s wait. The registry's blobs are not pre-read: each run reads them through the registry as it is.`,
    "- skopeo-write pushes the flattened result (dflatten's own, written once as an OCI dir) into a new repository each round, with skopeo's blob-location cache hidden (see registry.ts): it uploads every blob, the base's included, as a first push does. dflatten pushes into the source's repository, which already holds the base's blobs (one HEAD each).",
    "- peak RSS: GNU time's max RSS (the largest of the command and its children).",
    '',
    '## Images',
    '',
    '| image | layers (result) | new layer (tar) | new layer (blob) |',
    '|---|---:|---:|---:|',
    ...d.images.map(
      (i) =>
        `| \`${i.ref}\` | ${i.layers} | ${(i.flatLayerB / 1e6).toFixed(0)} MB | ${i.blob ? `${(i.blob.size / 1e6).toFixed(0)} MB` : '-'} |`,
    ),
    '',
    '## Results',
    '',
    ...resultsTable(d, {
      head: 'blob uploads / mounts / HEADs',
      cell: (runs) => {
        const t = runs.at(-1)?.traffic
        return t ? `${t.blobUploads} / ${t.blobMounts} / ${t.blobHeads}` : '-'
      },
    }),
    '',
    '![wall time per image and command](chart-registry.svg)',
    '',
    "## Issue 16's targets",
    '',
  )
  for (const i of d.images) {
    const [read, write] = [median(d, i.key, 'skopeo-read'), median(d, i.key, 'skopeo-write')]
    const rss = Math.max(
      ...d.runs
        .filter((r) => r.image === i.key && r.ok && r.maxRssKB && r.command === 'dflatten')
        .map((r) => (r.maxRssKB ?? 0) * 1024),
      0,
    )
    out.push(
      `- **${i.key}**: dflatten / (skopeo-read + skopeo-write) ${ratio(median(d, i.key, 'dflatten'), read !== null && write !== null ? read + write : null, 1.3)}` +
        `; highest dflatten RSS ${(rss / 1e6).toFixed(0)} MB (target < 150 MB: ${rss < 150e6 ? 'met' : '**missed**'}).`,
    )
  }
  out.push('', ...stageLines(d), ...failures(d))
  return out.join('\n')
}

async function main(): Promise<void> {
  const rounds = Math.max(1, Math.round(num('BENCH_ROUNDS', 3)))
  const settleS = num('BENCH_SETTLE', 15)
  const commands = pick('BENCH_COMMANDS', list(process.env.BENCH_COMMANDS), COMMANDS)
  const s = await benchSetup('registry')
  const ctx: MeasureContext = { dockerd: null, diskPaths: [s.workDir], scratchDir: s.workDir }
  const data: CtrdData = {
    command: s.command('npm run bench:registry'),
    startedAt: new Date().toISOString(),
    finishedAt: null,
    interrupted: false,
    machine: { ...(await machineInfo(s.workDir, s.repo)), load: s.loadNote() },
    settings: {
      scale: 1,
      rounds,
      manyLayers: 100,
      settleS,
      cache: 'warm',
      commands: commands.map(({ key, label, isDflatten }) => ({ key, label, isDflatten })),
    },
    images: [],
    runs: [],
  }
  const save = (): Promise<void> => writeExtraReport(s.outDir, 'registry', data, markdown)
  try {
    for (const img of s.images) {
      if (s.stopping()) break
      const r: RegRun = {
        img,
        host: s.reg.host,
        dflatten: s.dflatten,
        flatDir: join(s.workDir, `oci-flat-${img.key}`),
        readDir: join(s.workDir, `oci-read-${img.key}`),
        round: 0,
      }
      try {
        log(`${img.key}: writing the flattened result as an OCI dir (untimed)`)
        await rm(r.flatDir, { recursive: true, force: true })
        await mkdir(r.flatDir, { recursive: true })
        const out = await execa(r.dflatten[0], [
          ...r.dflatten.slice(1),
          img.ref,
          '--base',
          img.base,
          '-t',
          `oci:${r.flatDir}:flat`,
          '--no-cache',
          '--json',
        ])
        const res = JSON.parse(out.stdout) as { layers: number; layerBytes: number; blob?: { mediaType: string; size: number } }
        data.images.push({
          key: img.key,
          ref: img.ref,
          description: img.description,
          layers: res.layers,
          sizeB: 0,
          baseRef: img.base,
          baseSizeB: 0,
          flatLayerB: res.layerBytes,
          floorArchiveB: 0,
          flatImageId: '',
          defaultMethod: 'registry',
          blob: res.blob ?? null,
        })
        await save()
        const imgRounds = Math.max(1, Math.round(num(`BENCH_ROUNDS_${img.key.toUpperCase()}`, rounds)))
        for (let round = 1; round <= imgRounds && !s.stopping(); round++) {
          r.round = round
          // No daemon is used, but the lock keeps the other sessions' daemon tests out of the round.
          await s.withLock(`${img.key} round ${round}`, async () => {
            for (const cmd of commands) {
              if (s.stopping()) break
              await rm(r.readDir, { recursive: true, force: true })
              await settle(settleS)
              const offset = await logOffset(s.reg.accessLog)
              const sample = await measure(cmd.argv(r), ctx)
              const traffic = await trafficSince(s.reg.accessLog, offset)
              const timings =
                cmd.isDflatten && sample.ok
                  ? (JSON.parse(sample.stdout) as { timings?: Record<string, number> }).timings
                  : undefined
              data.runs.push({
                image: img.key,
                command: cmd.key,
                round,
                ok: sample.ok,
                ...(sample.error ? { error: sample.error } : {}),
                wallS: sample.wallS,
                cpuS: sample.cpuS,
                maxRssKB: sample.maxRssKB,
                dockerdCpuS: null,
                peakDiskB: sample.peakDiskB,
                keptDiskB: sample.keptDiskB,
                load1: sample.load1,
                traffic,
                ...(timings ? { timings } : {}),
              })
              await save()
              log(
                `${img.key} round ${round}/${imgRounds} ${cmd.key}: ` +
                  (sample.ok
                    ? `${sample.wallS.toFixed(2)} s wall, ${sample.cpuS.toFixed(2)} s CPU, ${(sample.maxRssKB / 1024).toFixed(0)} MiB RSS, uploads ${traffic.blobUploads}, mounts ${traffic.blobMounts}, load ${sample.load1.toFixed(1)}`
                    : `FAILED ${sample.error ?? ''}`),
              )
            }
          })
        }
      } finally {
        await rm(r.flatDir, { recursive: true, force: true })
        await rm(r.readDir, { recursive: true, force: true })
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
  log(`report: ${join(s.outDir, 'results-registry.md')}`)
}

main().catch((e: unknown) => {
  log(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`)
  process.exitCode = 1
})
