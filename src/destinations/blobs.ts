/**
 * Base blobs from the local daemon: `docker save` of the base, its layer blobs handed on as the
 * save streams them (no temp file), and where a registry already holds the same layers
 * (Docker's own push records), so a registry destination can mount instead of upload.
 */
import { readFile } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { createHash } from 'node:crypto'
import { dockerSave, explainFailure, finished, type DaemonInfo } from '../docker.js'
import { DflattenError } from '../errors.js'
import { digestInName } from '../image-archive.js'
import { cleanMemberName, readTar } from '../tar/index.js'
import { DOCKER } from './layer.js'
import type { BlobSource, LayerDescriptor, RemoteBlob, SourceBlob } from './destination.js'

const LEGACY_LAYER = /(^|\/)layer\.tar$/

/** The blobs a source gives for `wanted`: its own order where it has one, else one by one. */
export async function* eachBlob(source: BlobSource, wanted: LayerDescriptor[], signal?: AbortSignal): AsyncGenerator<SourceBlob> {
  if (!wanted.length) return
  if (source.each) {
    yield* source.each(wanted, signal)
    return
  }
  for (const d of wanted) yield { digest: d.digest, size: d.size, stream: await source.open(d, signal) }
}

/** A stream that fails at its end unless its bytes hash to `digest`. */
function verified(body: AsyncIterable<Buffer>, digest: string): Readable {
  return Readable.from(
    (async function* () {
      const hash = createHash('sha256')
      for await (const c of body) {
        hash.update(c)
        yield c
      }
      const got = `sha256:${hash.digest('hex')}`
      if (got !== digest) throw new DflattenError('bad-data', `docker save gave a blob that hashes to ${got}, not ${digest}`)
    })(),
    { objectMode: false },
  )
}

/**
 * The daemon's blobs of `image` (the base), read from one `docker save`. Docker 25 and later
 * name each blob by its digest; Docker 20.10 writes `<id>/layer.tar`, whose digest only hashing
 * tells (the base's layers are all it holds, so each is wanted).
 */
export function daemonBlobs(image: string | null, info: DaemonInfo): BlobSource {
  async function* each(wanted: LayerDescriptor[], signal?: AbortSignal): AsyncGenerator<SourceBlob> {
    if (!image || !wanted.length) {
      if (wanted.length) throw new DflattenError('bad-input', 'blobs asked of a base that is scratch')
      return
    }
    const want = new Set(wanted.map((d) => d.digest))
    const save = dockerSave(image, signal)
    try {
      for await (const m of readTar(save.stdout)) {
        if (m.type !== '0') continue
        const name = cleanMemberName(m.name).toString('latin1')
        const digest = digestInName(name)
        if (digest ? !want.has(digest) : !LEGACY_LAYER.test(name)) continue
        yield { digest, size: m.size, stream: Readable.from(m.body(), { objectMode: false }) }
      }
      await finished(save)
    } catch (e) {
      throw await explainFailure(save, e)
    } finally {
      if (save.child.exitCode === null) save.child.kill()
      await save.child.catch(() => undefined)
    }
  }
  return {
    each,
    async open(d, signal) {
      // An unnamed blob is taken by its size, and checked by its digest as it streams.
      for await (const b of each([d], signal)) {
        if (b.digest === d.digest) return b.stream
        if (b.digest === null && b.size === d.size) return verified(b.stream, d.digest)
        b.stream.destroy()
      }
      throw new DflattenError('bad-data', `docker save of ${image ?? 'scratch'} does not hold the blob ${d.digest}`)
    },
    elsewhere: (d) => pushedCopies(info, d),
  }
}

/**
 * Where Docker itself pushed (or pulled) this layer from: the classic store's distribution
 * metadata maps a diff id to the registry blobs holding it (gzip, as docker push makes them).
 * Only readable on the daemon's own host, as root; otherwise nothing is known.
 */
export async function pushedCopies(info: DaemonInfo, d: LayerDescriptor): Promise<RemoteBlob[]> {
  if (info.containerdStore || info.remote) return []
  const path = `${info.dockerRoot}/image/${info.driver}/distribution/v2metadata-by-diffid/sha256/${d.diffId.replace(/^sha256:/, '')}`
  let records: Array<{ Digest?: string; SourceRepository?: string }>
  try {
    records = JSON.parse(await readFile(path, 'utf8')) as typeof records
  } catch {
    return []
  }
  const out: RemoteBlob[] = []
  for (const r of Array.isArray(records) ? records : []) {
    if (!r.Digest || !r.SourceRepository) continue
    const slash = r.SourceRepository.indexOf('/')
    if (slash === -1) continue
    out.push({ registry: r.SourceRepository.slice(0, slash), repository: r.SourceRepository.slice(slash + 1), digest: r.Digest, mediaType: DOCKER.layerGzip })
  }
  return out
}
