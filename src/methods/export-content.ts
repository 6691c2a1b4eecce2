/**
 * The save method's second pass, read from `docker export` of a container of the image rather
 * than from a second `docker save`.
 *
 * A container's filesystem is the image's final one: every path with the content of the topmost
 * layer that holds it, which is the content pass 1 chose for the new layer. And it costs the
 * daemon far less: export streams the mounted filesystem once, where save (Docker 20.10) first
 * copies every layer, the base's and overwritten data included, into a temp dir and then tars
 * that. On the benchmark's 1.9 GB image: export 11-13 s, save 36-67 s.
 *
 * A container differs from its image in one way: its init layer puts files of its own at a few
 * paths (INIT_PATHS). When the layers above the base change one of those, the export cannot
 * supply that content, and the second save does (see `exportCanSupply`). Every file taken from
 * the export is checked against pass 1: a regular file, of the size and sha256 the layers give.
 */
import crypto, { createHash } from 'node:crypto'
import type { LayerEntry } from '../entry.js'
import { DflattenError } from '../errors.js'
import { cleanMemberName, readTar, type TarEntry } from '../tar/index.js'

/**
 * `DFLATTEN_SAVE_CONTENT=save`: read content from a second save even where the export would do
 * (a way around a disagreement the checks below report; it orders files differently, so the
 * image id differs too).
 */
export function secondSaveAsked(): boolean {
  return process.env.DFLATTEN_SAVE_CONTENT === 'save'
}

/** What Docker's init layer writes over the image in every container (daemon/initlayer). */
export const INIT_PATHS = ['.dockerenv', 'dev/console', 'etc/hostname', 'etc/hosts', 'etc/mtab', 'etc/resolv.conf']

/** Would a container show the init layer's file at `path`, or hide it under one? */
export function hiddenInContainers(path: Buffer): boolean {
  const p = path.toString('latin1')
  return INIT_PATHS.some((q) => p === q || p.startsWith(q + '/'))
}

/**
 * Can the export supply the content of every file these entries take from the image? If not,
 * the first path it cannot supply.
 */
export function exportCanSupply(entries: Iterable<LayerEntry>): { ok: true } | { ok: false; path: Buffer } {
  for (const e of entries) if (e.from && hiddenInContainers(e.path)) return { ok: false, path: e.path }
  return { ok: true }
}

export const SECOND_SAVE_HINT = 'set DFLATTEN_SAVE_CONTENT=save to read content from a second docker save instead'

function mismatch(path: Buffer, what: string): DflattenError {
  return new DflattenError('bad-data', `docker export and the image's layers disagree on /${path.toString()}: ${what}; ${SECOND_SAVE_HINT}`)
}

/** How pass 1 records a file's content, so this pass can check it: sha256, base64. */
const newHash = (): ReturnType<typeof createHash> => createHash('sha256')
const digestOf = (hash: ReturnType<typeof createHash>): string => hash.digest('base64')
// One call, no Hash object: most files of a layer arrive in one piece. (crypto.hash: Node 20.12+.)
const oneShot = (crypto as { hash?: (alg: string, data: Buffer, enc: 'base64') => string }).hash

/**
 * A file's content digest, as `LayerEntry.sha256` holds it, fed piece by piece (one call when
 * the file comes in one piece).
 */
export class FileDigest {
  private hash: ReturnType<typeof createHash> | null = null
  private result: string | null = null

  constructor(private readonly size: number) {}

  update(chunk: Buffer): void {
    if (!this.hash && chunk.length === this.size && oneShot) this.result = oneShot('sha256', chunk, 'base64')
    else (this.hash ??= newHash()).update(chunk)
  }

  digest(): string {
    if (this.result !== null) return this.result
    return digestOf(this.hash ?? newHash())
  }
}

/** Content that fails when it does not hash to what pass 1 recorded. */
async function* checked(body: AsyncIterable<Buffer>, e: LayerEntry): AsyncGenerator<Buffer> {
  const digest = new FileDigest(e.size)
  for await (const c of body) {
    digest.update(c)
    yield c
  }
  if (e.sha256 !== undefined && digest.digest() !== e.sha256) throw mismatch(e.path, 'the content differs')
}

/**
 * Files' content from an export stream, in the order the stream delivers them. `entries` yields
 * the wanted entries as their content comes by; `body` then gives that content, which must be
 * read before the next entry is asked for.
 */
export class ExportContent {
  private current: { entry: LayerEntry; body: AsyncGenerator<Buffer> } | null = null

  constructor(private readonly source: AsyncIterable<Buffer>) {}

  /**
   * `wanted`: the entries that take content from the image, by path (latin1). Ends as soon as
   * the last of them has been read; the caller stops the export.
   */
  async *entries(wanted: Map<string, LayerEntry>): AsyncGenerator<LayerEntry> {
    if (!wanted.size) return
    for await (const member of readTar(this.source)) {
      const path = cleanMemberName(member.name).toString('latin1')
      const e = wanted.get(path)
      if (!e) continue
      wanted.delete(path)
      check(member, e)
      this.current = { entry: e, body: checked(member.body(), e) }
      yield e
      this.current = null
      if (!wanted.size) return
    }
    const [missing] = wanted.values()
    if (missing) throw mismatch(missing.path, 'the export does not hold it')
  }

  body(e: LayerEntry): AsyncGenerator<Buffer> {
    if (this.current?.entry !== e) throw new Error(`export content asked for ${e.path.toString()} out of turn`)
    return this.current.body
  }
}

function check(member: TarEntry, e: LayerEntry): void {
  if (member.type === '1') throw mismatch(e.path, `the export has it as a hardlink to /${member.linkname.toString()}`)
  if (member.type !== '0') throw mismatch(e.path, 'the export has it as something other than a file')
  if (member.size !== e.size) throw mismatch(e.path, `the export has ${member.size} bytes, the layers ${e.size}`)
}
