/**
 * Measuring one command, and the commands the benchmark compares.
 *
 * Per run: wall time; user+sys CPU of the command and every child it waited for (GNU time's
 * rusage); the largest max RSS among them (for dflatten that is the node process: its rsync and
 * docker children are smaller); dockerd's CPU time over the run (most of a load happens in the
 * daemon, which the command's own rusage does not see); and the peak growth of used bytes on the
 * filesystems that hold temp dirs and Docker's root, sampled every 100 ms (dflatten's work dir,
 * `docker load`'s and `docker save`'s temp dirs in the daemon's root, the new layer itself).
 */
import { spawn } from 'node:child_process'
import { readFile, rm, stat, statfs } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { docker, inspect, removeImage, type BenchImage, type ImageFacts } from './images.js'

export interface Sample {
  ok: boolean
  /** Last lines of stderr when the command failed. */
  error?: string
  wallS: number
  cpuS: number
  maxRssKB: number
  dockerdCpuS: number | null
  /** Highest used bytes seen during the run, minus used bytes just before it. */
  peakDiskB: number
  /** Used bytes just after the run, minus just before: what the run left (e.g. the new layer). */
  keptDiskB: number
  /** 1-minute load average when the run started: other work on the machine shows up here. */
  load1: number
  stdout: string
}

// ---------------------------------------------------------------------------------------------
// Process and system readings.

const CLOCK_TICKS = Number((await execa('getconf', ['CLK_TCK'])).stdout) || 100

/** utime + stime of a process, in seconds (fields 14 and 15 of /proc/<pid>/stat). */
async function cpuSeconds(pid: number): Promise<number | null> {
  try {
    const s = await readFile(`/proc/${pid}/stat`, 'utf8')
    // The command name in parentheses may hold spaces: count fields after the last ')'.
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS
  } catch {
    return null
  }
}

/**
 * The dockerd that the docker CLI talks to. Several may run on one host (other engineers start
 * newer daemons on their own sockets), so take the pid file of the default socket, or the
 * dockerd whose command line names DOCKER_HOST's socket.
 */
export async function dockerdPid(): Promise<number | null> {
  const host = process.env.DOCKER_HOST
  if (!host || host === 'unix:///var/run/docker.sock' || host === 'unix:///run/docker.sock') {
    const pid = Number((await readFile('/var/run/docker.pid', 'utf8').catch(() => '')).trim())
    if (pid && (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim() === 'dockerd') return pid
  }
  const { stdout } = await execa('pgrep', ['-x', 'dockerd'], { reject: false })
  for (const p of stdout.split('\n').filter(Boolean)) {
    const cmd = (await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')).split('\0')
    if (host ? cmd.includes(host) : !cmd.some((a) => a === '-H' || a.startsWith('--host'))) return Number(p)
  }
  return null
}

/**
 * Used bytes summed over the distinct filesystems holding `paths`. Used, not free: free space
 * also moves with other people's work, used bytes at least count only allocations.
 */
async function usedBytes(paths: string[]): Promise<number> {
  const seen = new Set<number>()
  let total = 0
  for (const p of paths) {
    const dev = (await stat(p)).dev
    if (seen.has(dev)) continue
    seen.add(dev)
    const s = await statfs(p)
    total += (s.blocks - s.bfree) * s.bsize
  }
  return total
}

/** Sample used bytes every 100 ms until stopped; return the highest value seen. */
function diskSampler(paths: string[]) {
  let peak = 0
  let busy = false
  const sample = async (): Promise<void> => {
    if (busy) return
    busy = true
    try {
      peak = Math.max(peak, await usedBytes(paths))
    } finally {
      busy = false
    }
  }
  const timer = setInterval(() => void sample(), 100)
  return {
    stop: async (): Promise<number> => {
      clearInterval(timer)
      while (busy) await new Promise((r) => setTimeout(r, 5))
      await sample()
      return peak
    },
  }
}

// ---------------------------------------------------------------------------------------------
// One measured run.

export interface MeasureContext {
  dockerd: number | null
  /** Paths whose filesystems the disk sampler watches. */
  diskPaths: string[]
  /** Where GNU time writes its numbers. */
  scratchDir: string
}

/** Run argv under GNU time and the samplers; never throws for a failing command. */
export async function measure(argv: string[], ctx: MeasureContext): Promise<Sample> {
  const timeFile = join(ctx.scratchDir, 'dfb-time.out')
  await rm(timeFile, { force: true })
  const load1 = loadavg()[0]
  const before = await usedBytes(ctx.diskPaths)
  const disk = diskSampler(ctx.diskPaths)
  const d0 = ctx.dockerd ? await cpuSeconds(ctx.dockerd) : null
  const started = process.hrtime.bigint()
  const child = spawn('/usr/bin/time', ['-f', '%U %S %M', '-o', timeFile, '--', ...argv], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()))
  child.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-4000)))
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? -1)))
  const wallS = Number(process.hrtime.bigint() - started) / 1e9
  const d1 = ctx.dockerd ? await cpuSeconds(ctx.dockerd) : null
  const peak = await disk.stop()
  const after = await usedBytes(ctx.diskPaths)
  // GNU time appends "Command exited with non-zero status N" before its line on failure.
  const lines = (await readFile(timeFile, 'utf8').catch(() => '')).trim().split('\n')
  await rm(timeFile, { force: true })
  const [user, sys, rss] = (lines[lines.length - 1] ?? '').split(' ').map(Number)
  return {
    ok: code === 0,
    ...(code === 0 ? {} : { error: `exit ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}` }),
    wallS,
    cpuS: (user || 0) + (sys || 0),
    maxRssKB: rss || 0,
    dockerdCpuS: d0 !== null && d1 !== null ? d1 - d0 : null,
    peakDiskB: Math.max(0, peak - before),
    keptDiskB: after - before,
    load1,
    stdout,
  }
}

