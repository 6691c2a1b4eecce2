/**
 * Platforms as `--platform` names them (`os/arch[/variant]`) and as an image index lists them,
 * matched the way containerd's default matcher does for the cases an image index holds: the
 * architecture's usual aliases, and arm64's variant v8 being the one meant when none is named.
 */
import { DflattenError } from './errors.js'

export interface Platform {
  os: string
  architecture: string
  variant?: string
}

/** What uname, Go and the OCI spec each call an architecture, to one name. */
const ARCH_ALIASES: Record<string, string> = { x86_64: 'amd64', 'x86-64': 'amd64', aarch64: 'arm64', armhf: 'arm', armel: 'arm', i386: '386', i686: '386' }

export function normalise(p: Platform): Platform {
  const os = p.os.toLowerCase()
  const architecture = ARCH_ALIASES[p.architecture.toLowerCase()] ?? p.architecture.toLowerCase()
  let variant = p.variant?.toLowerCase() || undefined
  // An arm64 platform without a variant is v8; an arm one without a variant is v7.
  if (architecture === 'arm64' && variant === 'v8') variant = undefined
  if (architecture === 'arm' && !variant) variant = 'v7'
  return { os, architecture, ...(variant ? { variant } : {}) }
}

/** `linux/arm64/v8` -> a platform; anything else is a usage error. */
export function parsePlatform(text: string): Platform {
  const parts = text.split('/')
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[A-Za-z0-9._-]+$/.test(p))) {
    throw new DflattenError('usage', `--platform ${JSON.stringify(text)} is not a platform; write os/arch[/variant], e.g. linux/arm64`)
  }
  return normalise({ os: parts[0], architecture: parts[1], variant: parts[2] })
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/')
}

export function samePlatform(a: Platform, b: Platform): boolean {
  const x = normalise(a)
  const y = normalise(b)
  return x.os === y.os && x.architecture === y.architecture && x.variant === y.variant
}

/** The platform docker inspect gives an image (or `docker info` the daemon). */
export function platformOf(img: { Os: string; Architecture: string; Variant?: string }): Platform {
  return normalise({ os: img.Os, architecture: img.Architecture, variant: img.Variant })
}

/** An image index's entry for `want`, or null; entries without a platform never match. */
export function pickManifest<D extends { platform?: Platform }>(manifests: D[], want: Platform): D | null {
  return manifests.find((m) => m.platform && samePlatform(m.platform, want)) ?? null
}
