/**
 * Blob uploads (the Distribution API's upload sessions). A stream goes up as it is made: POST
 * opens a session, PATCH carries the bytes (one streamed PATCH, or fixed-size chunks with
 * Content-Range for registries that want them), PUT `?digest=` closes it once the digest is
 * known. No temp file. A failure or an abort cancels the session with DELETE.
 */
import { PassThrough, type Readable } from 'node:stream'
import { DflattenError } from '../errors.js'
import { Digester, sha256 } from './digest.js'
import type { RegistrySession } from './session.js'
import { header, type HttpResponse } from './transport.js'

/** How to upload. */
export interface UploadOptions {
  /** Refuse the stream unless it hashes to this. */
  digest?: string
  /** An upload session already open (a mount the registry turned into an upload). */
  location?: URL
  /**
   * Send the bytes in PATCHes of this many bytes with Content-Range instead of one streamed
   * PATCH; taken anyway, at least as large, when the registry asks (OCI-Chunk-Min-Length).
   * Each chunk is held in memory.
   */
  chunkSize?: number
  signal?: AbortSignal
  /** The start of the messages. */
  what?: string
  scopes: string[]
}

/** What was uploaded. */
export interface UploadResult {
  digest: string
  size: number
}

/** Open, fill and close an upload session with `source`'s bytes. */
export async function uploadBlob(session: RegistrySession, uploadsPath: string, source: Readable, options: UploadOptions): Promise<UploadResult> {
  const what = options.what ?? session.registry
  const { scopes, signal } = options
  // Each PATCH answers with the session's next URL (distribution signs the offset into it):
  // the cancel must use the latest.
  const state: { location?: URL } = { location: options.location }
  const digester = new Digester()
  try {
    throwIfAborted(signal, what)
    let chunkSize = options.chunkSize
    if (!state.location) {
      const opened = await openSession(session, uploadsPath, scopes, what, signal)
      state.location = opened.location
      if (opened.minChunk) chunkSize = Math.max(chunkSize ?? 0, opened.minChunk)
    }
    source.on('error', (e) => digester.destroy(e))
    source.pipe(digester)
    if (chunkSize) await patchChunks(session, state, digester, chunkSize, options)
    else await patchStream(session, state, digester, options)
    // The stream has ended: the digest is known.
    const digest = digester.digest
    if (options.digest && digest !== options.digest) {
      throw new DflattenError('bad-data', `${what}: the data hashes to ${digest}, not ${options.digest}`)
    }
    await finish(session, state.location, digest, undefined, options)
    return { digest, size: digester.size }
  } catch (e) {
    source.destroy()
    digester.destroy()
    if (state.location) await cancelUpload(session, state.location, scopes, what)
    throw signal?.aborted ? abortError(signal, what) : e
  }
}

/** A blob held in memory, in one request after POST (repeatable, so retried like any other). */
export async function uploadBytes(
  session: RegistrySession,
  uploadsPath: string,
  bytes: Buffer,
  options: { scopes: string[]; what: string; signal?: AbortSignal },
): Promise<UploadResult> {
  const { location } = await openSession(session, uploadsPath, options.scopes, options.what, options.signal)
  const digest = sha256(bytes)
  try {
    await finish(session, location, digest, bytes, options)
  } catch (e) {
    await cancelUpload(session, location, options.scopes, options.what)
    throw e
  }
  return { digest, size: bytes.length }
}

/**
 * Cancel an upload session, best effort: a registry that cannot (or no longer can) answers
 * otherwise and the session expires there. distribution 2.8 cancels only with the session's
 * latest URL; after a PATCH cut mid-body the client never learned it, and asking again with
 * the old one changes nothing (404 BLOB_UPLOAD_INVALID), so one DELETE is all there is.
 */
export async function cancelUpload(session: RegistrySession, location: URL, scopes: string[], what: string): Promise<void> {
  try {
    const res = await session.send({ method: 'DELETE', url: location, scopes, what, signal: AbortSignal.timeout(10_000) })
    await res.body.dump()
  } catch {
    // The upload already failed for a reason worth more than this one.
  }
}

async function openSession(
  session: RegistrySession,
  uploadsPath: string,
  scopes: string[],
  what: string,
  signal?: AbortSignal,
): Promise<{ location: URL; minChunk?: number }> {
  const res = await session.send({ method: 'POST', url: uploadsPath, headers: { 'content-length': '0' }, scopes, what, signal })
  const loc = header(res.headers, 'location')
  if (res.status !== 202 || !loc) throw await session.failure(res, what)
  await res.body.dump()
  const min = Number(header(res.headers, 'oci-chunk-min-length'))
  return { location: new URL(loc, res.url), minChunk: Number.isFinite(min) && min > 0 ? min : undefined }
}

