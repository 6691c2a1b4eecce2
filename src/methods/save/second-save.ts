/**
 * The save method's pass 2 from a second `docker save`: the content of the kept files, taken as
 * the stream goes by.
 */
import { readEntries, type LayerEntry } from '../../entry.js'
import { DflattenError } from '../../errors.js'
import { cleanMemberName, readTar, type TarEntry } from '../../tar/index.js'
import type { Diffed } from '../../plan.js'
import { dockerSave, explainFailure, finished } from '../../docker.js'
import type { LayerSource } from '../method.js'
import { blobEntries, isGzip, peek } from './blob.js'

/**
 * Pass 2: the content of the kept files from a second `docker save` stream. Asked for entries in
 * the order the stream delivers them (the entries file's order), it only ever moves forward, and
 * checks on the way that every layer it reads is the one pass 1 indexed.
 */
export class SaveContent {
  private readonly it: AsyncGenerator<{ member: string; index: number; entry: TarEntry }>

  constructor(source: AsyncIterable<Buffer>, expected: Map<string, string>) {
    this.it = SaveContent.walk(source, expected)
  }

  private static async *walk(source: AsyncIterable<Buffer>, expected: Map<string, string>) {
    for await (const member of readTar(source)) {
      const name = cleanMemberName(member.name).toString('latin1')
      const diffId = expected.get(name)
      if (member.type !== '0' || !diffId) continue
      const { head, all } = await peek(member.body(), 2)
      const gen = blobEntries(all, isGzip(head))
      let r = await gen.next()
      for (; !r.done; r = await gen.next()) yield { member: name, index: r.value.index, entry: r.value }
      if (r.value.diffId !== diffId) {
        throw new DflattenError('bad-data', `the daemon's second docker save gave a different layer ${name}; was the image changed?`)
      }
    }
  }

  async body(from: { member: string; index: number }): Promise<AsyncGenerator<Buffer>> {
    for (;;) {
      const r = await this.it.next()
      if (r.done) throw new DflattenError('bad-data', `docker save ended before entry ${from.index} of ${from.member}`)
      if (r.value.member === from.member && r.value.index === from.index) return r.value.entry.body()
    }
  }

  /** Read the rest, so the last layers are verified and docker save can finish. */
  async finish(): Promise<void> {
    while (!(await this.it.next()).done);
  }
}

/**
 * The layer with content from a second `docker save`, read forward only, in the order the
 * entries file lists it; every layer read is checked against pass 1's diff id.
 */
export function savedLayer(d: Diffed, entriesFile: string, members: Record<string, string>, signal?: AbortSignal): LayerSource {
  const save = dockerSave(d.source.id, signal, (d.method.state as { platform?: string }).platform)
  const content = new SaveContent(save.stdout, new Map(Object.entries(members)))
  async function* body(e: LayerEntry): AsyncGenerator<Buffer> {
    if (!e.from) throw new Error(`entry ${e.path.toString()} has no content in the save stream`)
    try {
      yield* await content.body(e.from)
    } catch (err) {
      // A failed save ends its output early: say why it failed rather than what was cut short.
      throw await explainFailure(save, err)
    }
  }
  return {
    entries: readEntries(entriesFile),
    content: body,
    finish: async () => {
      try {
        await content.finish()
      } catch (err) {
        throw await explainFailure(save, err)
      }
      await finished(save)
    },
    close: () => {
      if (save.child.exitCode === null) save.child.kill()
    },
  }
}
