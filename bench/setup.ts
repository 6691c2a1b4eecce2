/**
 * Setup shared by ctrd.ts and registry.ts: knobs, the images (built on the classic daemon, pushed
 * to the local registry with gzip layers, pulled into the containerd-store daemon for ctrd), the
 * shared lock, Ctrl-C, and the clean-up at the end.
 */
import { mkdir, rm } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { execa } from 'execa'
import { BASE_REF, ensureImages, imageSpecs } from './images.js'
import { dockerdPid } from './measure.js'
import { hasManifest, pullIntoDaemon, pushFromDaemon, startRegistry, withLock, type Registry } from './pulled.js'

export function log(line: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${line}\n`)
}

export function list(v: string | undefined): string[] | null {
  const items = (v ?? '').split(',').map((s) => s.trim()).filter(Boolean)
  return items.length ? items : null
}

export function num(name: string, dflt: number): number {
  const v = process.env[name]
  if (v === undefined || v === '') return dflt
  const n = Number(v)
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${v} is not a number`)
  return n
}

/** The items a comma list names, in their own order; a name that is not there is an error. */
export function pick<T extends { key: string }>(knob: string, names: string[] | null, items: T[]): T[] {
  const unknown = (names ?? []).filter((n) => !items.some((i) => i.key === n))
  if (unknown.length) throw new Error(`${knob}: unknown ${unknown.join(', ')}; choose from ${items.map((i) => i.key).join(', ')}`)
  return items.filter((i) => !names || names.includes(i.key))
}

export interface BenchImageRef {
  key: string
  description: string
  /** Its name where the benchmark reads it: in the containerd-store daemon, or docker://. */
  ref: string
  base: string
  /** Repository and tag in the local registry. */
  repo: string
  tag: string
}

const REPO = fileURLToPath(new URL('../..', import.meta.url))
const splitRef = (ref: string): [string, string] => {
  const i = ref.lastIndexOf(':')
  return [ref.slice(0, i), ref.slice(i + 1)]
}

async function ctrdHost(): Promise<string> {
  if (process.env.DFLATTEN_D26_CTRD_HOST) return process.env.DFLATTEN_D26_CTRD_HOST
  const { stdout } = await execa('bash', [join(REPO, 'scripts/docker26.sh'), 'env'])
  const m = /DFLATTEN_D26_CTRD_HOST=(\S+)/.exec(stdout)
  if (!m) throw new Error('no containerd-store daemon: run scripts/docker26.sh start')
  return m[1]
}

export async function benchSetup(kind: 'ctrd' | 'registry') {
  if (process.getuid?.() !== 0) throw new Error('run as root: the snapshots method mounts overlays')
  await execa('/usr/bin/time', ['true']).catch(() => {
    throw new Error('/usr/bin/time is missing: apt-get install time')
  })
  const lockPath = process.env.BENCH_LOCK ?? '/tmp/dflatten-daemon.lock'
  const workDir = process.env.BENCH_WORKDIR || join(tmpdir(), 'dfb-bench')
  const outDir = process.env.BENCH_OUT || join(REPO, 'bench')
  await mkdir(outDir, { recursive: true })
  const port = num('BENCH_REGISTRY_PORT', 5055)
  const lock = <T>(what: string, fn: () => Promise<T>): Promise<T> => withLock(lockPath, log, what, fn)
  let stopping = false
  process.on('SIGINT', () => {
    if (stopping) process.exit(130)
    stopping = true
    log('interrupted: stopping after this run (Ctrl-C again to quit now)')
  })
  const specs = pick('BENCH_ONLY', list(process.env.BENCH_ONLY), imageSpecs(1, 100).filter((i) => i.key !== 'many'))
  const startLoad = loadavg()[0]

  // The classic daemon on the default socket builds and serves the images.
  const ctrd = await ctrdHost()
  delete process.env.DOCKER_HOST
  const reg: Registry = await startRegistry(join(workDir, 'registry'), port)
  const [baseRepo, baseTag] = splitRef(BASE_REF)
  const pushed = await Promise.all([BASE_REF, ...specs.map((sp) => sp.ref)].map((ref) => hasManifest(reg.host, ...splitRef(ref))))
  // Images the registry already holds from an earlier run need no daemon at all.
  if (!pushed.every(Boolean)) {
    await lock('building the images and pushing them', async () => {
      await ensureImages(specs, workDir, log)
      await pushFromDaemon(BASE_REF, reg, baseRepo, baseTag, log)
      for (const sp of specs) await pushFromDaemon(sp.ref, reg, ...splitRef(sp.ref), log)
    })
  }
  let images: BenchImageRef[]
  if (kind === 'ctrd') {
    const base = await lock('pulling into the containerd store', async () => {
      const b = await pullIntoDaemon(reg, baseRepo, baseTag, ctrd, log)
      for (const sp of specs) await pullIntoDaemon(reg, ...splitRef(sp.ref), ctrd, log)
      return b
    })
    process.env.DOCKER_HOST = ctrd
    // The snapshots method asks the daemon's own containerd, which is not at the default socket.
    process.env.DFLATTEN_CONTAINERD_ADDRESS ??= ctrd.replace(/^unix:\/\//, '').replace(/docker\.sock$/, 'containerd/containerd.sock')
    images = specs.map((sp) => ({ key: sp.key, description: sp.description, ref: `${reg.daemonHost}/${sp.ref}`, base, repo: splitRef(sp.ref)[0], tag: splitRef(sp.ref)[1] }))
  } else {
    images = specs.map((sp) => ({
      key: sp.key,
      description: sp.description,
      ref: `docker://${reg.host}/${sp.ref}`,
      base: `docker://${reg.host}/${BASE_REF}`,
      repo: splitRef(sp.ref)[0],
      tag: splitRef(sp.ref)[1],
    }))
  }
  const knobs = Object.entries(process.env).filter(([k]) => k.startsWith('BENCH_')).sort()
  return {
    repo: REPO,
    workDir,
    outDir,
    reg,
    images,
    // The executable itself, so its shebang's V8 flags apply as they do for users.
    dflatten: [join(REPO, 'bin/dflatten.js')],
    dockerd: kind === 'ctrd' ? await dockerdPid() : null,
    ctrdRoot: process.env.BENCH_CTRD_ROOT || '/var/lib/dflatten-docker26/ctrd/containerd',
    withLock: lock,
    stopping: () => stopping,
    command: (cmd: string) => [...knobs.map(([k, v]) => `${k}=${v ?? ''}`), cmd].join(' '),
    // What else ran is for whoever starts the run to say (BENCH_NOTE); the load at the start is all this knows.
    loadNote: () => `1-minute load average ${startLoad.toFixed(1)} at the start${process.env.BENCH_NOTE ? `; ${process.env.BENCH_NOTE}` : ''}`,
    async finish(): Promise<void> {
      await reg.stop()
      if (process.env.BENCH_CLEAN !== '1') return
      log('BENCH_CLEAN=1: removing the pulled images and the registry storage')
      if (kind === 'ctrd') await lock('removing the pulled images', async () => {
        const refs = [...images.map((i) => i.ref), ...images.slice(0, 1).map((i) => i.base)]
        for (const ref of refs) await execa('docker', ['rmi', ref], { reject: false })
      })
      await rm(join(workDir, 'registry'), { recursive: true, force: true })
    },
  }
}
