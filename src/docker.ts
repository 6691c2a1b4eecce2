/**
 * The one module that talks to Docker's CLI, through execa (the classic store's files, read by
 * the kernel methods, are src/docker-store.ts's). Nothing here ever writes under the daemon's root.
 */
import type { Readable, Writable } from 'node:stream'
import { execa, ExecaError, type ResultPromise } from 'execa'
import { PiecewisePassThrough } from './pieces.js'
import { DflattenError, isDflattenError } from './errors.js'

export interface ImageInspect {
  Id: string
  RepoTags: string[] | null
  RepoDigests: string[] | null
  Created: string
  Size: number
  Os: string
  Architecture: string
  Variant?: string
  Config: Record<string, unknown> | null
  /** Left out by daemons that use the containerd image store. */
  GraphDriver?: { Name: string; Data: Record<string, string> | null }
  RootFS: { Type: string; Layers?: string[] }
}

export interface DaemonInfo {
  driver: string
  dockerRoot: string
  serverVersion: string
  containerdStore: boolean
  remote: boolean
  /** The daemon's own platform (os/arch), which docker inspect shows of an image index. */
  platform?: string
  /** Where its containerd listens and the namespace of its images: `docker info` says so from API 1.46. */
  containerd?: { address?: string; namespace?: string }
}

let DOCKER = 'docker'

/**
 * Which docker CLI every later call runs (Settings.docker); the library's entry sets it, the
 * command line maps DFLATTEN_DOCKER onto it.
 */
export function useDockerCommand(cmd: string): void {
  DOCKER = cmd
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim()
}

/** Run the docker CLI; turn its failures into one-line errors that say what was attempted. */
export async function docker(
  args: string[],
  opts: { input?: string; signal?: AbortSignal; maxBuffer?: number } = {},
): Promise<string> {
  try {
    const r = await execa(DOCKER, args, {
      input: opts.input,
      cancelSignal: opts.signal,
      stripFinalNewline: true,
      maxBuffer: opts.maxBuffer ?? 256 * 1024 * 1024,
    })
    return r.stdout
  } catch (e) {
    throw dockerError(args, e)
  }
}

/**
 * What docker's stderr says, in docker's own wording: it is matched here and nowhere else, and
 * turned into codes that callers branch on.
 */
const DOCKER_SAYS = {
  daemonDown: /Cannot connect to the Docker daemon|Is the docker daemon running|connect: no such file/i,
  denied: /permission denied.*docker/i,
  noSuchImage: /No such image:\s*(\S+?):?\s*$/im,
  noSuchContainer: /No such container/i,
}

function stderrOf(e: unknown): string {
  const stderr = (e as { stderr?: unknown }).stderr
  return typeof stderr === 'string' ? stderr : ''
}

/** A failed docker command as one line in docker's words, with a code (see DOCKER_SAYS). */
function dockerError(args: string[], e: unknown): Error {
  if (e instanceof ExecaError) {
    if (e.isCanceled) return e
    if ((e as { code?: string }).code === 'ENOENT') {
      return new DflattenError('tool-missing', 'the docker CLI is not installed (or not on PATH)')
    }
    const stderr = oneLine(stderrOf(e))
    if (DOCKER_SAYS.daemonDown.test(stderr)) {
      return new DflattenError('daemon-down', `the Docker daemon is not reachable: ${stderr}`)
    }
    if (DOCKER_SAYS.denied.test(stderr)) {
      return new DflattenError('daemon-down', `not allowed to talk to the Docker daemon: ${stderr}`)
    }
    const missing = DOCKER_SAYS.noSuchImage.exec(stderrOf(e))
    if (missing) return new DflattenError('image-not-found', `image not found: ${missing[1]}`)
    return new DflattenError('tool-failed', `docker ${args[0]} failed: ${stderr || e.shortMessage}`)
  }
  return e as Error
}

export async function daemonInfo(): Promise<DaemonInfo> {
  const out = await docker(['info', '--format', '{{json .}}'])
  const info = JSON.parse(out) as {
    Driver: string
    DockerRootDir: string
    ServerVersion: string
    DriverStatus?: Array<[string, string]>
    ServerErrors?: string[]
    OSType?: string
    Architecture?: string
    Containerd?: { Address?: string; Namespaces?: { Containers?: string } } | null
  }
  if (info.ServerErrors?.length) {
    throw new DflattenError('daemon-down', `the Docker daemon is not reachable: ${oneLine(info.ServerErrors.join('; '))}`)
  }
  // DOCKER_HOST is docker's own setting, which the CLI we run reads too: where it points is where
  // `docker info` just looked.
  const host = process.env.DOCKER_HOST ?? ''
  return {
    driver: info.Driver,
    dockerRoot: info.DockerRootDir,
    serverVersion: info.ServerVersion,
    containerdStore: (info.DriverStatus ?? []).some(([k]) => k === 'driver-type') || info.Driver.includes('snapshotter'),
    remote: host !== '' && !host.startsWith('unix://'),
    ...(info.OSType && info.Architecture ? { platform: `${info.OSType}/${info.Architecture}` } : {}),
    ...(info.Containerd ? { containerd: { address: info.Containerd.Address, namespace: info.Containerd.Namespaces?.Containers } } : {}),
  }
}

