/**
 * What the containerd-store and registry benchmarks (ctrd.ts, registry.ts) share: the shared
 * daemon lock, a local registry (Debian's docker-registry on 127.0.0.1), and the benchmark images
 * made "pulled-style" there: pushed from the classic daemon by skopeo (which gzips the layers, as
 * a registry holds them), then pulled into the containerd-store daemon as any pull leaves them.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { execa } from 'execa'
import type { Log } from './images.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * Hold the lock every user of the shared daemons takes, for as long as `fn` runs. flock(1) holds
 * it and waits on its stdin; closing stdin releases it. `-o`: nothing it starts inherits the lock.
 * An empty path runs `fn` without a lock.
 */
export async function withLock<T>(lockPath: string, log: Log, what: string, fn: () => Promise<T>): Promise<T> {
  if (!lockPath) return fn()
  const holder = spawn('flock', ['-o', lockPath, 'sh', '-c', 'echo locked; cat >/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'] })
  const asked = Date.now()
  await new Promise<void>((resolve, reject) => {
    holder.stdout.once('data', () => resolve())
    holder.once('exit', (code) => reject(new Error(`flock ${lockPath} exited with ${String(code)}`)))
  })
  const waited = (Date.now() - asked) / 1000
  if (waited > 1) log(`${what}: waited ${waited.toFixed(0)} s for ${lockPath}`)
  try {
    return await fn()
  } finally {
    holder.stdin.end()
    await new Promise((r) => holder.once('close', r))
  }
}

// ---------------------------------------------------------------------------------------------
// The registry.

export interface Registry {
  /** host:port, for docker:// references (127.0.0.1: plain HTTP is Docker's rule for it). */
  host: string
  /** The same registry as the docker CLI names it (localhost: the daemon pulls over HTTP). */
  daemonHost: string
  accessLog: string
  stop(): Promise<void>
}

/** Start docker-registry with its storage in `dir` (kept between runs, so pushes are reused). */
export async function startRegistry(dir: string, port: number): Promise<Registry> {
  await mkdir(join(dir, 'storage'), { recursive: true })
  const config = join(dir, 'config.yml')
  await writeFile(
    config,
    [
      'version: 0.1',
      'log: {level: info, accesslog: {disabled: false}}',
      `storage: {filesystem: {rootdirectory: ${join(dir, 'storage')}}, delete: {enabled: true}}`,
      `http: {addr: "127.0.0.1:${port}"}`,
      '',
    ].join('\n'),
  )
  const accessLog = join(dir, 'access.log')
  const out = createWriteStream(accessLog, { flags: 'a' })
  const child: ChildProcess = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout?.pipe(out)
  child.stderr?.pipe(out)
  const url = `http://127.0.0.1:${port}/v2/`
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited (${String(child.exitCode)}); see ${accessLog}`)
    const ok = await fetch(url).then((r) => r.ok, () => false)
    if (ok) break
    if (i > 100) throw new Error(`docker-registry does not answer on ${url}`)
    await sleep(100)
  }
  return {
    host: `127.0.0.1:${port}`,
    daemonHost: `localhost:${port}`,
    accessLog,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM')
        await new Promise((r) => child.once('exit', r))
      }
      out.end()
    },
  }
}

/** Does the registry hold this manifest? */
export async function hasManifest(host: string, repo: string, tag: string): Promise<boolean> {
  const r = await fetch(`http://${host}/v2/${repo}/manifests/${tag}`, {
    method: 'HEAD',
    headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json' },
  }).catch(() => null)
  return r?.ok ?? false
}

/** What the registry's access log says a run did, from the log's byte offset before it. */
export interface Traffic {
  blobUploads: number
  blobMounts: number
  blobHeads: number
}

export async function logOffset(path: string): Promise<number> {
  return (await readFile(path).catch(() => Buffer.alloc(0))).length
}

export async function trafficSince(path: string, offset: number): Promise<Traffic> {
  const text = (await readFile(path)).subarray(offset).toString()
  const lines = text.split('\n').filter((l) => / "(PUT|POST|HEAD|PATCH|GET) \/v2\//.test(l))
  return {
    // A finished upload is the PUT that names its digest.
    blobUploads: lines.filter((l) => /"PUT \/v2\/\S+\/blobs\/uploads\/\S*digest=/.test(l)).length,
    blobMounts: lines.filter((l) => /"POST \/v2\/\S+\/blobs\/uploads\/\?\S*mount=/.test(l) && / 201 /.test(l)).length,
    blobHeads: lines.filter((l) => /"HEAD \/v2\/\S+\/blobs\//.test(l)).length,
  }
}

// ---------------------------------------------------------------------------------------------
// Moving images.

/** skopeo with the flags a plain-HTTP registry on 127.0.0.1 needs. */
export function skopeoCopy(src: string, dest: string): string[] {
  return ['skopeo', 'copy', '--quiet', '--src-tls-verify=false', '--dest-tls-verify=false', src, dest]
}

/**
 * Push an image of the classic (default-socket) daemon to the registry; skopeo gzips the layers
 * there. DOCKER_HOST is emptied so skopeo's docker-daemon: reads the default socket.
 */
export async function pushFromDaemon(ref: string, reg: Registry, repo: string, tag: string, log: Log): Promise<void> {
  if (await hasManifest(reg.host, repo, tag)) return
  log(`${ref}: skopeo copy to docker://${reg.host}/${repo}:${tag} (gzip layers)`)
  const argv = skopeoCopy(`docker-daemon:${ref}`, `docker://${reg.host}/${repo}:${tag}`)
  await execa(argv[0], argv.slice(1), { env: { DOCKER_HOST: '' } })
}

/** Pull from the registry into the daemon DOCKER_HOST names, unless it has the image already. */
export async function pullIntoDaemon(reg: Registry, repo: string, tag: string, dockerHost: string, log: Log): Promise<string> {
  const ref = `${reg.daemonHost}/${repo}:${tag}`
  const env = { DOCKER_HOST: dockerHost }
  const have = await execa('docker', ['image', 'inspect', ref], { env, reject: false })
  if (have.exitCode !== 0) {
    log(`${ref}: docker pull into ${dockerHost}`)
    await execa('docker', ['pull', '-q', ref], { env })
  }
  return ref
}
