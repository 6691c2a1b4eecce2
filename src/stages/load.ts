/**
 * Stage 5, load: stream the image archive into `docker load`. The daemon tags the image only
 * once the whole archive has loaded, so a failed or interrupted load leaves no tag behind.
 */
import { Writable } from 'node:stream'
import { dockerLoadInput, tagImage, type LoadInput, type LoadOutput } from '../docker.js'
import { DflattenError } from '../errors.js'

export interface LoadOptions {
  signal?: AbortSignal
  /** Names to give the loaded image after it loaded (besides those inside the archive). */
  tags?: string[]
  onDone?: (result: LoadOutput) => void
}

/**
 * A writable that is `docker load`'s stdin; it finishes when docker load has succeeded and the
 * tags are on.
 *
 * It wraps execa's writable of the child (see dockerLoadInput) rather than being it, for what
 * that one does not do: docker load starts with the first byte, so a run stopped before pack
 * never starts it; a destroy kills docker load instead of ending its input, which could pass
 * for a whole archive; and a write waiting for room when docker load dies fails with docker's
 * words, where execa's would wait for a drain that never comes.
 */
export function loadStage(opts: LoadOptions = {}): Writable {
  let load: LoadInput | null = null
  const input = (): LoadInput => (load ??= dockerLoadInput(opts.signal))
  const failure = (l: LoadInput): Promise<Error> =>
    l.loaded.then(
      () => new DflattenError('tool-failed', 'docker load stopped reading its input'),
      (e: unknown) => e as Error,
    )

  return new Writable({
    highWaterMark: 1024 * 1024,
    write(chunk: Buffer, _enc, cb) {
      const l = input()
      if (l.stdin.destroyed) return void failure(l).then(cb)
      if (l.stdin.write(chunk)) {
        cb()
        return
      }
      const drained = (): void => {
        l.stdin.off('close', closed)
        cb()
      }
      const closed = (): void => {
        l.stdin.off('drain', drained)
        void failure(l).then(cb)
      }
      l.stdin.once('drain', drained).once('close', closed)
    },
    final(cb) {
      const l = input()
      l.stdin.end()
      l.loaded
        .then(async (out) => {
          const subject = out.ids[0] ?? out.tags[0]
          for (const tag of opts.tags ?? []) {
            if (!subject) throw new DflattenError('tool-failed', 'docker load did not say what it loaded; cannot tag it')
            await tagImage(subject, tag)
          }
          opts.onDone?.(out)
        })
        .then(() => cb(), (e: unknown) => cb(e as Error))
    },
    destroy(err, cb) {
      void (load?.kill() ?? Promise.resolve()).then(() => cb(err))
    },
  })
}
