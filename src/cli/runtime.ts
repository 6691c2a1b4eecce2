/**
 * What every command shares at run time: signals become an abort, stdout as the end of a
 * pipeline (never a terminal for binary output), the process's heap flags, and the one way an
 * error ends a command: one line on stderr and an exit code.
 */
import v8 from 'node:v8'
import { readFileSync } from 'node:fs'
import { Writable } from 'node:stream'
import { getMethod } from '../methods/index.js'
import type { Settings } from '../settings.js'
import type { StageContext } from '../stages/stream.js'
import { DflattenError, Interrupted, exitCodeOf, isDflattenError } from '../errors.js'
import { cleanupAll } from '../cleanup.js'

/** The package's version: its package.json is two dirs up from src/cli, three from dist/src/cli. */
export function version(): string {
  for (const up of ['../../package.json', '../../../package.json']) {
    const pkg = (() => {
      try {
        return JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as { name?: string; version: string }
      } catch {
        return null
      }
    })()
    if (pkg?.name === 'dflatten') return pkg.version
  }
  throw new Error('package.json not found beside the CLI')
}

/** Exit code for a failure that is a bug (EX_SOFTWARE). */
export const INTERNAL_ERROR = 70

let controller: AbortController | null = null

/**
 * Abort on SIGINT, SIGTERM and SIGHUP; the run then cleans up and exits with 128 + the signal.
 * A second signal does not cut the cleanup short: it only says that cleanup is under way.
 */
export function abortOnSignals(): AbortController {
  if (controller) return controller
  const ac = (controller = new AbortController())
  const onSignal = (sig: NodeJS.Signals): void => {
    if (ac.signal.aborted) {
      process.stderr.write(`dflatten: ${sig} again; still cleaning up mounts, please wait\n`)
      return
    }
    ac.abort(sig)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  process.on('SIGHUP', onSignal)
  return ac
}

/** What a stage command hands its stage; `settings` rides along until StageContext has it. */
export type CommandContext = StageContext & { signal: AbortSignal; settings: Settings }

export function stageContext(settings: Settings): CommandContext {
  return { signal: abortOnSignals().signal, settings }
}

/** Print an error as one line and give the exit code; after a signal, any error is the interrupt. */
export function fail(e: unknown): number {
  const sig = controller?.signal
  if (sig?.aborted && !(e instanceof Interrupted)) e = new Interrupted(String(sig.reason))
  if (isDflattenError(e)) {
    process.stderr.write(`dflatten: ${e.message}\n`)
    return exitCodeOf(e)
  }
  const err = e as Error | null | undefined
  process.stderr.write(`dflatten: internal error: ${err?.stack ?? String(e)}\n`)
  return INTERNAL_ERROR
}

/**
 * stdout as the end of a pipeline. Piping into process.stdout directly never finishes when stdout
 * is a file (/dev/null, a redirect): Node keeps that stream open for good. This writes each chunk
 * and moves on once it is flushed, and finishes without closing stdout.
 */
export function stdoutSink(): Writable {
  return new Writable({
    highWaterMark: 1024 * 1024,
    write(chunk: Buffer, _enc, cb) {
      process.stdout.write(chunk, (err) => cb(err ?? null))
    },
  })
}

/** Refuse to write a binary archive to a terminal; `message` says what to do instead. */
export function refuseTerminal(message: string): void {
  if (process.stdout.isTTY) throw new DflattenError('usage', message)
}

/** stdout for a binary archive: refused when it is a terminal. */
export function binaryStdout(message: string): Writable {
  refuseTerminal(message)
  return stdoutSink()
}

/**
 * The V8 flags in bin/dflatten.js suit most methods: --optimize-for-size keeps the peak RSS low.
 * But it also makes V8 collect the old generation at each step of its growth, and the registry
 * method's merge keeps a node for every path it meets, which that slows markedly (README, Performance).
 * So the CLI turns it off once it knows the method is one of those (`largeHeap`), and caps how far
 * the heap may grow past what a collection left instead: unbounded, V8 lets it reach several
 * times what is live. (The library never touches the process's flags: that is the CLI's business.)
 */
export function tuneHeap(method: { name: string }): void {
  if (getMethod(method.name).largeHeap) v8.setFlagsFromString('--no-optimize-for-size --heap-growing-percent=100')
}

/** Run a stage command's work, then remove whatever workspace it still holds, however it ended. */
export async function cleaningUp<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work()
  } finally {
    await cleanupAll((e) => process.stderr.write(`dflatten: cleanup: ${e.message}\n`))
  }
}
