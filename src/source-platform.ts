/**
 * `--platform`: which of an image's platforms to flatten. docker inspect shows the one the daemon
 * picks by default (its own); another is read from where it can be: the daemon's containerd
 * content store (as root, beside a local daemon on the containerd image store), else docker
 * inspect --platform (API 1.49 and later). A platform the image lacks is refused with the ones
 * it has.
 */
import { DflattenError, isDflattenError } from './errors.js'
import { apiAtLeast, inspectImagePlatform, serverApiVersion, type DaemonInfo, type ImageInspect } from './docker.js'
import { containerdFor, storedImage, unreachable, type StoredImage } from './containerd.js'
import { formatPlatform, parsePlatform, platformOf, samePlatform, type Platform } from './platform.js'
import type { Settings } from './settings.js'

export interface SourcePick {
  source: ImageInspect
  /** The platforms the image holds, when it is an index and that could be learned. */
  platforms: string[]
  /** The platform asked for, when it is not the one docker inspect shows by default. */
  otherPlatform?: string
}

/** The containerd store's view of `img` for `want`, or null when that store cannot be asked here. */
async function fromStore(ref: string, info: DaemonInfo, img: ImageInspect, want: Platform, settings: Settings): Promise<StoredImage | null> {
  if (!info.containerdStore || info.remote || (typeof process.getuid === 'function' && process.getuid() !== 0)) return null
  const c = containerdFor(info, settings)
  if (await unreachable(c)) return null
  try {
    return await storedImage(c, img.Id, want, ref)
  } catch (e) {
    // Another containerd than the daemon's (it lacks the image): as if there were none.
    if (isDflattenError(e, 'tool-failed')) return null
    throw e
  }
}

/** An inspect of one platform's image, from its config in the content store. */
function inspectFrom(img: ImageInspect, stored: StoredImage): ImageInspect {
  const cfg = stored.config
  return {
    ...img,
    Os: cfg.os ?? '',
    Architecture: cfg.architecture ?? '',
    ...(cfg.variant ? { Variant: cfg.variant } : { Variant: undefined }),
    Created: (cfg.created as string | undefined) ?? img.Created,
    Size: stored.manifest.layers.reduce((n, l) => n + l.size, 0),
    Config: (cfg.config as Record<string, unknown> | undefined) ?? null,
    RootFS: { Type: 'layers', Layers: cfg.rootfs?.diff_ids ?? [] },
  }
}

export async function pickSource(ref: string, img: ImageInspect, asked: string | undefined, info: DaemonInfo, settings: Settings = {}): Promise<SourcePick> {
  const shown = platformOf(img)
  const want = asked ? parsePlatform(asked) : shown
  const stored = await fromStore(ref, info, img, want, settings)
  const platforms = stored?.platforms ?? []
  if (samePlatform(want, shown)) return { source: img, platforms }
  const name = formatPlatform(want)
  if (stored) {
    if (!platforms.length) throw new DflattenError('image-not-found', `${ref} is a single-platform ${formatPlatform(shown)} image; it has no ${name} one`)
    return { source: inspectFrom(img, stored), platforms, otherPlatform: name }
  }
  if (!info.containerdStore) throw new DflattenError('image-not-found', `${ref} is a ${formatPlatform(shown)} image; the classic image store holds one platform per image, not ${name}`)
  const api = await serverApiVersion()
  if (!apiAtLeast(api, '1.49')) {
    throw new DflattenError('refused-driver', `cannot read the ${name} image of ${ref}: Docker ${info.serverVersion} (API ${api}) inspects only its default platform (API 1.49 takes --platform), and its containerd cannot be asked from here (that needs root beside a local daemon; see DFLATTEN_CONTAINERD_ADDRESS)`)
  }
  const source = await inspectImagePlatform(ref, name)
  return { source, platforms, otherPlatform: name }
}
