/**
 * The one tar parser: bytes are pushed in with `write`, entries come out synchronously to a
 * sink. Pass 1 of the save method indexes gigabytes through it, so it costs no promise per
 * entry or per piece of content, and content is handed on as views into the input. The pull
 * API (reader.ts) is built on it.
 */
import { BLOCK, corrupt, padding, type TarHeader } from './format.js'
import { HeaderDecoder } from './decode.js'

/** What a TarParser hands its entries to, in stream order. */
export interface TarSink {
  entry(header: TarHeader): void
  /** The current entry's content, in pieces (views into the input: copy what is kept). */
  data(chunk: Buffer): void
  /** The current entry's content is complete (called for every entry, with content or not). */
  end(): void
}

const INSIDE_META = 'inside an extended header'
const INSIDE_PADDING = 'inside padding'
export const INSIDE_FILE = 'in the middle of a file'
const INSIDE_BLOCK = 'in the middle of a block'

export class TarParser {
  private readonly decoder = new HeaderDecoder()
  private state: 'header' | 'meta' | 'body' | 'pad' | 'done' = 'header'
  /** A header or extended record being gathered. */
  private acc: Buffer = Buffer.allocUnsafe(BLOCK)
  private have = 0
  private need = BLOCK
  private metaType = ''
  private metaSize = 0
  private left = 0
  private pad = 0

  constructor(private readonly sink: TarSink) {}

  /** Past the end-of-archive blocks: what follows is padding and is not looked at. */
  get done(): boolean {
    return this.state === 'done'
  }

  /** Throws (code 'bad-data') on a malformed archive, after handing on what came before. */
  write(chunk: Buffer): void {
    let pos = 0
    while (pos < chunk.length && this.state !== 'done') {
      if (this.state === 'body') {
        const n = Math.min(this.left, chunk.length - pos)
        this.sink.data(chunk.subarray(pos, pos + n))
        pos += n
        this.left -= n
        if (this.left === 0) this.entryDone()
      } else if (this.state === 'pad') {
        const n = Math.min(this.pad, chunk.length - pos)
        pos += n
        this.pad -= n
        if (this.pad === 0) this.expect('header', BLOCK)
      } else {
        const n = Math.min(this.need - this.have, chunk.length - pos)
        let whole: Buffer | null = null
        if (this.have === 0 && n === this.need) whole = chunk.subarray(pos, pos + n)
        else chunk.copy(this.acc, this.have, pos, pos + n)
        pos += n
        this.have += n
        if (this.have === this.need) this.gathered(whole ?? this.acc.subarray(0, this.need))
      }
    }
  }

  /**
   * The input has ended: an error unless it ended between entries. No end-of-archive blocks
   * is tolerated, as GNU tar does.
   */
  finish(): void {
    if (this.state === 'done' || (this.state === 'header' && this.have === 0)) return
    if (this.state === 'body') throw corrupt(`the stream ends ${INSIDE_FILE}`)
    if (this.state === 'pad') throw corrupt(`the stream ends ${INSIDE_PADDING}`)
    if (this.state === 'meta') throw corrupt(`the stream ends ${INSIDE_META}`)
    throw corrupt(`the stream ends ${INSIDE_BLOCK}`)
  }

  private expect(state: 'header' | 'meta', n: number): void {
    this.state = state
    this.have = 0
    this.need = n
    if (this.acc.length < n) this.acc = Buffer.allocUnsafe(n)
  }

  private gathered(data: Buffer): void {
    if (this.state === 'meta') {
      this.decoder.meta(this.metaType, data.subarray(0, this.metaSize))
      this.expect('header', BLOCK)
      return
    }
    const h = this.decoder.block(data)
    if (h.kind === 'end') {
      this.state = 'done'
    } else if (h.kind === 'meta') {
      this.metaType = h.type
      this.metaSize = h.size
      this.expect('meta', h.size + padding(h.size))
      if (this.need === 0) this.gathered(this.acc.subarray(0, 0))
    } else {
      this.sink.entry(h.header)
      this.left = h.content
      this.pad = padding(h.content)
      if (this.left === 0) this.entryDone()
      else this.state = 'body'
    }
  }

  private entryDone(): void {
    this.sink.end()
    if (this.pad) this.state = 'pad'
    else this.expect('header', BLOCK)
  }
}
