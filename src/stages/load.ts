/**
 * Stage 5, load: stream the image archive into `docker load`. The daemon tags the image only
 * once the whole archive has loaded, so a failed or interrupted load leaves no tag behind.
 */
import { Writable } from 'node:stream'
import { dockerError, dockerLoad, parseLoadOutput, tagImage, type LoadOutput } from '../docker.js'
import { DflattenError } from '../errors.js'

export interface LoadOptions {
  signal?: AbortSignal
  /** Names to give the loaded image after it loaded (besides those inside the archive). */
  tags?: string[]
  onDone?: (result: LoadOutput) => void
}

type Outcome = { ok: true; stdout: string } | { ok: false; error: unknown }

/**
 * A writable that is `docker load`'s stdin; it finishes when docker load has succeeded.
 * docker load starts with the first byte, so a run stopped before pack never starts it.
 */
export function loadStage(opts: LoadOptions = {}): Writable {
  let child: ReturnType<typeof dockerLoad> | null = null
  let result: Promise<Outcome> = Promise.resolve({ ok: true, stdout: '' })

  const start = (): NonNullable<typeof child> => {
    if (child) return child
    child = dockerLoad(opts.signal)
    // Errors surface through write, final or destroy; an unhandled rejection must not crash us.
    result = child.then(
      (r) => ({ ok: true as const, stdout: String(r.stdout) }),
      (e: unknown) => ({ ok: false as const, error: e }),
    )
    child.stdin!.on('error', () => {}) // EPIPE when docker load dies early: its exit status says why
    return child
  }
  const failed = async (): Promise<Error> => {
    const r = await result
    return r.ok ? new DflattenError('tool-failed', 'docker load stopped reading its input') : dockerError(['load'], r.error)
  }

  return new Writable({
    highWaterMark: 1024 * 1024,
    write(chunk: Buffer, _enc, cb) {
      const stdin = start().stdin!
      if (stdin.destroyed) {
        failed().then(cb, cb)
        return
      }
      if (stdin.write(chunk)) return cb()
      // Wait for room, unless docker load exits first: then it will never drain.
      let settled = false
      const onDrain = (): void => {
        if (settled) return
        settled = true
        cb()
      }
      stdin.once('drain', onDrain)
      void result.then(() => {
        if (settled) return
        settled = true
        stdin.off('drain', onDrain)
        failed().then(cb, cb)
      })
    },
    final(cb) {
      start().stdin!.end()
      result
        .then(async (r) => {
          if (!r.ok) throw dockerError(['load'], r.error)
          const out = parseLoadOutput(r.stdout)
          const id = out.ids[0] ?? null
          for (const tag of opts.tags ?? []) {
            const subject = id ?? out.tags[0]
            if (!subject) throw new DflattenError('tool-failed', 'docker load did not say what it loaded; cannot tag it')
            await tagImage(subject, tag)
          }
          opts.onDone?.(out)
        })
        .then(() => cb(), (e: Error) => cb(e))
    },
    destroy(err, cb) {
      // The docker CLI may sit out a SIGTERM while it streams; SIGKILL only ends the client,
      // and the daemon then drops the half-sent archive without tagging anything.
      if (child && child.exitCode === null) child.kill('SIGKILL')
      result.then(() => cb(err), () => cb(err))
    },
  })
}
