/**
 * The pull API: `for await (const entry of readTar(source))`, each entry's content an async
 * iterable. Built on the push parser, so there is one reading of the format.
 *
 * Flat memory: the source is pulled one chunk at a time, and only once everything the parser
 * made of the last chunk has been taken. So while an entry's content is not read, the source is
 * not either, and what is held is at most one chunk's views plus the headers in it.
 */
import { corrupt, type TarHeader } from './format.js'
import { INSIDE_FILE, TarParser, type TarSink } from './parser.js'

export interface TarEntry extends TarHeader {
  /** The entry's content (what is left of it); the reader skips any rest before the next entry. */
  body(): AsyncGenerator<Buffer>
  skip(): Promise<void>
}

/** The current entry's content is complete. */
const END = Symbol('end')
type Event = TarHeader | Buffer | typeof END

/** The parser's output for one input chunk at a time, taken in order. */
class Pull implements TarSink {
  private readonly parser = new TarParser(this)
  private events: Event[] = []
  private at = 0
  /** The parser's error, thrown once the events before it have been taken. */
  private failure: { error: unknown } | undefined = undefined
  private over = false

  constructor(private readonly source: AsyncIterator<Buffer>) {}

  entry(header: TarHeader): void {
    this.events.push(header)
  }
  data(chunk: Buffer): void {
    this.events.push(chunk)
  }
  end(): void {
    this.events.push(END)
  }

  /** The next event of those at hand; undefined when `fill` must get more. */
  take(): Event | undefined {
    return this.at < this.events.length ? this.events[this.at++] : undefined
  }

  /** Parse input until there is an event to take: false at the end of the archive. */
  async fill(): Promise<boolean> {
    this.events = []
    this.at = 0
    for (;;) {
      if (this.failure !== undefined) throw this.failure.error
      if (this.over) return false
      if (this.parser.done) {
        // What follows the end-of-archive blocks is read, unlooked at, so whoever hashes or
        // waits on the source sees all of it.
        while (!(await this.source.next()).done);
        this.over = true
        return false
      }
      const r = await this.source.next()
      try {
        if (r.done) {
          this.over = true
          this.parser.finish()
        } else {
          this.parser.write(Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value))
        }
      } catch (err) {
        this.failure = { error: err }
      }
      if (this.events.length) return true
    }
  }
}

/** The entries of a tar stream, in order. Each entry's body must be consumed before the next. */
export async function* readTar(source: AsyncIterable<Buffer>): AsyncGenerator<TarEntry> {
  const pull = new Pull(source[Symbol.asyncIterator]())
  for (;;) {
    let event = pull.take()
    if (event === undefined) {
      if (!(await pull.fill())) return
      // eslint-disable-next-line @typescript-eslint/no-non-null-assertion -- fill() says true only when it parsed events, taken from the first
      event = pull.take()!
    }
    // Between entries the next event is always a header: data and END are taken by the entry.
    const entry = open(pull, event as TarHeader)
    yield entry
    await entry.skip()
  }
}

function open(pull: Pull, header: TarHeader): TarEntry {
  let ended = false
  /** The next piece of content at hand; null once the content is complete, undefined to fill. */
  const step = (): Buffer | null | undefined => {
    if (ended) return null
    const event = pull.take()
    if (event === END) {
      ended = true
      return null
    }
    return event as Buffer | undefined
  }
  const more = async (): Promise<void> => {
    if (!(await pull.fill())) throw corrupt(`the stream ends ${INSIDE_FILE}`)
  }
  return Object.assign(header, {
    async *body(): AsyncGenerator<Buffer> {
      for (;;) {
        const c = step()
        if (c === null) return
        if (c === undefined) await more()
        else yield c
      }
    },
    async skip(): Promise<void> {
      for (;;) {
        const c = step()
        if (c === null) return
        if (c === undefined) await more()
      }
    },
  })
}
