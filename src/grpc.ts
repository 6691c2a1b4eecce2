/**
 * A gRPC call over HTTP/2 on a unix socket, with Node's own http2: the messages out as they come
 * (with backpressure), the last message back, and the call's status from its trailers. Enough for
 * containerd's API (src/containerd-api.ts), which `ctr` cannot drive under a lease; no gRPC
 * library is among this project's dependencies, and this is all of the protocol it needs.
 */
import { connect, constants, type IncomingHttpHeaders } from 'node:http2'
import { connect as netConnect } from 'node:net'
import { once } from 'node:events'
import type { Message } from './protobuf.js'

/** gRPC status codes this project tells apart. */
export const GRPC = { ok: 0, notFound: 5, alreadyExists: 6, unavailable: 14 } as const

export class GrpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message)
    this.name = 'GrpcError'
  }
}

export interface GrpcTarget {
  /** The unix socket the server listens on. */
  socket: string
  /** Metadata sent with every call (containerd's namespace, a lease). */
  metadata?: Record<string, string>
}

/** A message's 5-byte prefix: not compressed, then its length. */
function prefix(length: number): Buffer {
  const b = Buffer.alloc(5)
  b.writeUInt32BE(length, 1)
  return b
}

function statusOf(headers: IncomingHttpHeaders): { code: number; message: string } | null {
  const code = headers['grpc-status']
  if (code === undefined) return null
  const m = headers['grpc-message']
  const raw = Array.isArray(m) ? m.join(',') : (m ?? '')
  let message = raw
  try {
    message = decodeURIComponent(raw)
  } catch {
    // a message that is not percent-encoded is shown as it came
  }
  return { code: Number(code), message }
}

/**
 * Call `path` (`/package.Service/Method`) with `requests`; resolves with the last response
 * message (null when there was none) once the server ends the call with status OK.
 */
export async function grpcCall(target: GrpcTarget, path: string, requests: Iterable<Message> | AsyncIterable<Message>, signal?: AbortSignal): Promise<Buffer | null> {
  signal?.throwIfAborted()
  const session = connect('http://localhost', { createConnection: () => netConnect(target.socket) })
  const req = session.request({
    ':method': 'POST',
    ':path': path,
    'content-type': 'application/grpc',
    te: 'trailers',
    ...target.metadata,
  })
  const ended = new AbortController()
  const done = new Promise<Buffer | null>((resolve, reject) => {
    let pending: Buffer = Buffer.alloc(0)
    let last: Buffer | null = null
    let status: { code: number; message: string } | null = null
    let httpStatus = 0
    req.on('response', (h) => {
      httpStatus = Number(h[':status'])
      status = statusOf(h) ?? status
    })
    req.on('trailers', (h: IncomingHttpHeaders) => (status = statusOf(h) ?? status))
    req.on('data', (chunk: Buffer) => {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk
      while (pending.length >= 5) {
        const len = pending.readUInt32BE(1)
        if (pending.length < 5 + len) break
        last = Buffer.from(pending.subarray(5, 5 + len))
        pending = pending.subarray(5 + len)
      }
    })
    // A failed connect shows as the stream's cancel, caused by the socket's own error.
    req.on('error', (e: Error) => reject(e.cause instanceof Error ? e.cause : e))
    session.on('error', (e: Error) => reject(e))
    req.on('close', () => {
      ended.abort()
      if (!status) reject(new GrpcError(GRPC.unavailable, `${path}: the call ended without a status (HTTP ${httpStatus || 'none'})`))
      else if (status.code !== GRPC.ok) reject(new GrpcError(status.code, status.message || `${path} failed with gRPC status ${status.code}`))
      else resolve(last)
    })
  })
  const onAbort = (): void => {
    req.close(constants.NGHTTP2_CANCEL)
  }
  signal?.addEventListener('abort', onAbort, { once: true })
  const send = async (): Promise<void> => {
    for await (const m of requests) {
      if (ended.signal.aborted) return
      const pieces = m.pieces()
      let ok = req.write(prefix(pieces.reduce((n, p) => n + p.length, 0)))
      for (const p of pieces) ok = req.write(p)
      if (!ok) await once(req, 'drain', { signal: ended.signal }).catch(() => undefined)
    }
    if (!ended.signal.aborted) req.end()
  }
  try {
    const [, result] = await Promise.all([
      send().catch((e: unknown) => {
        req.close(constants.NGHTTP2_CANCEL)
        throw e
      }),
      done,
    ])
    signal?.throwIfAborted()
    return result
  } catch (e) {
    // An abort shows as the abort's reason, not as the cancelled stream.
    signal?.throwIfAborted()
    throw e
  } finally {
    signal?.removeEventListener('abort', onAbort)
    session.destroy()
  }
}
