/**
 * The whole flatten, wired from the stages with pump:
 *
 *   resolve -> mount -> diff -> pack -> load
 *   (plan)    (mounts) (upper dir) (archive bytes) (docker load)
 *
 * The first three pass small documents; pack streams the image archive straight into
 * `docker load`'s stdin, so no tarball is ever written to disk.
 */
import { Readable } from 'node:stream'
import pump from 'pump'
import { resolve, type ResolveOptions } from './stages/resolve.js'
import { mountStage } from './stages/mount.js'
import { diffStage } from './stages/diff.js'
import { packStage, type PackResult } from './stages/pack.js'
import { loadStage } from './stages/load.js'
import { ontoText, selectionNote, type BaseFrom } from './select.js'
import { findImage, tagImage, topLevelImages, type ImageInspect, useDockerCommand } from './docker.js'
import { cleanupAll, destroy } from './cleanup.js'
import { abandonedWorkspaces } from './workspace.js'
import { alreadyTheResult, carriesEntry } from './rerun.js'
import { DflattenError, Interrupted } from './errors.js'
import type { Diffed, DiffSummary, Plan } from './plan.js'
import through2 from 'through2'

/** `settings` (from ResolveOptions) reach every stage: work root, rsync, save content source. */
export interface FlattenOptions extends ResolveOptions {
  /** Abort the run: child processes are stopped, mounts and temp dirs removed. */
  signal?: AbortSignal
  /** Progress lines for a human. */
  log?: (line: string) => void
  /** Also log why a method was picked. */
  verbose?: boolean
  /** Write the image archive here instead of loading it (`docker load -i` reads it later). */
  output?: NodeJS.WritableStream
  /** Build the result even when an earlier run already made it (default: use the cache). */
  noCache?: boolean
  /** Told how many bytes of the new layer have streamed, of how many. */
  onProgress?: (p: Progress) => void
  /** Told the plan once it is made, before any work on it. */
  onPlan?: (plan: Plan) => void
}

export interface Progress {
  stage: string
  done: number
  total: number
}

export interface FlattenResult {
  source: { ref: string; id: string; layers: number; size: number }
  /** `from`: an ancestor image, scratch, or the source's own first layers (`--layers`). */
  base: { ref: string | null; id: string | null; layers: number; from: BaseFrom }
  target: string
  imageId: string
  layers: number
  size: number
  /**
   * How the result came about: built and loaded now, found from an earlier run, the original as
   * is (nothing above the base), or written as an archive and not loaded.
   */
  outcome: 'flattened' | 'cached' | 'unchanged' | 'written'
  diff?: DiffSummary
  layerBytes?: number
  /** Wall time of each stage in seconds; pack and load stream together, so they share one. */
  timings: Record<string, number>
}

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
  const started = performance.now()
  useDockerCommand(opts.settings?.docker ?? 'docker')
  try {
    // What an interrupted earlier run (kill -9, power loss) left behind goes first.
    for (const dir of await abandonedWorkspaces(opts.settings)) {
      await destroy(dir)
      log(`removed ${dir}, left behind by an interrupted run`)
    }
    const plan = await resolve(opts)
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
    if (above === 0) {
      if (!plan.daemon) throw new DflattenError('usage', `${plan.source.ref} has no layers above its base: there is nothing to flatten`)
      if (opts.output) throw new DflattenError('usage', `${plan.source.ref} has no layers above its base: there is no new layer to write`)
      log(`${plan.source.ref} has no layers above its base; ${plan.target} is the original as it is`)
      return { ...(await tagged(plan, plan.source.id, 'unchanged', log)), timings }
    }
    // Not even --no-cache rebuilds this: flattening a flattened image only renames it.
    if (!opts.output && (await alreadyTheResult(plan))) {
      log(`${plan.source.ref} is already this flatten's result, from an earlier run`)
      return { ...(await tagged(plan, plan.source.id, 'cached', log)), timings }
    }
    // The cache is the daemon's images; a daemonless source has none to look in.
    const cached = opts.output || opts.noCache || !plan.daemon ? null : await findCached(plan)
    if (cached) {
      log(`already flattened earlier: ${cached.slice(7, 19)}`)
      return { ...(await tagged(plan, cached, 'cached', log)), timings }
    }
    return await run(plan, opts, log, timings)
  } catch (e) {
    if (opts.signal?.aborted && !(e instanceof Interrupted)) throw new Interrupted(String(opts.signal.reason))
    throw e
  } finally {
    await cleanupAll((e) => log(`cleanup: ${e.message}`))
  }
}

async function run(
  plan: Plan,
  opts: FlattenOptions,
  log: (l: string) => void,
  timings: Record<string, number>,
): Promise<FlattenResult> {
  let diff: DiffSummary | undefined
  let packed: PackResult | undefined
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
  let total = 0
  let done = 0
  const stage = opts.output ? 'pack' : 'pack+load'
  const progress = through2((chunk: Buffer, _enc, cb) => {
    done += chunk.length
    opts.onProgress?.({ stage, done: Math.min(done, total), total })
    cb(null, chunk)
  })
  const stages: Array<NodeJS.ReadableStream | NodeJS.WritableStream> = [
    Readable.from([plan]),
    mountStage(ctx),
    lap('mount'),
    diffStage(ctx),
    lap('diff'),
    peek,
    packStage({ onDone: (r) => (packed = r), onSize: (n) => (total = n), signal: opts.signal, settings: opts.settings }),
    progress,
    opts.output ?? loadStage({ signal: opts.signal }),
  ]
  await pumpAll(stages, opts.signal)
  timings[stage] = (performance.now() - last) / 1000
  if (!packed) throw new DflattenError('tool-failed', 'the archive was not completed')
  const p = packed
  const common = { ...summary(plan), diff, layerBytes: p.layerSize, timings }
  if (opts.output) {
    return { ...common, imageId: p.imageId, layers: plan.base.layers.length + 1, size: 0, outcome: 'written' }
  }
  // The classic store names an image by its config's digest; the containerd store by its
  // manifest's. Either way the layers must be the base's plus the new one.
  const img = await findImage(plan.target)
  const layers = img?.RootFS.Layers ?? []
  const expected = [...plan.base.layers, p.diffId]
  if (!img || (img.Id !== p.imageId && layers.join() !== expected.join())) {
    throw new DflattenError('tool-failed', `docker load did not give ${plan.target} the image it was sent (${p.imageId})`)
  }
  return { ...common, imageId: img.Id, layers: layers.length, size: img.Size, outcome: 'flattened' }
}
