/**
 * A dry run's "bytes the squashed layers hold today" on the containerd store. Unlike overlay2's
 * tar-split, containerd records no layer's tar size, only its (compressed) blob's; the tar's is
 * counted by decompressing the blob, so the report compares like with like (the new layer's
 * size is a tar's too). Only the squashed layers are read, one at a time, nothing is kept.
 */
import { gunzipLayer } from '../../compress/gunzip.js'
import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { execa } from 'execa'
import { DflattenError } from '../../errors.js'
import { contentStream, type Containerd, type Descriptor } from '../../containerd.js'

function counter(): { sink: Writable; total: () => number } {
  let n = 0
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      n += chunk.length
      cb()
    },
  })
  return { sink, total: () => n }
}

/** The tar size of one layer blob: gzip and zstd decompressed, an uncompressed tar as it is. */
export async function blobTarSize(c: Containerd, blob: Pick<Descriptor, 'mediaType' | 'digest'>, signal?: AbortSignal): Promise<number> {
  const child = contentStream(c, blob.digest, signal)
  const { sink, total } = counter()
  try {
    if (/zstd$/.test(blob.mediaType)) {
      const unzstd = execa('zstd', ['-q', '-d', '-c'], { stdin: 'pipe', buffer: false, cancelSignal: signal, stripFinalNewline: false })
      await Promise.all([pipeline(child.stdout, unzstd.stdin), pipeline(unzstd.stdout, sink), unzstd])
    } else if (/gzip$/.test(blob.mediaType)) {
      await pipeline(child.stdout, gunzipLayer(), sink)
    } else {
      await pipeline(child.stdout, sink)
    }
    await child
  } catch (e) {
    child.kill()
    const exit = await child.then(() => null, (err: unknown) => err)
    const why = exit instanceof Error ? exit.message : e instanceof Error ? e.message : String(e)
    throw new DflattenError('tool-failed', `reading layer ${blob.digest.slice(0, 19)} from containerd failed: ${why.split('\n')[0] ?? why}`)
  }
  return total()
}
