// Reading a stream piece by piece: the chunks as pushed (never joined), a bounded read-ahead,
// the stream's failure, and an early stop that lets go of the stream.
import t from 'tap'
import { PassThrough, Readable } from 'node:stream'
import { pieces, PiecewisePassThrough } from '../../src/pieces.js'

t.test('the chunks come as they were pushed, not joined, however far behind the reader is', async (t) => {
  const sent = Array.from({ length: 40 }, (_, i) => Buffer.alloc(1000 + i, i))
  const stream = new PassThrough({ highWaterMark: 1 << 20 })
  for (const c of sent) stream.write(c)
  stream.end()
  // Everything is buffered before the first read: Node's own iterator would hand one joined Buffer.
  await new Promise((r) => setImmediate(r))
  const got: Buffer[] = []
  for await (const c of pieces(stream)) got.push(c)
  t.equal(got.length, sent.length, 'one piece per chunk')
  t.ok(got.every((c, i) => c.equals(sent[i])), 'in order, each the same bytes')
})

t.test('the stream is paused once the limit waits unread, and resumed as the reader catches up', async (t) => {
  let made = 0
  const stream = new Readable({
    read() {
      this.push(made < 200 ? Buffer.alloc(1024, made++) : null)
    },
  })
  const it = pieces(stream, 16 * 1024)
  const first = await it.next()
  t.equal(first.value?.[0], 0, 'the first chunk')
  await new Promise((r) => setTimeout(r, 50))
  // The limit, the stream's own buffer (16 KiB) and a chunk in hand: nowhere near all 200.
  t.ok(made < 60, `${made} chunks made while the reader waited`)
  const rest: number[] = []
  for await (const c of it) rest.push(c[0])
  t.same(rest, Array.from({ length: 199 }, (_, i) => i + 1), 'then all the others, in order')
})

t.test("the stream's error ends the reading, after what came before it", async (t) => {
  const stream = new PassThrough()
  stream.write(Buffer.from('a'))
  setImmediate(() => stream.destroy(new Error('docker save failed')))
  const got: string[] = []
  await t.rejects(
    (async () => {
      for await (const c of pieces(stream)) got.push(c.toString())
    })(),
    /docker save failed/,
  )
  t.same(got, ['a'])
})

t.test('a stream closed before its end is a failure, not a short whole', async (t) => {
  const stream = new PassThrough()
  stream.write(Buffer.from('a'))
  setImmediate(() => stream.destroy())
  await t.rejects(
    (async () => {
      for await (const _ of pieces(stream)) {
        // read on
      }
    })(),
    /closed before its end/,
  )
  const gone = new PassThrough()
  gone.destroy()
  await t.rejects(pieces(gone).next(), /closed before its end/, 'already destroyed when reading starts')
})

t.test('a reader that stops early destroys the stream; an ended one reads as empty', async (t) => {
  const stream = new PassThrough()
  stream.write(Buffer.from('a'))
  stream.write(Buffer.from('b'))
  for await (const _ of pieces(stream)) break
  t.ok(stream.destroyed, 'destroyed')

  const ended = new PassThrough()
  ended.end()
  for await (const _ of ended) {
    // drain it so that it has ended
  }
  t.same(await pieces(ended).next(), { done: true, value: undefined })
})

t.test('PiecewisePassThrough: for await reads it piece by piece', async (t) => {
  const stream = new PiecewisePassThrough()
  const source = Readable.from([Buffer.from('one'), Buffer.from('two'), Buffer.from('three')], { objectMode: false })
  source.pipe(stream)
  const got: string[] = []
  for await (const c of stream) got.push(c.toString())
  t.same(got, ['one', 'two', 'three'])
})