/**
 * One PATCH with the whole stream as its body (chunked transfer encoding). When the source fails
 * or the upload is aborted, the body is ended rather than cut: the registry then answers for
 * the bytes it has, with a session URL a DELETE can cancel (distribution 2.8 cannot cancel an
 * upload whose PATCH was cut: it keeps the part until its purge, days later). Only if the
 * registry does not answer soon is the connection cut.
 */
async function patchStream(session: RegistrySession, state: { location?: URL }, digester: Digester, options: UploadOptions): Promise<void> {
  const what = options.what ?? session.registry
  const gate = new PassThrough()
  const hard = new AbortController()
  let stopped: { reason: unknown } | undefined
  let timer: NodeJS.Timeout | undefined
  const stop = (reason: unknown): void => {
    if (stopped) return
    stopped = { reason }
    digester.unpipe(gate)
    gate.end()
    timer = setTimeout(() => hard.abort(), 5000)
  }
  const onAbort = (): void => stop(abortError(options.signal, what))
  digester.on('error', stop)
  options.signal?.addEventListener('abort', onAbort, { once: true })
  digester.pipe(gate)
  try {
    const res = await session.send({
      method: 'PATCH',
      url: sessionUrl(state),
      headers: { 'content-type': 'application/octet-stream' },
      body: gate,
      scopes: options.scopes,
      signal: hard.signal,
      what,
    })
    state.location = await nextLocation(session, res, sessionUrl(state), what)
  } catch (e) {
    throw stopped ? stopped.reason : e
  } finally {
    clearTimeout(timer)
    options.signal?.removeEventListener('abort', onAbort)
    digester.off('error', stop)
  }
  if (stopped) throw stopped.reason
}

/**
 * PATCHes of `size` bytes each, with Content-Range `start-end` (inclusive, as the spec has it).
 * An abort takes effect between chunks, so the registry never holds a cut chunk.
 */
async function patchChunks(session: RegistrySession, state: { location?: URL }, body: Readable, size: number, options: UploadOptions): Promise<void> {
  const what = options.what ?? session.registry
  let offset = 0
  let parts: Buffer[] = []
  let held = 0
  const send = async (chunk: Buffer): Promise<void> => {
    throwIfAborted(options.signal, what)
    const res = await session.send({
      method: 'PATCH',
      url: sessionUrl(state),
      headers: {
        'content-type': 'application/octet-stream',
        'content-length': String(chunk.length),
        'content-range': `${offset}-${offset + chunk.length - 1}`,
      },
      body: chunk,
      scopes: options.scopes,
      what,
    })
    if (res.status === 416) throw new DflattenError('registry', `${what}: registry ${session.registry} refused the chunk at ${offset} (416)`)
    state.location = await nextLocation(session, res, sessionUrl(state), what)
    offset += chunk.length
  }
  for await (const piece of body as AsyncIterable<Buffer>) {
    parts.push(piece)
    held += piece.length
    while (held >= size) {
      const all = Buffer.concat(parts)
      await send(all.subarray(0, size))
      parts = [all.subarray(size)]
      held -= size
    }
  }
  if (held > 0) await send(Buffer.concat(parts))
}

async function nextLocation(session: RegistrySession, res: HttpResponse, current: URL, what: string): Promise<URL> {
  if (res.status !== 202 && res.status !== 204) throw await session.failure(res, what)
  await res.body.dump()
  const loc = header(res.headers, 'location')
  return loc ? new URL(loc, res.url) : current
}

/** PUT `?digest=` (keeping the session's own query, `_state` and the like), with the last bytes if any. */
async function finish(
  session: RegistrySession,
  location: URL,
  digest: string,
  bytes: Buffer | undefined,
  options: { scopes: string[]; what?: string; signal?: AbortSignal },
): Promise<void> {
  const what = options.what ?? session.registry
  const url = new URL(location)
  url.searchParams.set('digest', digest)
  const res = await session.send({
    method: 'PUT',
    url,
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes?.length ?? 0) },
    body: bytes ?? Buffer.alloc(0),
    scopes: options.scopes,
    signal: options.signal,
    what,
  })
  if (res.status !== 201 && res.status !== 204) throw await session.failure(res, what)
  await res.body.dump()
}

/** The upload session's latest URL: uploadBlob opens the session before any PATCH. */
function sessionUrl(state: { location?: URL }): URL {
  if (!state.location) throw new Error('upload: a PATCH before the session was opened')
  return state.location
}

function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw abortError(signal, what)
}

function abortError(signal: AbortSignal | undefined, what: string): DflattenError {
  const r: unknown = signal?.reason
  return r instanceof DflattenError ? r : new DflattenError('interrupted', `${what}: upload cancelled`)
}