// ---------------------------------------------------------------------------------------------
// Before a run: the disk and the page cache.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * On these machines creating many files right after many were deleted (an rmi) is much slower
 * for a minute or more: writing 200 MB as 4 KiB files took 5.3 s on a quiet disk, 15.9 s right
 * after deleting as many, 7.2 s a minute later. The guest sees no pending I/O by then (the
 * discards are done), so there is nothing to poll: flush, then wait a fixed time. With 0, each
 * run instead follows the removal of its own previous result directly.
 */
export async function settle(seconds: number): Promise<void> {
  await execa('sync')
  if (seconds > 0) await sleep(seconds * 1000)
}

/**
 * Read the inputs once (files, and the inodes of trees) so the run finds them in the page cache:
 * idle cache is evicted within about a minute here, so this runs right before each timed run.
 * tar writes to a pipe, not /dev/null, which GNU tar would recognise and then skip reading.
 */
export async function warm(paths: string[]): Promise<void> {
  if (!paths.length) return
  await execa('sh', ['-c', 'tar -cf - --numeric-owner "$@" 2>/dev/null | cat > /dev/null', 'warm', ...paths], {
    reject: false,
  })
}

/** The cold alternative: drop the page cache (every process on the host pays for it). */
export async function dropCaches(): Promise<void> {
  await execa('sync')
  await execa('sh', ['-c', 'echo 3 > /proc/sys/vm/drop_caches'])
}

// ---------------------------------------------------------------------------------------------
// The commands compared.

/** What the commands of one image share. */
export interface ImageRun {
  image: BenchImage
  facts: ImageFacts
  /** bin/dflatten.js (and its arguments before the image). */
  dflatten: string[]
  /** The floor's archive: only the flattened layer, config and manifests. */
  floorArchive: string
  floorTag: string
}

export interface Command {
  key: string
  label: string
  /** dflatten itself: its peak RSS is reported. */
  isDflatten: boolean
  /** Untimed, before the run: remove the previous result, make what the run needs. */
  prepare(r: ImageRun): Promise<void>
  /** Files and trees the run reads: warmed into the page cache before it. */
  inputs(r: ImageRun): string[]
  argv(r: ImageRun): string[]
  /** Untimed, after the run. */
  after?(r: ImageRun): Promise<void>
}

/** Result names of the commands that load the flattened image (they all load the same id). */
export function flatTags(r: ImageRun): string[] {
  return [...DFLATTEN_METHODS.map((m) => flatTag(r, m)), r.floorTag]
}

function flatTag(r: ImageRun, method: string): string {
  return `dfb-flat-${r.image.key}:${method}`
}

function exportTag(r: ImageRun): string {
  return `dfb-exported-${r.image.key}:1`
}

function exportContainer(r: ImageRun): string {
  return `dfb-export-${r.image.key}`
}