/** The daemon's API version (`docker version`), e.g. `1.45`: what decides the options it takes. */
export async function serverApiVersion(): Promise<string> {
  return docker(['version', '--format', '{{.Server.APIVersion}}'])
}

/** Is API version `have` at least `want`? Both `major.minor`. */
export function apiAtLeast(have: string, want: string): boolean {
  const [a, b] = have.split('.').map(Number)
  const [c, d] = want.split('.').map(Number)
  return a > c || (a === c && b >= d)
}

/** Inspect images; a missing one is reported by name. */
export async function inspectImages(refs: string[]): Promise<ImageInspect[]> {
  if (refs.length === 0) return []
  const out = await docker(['image', 'inspect', ...refs], { maxBuffer: 1024 * 1024 * 1024 })
  return JSON.parse(out) as ImageInspect[]
}

export async function inspectImage(ref: string): Promise<ImageInspect> {
  const [img] = await inspectImages([ref])
  return img
}

/** One platform of a multi-platform image, as the daemon inspects it (API 1.49 and later only). */
export async function inspectImagePlatform(ref: string, platform: string): Promise<ImageInspect> {
  const out = await docker(['image', 'inspect', '--platform', platform, ref])
  return (JSON.parse(out) as ImageInspect[])[0]
}

/** Like inspectImage, but a missing image gives null instead of an error. */
export async function findImage(ref: string): Promise<ImageInspect | null> {
  try {
    return await inspectImage(ref)
  } catch (e) {
    if (isDflattenError(e, 'image-not-found')) return null
    throw e
  }
}

/**
 * Inspect the images listed, skipping any that someone removed between the listing and now:
 * on a shared host images come and go while we look.
 */
async function inspectListed(ids: string[]): Promise<ImageInspect[]> {
  try {
    return await inspectImages(ids)
  } catch (e) {
    if (!(isDflattenError(e, 'image-not-found'))) throw e
    const one = await Promise.all(ids.map((id) => findImage(id)))
    return one.filter((i): i is ImageInspect => i !== null)
  }
}

async function listImages(all: boolean): Promise<ImageInspect[]> {
  const out = await docker(['image', 'ls', ...(all ? ['--all'] : []), '--no-trunc', '--format', '{{.ID}}'])
  return inspectListed([...new Set(out.split('\n').filter(Boolean))])
}

/** Every local image that has at least one tag, with its inspect data. */
export async function taggedImages(): Promise<ImageInspect[]> {
  return (await listImages(false)).filter((i) => (i.RepoTags ?? []).length > 0)
}

/**
 * Every local image that is not a build step's intermediate: tagged ones and dangling ones (a
 * loaded image that lost its tag is dangling, never intermediate). For the cache lookup.
 */
export async function topLevelImages(): Promise<ImageInspect[]> {
  return listImages(false)
}

export async function tagImage(id: string, ref: string): Promise<void> {
  await docker(['tag', id, ref])
}

/** What `docker load` printed about the image it loaded. */
export interface LoadOutput {
  tags: string[]
  ids: string[]
}

export function parseLoadOutput(out: string): LoadOutput {
  const tags: string[] = []
  const ids: string[] = []
  for (const line of out.split('\n')) {
    const t = /^Loaded image: (.+)$/.exec(line.trim())
    if (t) tags.push(t[1])
    const i = /^Loaded image ID: (sha256:[0-9a-f]{64})$/.exec(line.trim())
    if (i) ids.push(i[1])
  }
  return { tags, ids }
}

/**
 * A docker command whose stdout is streamed, as a running child and that output. The output is
 * execa's readable() of the child, taken at once: when a child exits, Node resumes (so throws
 * away) whatever of its stdout nobody is reading yet, and the save method's second pass starts
 * reading only when pack reaches the first file. That readable ends only once docker exited 0 and
 * errors if it failed, so a reader never takes a failed command's short output for the whole;
 * the PassThrough after it puts that failure in docker's words, and is read a piece at a time, a
 * MB ahead at most (pieces.ts).
 */
function streamed(args: string[], signal?: AbortSignal): Streamed {
  const child = execa(DOCKER, args, { buffer: { stdout: false, stderr: true }, cancelSignal: signal })
  const output = child.readable()
  const stdout = new PiecewisePassThrough()
  output.once('error', (e) => stdout.destroy(dockerError(args, e)))
  // A reader that stopped early and killed the command need not hear of the kill; one that is
  // still reading gets the error through its own listener.
  stdout.on('error', () => {})
  return { child, stdout: output.pipe(stdout), args }
}

