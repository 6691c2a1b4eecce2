/**
 * How a stage function becomes a stream stage: one document in, one document out, errors
 * passed down the pipe so pump tears the whole pipeline down.
 */
import through2 from 'through2'
import type { Transform } from 'node:stream'
import { inFlight } from '../cleanup.js'
import type { Settings } from '../settings.js'
import type { MethodContext } from '../methods/method.js'

export interface StageContext {
  /** Cancels the stage's child processes (rsync, mount) when the run is interrupted. */
  signal?: AbortSignal
  /** The caller's tuning: work root, rsync, save content source. */
  settings?: Settings
  /** A dry run: the method keeps this many of the largest reclaimed files (see MethodContext). */
  reclaimTop?: number
}

/** What a stage hands its method. */
export function methodContext(ctx: StageContext): MethodContext {
  return { signal: ctx.signal, settings: ctx.settings ?? {}, ...(ctx.reclaimTop === undefined ? {} : { reclaimTop: ctx.reclaimTop }) }
}

export function objectStage<I, O>(fn: (input: I, ctx: StageContext) => Promise<O>, ctx: StageContext = {}): Transform {
  return through2.obj(function (chunk: I, _enc, cb) {
    inFlight(fn(chunk, ctx)).then(
      (out) => cb(null, out),
      (err: unknown) => cb(err as Error),
    )
  })
}
