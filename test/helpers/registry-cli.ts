// What the CLI tests against registries share: skopeo as the independent client (it pushes the
// test images and reads the results back), whether a tag exists, and an image's filesystem as
// the model applies its layers.
import { execa } from 'execa'
import { join } from 'node:path'
import { apply, type Fs } from './model.js'
import { layoutLayers, tarModel } from './oci.js'

export interface SkopeoAccess {
  certDir?: string
  creds?: string
}

function flags(prefix: '' | 'src-' | 'dest-', a: SkopeoAccess): string[] {
  if (!a.certDir && !a.creds) return [`--${prefix}tls-verify=false`]
  return [...(a.certDir ? [`--${prefix}cert-dir`, a.certDir] : []), ...(a.creds ? [`--${prefix}creds`, a.creds] : [])]
}

/** skopeo, never reading a daemon or a user's auth file by chance. */
export function skopeo(args: string[]) {
  return execa('skopeo', ['--insecure-policy', ...args], { reject: false, env: { DOCKER_HOST: '', REGISTRY_AUTH_FILE: '/nonexistent' } })
}

/** Copy an image (`--all` platforms) from `from` to `to`; either may be a registry reached with `access`. */
export async function skopeoCopy(from: string, to: string, access: SkopeoAccess = {}, extra: string[] = []): Promise<void> {
  const r = await skopeo(['copy', ...flags('src-', access), ...flags('dest-', access), ...extra, from, to])
  if (r.exitCode !== 0) throw new Error(`skopeo copy ${from} ${to}: ${r.stderr}`)
}

/** The raw manifest (or index) `ref` names in a registry, or null when there is none. */
export async function rawManifest(ref: string, access: SkopeoAccess = {}): Promise<Record<string, unknown> | null> {
  const r = await skopeo(['inspect', '--raw', ...flags('', access), ref])
  return r.exitCode === 0 ? (JSON.parse(r.stdout) as Record<string, unknown>) : null
}

/** A filesystem as sorted `[path, node]` pairs, to compare with t.same. */
export function fsEntries(fs: Fs): Array<[string, unknown]> {
  return [...fs.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
}

type ModelEntry = Awaited<ReturnType<typeof tarModel>>[number]

/**
 * A layer's entries with the parents an applier makes on the way (MkdirAll) put before the
 * first entry below them, so a directory's own entry coming after its contents (a valid
 * order, the one-pass merge's) finds a directory there and keeps what is in it.
 */
function withParents(fs: Fs, layer: ModelEntry[]): ModelEntry[] {
  const made = new Set<string>()
  const out: ModelEntry[] = []
  for (const e of layer) {
    const parts = e.name.split('/').slice(0, -1)
    for (let i = 1; i <= parts.length; i++) {
      const dir = parts.slice(0, i).join('/')
      if (made.has(dir)) continue
      made.add(dir)
      if (fs.get(dir)?.type !== 'dir') out.push({ name: dir, type: 'dir' })
    }
    if (e.type === 'dir') made.add(e.name)
    out.push(e)
  }
  return out
}

/** The filesystem that layer tars (base first) make. */
export async function fsOf(tars: Buffer[]): Promise<Array<[string, unknown]>> {
  const fs: Fs = new Map()
  for (const tar of tars) apply(fs, withParents(fs, await tarModel(tar)))
  return fsEntries(fs)
}

/** Copy one platform of `ref` into an OCI layout under `work` with skopeo; its layer tars and config. */
export async function pullPlatform(ref: string, platform: string, work: string, access: SkopeoAccess = {}): Promise<{ layers: Buffer[]; dir: string }> {
  const [os, arch, variant] = platform.split('/')
  const dir = join(work, `pulled-${platform.replaceAll('/', '-')}-${String(Math.random()).slice(2, 8)}`)
  const extra = ['--override-os', os, '--override-arch', arch, ...(variant ? ['--override-variant', variant] : [])]
  const r = await skopeo([...extra, 'copy', ...flags('src-', access), ref, `oci:${dir}:x`])
  if (r.exitCode !== 0) throw new Error(`skopeo copy ${ref} (${platform}): ${r.stderr}`)
  return { layers: await layoutLayers(dir, 'x'), dir }
}
