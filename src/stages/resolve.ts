/**
 * Stage 1, resolve: from what the user typed to a plan: which image, onto which base, which
 * layer dirs hold them, and what the result will be called. Only reads.
 */
import { Readable } from 'node:stream'
import { access } from 'node:fs/promises'
import { DflattenError } from '../errors.js'
import {
  chainIds,
  daemonInfo,
  inspectImage,
  historyLength,
  layerTarSize,
  readImageConfig,
  taggedImages,
  type DaemonInfo,
  type ImageInspect,
} from '../docker.js'
import { MEDIA_TYPES, type LayerDescriptor } from '../archive.js'
import { defaultTarget, isImageId, normaliseTarget, parseRef, sameName } from '../refs.js'
import { secondSaveAsked } from '../methods/export-content.js'
import { exportLeaks } from '../methods/export-leak.js'
import { DOC_VERSION, METHODS, type Method, type MethodChoice, type Plan } from '../plan.js'

export interface ResolveOptions {
  /** The image to flatten: name, name:tag, repo@digest or id. */
  image: string
  /** The base to keep: an ancestor image, `scratch` for none, or unset for the nearest tagged. */
  base?: string
  /** Name of the result; default `<repo>_flatten:<tag>`. */
  tag?: string
  /** Allow the result to take the source's own name. */
  force?: boolean
  /** How the difference is found; default `auto`: overlay where it can work, else save. */
  method?: MethodChoice
}

function layersOf(img: ImageInspect): string[] {
  return img.RootFS.Layers ?? []
}

function isPrefix(prefix: string[], of: string[]): boolean {
  return prefix.length <= of.length && prefix.every((d, i) => of[i] === d)
}

/**
 * The nearest tagged ancestor: of the other tagged images, the one whose layers are the longest
 * prefix of the image's. An image that differs from it only in metadata (same layers, another
 * id) counts: the image then has nothing above its base.
 */
export function nearestTaggedAncestor(source: ImageInspect, tagged: ImageInspect[]): ImageInspect | null {
  const layers = layersOf(source)
  const candidates = tagged
    .filter((img) => img.Id !== source.Id)
    .filter((img) => layersOf(img).length > 0 && isPrefix(layersOf(img), layers))
    .sort((a, b) => layersOf(b).length - layersOf(a).length || firstTag(a).localeCompare(firstTag(b)))
  return candidates[0] ?? null
}

function firstTag(img: ImageInspect): string {
  return [...(img.RepoTags ?? [])].sort()[0] ?? img.Id
}

/** Why the overlay methods cannot work here, or null when they can. */
async function cannotMount(info: DaemonInfo, source: ImageInspect): Promise<string | null> {
  if (info.driver !== 'overlay2' || source.GraphDriver?.Name !== 'overlay2') {
    const store = info.containerdStore ? 'the containerd image store' : `the ${info.driver} storage driver`
    return `it needs the overlay2 storage driver; this daemon uses ${store}`
  }
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return "it must run as root (it mounts overlays and reads Docker's layer dirs)"
  }
  if (info.remote) return `the daemon is remote (DOCKER_HOST=${process.env.DOCKER_HOST}) and its layer dirs are not here`
  const top = source.GraphDriver.Data?.UpperDir
  if (top && !(await access(top).then(() => true, () => false))) {
    return `the daemon's layer dirs (${top}) are not on this host`
  }
  return null
}

async function pickMethod(choice: MethodChoice, info: DaemonInfo, source: ImageInspect): Promise<{ method: Method; reason: string }> {
  if (choice !== 'auto' && !METHODS.includes(choice)) {
    throw new DflattenError('usage', `unknown method ${String(choice)}; use auto, ${METHODS.join(', ')}`)
  }
  if (choice === 'save') return { method: 'save', reason: 'asked for' }
  const why = await cannotMount(info, source)
  if (choice === 'auto') {
    return why ? { method: 'save', reason: `the overlay method cannot work: ${why}` } : { method: 'overlay', reason: 'root, and a local overlay2 daemon' }
  }
  if (why) throw new DflattenError('refused-driver', `--method ${choice} cannot work here: ${why}; use --method save (or auto)`)
  return { method: choice, reason: 'asked for' }
}

/** Every layer's diff dir, base first, from the overlay2 driver's data. */
function layerDirs(img: ImageInspect): string[] {
  const data = img.GraphDriver.Data ?? {}
  const dirs = [data.UpperDir, ...(data.LowerDir ? data.LowerDir.split(':') : [])].filter(Boolean)
  const layers = layersOf(img)
  if (dirs.length !== layers.length) {
    throw new DflattenError('refused-driver', `cannot map the layers of ${img.Id.slice(7, 19)} to their dirs (${layers.length} layers, ${dirs.length} dirs); is the daemon on this host?`,
    )
  }
  return dirs.reverse()
}

