// The containerd API client: protobuf fields as containerd's protos number them, gRPC framing and
// status over HTTP/2 on a unix socket, and the content write's requests (offsets, commit), against
// a small HTTP/2 server in the test that answers as containerd's content and leases services do.
import t, { type Test } from 'tap'
import { createServer, type Http2Server, type ServerHttp2Stream } from 'node:http2'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { createHash, randomBytes } from 'node:crypto'
import { decode, Message, text, uint } from '../../src/protobuf.js'
import { grpcCall, GrpcError, GRPC } from '../../src/grpc.js'
import { contentSize, createLease, deleteLease, writeContent, EXPIRE_LABEL } from '../../src/containerd-api.js'

t.test('protobuf: fields round-trip, zero values are left out, maps are entry messages', async (t) => {
  const big = 2 ** 40 + 5
  const m = new Message().uint(1, 2).bytes(2, 'ref').uint(3, 0).uint(5, big).bytes(6, Buffer.from([1, 2, 3])).bool(7, true)
  const f = decode(m.encode())
  t.equal(uint(f, 1), 2)
  t.equal(text(f, 2), 'ref')
  t.notOk(f.has(3), 'a zero varint is not written')
  t.equal(uint(f, 5), big, 'a varint past 32 bits')
  t.same(f.get(6), Buffer.from([1, 2, 3]))
  t.equal(uint(f, 7), 1)
  t.same(new Message().uint(1, 300).encode(), Buffer.from([0x08, 0xac, 0x02]), "protobuf's own example: 300")
  const entry = decode(new Message().map(3, { k: 'v' }).encode()).get(3) as Buffer
  t.equal(text(decode(entry), 1), 'k')
  t.equal(text(decode(entry), 2), 'v')
  t.throws(() => decode(Buffer.from([0x12, 0x05, 0x01])), /runs past the message/)
  t.throws(() => new Message().uint(1, -1), /not a varint/)
})

interface Call {
  path: string
  headers: Record<string, unknown>
  messages: Buffer[]
}

/** Messages out of a request's gRPC frames. */
function frames(buf: Buffer): Buffer[] {
  const out: Buffer[] = []
  for (let at = 0; at < buf.length; ) {
    const len = buf.readUInt32BE(at + 1)
    out.push(buf.subarray(at + 5, at + 5 + len))
    at += 5 + len
  }
  return out
}

function frame(m: Buffer): Buffer {
  const p = Buffer.alloc(5)
  p.writeUInt32BE(m.length, 1)
  return Buffer.concat([p, m])
}

type Handler = (call: Call, stream: ServerHttp2Stream) => void

/** An HTTP/2 server on a unix socket that records each call and lets `handler` answer it. */
async function server(t: Test, handler: Handler): Promise<{ socket: string; calls: Call[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'dft-grpc-'))
  const socket = join(dir, 'grpc.sock')
  const calls: Call[] = []
  const srv: Http2Server = createServer()
  srv.on('stream', (stream, headers) => {
    const parts: Buffer[] = []
    // A call the client cancels (the abort test) ends here as an error, or ends with nobody to answer.
    stream.on('error', () => undefined)
    stream.on('data', (c: Buffer) => parts.push(c))
    stream.on('end', () => {
      if (stream.destroyed || stream.closed) return
      const call = { path: String(headers[':path']), headers, messages: frames(Buffer.concat(parts)) }
      calls.push(call)
      handler(call, stream)
    })
  })
  await new Promise<void>((resolve) => srv.listen(socket, resolve))
  t.teardown(async () => {
    await new Promise((resolve) => srv.close(resolve))
    await rm(dir, { recursive: true, force: true })
  })
  return { socket, calls }
}

/** Answer with `responses`, then the status in trailers, as gRPC does. */
function answer(stream: ServerHttp2Stream, responses: Buffer[], status = 0, message = ''): void {
  stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true })
  stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': String(status), ...(message ? { 'grpc-message': encodeURIComponent(message) } : {}) }))
  for (const r of responses) stream.write(frame(r))
  stream.end()
}

const ctrd = (socket: string) => ({ ctr: 'ctr', address: socket, namespace: 'moby' })

t.test('grpc: the last response comes back; a status other than OK is a GrpcError with its message', async (t) => {
  const { socket, calls } = await server(t, (call, stream) => {
    if (call.path.endsWith('/Fail')) answer(stream, [], GRPC.notFound, 'lease "x": not found')
    else answer(stream, [Buffer.from('one'), Buffer.from('two')])
  })
  const res = await grpcCall({ socket, metadata: { 'containerd-namespace': 'moby' } }, '/svc/Ok', [new Message().bytes(1, 'hi')])
  t.same(res, Buffer.from('two'))
  t.equal(calls[0].headers['content-type'], 'application/grpc')
  t.equal(calls[0].headers['containerd-namespace'], 'moby')
  t.equal(text(decode(calls[0].messages[0]), 1), 'hi')
  await t.rejects(grpcCall({ socket }, '/svc/Fail', [new Message()]), { name: 'GrpcError', code: GRPC.notFound, message: 'lease "x": not found' })
  await t.rejects(grpcCall({ socket: join(tmpdir(), 'dft-no-such.sock') }, '/svc/Ok', [new Message()]), { code: 'ENOENT' })
})