/**
 * Every result of the flatten family goes before each of their runs: overlay, overlay-copy,
 * save and the floor load the same image id, and a run must load it into a daemon without it.
 */
async function removeFlattened(r: ImageRun): Promise<void> {
  for (const t of flatTags(r)) await removeImage(t)
}

export const DFLATTEN_METHODS = ['overlay', 'overlay-copy', 'save'] as const

function dflattenCommand(method: (typeof DFLATTEN_METHODS)[number]): Command {
  return {
    key: method,
    label: `dflatten --method ${method}`,
    isDflatten: true,
    prepare: removeFlattened,
    inputs: (r) => r.facts.layerDirs,
    argv: (r) => [
      ...r.dflatten,
      r.image.ref,
      '-t',
      flatTag(r, method),
      '--base',
      r.image.base,
      '--method',
      method,
      '--no-cache',
      '--json',
    ],
  }
}

export async function removeExported(r: ImageRun): Promise<void> {
  await execa('docker', ['rm', '-f', exportContainer(r)], { reject: false })
  await removeImage(exportTag(r))
}

export const COMMANDS: Command[] = [
  ...DFLATTEN_METHODS.map(dflattenCommand),
  {
    // The least any flattener onto this base must do: the daemon loading the new layer.
    key: 'floor',
    label: 'floor: docker load -i (new layer only)',
    isDflatten: false,
    prepare: removeFlattened,
    inputs: (r) => [r.floorArchive],
    argv: (r) => ['docker', 'load', '-q', '-i', r.floorArchive],
  },
  {
    // The usual way to squash: one layer of the whole filesystem, base included, config lost.
    key: 'export-import',
    label: 'docker export | docker import',
    isDflatten: false,
    prepare: async (r) => {
      await removeExported(r)
      await docker(['create', '--name', exportContainer(r), r.image.ref])
    },
    inputs: (r) => r.facts.layerDirs,
    argv: (r) => ['bash', '-o', 'pipefail', '-c', `docker export ${exportContainer(r)} | docker import - ${exportTag(r)}`],
    after: async (r) => {
      await execa('docker', ['rm', '-f', exportContainer(r)], { reject: false })
    },
  },
  {
    // What reading the image through the daemon costs (the save method does it twice).
    key: 'docker-save',
    label: 'docker save > /dev/null',
    isDflatten: false,
    prepare: async () => {},
    inputs: (r) => r.facts.layerDirs,
    argv: (r) => ['bash', '-o', 'pipefail', '-c', `docker save ${r.image.ref} > /dev/null`],
  },
]

/**
 * The floor's archive, made once and untimed: dflatten --output writes exactly the new layer,
 * the config and the manifests, which is all `docker load` needs when the daemon has the base.
 */
export async function makeFloorArchive(r: ImageRun): Promise<{ imageId: string; layerBytes: number; archiveBytes: number }> {
  await rm(r.floorArchive, { force: true })
  const { stdout } = await execa(r.dflatten[0], [
    ...r.dflatten.slice(1),
    r.image.ref,
    '-t',
    r.floorTag,
    '--base',
    r.image.base,
    '--output',
    r.floorArchive,
    '--no-cache',
    '--json',
  ])
  const res = JSON.parse(stdout) as { imageId: string; layerBytes: number }
  return { imageId: res.imageId, layerBytes: res.layerBytes, archiveBytes: (await stat(r.floorArchive)).size }
}

/** The method `dflatten` picks by itself (auto) for this image on this host. */
export async function defaultMethod(r: ImageRun): Promise<string> {
  const { stdout } = await execa(r.dflatten[0], [...r.dflatten.slice(1), 'resolve', r.image.ref, '--base', r.image.base])
  // The resolve document names the method with its reason and state.
  return (JSON.parse(stdout) as { method: { name: string } }).method.name
}

/** The image a command left under its result name, if any, and its top layer's diff id. */
export async function resultOf(r: ImageRun, command: string): Promise<{ id: string; topLayer: string } | null> {
  const ref = command === 'floor' ? r.floorTag : command === 'export-import' ? exportTag(r) : flatTag(r, command)
  const img = await inspect(ref)
  if (!img) return null
  return { id: img.Id, topLayer: img.RootFS.Layers?.at(-1) ?? '' }
}

export function defaultDiskPaths(dockerRoot: string): string[] {
  return [process.env.DFLATTEN_TMPDIR || tmpdir(), dockerRoot]
}
