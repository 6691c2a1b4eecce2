/**
 * zstd through the `zstd` program (Node 20's zlib has no zstd). Its output depends only on the
 * input and the level, whatever the number of threads (zstd cuts jobs by size, not by thread),
 * so it can use every core and still give the same blob twice.
 */
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { execa, ExecaError } from 'execa'
import { DflattenError } from '../errors.js'

export interface ZstdOptions {
  level: number
  /** The zstd program; default `zstd` on PATH. */
  command?: string
  signal?: AbortSignal
}

export async function* zstd(source: AsyncIterable<Buffer>, opts: ZstdOptions): AsyncGenerator<Buffer> {
  const child = execa(opts.command ?? 'zstd', ['-q', '-c', `-${opts.level}`, '-T0'], {
    stdin: 'pipe',
    buffer: false,
    cancelSignal: opts.signal,
    stripFinalNewline: false,
  })
  // The input is fed beside the reading; its failure is the child's or the source's, seen below.
  const fed = pipeline(Readable.from(source), child.stdin).then(
    () => null,
    (e: unknown) => ({ error: e }),
  )
  try {
    for await (const c of child.stdout) yield c as Buffer
    const fedError = await fed
    if (fedError) throw fedError.error
    await child
  } catch (e) {
    // A child that failed (not installed, killed, bad level) says why better than the stream
    // it left half-read.
    const exit = await child.then(() => null, (err: unknown) => err)
    throw explain(exit ?? e)
  } finally {
    if (child.exitCode === null) child.kill()
    await child.catch(() => undefined)
  }
}

function explain(e: unknown): unknown {
  if (e instanceof ExecaError) {
    if (e.code === 'ENOENT') return new DflattenError('tool-missing', 'zstd is not installed; --compress zstd needs it (apt-get install zstd)')
    if (!e.isCanceled) return new DflattenError('tool-failed', `zstd failed: ${e.shortMessage}`)
  }
  return e
}
