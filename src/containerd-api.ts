/**
 * The calls of containerd's own API this project makes (over src/grpc.ts), where `ctr` cannot
 * serve: writing a blob into the content store under a lease (ctr's ingest takes none, and
 * content nobody holds may be collected before anything names it), and the leases themselves.
 * Field numbers are those of containerd's api/services/{content,leases}/v1 protos.
 */
import type { Readable } from 'node:stream'
import { createHash } from 'node:crypto'
import { grpcCall, GrpcError, GRPC, type GrpcTarget } from './grpc.js'
import { decode, Message, text, uint } from './protobuf.js'
import type { Containerd } from './containerd.js'

const LEASES = '/containerd.services.leases.v1.Leases'
const CONTENT = '/containerd.services.content.v1.Content'

/** The label that makes containerd's collector drop a lease once its time has passed. */
export const EXPIRE_LABEL = 'containerd.io/gc.expire'

function target(c: Containerd, lease?: string): GrpcTarget {
  return { socket: c.address, metadata: { 'containerd-namespace': c.namespace, ...(lease ? { 'containerd-lease': lease } : {}) } }
}

/** RFC 3339 without fractions, as containerd parses the expiry. */
function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z')
}

/** Create lease `id`, which containerd drops by itself after `expires` (if nobody deletes it first). */
export async function createLease(c: Containerd, id: string, expires: Date, signal?: AbortSignal): Promise<void> {
  const req = new Message().bytes(1, id).map(3, { [EXPIRE_LABEL]: rfc3339(expires) })
  await grpcCall(target(c), `${LEASES}/Create`, [req], signal)
}

/** Delete lease `id`; what only it held is collected. One already gone is fine. */
export async function deleteLease(c: Containerd, id: string, signal?: AbortSignal): Promise<void> {
  try {
    await grpcCall(target(c), `${LEASES}/Delete`, [new Message().bytes(1, id)], signal)
  } catch (e) {
    if (!(e instanceof GrpcError && e.code === GRPC.notFound)) throw e
  }
}

/** The size of the content store's blob `digest`, or null when it does not hold it. */
export async function contentSize(c: Containerd, digest: string, signal?: AbortSignal): Promise<number | null> {
  try {
    const res = await grpcCall(target(c), `${CONTENT}/Info`, [new Message().bytes(1, digest)], signal)
    const info = res ? decode(res).get(1) : undefined
    return Buffer.isBuffer(info) ? uint(decode(info), 2) : 0
  } catch (e) {
    if (e instanceof GrpcError && e.code === GRPC.notFound) return null
    throw e
  }
}

const WRITE = 1
const COMMIT = 2
/** Below containerd's 16 MiB message limit, large enough that framing costs nothing. */
const PIECE = 1024 * 1024

/**
 * Write `source` into the content store under `lease`, as ingest `ref`; resolves with the blob's
 * digest and size once containerd has committed it (checked against our own hash). A blob it
 * already holds is fine: the commit then only adds it to the lease (and the unpack that follows
 * checks the layer against its diff id).
 */
export async function writeContent(c: Containerd, lease: string, ref: string, source: Readable, signal?: AbortSignal): Promise<{ digest: string; size: number }> {
  const hash = createHash('sha256')
  let size = 0
  let digest = ''
  async function* requests(): AsyncGenerator<Message> {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      for (let at = 0; at < chunk.length; at += PIECE) {
        const piece = chunk.subarray(at, at + PIECE)
        hash.update(piece)
        // The offset of every write but the first is checked by containerd; 0 would truncate.
        yield new Message().uint(1, WRITE).bytes(2, ref).uint(5, size).bytes(6, piece)
        size += piece.length
      }
    }
    digest = `sha256:${hash.digest('hex')}`
    // No expected digest: with one, containerd answers "exists" for a blob it holds before the
    // commit that would add the blob to the lease. The digest it reports is compared instead.
    yield new Message().uint(1, COMMIT).bytes(2, ref).uint(3, size).uint(5, size)
  }
  try {
    const res = await grpcCall(target(c, lease), `${CONTENT}/Write`, requests(), signal)
    const committed = res ? text(decode(res), 6) : ''
    if (committed && committed !== digest) throw new GrpcError(GRPC.unavailable, `containerd committed ${committed}, the blob hashes to ${digest}`)
  } catch (e) {
    if (!(e instanceof GrpcError && e.code === GRPC.alreadyExists && digest)) throw e
  } finally {
    source.destroy()
  }
  return { digest, size }
}
