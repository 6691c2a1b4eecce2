/**
 * A layer blob as tar bytes: gunzipped (zlib), un-zstd'ed (the `zstd` program) or as it is,
 * told by the media type and, where that says nothing, by the first bytes; the tar checked
 * against the diff id the config names, at its end.
 */
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { gunzipLayer } from '../compress/gunzip.js'
import { createHash } from 'node:crypto'
import { execa, ExecaError } from 'execa'
import { DflattenError } from '../errors.js'
import type { LayerDescriptor } from '../image-archive.js'
import type { BlobSource } from './blob-source.js'

type Codec = 'gzip' | 'zstd' | 'none'

function codecOf(mediaType: string, head: Buffer): Codec {
  if (/[+.]gzip$/.test(mediaType)) return 'gzip'
  if (/[+.]zstd$/.test(mediaType)) return 'zstd'
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip'
  if (head.readUInt32LE(0) === 0xfd2fb528) return 'zstd'
  return 'none'
}

async function* unzstd(source: AsyncIterable<Buffer>, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const child = execa('zstd', ['-d', '-q', '-c'], { stdin: 'pipe', buffer: false, cancelSignal: signal, stripFinalNewline: false })
  const fed = pipeline(Readable.from(source), child.stdin).catch((e: unknown) => e)
  try {
    for await (const c of child.stdout) yield c as Buffer
    const fedError = await fed
    if (fedError instanceof Error) throw fedError
    await child
  } catch (e) {
    const exit = await child.then(() => null, (err: unknown) => err)
    const why = exit ?? e
    if (why instanceof ExecaError && why.code === 'ENOENT') throw new DflattenError('tool-missing', 'zstd is not installed; a zstd layer needs it (apt-get install zstd)')
    if (why instanceof ExecaError && !why.isCanceled) throw new DflattenError('bad-data', `zstd could not decompress a layer: ${said(why) || why.shortMessage}`)
    throw why
  } finally {
    if (child.exitCode === null) child.kill()
    await child.catch(() => undefined)
  }
}

/** gunzip's output; the blob failing (a connection cut) fails it too: pipe() alone would leave that error unhandled. */
function gunzip(blob: AsyncIterable<Buffer>): Readable {
  const source = Readable.from(blob)
  const out = gunzipLayer()
  source.on('error', (e) => out.destroy(e))
  return source.pipe(out)
}

/** The tar bytes of layer `d`, read once from `source`; fails at the end unless they hash to `d.diffId`. */
export async function* layerTar(source: BlobSource, d: LayerDescriptor, what: string, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const blob = (await source.open(d, signal))[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  const first = await blob.next()
  const head = first.done ? Buffer.alloc(4) : first.value
  async function* all(): AsyncGenerator<Buffer> {
    if (!first.done) yield first.value
    for (let r = await blob.next(); !r.done; r = await blob.next()) yield r.value
  }
  const codec = codecOf(d.mediaType, head.length >= 4 ? head : Buffer.concat([head, Buffer.alloc(4)]))
  const tar: AsyncIterable<Buffer> = codec === 'gzip' ? gunzip(all()) : codec === 'zstd' ? unzstd(all(), signal) : all()
  const hash = createHash('sha256')
  try {
    for await (const c of tar) {
      hash.update(c)
      yield c
    }
  } catch (e) {
    if (e instanceof DflattenError) throw e
    throw new DflattenError('bad-data', `${what}: layer ${d.digest.slice(0, 19)} does not decompress (${(e as Error).message})`)
  } finally {
    await blob.return?.()
  }
  const diffId = 'sha256:' + hash.digest('hex')
  if (diffId !== d.diffId) throw new DflattenError('bad-data', `${what}: layer ${d.digest.slice(0, 19)} holds the tar ${diffId.slice(0, 19)}, its config names ${d.diffId.slice(0, 19)}`)
}

/** What the program wrote on stderr, if it was text. */
function said(e: { stderr?: unknown }): string {
  const stderr: unknown = e.stderr
  return typeof stderr === 'string' ? stderr.trim() : ''
}
