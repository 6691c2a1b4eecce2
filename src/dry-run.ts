/**
 * `--dry-run`: everything up to the new layer's entries (resolve, mount, diff), then what the
 * method says flattening reclaims; the work dir is unmounted and removed, nothing is loaded or
 * tagged. The new layer's size is the one a real run of the same method streams.
 */
import { resolve } from './stages/resolve.js'
import { mount } from './stages/mount.js'
import { diff } from './stages/diff.js'
import { methodContext, type StageContext } from './stages/stream.js'
import { getMethod } from './methods/index.js'
import { useDockerCommand } from './docker.js'
import { cleanupAll, destroy } from './cleanup.js'
import { abandonedWorkspaces } from './workspace.js'
import { DflattenError, Interrupted } from './errors.js'
import { layerLabels, type HistoryEntry } from './history.js'
import { ontoText, selectionNote, type BaseFrom } from './select.js'
import { DEFAULT_TOP, type Reclaimed } from './reclaim.js'
import type { FlattenOptions } from './pipeline.js'
import type { Diffed, Plan } from './plan.js'

export interface DryRunOptions extends Omit<FlattenOptions, 'output' | 'noCache' | 'onProgress'> {
  /** How many of the largest reclaimed files to list (default 20). */
  top?: number
}

export interface DryRunReport {
  source: { ref: string; id: string; layers: number; size: number }
  base: { ref: string | null; id: string | null; layers: number; from: BaseFrom }
  target: string
  method: string
  /** The layers that would be squashed, lowest first: position (1 is the lowest), diff id, CREATED BY, tar bytes. */
  squashed: Array<{ layer: number; diffId: string; createdBy: string; bytes: number }>
  /** The new layer's exact size: what a real run's `layerBytes` is. */
  layerBytes: number
  /** What the squashed layers' tars hold today. */
  squashedBytes: number
  /** squashedBytes - layerBytes: what the image would shrink by. */
  reclaimedBytes: number
  /** Files of the squashed layers that a later layer deleted or overwrote: how many, their content bytes. */
  reclaimedFiles: number
  reclaimedFileBytes: number
  /**
   * The largest of them, largest first; `layer` is its layer's CREATED BY, cut to 60 characters.
   * A directory a later layer deleted whole is one item (its path ends in `/`, `files` says how many).
   */
  reclaimed: Array<{ path: string; bytes: number; layer: string; files?: number }>
  timings: Record<string, number>
}

function report(plan: Plan, found: Reclaimed, layerBytes: number, history: HistoryEntry[], timings: Record<string, number>): DryRunReport {
  const k = plan.base.layers.length
  const labels = layerLabels(history, plan.source.layers.length)
  const squashedBytes = found.layerBytes.reduce((a, b) => a + b, 0)
  return {
    source: { ref: plan.source.ref, id: plan.source.id, layers: plan.source.layers.length, size: plan.source.size },
    base: { ref: plan.base.ref, id: plan.base.id, layers: k, from: plan.base.from },
    target: plan.target,
    method: plan.method.name,
    squashed: plan.source.layers.slice(k).map((diffId, i) => ({ layer: k + i + 1, diffId, createdBy: labels[k + i], bytes: found.layerBytes[i] ?? 0 })),
    layerBytes,
    squashedBytes,
    reclaimedBytes: squashedBytes - layerBytes,
    reclaimedFiles: found.files,
    reclaimedFileBytes: found.bytes,
    reclaimed: found.top.map((f) => ({ path: f.path, bytes: f.bytes, layer: labels[f.layer] ?? `layer ${f.layer + 1}`, ...(f.files === undefined ? {} : { files: f.files }) })),
    timings,
  }
}

/** What the method finds in a diffed workspace, before it goes. */
async function reclaimedOf(d: Diffed, ctx: StageContext): Promise<Reclaimed> {
  const method = getMethod(d.method.name)
  if (!method.reclaimed) throw new DflattenError('usage', `the ${d.method.name} method cannot say what flattening reclaims`)
  return method.reclaimed(d, methodContext(ctx))
}

/** Resolve, mount and diff as a flatten would, report, and leave nothing behind. */
export async function dryRun(opts: DryRunOptions): Promise<DryRunReport> {
  const log = opts.log ?? (() => {})
  const started = performance.now()
  const top = opts.top ?? DEFAULT_TOP
  useDockerCommand(opts.settings?.docker ?? 'docker')
  try {
    for (const dir of await abandonedWorkspaces(opts.settings)) {
      await destroy(dir)
      log(`removed ${dir}, left behind by an interrupted run`)
    }
    const plan = await resolve(opts)
    opts.onPlan?.(plan)
    const timings: Record<string, number> = { resolve: (performance.now() - started) / 1000 }
    const above = plan.source.layers.length - plan.base.layers.length
    if (opts.verbose) log(`method ${plan.method.name}: ${plan.method.reason}`)
    log(`dry run: flattening ${plan.source.ref} onto ${ontoText(plan.base, above)}`)
    const note = selectionNote(plan.base, above)
    if (note) log(note)
    // Refused before anything is mounted or read.
    if (!getMethod(plan.method.name).reclaimed) throw new DflattenError('usage', `the ${plan.method.name} method cannot say what flattening reclaims`)
    if (above === 0) {
      log(`${plan.source.ref} has no layers above its base: nothing to squash`)
      return report(plan, { layerBytes: [], top: [], files: 0, bytes: 0 }, 0, [], timings)
    }
    const ctx: StageContext = { signal: opts.signal, settings: opts.settings, reclaimTop: top }
    let last = performance.now()
    const lap = (stage: string): void => {
      const now = performance.now()
      timings[stage] = (now - last) / 1000
      last = now
    }
    const mounted = await mount(plan, ctx)
    try {
      lap('mount')
      const d = await diff(mounted, ctx)
      lap('diff')
      if (d.layerSize === null) throw new DflattenError('usage', `the ${d.method.name} method learns the layer's size only as it streams; a dry run needs it`)
      const found = await reclaimedOf(d, ctx)
      lap('reclaim')
      return report(plan, found, d.layerSize, (d.image.config.history ?? []) as HistoryEntry[], timings)
    } finally {
      await destroy(mounted.workspace.dir)
    }
  } catch (e) {
    if (opts.signal?.aborted && !(e instanceof Interrupted)) throw new Interrupted(String(opts.signal.reason))
    throw e
  } finally {
    await cleanupAll((e) => log(`cleanup: ${e.message}`))
  }
}
