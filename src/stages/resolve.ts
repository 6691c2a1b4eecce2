/**
 * Stage 1, resolve: from what the user typed to a plan: which image, onto which base, by which
 * method (and what that method reads up front), and what the result will be called. Only reads.
 */
import { Readable } from 'node:stream'
import { DflattenError } from '../errors.js'
import { daemonInfo, inspectImage, taggedImages, type ImageInspect } from '../docker.js'
import { lastHistoryEntry } from '../history.js'
import { pickSource } from '../source-platform.js'
import { defaultTarget, isImageId, normaliseTarget, parseRef } from '../refs.js'
import { flattenMarker, keptLayersOf, takesOwnName } from '../rerun.js'
import { pickMethod } from '../methods/index.js'
import type { Settings } from '../settings.js'
import { DOC_VERSION, type BaseSide, type MethodChoice, type Plan } from '../plan.js'
import { isDaemonless } from '../sources/reference.js'
import { resolveSource } from '../sources/resolve.js'
import { checkSelection, keptLayers } from '../select.js'

export interface ResolveOptions {
  /** The image to flatten: name, name:tag, repo@digest or id. */
  image: string
  /** The base to keep: an ancestor image, `scratch` for none, or unset for the nearest tagged. */
  base?: string
  /** Squash the top N layers and keep the others as they are (docker-squash's way); not with `base`. */
  layers?: number
  /** The new layer's history comment (`docker history` shows it); part of what the cache matches. */
  message?: string
  /** Name of the result; default `<repo>_flatten:<tag>`. */
  tag?: string
  /** Allow the result to take the source's own name. */
  force?: boolean
  /** How the difference is found (see `methodNames()`); default `auto`: the first that can work. */
  method?: MethodChoice
  /** The caller's tuning; a setting that changes the result's bytes is part of the cache marker. */
  settings?: Settings
  /** Which platform of a multi-platform image (`os/arch[/variant]`); default the daemon's. */
  platform?: string
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

function checkReference(ref: string, what: string): void {
  if (ref !== 'scratch' && !isImageId(ref) && !parseRef(ref)) {
    throw new DflattenError('bad-reference', `${what} ${JSON.stringify(ref)} is not a valid image reference (name[:tag], name@digest or id)`)
  }
}

export async function resolve(opts: ResolveOptions): Promise<Plan> {
  // docker:// and oci: images are read without the daemon (the registry method).
  if (isDaemonless(opts.image)) return resolveSource(opts)
  checkReference(opts.image, 'the image')
  checkSelection(opts)
  if (opts.base) checkReference(opts.base, 'the base')
  const info = await daemonInfo()
  const picked = await pickSource(opts.image, await inspectImage(opts.image), opts.platform, info, opts.settings)
  const source = picked.source
  // Windows layers are not a Linux filesystem (Files/, Hives/, no whiteout devices). Any Linux
  // architecture is fine: flattening never runs the image's code.
  if (source.Os !== 'linux') {
    throw new DflattenError('unsupported-image', `${opts.image} is a ${source.Os}/${source.Architecture} image; dflatten flattens Linux images`)
  }
  const { method, reason } = await pickMethod(opts.method ?? 'auto', { info, source, settings: opts.settings, otherPlatform: picked.otherPlatform })
  const layers = layersOf(source)

  let base: ImageInspect | null = null
  let baseRef: string | null = null
  // --layers: the source's own first layers, which need no image of their own.
  const kept = opts.layers === undefined ? null : keptLayers(opts.layers, layers.length, opts.image)
  if (kept !== null) {
    base = null
  } else if (opts.base === 'scratch') {
    base = null
  } else if (opts.base) {
    base = await inspectImage(opts.base)
    // A multi-platform base is taken in the platform asked for, where it has that one.
    if (opts.platform) base = await pickSource(opts.base, base, opts.platform, info, opts.settings).then((p) => p.source, () => base as ImageInspect)
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
  const baseSide: BaseSide = base
    ? { from: 'image', ref: baseRef, id: base.Id, layers: layersOf(base) }
    : { from: kept ? 'layers' : 'scratch', ref: null, id: null, layers: layers.slice(0, kept ?? 0) }
  const onto = baseSide.from === 'layers' ? keptLayersOf(source.Id, baseSide.layers.length) : (base?.Id ?? null)
  // The method is part of it: methods agree on the filesystem, not on the bytes, and a cache hit
  // must give the id this very command would build.
  const marker = flattenMarker(source.Id, onto, method.cacheKey(opts.settings ?? {}, info))
  const entry = () => lastHistoryEntry(source.Id)
  const clash = { typed: opts.image, tags: source.RepoTags ?? [], target, layers, baseLayers: baseSide.layers, marker, message: opts.message, entry }
  if (!opts.force && (await takesOwnName(clash))) {
    throw new DflattenError('name-clash', `the result's name ${target} is the image's own name; pick another with -t, or pass --force`)
  }

  const state = await method.plan({ info, source, base, kept: baseSide.layers.length, settings: opts.settings, otherPlatform: picked.otherPlatform }, { settings: opts.settings ?? {} })
  return {
    dflatten: 'plan',
    version: DOC_VERSION,
    method: { name: method.name, reason, state },
    daemon: info,
    source: {
      ref: opts.image,
      id: source.Id,
      created: source.Created,
      size: source.Size,
      layers,
      platform: [source.Os, source.Architecture, source.Variant].filter(Boolean).join('/'),
      ...(picked.platforms.length > 1 ? { platforms: picked.platforms } : {}),
    },
    base: baseSide,
    target,
    marker,
    message: opts.message ?? null,
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
