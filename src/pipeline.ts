/**
 * The whole flatten, wired from the stages with pump:
 *
 *   resolve -> mount -> diff -> pack -> destination
 *   (plan)    (mounts) (upper dir) (layer stream) (docker load, an archive, a registry, an OCI dir)
 *
 * The first three pass small documents; pack makes the new layer a stream that the destination
 * consumes (src/destinations): into `docker load`'s stdin by default, so no tarball is ever
 * written to disk.
 */
import { Readable, Writable } from 'node:stream'
import pump from 'pump'
import { resolve } from './stages/resolve.js'
import { mountStage } from './stages/mount.js'
import { diffStage } from './stages/diff.js'
import { packImage } from './stages/pack.js'
import type { StageContext } from './stages/stream.js'
import { compressionFor, destinationFor, parseTarget, planName, type Destination, type WriteResult } from './destinations/index.js'
import type { CompressionChoice } from './compress/index.js'
import { isDaemonless } from './sources/reference.js'
import { sourceIndex } from './sources/index-image.js'
import { flattenPlatforms, platformList } from './platforms.js'
import { findImage, tagImage, topLevelImages, type ImageInspect, useDockerCommand } from './docker.js'
import { cleanupAll, destroy, inFlight } from './cleanup.js'
import { ontoText, selectionNote } from './select.js'
import { abandonedWorkspaces } from './workspace.js'
import { alreadyTheResult, carriesEntry } from './rerun.js'
import { DflattenError, Interrupted } from './errors.js'
import type { Diffed, DiffSummary, Plan } from './plan.js'
import type { FlattenOptions, FlattenResult } from './result.js'

export type { FlattenOptions, FlattenResult, Progress } from './result.js'
import through2 from 'through2'


/** Run streams end to end; reject with the first error, after every stream is torn down. */
export function pumpAll(streams: Array<NodeJS.ReadableStream | NodeJS.WritableStream>, signal?: AbortSignal): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const onAbort = (): void => {
      const first = streams[0] as Readable
      first.destroy(new Interrupted(String(signal?.reason ?? 'signal')))
    }
    if (signal?.aborted) {
      reject(new Interrupted(String(signal.reason)))
      return
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    pump(...(streams as [NodeJS.ReadableStream, NodeJS.WritableStream]), (err?: Error) => {
      signal?.removeEventListener('abort', onAbort)
      if (err) reject(err)
      else resolvePromise()
    })
  })
}

/**
 * An earlier result of this same flatten: an image on the base's layers plus one, created when
 * the original was, whose newest history entry carries this flatten's marker.
 */
export async function findCached(plan: Plan): Promise<string | null> {
  const want = plan.base.layers
  const matches = async (img: ImageInspect): Promise<boolean> => {
    const layers = img.RootFS.Layers ?? []
    if (layers.length !== want.length + 1 || img.Created !== plan.source.created) return false
    if (!want.every((d, i) => layers[i] === d)) return false
    return carriesEntry(img.Id, plan)
  }
  // Most often the answer already carries the name asked for.
  const named = await findImage(plan.target)
  if (named && (await matches(named))) return named.Id
  for (const img of await topLevelImages()) if (await matches(img)) return img.Id
  return null
}

export function count(n: number): string {
  return n === 1 ? '1 layer' : `${n} layers`
}

function summary(plan: Plan): Pick<FlattenResult, 'source' | 'base' | 'target'> {
  return {
    source: { ref: plan.source.ref, id: plan.source.id, layers: plan.source.layers.length, size: plan.source.size },
    base: { ref: plan.base.ref, id: plan.base.id, layers: plan.base.layers.length, from: plan.base.from },
    target: plan.target,
  }
}

async function tagged(plan: Plan, id: string, outcome: FlattenResult['outcome'], log: (l: string) => void): Promise<Omit<FlattenResult, 'timings'>> {
  const current = await findImage(plan.target)
  if (current?.Id !== id) await tagImage(id, plan.target)
  else log(`${plan.target} already was that image: nothing changed`)
  const img = await findImage(plan.target)
  if (!img) throw new DflattenError('tool-failed', `tagging ${plan.target} failed`)
  return { ...summary(plan), imageId: id, layers: img.RootFS.Layers?.length ?? 0, size: img.Size, outcome }
}

/**
 * Flatten `opts.image` onto its base and load the result. Resolves with what was done; rejects
 * with a DflattenError (one line for the user) or Interrupted. Nothing is left mounted either way.
 */