t.test('grpc: an HTTP answer without a gRPC status is refused', async (t) => {
  const { socket } = await server(t, (_call, stream) => {
    stream.respond({ ':status': 404 })
    stream.end('no')
  })
  await t.rejects(grpcCall({ socket }, '/svc/X', [new Message()]), { name: 'GrpcError', message: /without a status \(HTTP 404\)/ })
})

t.test('leases: create with an expiry label, delete by id, a missing one is fine', async (t) => {
  const { socket, calls } = await server(t, (call, stream) => {
    if (call.path.endsWith('/Delete') && text(decode(call.messages[0]), 1) === 'gone') answer(stream, [], GRPC.notFound, 'not found')
    else answer(stream, [Buffer.alloc(0)])
  })
  const when = new Date('2026-12-08T01:02:03.456Z')
  await createLease(ctrd(socket), 'dflatten-a', when)
  await deleteLease(ctrd(socket), 'dflatten-a')
  await deleteLease(ctrd(socket), 'gone')
  t.equal(calls[0].path, '/containerd.services.leases.v1.Leases/Create')
  const create = decode(calls[0].messages[0])
  t.equal(text(create, 1), 'dflatten-a')
  const label = decode(create.get(3) as Buffer)
  t.equal(text(label, 1), EXPIRE_LABEL)
  t.equal(text(label, 2), '2026-12-08T01:02:03Z', 'RFC 3339 without fractions')
  t.equal(calls[1].path, '/containerd.services.leases.v1.Leases/Delete')
})

t.test('content info: the size, or null when the store lacks the blob', async (t) => {
  const { socket } = await server(t, (call, stream) => {
    const digest = text(decode(call.messages[0]), 1)
    if (digest === 'sha256:aa') answer(stream, [new Message().message(1, new Message().bytes(1, digest).uint(2, 1234)).encode()])
    else answer(stream, [], GRPC.notFound, 'content digest sha256:bb: not found')
  })
  t.equal(await contentSize(ctrd(socket), 'sha256:aa'), 1234)
  t.equal(await contentSize(ctrd(socket), 'sha256:bb'), null)
})

t.test('content write: the lease header, offsets that follow the bytes, a commit of the size; the digest checked', async (t) => {
  const data = randomBytes(3 * 1024 * 1024 + 777)
  const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`
  let reported = digest
  const { socket, calls } = await server(t, (call, stream) => {
    const responses = call.messages.map((m) => new Message().uint(1, uint(decode(m), 1)).uint(4, 0).bytes(6, reported).encode())
    answer(stream, responses)
  })
  // Odd chunk sizes, one larger than a request may carry.
  const chunks = [data.subarray(0, 10), data.subarray(10, 2_500_000), data.subarray(2_500_000)]
  const r = await writeContent(ctrd(socket), 'dflatten-l', 'dflatten-l-layer', Readable.from(chunks))
  t.same(r, { digest, size: data.length })
  const call = calls[0]
  t.equal(call.path, '/containerd.services.content.v1.Content/Write')
  t.equal(call.headers['containerd-lease'], 'dflatten-l')
  const reqs = call.messages.map(decode)
  const writes = reqs.slice(0, -1)
  let offset = 0
  for (const w of writes) {
    t.equal(uint(w, 1), 1, 'WRITE')
    t.equal(text(w, 2), 'dflatten-l-layer')
    t.equal(uint(w, 5), offset, 'at the bytes written so far')
    const piece = w.get(6) as Buffer
    t.ok(piece.length <= 1024 * 1024, 'no request above 1 MiB of data')
    offset += piece.length
  }
  t.same(Buffer.concat(writes.map((w) => w.get(6) as Buffer)), data, 'the bytes, in order')
  const commit = reqs.at(-1) as Map<number, number | Buffer>
  t.equal(uint(commit, 1), 2, 'COMMIT last')
  t.equal(uint(commit, 3), data.length, 'with the total size')
  t.notOk(commit.has(4), 'and no expected digest (which would skip adding a held blob to the lease)')

  reported = 'sha256:' + '0'.repeat(64)
  await t.rejects(writeContent(ctrd(socket), 'dflatten-l', 'r2', Readable.from([data])), /containerd committed sha256:0+, the blob hashes to sha256:/)
})

t.test('content write: a blob the store holds already is fine; other failures and the source failing are not', async (t) => {
  let status: number = GRPC.alreadyExists
  const { socket } = await server(t, (_call, stream) => answer(stream, [], status, 'content sha256:x: already exists'))
  const r = await writeContent(ctrd(socket), 'l', 'r', Readable.from([Buffer.from('abc')]))
  t.equal(r.digest, `sha256:${createHash('sha256').update('abc').digest('hex')}`)
  status = GRPC.unavailable
  await t.rejects(writeContent(ctrd(socket), 'l', 'r', Readable.from([Buffer.from('abc')])), GrpcError)
  const failing = new Readable({
    read() {
      this.destroy(new Error('the layer broke'))
    },
  })
  await t.rejects(writeContent(ctrd(socket), 'l', 'r', failing), /the layer broke/)
})

t.test('content write: an abort cancels the call and rejects with its reason', async (t) => {
  const { socket } = await server(t, (_call, stream) => answer(stream, []))
  const ac = new AbortController()
  const endless = new Readable({
    read() {
      setTimeout(() => this.push(Buffer.alloc(64 * 1024)), 5)
    },
  })
  setTimeout(() => ac.abort(new Error('interrupted')), 50)
  await t.rejects(writeContent(ctrd(socket), 'l', 'r', endless, ac.signal), /interrupted/)
  t.ok(endless.destroyed, 'the source is destroyed')
})
