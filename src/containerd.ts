/**
 * Talking to the containerd behind a Docker daemon that uses the containerd image store, through
 * its `ctr` client: the exact bytes of manifests and configs from its content store, and the
 * layers' directories from its snapshotter, asked of containerd rather than guessed from paths.
 * The only thing ever created is a view snapshot (see createView), which the caller records
 * before it exists and removes when done.
 */
import { createHash } from 'node:crypto'
import { stat } from 'node:fs/promises'
import { execa, ExecaError } from 'execa'
import { DflattenError } from './errors.js'
import type { DaemonInfo } from './docker.js'
import type { Settings } from './settings.js'
import { formatPlatform, pickManifest, type Platform } from './platform.js'

/** Which containerd, and which of its namespaces holds the daemon's images. */
export interface Containerd {
  ctr: string
  address: string
  namespace: string
}

export const DEFAULT_ADDRESS = '/run/containerd/containerd.sock'
export const DEFAULT_NAMESPACE = 'moby'

/**
 * Settings first, then what `docker info` reports (Docker 27 and later, API 1.46), then the
 * defaults of a packaged install. Docker 26 does not say where its containerd is: set
 * DFLATTEN_CONTAINERD_ADDRESS when it is elsewhere. Whichever it is, `available` checks that
 * this containerd holds the very image docker inspected.
 */
export function containerdFor(info: DaemonInfo, settings: Settings = {}): Containerd {
  return {
    ctr: settings.ctr ?? 'ctr',
    address: settings.containerdAddress ?? info.containerd?.address ?? DEFAULT_ADDRESS,
    namespace: settings.containerdNamespace ?? info.containerd?.namespace ?? DEFAULT_NAMESPACE,
  }
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim()
}

/** Run ctr against that containerd; its failures become one line in its own words. */
async function ctr(c: Containerd, args: string[], opts: { signal?: AbortSignal } = {}): Promise<Buffer> {
  try {
    // ctr waits forever for a socket nobody answers on: bound the dial.
    const r = await execa(c.ctr, ['--address', c.address, '--namespace', c.namespace, '--connect-timeout', '5s', ...args], {
      encoding: 'buffer',
      cancelSignal: opts.signal,
      maxBuffer: 256 * 1024 * 1024,
    })
    return Buffer.from(r.stdout)
  } catch (e) {
    if (e instanceof ExecaError && e.isCanceled) throw e
    if ((e as { code?: string }).code === 'ENOENT') {
      throw new DflattenError('tool-missing', `containerd's client ${c.ctr} is not installed (or not on PATH); set DFLATTEN_CTR`)
    }
    const stderr = oneLine(Buffer.from((e as { stderr?: Uint8Array }).stderr ?? []).toString())
    throw new DflattenError('tool-failed', `ctr ${args.slice(0, 2).join(' ')} failed: ${stderr || (e as Error).message}`)
  }
}

/** ctr's answer for a thing that is not there. */
export function notFound(e: unknown): boolean {
  return e instanceof DflattenError && /: not found|does not exist/.test(e.message)
}

/** Why this containerd cannot be asked, or null when it answers. */
export async function unreachable(c: Containerd): Promise<string | null> {
  const st = await stat(c.address).catch(() => null)
  if (!st?.isSocket()) return `containerd's socket ${c.address} is not here (set DFLATTEN_CONTAINERD_ADDRESS)`
  try {
    await ctr(c, ['version'])
    return null
  } catch (e) {
    return (e as Error).message
  }
}

function sha256(b: Buffer): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex')
}

/** A blob of the content store, checked against its digest. */
export async function readContent(c: Containerd, digest: string): Promise<Buffer> {
  const bytes = await ctr(c, ['content', 'get', digest])
  if (sha256(bytes) !== digest) throw new DflattenError('bad-data', `containerd's content ${digest.slice(0, 19)} does not match its digest`)
  return bytes
}

/**
 * A blob of the content store as a stream, for blobs too large to hold (layers): the ctr child,
 * whose stdout is the blob. The caller checks what it needs (a size, not the digest).
 */
export function contentStream(c: Containerd, digest: string, signal?: AbortSignal) {
  return execa(c.ctr, ['--address', c.address, '--namespace', c.namespace, '--connect-timeout', '5s', 'content', 'get', digest], {
    buffer: false,
    cancelSignal: signal,
    stripFinalNewline: false,
  })
}

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  platform?: Platform
}

interface Manifest {
  mediaType?: string
  config: Descriptor
  layers: Descriptor[]
  manifests?: undefined
}

