/**
 * Stage 1, resolve: from what the user typed to a plan: which image, onto which base, which
 * layer dirs hold them, and what the result will be called. Only reads.
 */
import { Readable } from 'node:stream'
import { DflattenError } from '../errors.js'
import {
  chainIds,
  daemonInfo,
  inspectImage,
  layerTarSize,
  readImageConfig,
  taggedImages,
  type DaemonInfo,
  type ImageInspect,
} from '../docker.js'
import { MEDIA_TYPES, type LayerDescriptor } from '../archive.js'
import { defaultTarget, normaliseTarget, sameName } from '../refs.js'
import { DOC_VERSION, METHODS, type Method, type Plan } from '../plan.js'

export interface ResolveOptions {
  /** The image to flatten: name, name:tag, repo@digest or id. */
  image: string
  /** The base to keep: an ancestor image, `scratch` for none, or unset for the nearest tagged. */
  base?: string
  /** Name of the result; default `<repo>_flatten:<tag>`. */
  tag?: string
  /** Allow the result to take the source's own name. */
  force?: boolean
  /** How the difference is found; default `overlay`. */
  method?: Method
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

function checkCanMount(info: DaemonInfo, source: ImageInspect): void {
  if (info.driver !== 'overlay2' || source.GraphDriver?.Name !== 'overlay2') {
    const store = info.containerdStore ? 'the containerd image store' : `the ${info.driver} storage driver`
    throw new DflattenError(`the overlay method needs the overlay2 storage driver; this daemon uses ${store}`)
  }
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new DflattenError('the overlay method must run as root (it mounts overlays and reads Docker\'s layer dirs)')
  }
}

/** Every layer's diff dir, base first, from the overlay2 driver's data. */
function layerDirs(img: ImageInspect): string[] {
  const data = img.GraphDriver.Data ?? {}
  const dirs = [data.UpperDir, ...(data.LowerDir ? data.LowerDir.split(':') : [])].filter(Boolean)
  const layers = layersOf(img)
  if (dirs.length !== layers.length) {
    throw new DflattenError(
      `cannot map the layers of ${img.Id.slice(7, 19)} to their dirs (${layers.length} layers, ${dirs.length} dirs); is the daemon on this host?`,
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

export async function resolve(opts: ResolveOptions): Promise<Plan> {
  const method = opts.method ?? 'overlay'
  if (!METHODS.includes(method)) throw new DflattenError(`unknown method ${method}; use one of ${METHODS.join(', ')}`)
  const info = await daemonInfo()
  const source = await inspectImage(opts.image)
  if (source.Os !== 'linux') {
    throw new DflattenError(`${opts.image} is a ${source.Os}/${source.Architecture} image; dflatten flattens Linux images`)
  }
  checkCanMount(info, source)
  const layers = layersOf(source)

  let base: ImageInspect | null = null
  let baseRef: string | null = null
  if (opts.base === 'scratch') {
    base = null
  } else if (opts.base) {
    base = await inspectImage(opts.base)
    baseRef = opts.base
    if (base.Id === source.Id) {
      throw new DflattenError(`the base ${opts.base} is the image itself; pick an ancestor or --base scratch`)
    }
    if (!isPrefix(layersOf(base), layers)) {
      throw new DflattenError(`${opts.base} is not an ancestor of ${opts.image}: its layers are not the first layers of ${opts.image}`)
    }
  } else {
    base = nearestTaggedAncestor(source, await taggedImages())
    baseRef = base ? firstTag(base) : null
  }

  const target = opts.tag ? normaliseTarget(opts.tag) : defaultTarget(opts.image, source.RepoTags ?? [])
  const sourceNames = [opts.image, ...(source.RepoTags ?? [])]
  if (!opts.force && sourceNames.some((n) => sameName(n, target))) {
    throw new DflattenError(`the result's name ${target} is the image's own name; pick another with -t, or pass --force`)
  }

  const baseLayers = base ? layersOf(base) : []
  const config = JSON.parse(await readImageConfig(info, source.Id)) as Record<string, unknown>
  const baseConfig = base ? (JSON.parse(await readImageConfig(info, base.Id)) as { history?: unknown[] }) : null

  return {
    dflatten: 'plan',
    version: DOC_VERSION,
    method,
    daemon: info,
    source: { ref: opts.image, id: source.Id, created: source.Created, size: source.Size, layers },
    base: { ref: baseRef, id: base?.Id ?? null, layers: baseLayers, history: baseConfig?.history ?? [] },
    layerDirs: layerDirs(source),
    baseDescriptors: await baseDescriptors(info, baseLayers),
    config,
    target,
    marker: `dflatten: flattened ${source.Id} onto ${base?.Id ?? 'scratch'}`,
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
