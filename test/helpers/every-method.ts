// Flatten one image with every method that can work on a daemon, the stage chain included, and
// check each result as the other end-to-end tests do: docker export, config, layers. Shared by
// the tests of cases found from outside (repeated layers, hardlinks), which run on the system's
// Docker 20.10 and on Docker 26 with the containerd image store.
import type { Test } from 'tap'
import { inspect, removeImage } from './docker.js'
import { compareFs, configOf, exportFs, type FsMap } from './export.js'
import { chain, dflatten } from './cli.js'
import { startDocker26 } from './docker26.js'

export interface Daemon {
  name: string
  /** DOCKER_HOST, or undefined for the system's daemon (the default socket). */
  host?: string
  methods: string[]
  /** Why the daemon cannot be tested, when it cannot. */
  skip?: string
}

/**
 * The system's Docker 20.10 (classic store: every method) and Docker 26 with the containerd
 * image store (save and auto only), started with scripts/docker26.sh unless
 * DFLATTEN_SKIP_DOCKER26=1. 'chain' is the stage commands piped by hand, with the save method.
 */
export async function daemons(): Promise<Daemon[]> {
  const out: Daemon[] = [{ name: 'Docker 20.10', methods: ['overlay', 'overlay-copy', 'save', 'chain'] }]
  const d26 = await startDocker26()
  if (!d26) return out
  const host = d26.containerd
  out.push({ name: 'Docker 26, containerd image store', host, methods: ['save', 'auto', 'chain'], skip: d26.started && host ? undefined : d26.said })
  return out
}

/** Run `fn` with DOCKER_HOST set for the image builders and docker helpers (they follow it). */
export async function onDaemon<T>(d: Daemon, fn: (env: Record<string, string>) => Promise<T>): Promise<T> {
  const saved = process.env.DOCKER_HOST
  if (d.host) process.env.DOCKER_HOST = d.host
  try {
    return await fn(d.host ? { DOCKER_HOST: d.host } : {})
  } finally {
    if (saved === undefined) delete process.env.DOCKER_HOST
    else process.env.DOCKER_HOST = saved
  }
}

/**
 * Flatten `ref` onto `base` ('scratch' squashes all) with `method` and check the result against
 * `original` (its export). Returns false when the run failed.
 */
export async function flattenChecked(
  t: Test,
  ref: string,
  base: string,
  method: string,
  original: FsMap,
  env: Record<string, string>,
): Promise<boolean> {
  const target = `dft-result-${method}-${ref.replace(/[:/]/g, '-')}:1`
  await removeImage(target)
  const r =
    method === 'chain'
      ? await chain([`resolve ${ref} -t ${target} -b ${base} -m save`, 'mount', 'diff', 'pack', 'load'], env)
      : await dflatten([ref, '-t', target, '-b', base, '-m', method, '--no-cache'], { env })
  const what = `${ref} onto ${base} with ${method}`
  t.equal(r.exitCode, 0, `${what}: exits 0 ${r.exitCode ? r.stderr.split('\n').slice(-5).join(' ') : ''}`)
  if (r.exitCode !== 0) return false
  try {
    t.same(compareFs(original, await exportFs(target), { labels: [ref, target] }), [], `${what}: the same filesystem`)
    t.same(await configOf(target), await configOf(ref), `${what}: the same config`)
    const [src, res] = await Promise.all([inspect(ref), inspect(target)])
    const k = base === 'scratch' ? 0 : ((await inspect(base)).RootFS.Layers ?? []).length
    t.equal(res.RootFS.Layers?.length, k + 1, `${what}: the base's ${k} layers plus one`)
    t.same(res.RootFS.Layers?.slice(0, k), src.RootFS.Layers?.slice(0, k), `${what}: the base layers are shared`)
  } finally {
    await removeImage(target)
  }
  return true
}