async function baseDescriptors(info: DaemonInfo, layers: string[]): Promise<LayerDescriptor[]> {
  const chains = chainIds(layers)
  return Promise.all(
    layers.map(async (diffId, i) => ({
      mediaType: MEDIA_TYPES.layer,
      digest: diffId,
      size: (await layerTarSize(info, chains[i])) ?? 0,
      diffId,
    })),
  )
}

function checkReference(ref: string, what: string): void {
  if (ref !== 'scratch' && !isImageId(ref) && !parseRef(ref)) {
    throw new DflattenError('usage', `${what} ${JSON.stringify(ref)} is not a valid image reference (name[:tag], name@digest or id)`)
  }
}

export async function resolve(opts: ResolveOptions): Promise<Plan> {
  checkReference(opts.image, 'the image')
  if (opts.base) checkReference(opts.base, 'the base')
  const info = await daemonInfo()
  const source = await inspectImage(opts.image)
  // Windows layers are not a Linux filesystem (Files/, Hives/, no whiteout devices). Any Linux
  // architecture is fine: flattening never runs the image's code.
  if (source.Os !== 'linux') {
    throw new DflattenError('unsupported-image', `${opts.image} is a ${source.Os}/${source.Architecture} image; dflatten flattens Linux images`)
  }
  const { method, reason } = await pickMethod(opts.method ?? 'auto', info, source)
  const kernel = method !== 'save'
  const layers = layersOf(source)

  let base: ImageInspect | null = null
  let baseRef: string | null = null
  if (opts.base === 'scratch') {
    base = null
  } else if (opts.base) {
    base = await inspectImage(opts.base)
    baseRef = opts.base
    if (base.Id === source.Id) {
      throw new DflattenError('not-an-ancestor', `the base ${opts.base} is the image itself; pick an ancestor or --base scratch`)
    }
    if (!isPrefix(layersOf(base), layers)) {
      throw new DflattenError('not-an-ancestor', `${opts.base} is not an ancestor of ${opts.image}: its layers are not the first layers of ${opts.image}`)
    }
  } else {
    base = nearestTaggedAncestor(source, await taggedImages())
    baseRef = base ? firstTag(base) : null
  }

  const target = opts.tag ? normaliseTarget(opts.tag) : defaultTarget(opts.image, source.RepoTags ?? [])
  const sourceNames = [opts.image, ...(source.RepoTags ?? [])]
  if (!opts.force && sourceNames.some((n) => sameName(n, target))) {
    throw new DflattenError('name-clash', `the result's name ${target} is the image's own name; pick another with -t, or pass --force`)
  }

  const baseLayers = base ? layersOf(base) : []
  // The kernel methods read the exact configs from the daemon's store; save finds them in the
  // archive, in diff.
  const config = kernel ? (JSON.parse(await readImageConfig(info, source.Id)) as Record<string, unknown>) : {}
  const baseConfig = kernel && base ? (JSON.parse(await readImageConfig(info, base.Id)) as { history?: unknown[] }) : null
  const baseHistory = baseConfig?.history ?? []

  return {
    dflatten: 'plan',
    version: DOC_VERSION,
    method,
    methodReason: reason,
    daemon: info,
    source: {
      ref: opts.image,
      id: source.Id,
      created: source.Created,
      size: source.Size,
      layers,
      platform: [source.Os, source.Architecture, source.Variant].filter(Boolean).join('/'),
    },
    base: {
      ref: baseRef,
      id: base?.Id ?? null,
      layers: baseLayers,
      history: baseHistory,
      historyLength: base ? (kernel ? baseHistory.length : await historyLength(base.Id)) : 0,
    },
    layerDirs: kernel ? layerDirs(source) : [],
    baseDescriptors: kernel ? await baseDescriptors(info, baseLayers) : [],
    config,
    target,
    // The method is part of it: methods agree on the filesystem, not on the bytes, and a cache hit
    // must give the id this very command would build.
    marker: `dflatten: flattened ${source.Id} onto ${base?.Id ?? 'scratch'} (${method}${method === 'save' && (secondSaveAsked() || exportLeaks(info)) ? ', content from a second save' : ''})`,
  }
}

/** The stage as a stream: emits the one plan. */
export function resolveStage(opts: ResolveOptions): Readable {
  return Readable.from(
    (async function* () {
      yield await resolve(opts)
    })(),
    { objectMode: true },
  )
}