/** A docker command whose output is read as it comes (see streamed). */
export interface Streamed {
  child: ResultPromise
  stdout: Readable
  args: string[]
}

/**
 * Why reading a streamed command's output failed: the command's own failure, in docker's words,
 * if it exits with one within a moment; else `e`. The output itself already ends in that failure
 * (see streamed); this is for a reader that gave up on what it got before the command ended.
 */
export async function explainFailure(s: Streamed, e: unknown): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined
  const failed = await Promise.race([
    s.child.then(
      () => null,
      (err: unknown) => err,
    ),
    new Promise((r) => (timer = setTimeout(r, 2000, null))),
  ])
  clearTimeout(timer)
  return failed ? dockerError(s.args, failed) : e
}

/** The command's end, once its output has been read: a failure in docker's words. */
export async function finished(s: Streamed): Promise<void> {
  await s.child.catch((e: unknown) => {
    throw dockerError(s.args, e)
  })
}

/** `docker save` of one image, streaming; `platform` only where the daemon takes it (API 1.48). */
export function dockerSave(ref: string, signal?: AbortSignal, platform?: string): Streamed {
  return streamed(['save', ...(platform ? ['--platform', platform] : []), ref], signal)
}

/** `docker export` of a container: its filesystem as one tar, streaming. */
export function dockerExport(container: string, signal?: AbortSignal): Streamed {
  return streamed(['export', container], signal)
}

/**
 * Create (never start) a container of `image`, only to read its filesystem with `docker export`.
 * No network, and a command given so that an image without Cmd or Entrypoint is accepted; the
 * platform is the image's own, which the containerd store insists on for a foreign one.
 */
export async function createContainer(name: string, image: string, platform: string | undefined, signal?: AbortSignal): Promise<void> {
  const args = ['create', '--name', name, '--network', 'none', '--label', 'dflatten.temporary=export']
  if (platform) args.push('--platform', platform)
  await docker([...args, image, 'dflatten-export-only'], { signal })
}

/** Which daemon the CLI talks to, so a later process can talk to the same one. */
export interface DaemonAddress {
  DOCKER_HOST?: string
  DOCKER_CONTEXT?: string
}

export function daemonAddress(): DaemonAddress {
  return { DOCKER_HOST: process.env.DOCKER_HOST, DOCKER_CONTEXT: process.env.DOCKER_CONTEXT }
}

/** Remove a container and its anonymous volumes; one that is already gone is fine. */
export async function removeContainer(id: string, address: DaemonAddress = daemonAddress()): Promise<void> {
  try {
    // Unset variables stay unset: Node leaves out environment entries whose value is undefined.
    await execa(DOCKER, ['rm', '--force', '--volumes', id], { env: { ...address }, stripFinalNewline: true })
  } catch (e) {
    if (DOCKER_SAYS.noSuchContainer.test(stderrOf(e))) return
    throw dockerError(['rm'], e)
  }
}

/** How many history entries an image's config has (metadata steps included). */
export async function historyLength(ref: string): Promise<number> {
  const out = await docker(['history', '--no-trunc', '--format', '{{.ID}}', ref])
  return out.split('\n').filter(Boolean).length
}

/**
 * A `docker load` child reading an archive on stdin. Stopped with SIGKILL: the docker CLI may sit
 * out a SIGTERM while it streams; SIGKILL only ends the client, and the daemon then drops the
 * half-sent archive without tagging anything.
 */
export function dockerLoad(signal?: AbortSignal) {
  return execa(DOCKER, ['load'], { stdin: 'pipe', cancelSignal: signal, killSignal: 'SIGKILL', stripFinalNewline: true })
}

/** A running `docker load` (see dockerLoadInput). */
export interface LoadInput {
  /**
   * execa's writable() of its stdin: it finishes only once docker load exited 0, and when docker
   * load fails, early or late, it closes only once the child is gone.
   */
  stdin: Writable
  /** What docker load said it loaded; a failure in docker's words. */
  loaded: Promise<LoadOutput>
  /** Stop it (SIGKILL, see dockerLoad), unless it ended, and wait until it is gone. */
  kill(): Promise<void>
}

/** Start `docker load`, to be fed an archive through `stdin`. */
export function dockerLoadInput(signal?: AbortSignal): LoadInput {
  const child = dockerLoad(signal)
  const stdin = child.writable()
  stdin.on('error', () => {}) // the child's failure (or an EPIPE from it), which `loaded` says better
  const loaded = child.then(
    (r) => parseLoadOutput(r.stdout),
    (e: unknown) => {
      throw dockerError(['load'], e)
    },
  )
  loaded.catch(() => {}) // awaited by whoever feeds it; until then a failure must not go unhandled
  return {
    stdin,
    loaded,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill()
      await child.catch(() => undefined)
    },
  }
}

export { dockerError }