export async function flatten(opts: FlattenOptions): Promise<FlattenResult> {
  const log = opts.log ?? (() => {})
  useDockerCommand(opts.settings?.docker ?? 'docker')
  try {
    // What an interrupted earlier run (kill -9, power loss) left behind goes first.
    for (const dir of await abandonedWorkspaces(opts.settings)) {
      await destroy(dir)
      log(`removed ${dir}, left behind by an interrupted run`)
    }
    if (isDaemonless(opts.image)) {
      const index = await sourceIndex({ ...opts, platforms: platformList(opts.platform) })
      if (index) return await flattenPlatforms(opts, index, (one, dest) => flattenImage(one, log, dest))
    }
    return await flattenImage(opts, log)
  } catch (e) {
    if (opts.signal?.aborted && !(e instanceof Interrupted)) throw new Interrupted(String(opts.signal.reason))
    throw e
  } finally {
    await cleanupAll((e) => log(`cleanup: ${e.message}`))
  }
}

/**
 * One image flattened. `into` is given for one platform of an index: the image then goes there
 * untagged, for the index to name (and an earlier result under the tag is not looked for).
 */
async function flattenImage(opts: FlattenOptions, log: (line: string) => void, into?: Destination): Promise<FlattenResult> {
  const started = performance.now()
  const asked = parseTarget(opts.tag)
  if (opts.output && asked.kind !== 'daemon') throw new DflattenError('usage', '--output writes an archive; -t docker:// and -t oci: write elsewhere: give one of them')
  const daemonless = isDaemonless(opts.image)
  if (daemonless && (opts.output || (opts.tag !== undefined && asked.kind === 'daemon'))) {
    throw new DflattenError('usage', `${opts.image} is read without a daemon: its result goes to a registry or an OCI dir (-t docker://... or -t oci:DIR[:TAG]), not to ${opts.output ? 'an archive' : 'the local daemon'}`)
  }
  // A daemonless source names its default result itself (src/sources/resolve.ts).
  const plan = await resolve({ ...opts, tag: daemonless ? opts.tag : planName(asked) })
  const target = daemonless ? parseTarget(plan.target) : asked
  opts.onPlan?.(plan)
  const timings = { resolve: (performance.now() - started) / 1000 }
  opts.signal?.throwIfAborted()
  if (plan.source.platforms) {
    log(`${plan.source.ref} holds ${plan.source.platforms.length} platforms (${plan.source.platforms.join(', ')}); flattening ${plan.source.platform ?? ''}, the result is that one platform's image`)
  }
  const above = plan.source.layers.length - plan.base.layers.length
  if (opts.verbose) log(`method ${plan.method.name}: ${plan.method.reason}`)
  log(`flattening ${plan.source.ref} (${count(plan.source.layers.length)}) onto ${ontoText(plan.base, above)}`)
  const note = selectionNote(plan.base, above)
  if (note) log(note)
  const dest = into ?? destinationFor(target, { daemon: plan.daemon, output: opts.output, layerOnly: opts.outputLayerOnly, registry: opts.settings?.registry, settings: opts.settings })
  const local = target.kind === 'daemon' && !opts.output
  const compression = compressionFor(dest, opts.compression)
  if (above === 0) {
    if (!local) throw new DflattenError('usage', `${plan.source.ref} has no layers above its base: there is no new layer to write`)
    log(`${plan.source.ref} has no layers above its base; ${plan.target} is the original as it is`)
    return { ...(await tagged(plan, plan.source.id, 'unchanged', log)), timings }
  }
  if (local) {
    // Not even --no-cache rebuilds this: flattening a flattened image only renames it.
    if (await alreadyTheResult(plan)) {
      log(`${plan.source.ref} is already this flatten's result, from an earlier run`)
      return { ...(await tagged(plan, plan.source.id, 'cached', log)), timings }
    }
    const cached = opts.noCache ? null : await findCached(plan)
    if (cached) {
      log(`already flattened earlier: ${cached.slice(7, 19)}`)
      return { ...(await tagged(plan, cached, 'cached', log)), timings }
    }
  } else if (!opts.noCache && !into && dest.cached) {
    const held = await dest.cached({ marker: plan.marker, message: plan.message, baseLayers: plan.base.layers, compression }, opts.signal)
    if (held) {
      log(`${dest.label} already holds this result (${held.manifestDigest.slice(0, 19)}); nothing to do`)
      const layers = plan.base.layers.length + 1
      return { ...summary(plan), target: dest.label, ...held, layers, size: 0, outcome: 'cached', timings }
    }
  }
  return await run(plan, { ...opts, untagged: Boolean(into) }, log, timings, dest, local)
}

/** Where each destination's streaming time is booked (the stage command it stands for). */
function streamStage(dest: Destination, local: boolean, output: boolean): string {
  if (local) return 'pack+load'
  if (output) return 'pack'
  return dest.label.startsWith('oci:') ? 'write' : 'push'
}