interface Index {
  mediaType?: string
  manifests: Descriptor[]
}

/** One platform's image as the content store keeps it. */
export interface StoredImage {
  /** The manifest's digest (the image id, for a single-platform image). */
  manifestDigest: string
  manifest: Manifest
  /** The config's exact bytes, checked against the manifest's digest. */
  configBytes: Buffer
  config: Record<string, unknown> & { rootfs?: { diff_ids?: string[] }; history?: unknown[]; os?: string; architecture?: string; variant?: string }
  /** The platforms the image's index lists, when the id is an index. */
  platforms: string[]
}

/**
 * The image `id` names (a manifest, or an index: then the manifest for `want`), its config, and
 * the platforms on offer. A missing platform is refused with the ones there are.
 */
export async function storedImage(c: Containerd, id: string, want: Platform, name = id.slice(0, 19)): Promise<StoredImage> {
  let digest = id
  let doc = JSON.parse((await readContent(c, id)).toString('utf8')) as Manifest | Index
  let platforms: string[] = []
  // An index may name an index (nested), never deeply: a bound keeps a loop from spinning.
  for (let depth = 0; doc.manifests; depth++) {
    const listed = doc.manifests.filter((m) => m.platform)
    platforms = listed.map((m) => formatPlatform(m.platform as Platform))
    const pick = pickManifest(listed, want)
    if (!pick || depth > 3) {
      throw new DflattenError('image-not-found', `${name} has no ${formatPlatform(want)} image; it has ${platforms.join(', ') || 'no platforms listed'}`)
    }
    digest = pick.digest
    doc = JSON.parse((await readContent(c, digest)).toString('utf8')) as Manifest | Index
  }
  const manifest = doc
  const configBytes = await readContent(c, manifest.config.digest)
  return { manifestDigest: digest, manifest, configBytes, config: JSON.parse(configBytes.toString('utf8')) as StoredImage['config'], platforms }
}

/** Every snapshot's parent ('' for none), by key, from `ctr snapshots ls`. */
export async function snapshotParents(c: Containerd, snapshotter: string): Promise<Map<string, string>> {
  const out = (await ctr(c, ['snapshots', '--snapshotter', snapshotter, 'ls'])).toString('utf8')
  const parents = new Map<string, string>()
  for (const line of out.split('\n').slice(1)) {
    // KEY PARENT KIND, PARENT empty for a bottom layer; keys hold no spaces.
    const cols = line.trim().split(/\s+/)
    if (cols.length === 3) parents.set(cols[0], cols[1])
    else if (cols.length === 2) parents.set(cols[0], '')
  }
  return parents
}

/**
 * Create a read-only view snapshot `key` of the committed snapshot `parent` and return its
 * lower dirs, `parent`'s first and its bottom ancestor's last. It is made a GC root at once, so
 * it (and with it the chain below) stays while it is used, even if the image is removed meanwhile.
 */
export async function createView(c: Containerd, snapshotter: string, key: string, parent: string): Promise<string[]> {
  const out = await ctr(c, ['snapshots', '--snapshotter', snapshotter, 'view', '--mounts', key, parent])
  await ctr(c, ['snapshots', '--snapshotter', snapshotter, 'label', key, `containerd.io/gc.root=${new Date().toISOString()}`])
  return lowerDirs(JSON.parse(out.toString('utf8')) as ViewMount[])
}

interface ViewMount {
  Type: string
  Source: string
  Options?: string[]
}

/** The lower dirs of a view's mounts: an overlay's lowerdir list, or the one dir a bind mount shows. */
export function lowerDirs(mounts: ViewMount[]): string[] {
  const [m] = mounts
  if (mounts.length === 1 && m.Type === 'overlay') {
    const opt = (m.Options ?? []).find((o) => o.startsWith('lowerdir='))
    if (opt) return opt.slice('lowerdir='.length).split(':')
  }
  if (mounts.length === 1 && m.Type === 'bind') return [m.Source]
  throw new DflattenError('refused-driver', `containerd's view mounts are not an overlay of the layers: ${JSON.stringify(mounts).slice(0, 200)}`)
}

/** Remove a snapshot; one already gone is fine. */
export async function removeSnapshot(c: Containerd, snapshotter: string, key: string): Promise<void> {
  try {
    await ctr(c, ['snapshots', '--snapshotter', snapshotter, 'rm', key])
  } catch (e) {
    if (!notFound(e)) throw e
  }
}
