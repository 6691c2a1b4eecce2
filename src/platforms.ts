/**
 * A multi-platform source (an index in a registry or an OCI dir): each platform it holds, or
 * each `--platform` names, is flattened onto the same platform of the base and written
 * untagged; then an index of the results takes the target's name. Attestation manifests are
 * left out: they describe the original's layers, which the result no longer has.
 */
import { DflattenError } from './errors.js'
import { destinationFor, parseTarget, type Destination } from './destinations/index.js'
import { flattenIndex, type SourceIndex } from './sources/index-image.js'
import { isAttestation } from './sources/image.js'
import { parseSourceRef } from './sources/reference.js'
import { defaultTarget } from './sources/resolve.js'
import type { FlattenOptions, FlattenResult } from './result.js'

/** `--platform a,b`: the platforms of an index to flatten; none named: all of them. */
export function platformList(text: string | undefined): string[] | undefined {
  const list = text?.split(',').map((p) => p.trim()).filter(Boolean)
  return list?.length ? list : undefined
}

/** Flattens one image into `dest`, untagged. */
export type FlattenInto = (opts: FlattenOptions, dest: Destination) => Promise<FlattenResult>

export async function flattenPlatforms(opts: FlattenOptions, found: SourceIndex, flattenOne: FlattenInto): Promise<FlattenResult> {
  const log = opts.log ?? (() => {})
  const started = performance.now()
  const tag = opts.tag ?? defaultTarget(parseSourceRef(opts.image))
  const target = parseTarget(tag)
  if (target.kind === 'daemon') {
    throw new DflattenError('usage', `${opts.image} is read without a daemon: its result goes to a registry or an OCI dir (-t docker://... or -t oci:DIR[:TAG])`)
  }
  const dest = destinationFor(target, { daemon: null, registry: opts.settings?.registry })
  if (!dest.writeIndex) throw new DflattenError('usage', `${dest.label} holds single images, not an index`)
  const writeIndex = dest.writeIndex.bind(dest)
  const names = found.platforms.map((d) => [d.platform?.os, d.platform?.architecture, d.platform?.variant].filter(Boolean).join('/'))
  const dropped = found.index.manifests.filter(isAttestation).length
  log(
    `${opts.image} is an index of ${names.length} platform${names.length === 1 ? '' : 's'} (${names.join(', ')}); each is flattened and the result is an index` +
      (dropped ? `; ${dropped} attestation manifest${dropped === 1 ? '' : 's'} left out` : ''),
  )
  const results: Array<FlattenResult & { platform: string }> = []
  // Set by writeIndex, inside flattenIndex.
  const named = { held: false }
  const index = await flattenIndex(
    { ...opts, tag },
    {
      async flattenOne(one) {
        const r = await flattenOne({ ...opts, image: one.image, platform: one.platform, tag }, dest)
        if (!r.manifestDigest || !r.manifest) throw new DflattenError('tool-failed', `${dest.label}: no manifest for ${one.platform ?? ''}`)
        results.push({ ...r, platform: one.platform ?? '' })
        return { digest: r.manifestDigest, ...r.manifest }
      },
      async writeIndex(bytes, mediaType) {
        named.held = await writeIndex(bytes, mediaType, opts.signal)
      },
    },
    found,
  )
  if (named.held) log(`${dest.label} already named this index: nothing changed`)
  const first = results[0]
  return {
    source: { ...first.source, ref: opts.image },
    base: { ...first.base, ref: opts.base ?? first.base.ref },
    target: dest.label,
    imageId: index.digest,
    manifestDigest: index.digest,
    manifest: { mediaType: index.mediaType, size: index.bytes.length },
    layers: first.layers,
    size: results.reduce((n, r) => n + r.size, 0),
    outcome: named.held ? 'cached' : first.outcome,
    platforms: results,
    timings: { total: (performance.now() - started) / 1000 },
  }
}