async function run(
  plan: Plan,
  opts: FlattenOptions & { untagged?: boolean },
  log: (l: string) => void,
  timings: Record<string, number>,
  dest: Destination,
  local: boolean,
): Promise<FlattenResult> {
  let diff: DiffSummary | undefined
  let written: WriteResult | undefined
  const ctx = { signal: opts.signal, settings: opts.settings }
  let last = performance.now()
  // Marks the end of the stage before it, passing its document on untouched.
  const lap = (stage: string) =>
    through2.obj((doc, _enc, cb) => {
      const now = performance.now()
      timings[stage] = (now - last) / 1000
      last = now
      cb(null, doc)
    })
  const peek = through2.obj((doc: Diffed, _enc, cb) => {
    diff = doc.diff ?? undefined
    if (doc.diff) log(`difference: ${doc.diff.changed} entries added or changed, ${doc.diff.deleted} deleted, ${doc.diff.bytes} bytes`)
    if (opts.verbose && doc.method.detail) log(doc.method.detail)
    cb(null, doc)
  })
  const stage = streamStage(dest, local, Boolean(opts.output))
  const stages: Array<NodeJS.ReadableStream | NodeJS.WritableStream> = [
    Readable.from([plan]),
    mountStage(ctx),
    lap('mount'),
    diffStage(ctx),
    lap('diff'),
    peek,
    destinationStage(dest, {
      ...ctx,
      compression: opts.compression,
      untagged: opts.untagged,
      log,
      // The measuring read of a compressed layer is its own stage; the rest is the stream's.
      onProgress: (pass, done, total) => opts.onProgress?.({ stage: pass === 'measure' ? 'measure' : stage, done, total }),
      onWritten: (w) => (written = w),
    }),
  ]
  await pumpAll(stages, opts.signal)
  timings[stage] = (performance.now() - last) / 1000
  if (!written) throw new DflattenError('tool-failed', `${dest.label} was not written`)
  const w = written
  const common = {
    ...summary(plan),
    diff,
    layerBytes: w.layer.tarSize,
    blob: { mediaType: w.layer.mediaType, digest: w.layer.digest, size: w.layer.size },
    timings,
  }
  const layers = plan.base.layers.length + 1
  if (opts.output) return { ...common, imageId: w.imageId, layers, size: 0, outcome: 'written' }
  if (!local) {
    const outcome = stage === 'write' ? 'written' : 'pushed'
    return { ...common, target: dest.label, imageId: w.imageId, manifestDigest: w.manifestDigest, manifest: w.manifest, layers, size: w.layer.size, outcome }
  }
  // The classic store names an image by its config's digest; the containerd store by its
  // manifest's. Either way the layers must be the base's plus the new one.
  const img = await findImage(plan.target)
  const loadedLayers = img?.RootFS.Layers ?? []
  const expected = [...plan.base.layers, w.layer.diffId]
  if (!img || (img.Id !== w.imageId && loadedLayers.join() !== expected.join())) {
    throw new DflattenError('tool-failed', `docker load did not give ${plan.target} the image it was sent (${w.imageId})`)
  }
  return { ...common, imageId: img.Id, layers: loadedLayers.length, size: img.Size, outcome: 'flattened' }
}

interface DestinationStageOptions extends StageContext {
  compression?: CompressionChoice
  untagged?: boolean
  log: (line: string) => void
  onProgress: (stage: string, done: number, total: number) => void
  onWritten: (w: WriteResult) => void
}

/**
 * The last stage: a diffed document in, the result written to the destination; the workspace
 * goes once it is. Torn down mid-write (an error upstream, an interrupt), it aborts the write.
 */
function destinationStage(dest: Destination, opts: DestinationStageOptions): Writable {
  const ac = new AbortController()
  const signal = opts.signal ? AbortSignal.any([opts.signal, ac.signal]) : ac.signal
  const write = async (d: Diffed): Promise<void> => {
    try {
      const image = packImage(d, { signal, settings: opts.settings })
      const compression = compressionFor(dest, opts.compression, image.layer)
      opts.onWritten(await dest.write(image, { compression, signal, onProgress: opts.onProgress, log: opts.log, untagged: opts.untagged, workDir: d.workspace.dir }))
    } finally {
      await destroy(d.workspace.dir)
    }
  }
  return new Writable({
    objectMode: true,
    write(doc: Diffed, _enc, cb) {
      inFlight(write(doc)).then(() => cb(), (e: unknown) => cb(e as Error))
    },
    destroy(err, cb) {
      ac.abort(err ?? new Interrupted('teardown'))
      cb(err)
    },
  })
}
