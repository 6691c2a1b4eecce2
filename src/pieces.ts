/**
 * A Readable's chunks as they were pushed, one at a time. Node's own async iterator reads
 * whatever the stream has buffered in one `read()`, which joins it all into a new Buffer: behind
 * a fast producer that is a copy of every byte, and each joined megabyte is a fresh mapping of
 * memory (the CLI fixes glibc's mmap threshold lower). Here the chunks are queued as the stream
 * emits them and the stream is paused once `limit` bytes wait, so the buffering stays bounded.
 */
import { PassThrough, type Readable } from 'node:stream'

/** The default bytes queued before the stream is paused. */
export const PIECES_LIMIT = 1024 * 1024

export async function* pieces(stream: Readable, limit = PIECES_LIMIT): AsyncGenerator<Buffer, void> {
  const queue: Buffer[] = []
  let queued = 0
  let ended = false
  let failure: { error: unknown } | null = null
  let wake: (() => void) | null = null
  const poke = (): void => {
    const w = wake
    wake = null
    w?.()
  }
  const onData = (c: Buffer): void => {
    queue.push(c)
    queued += c.length
    if (queued >= limit) stream.pause()
    poke()
  }
  const onEnd = (): void => {
    ended = true
    poke()
  }
  const onError = (error: unknown): void => {
    failure ??= { error }
    poke()
  }
  // A stream destroyed without an error or an end was cut short: its reader must not take the
  // bytes so far for the whole.
  const onClose = (): void => {
    if (!ended) failure ??= { error: stream.errored ?? new Error('the stream was closed before its end') }
    poke()
  }
  if (stream.readableEnded) ended = true
  else if (stream.destroyed) failure = { error: stream.errored ?? new Error('the stream was closed before its end') }
  stream.on('data', onData)
  stream.on('end', onEnd)
  stream.on('error', onError)
  stream.on('close', onClose)
  try {
    for (;;) {
      const c = queue.shift()
      if (c) {
        queued -= c.length
        if (queued < limit / 2 && stream.isPaused() && !ended) stream.resume()
        yield c
        continue
      }
      if (failure) throw failure.error
      if (ended) return
      await new Promise<void>((resolve) => (wake = resolve))
    }
  } finally {
    stream.off('data', onData)
    stream.off('end', onEnd)
    stream.off('error', onError)
    stream.off('close', onClose)
    // A reader that stops early lets go of the stream, as Node's own iterator does.
    if (!ended) stream.destroy()
  }
}

/** A PassThrough that `for await` reads piece by piece (see pieces), `limit` bytes ahead at most. */
export class PiecewisePassThrough extends PassThrough {
  constructor(private readonly limit = PIECES_LIMIT) {
    super()
  }

  override [Symbol.asyncIterator](): AsyncGenerator<Buffer, void> {
    return pieces(this, this.limit)
  }
}
