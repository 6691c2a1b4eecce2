/**
 * The save method's second pass, read from `docker export` of a container of the image rather
 * than from a second `docker save`.
 *
 * A container's filesystem is the image's final one: every path with the content of the topmost
 * layer that holds it, which is the content pass 1 chose for the new layer. And it costs the
 * daemon far less: export streams the mounted filesystem once, where save (Docker 20.10) first
 * copies every layer, the base's and overwritten data included, into a temp dir and then tars
 * that (README's Performance section has the figures).
 *
 * A container differs from its image in one way: its init layer puts files of its own at a few
 * paths (INIT_PATHS). When the layers above the base change one of those, the export cannot
 * supply that content, and the second save does (see `exportCanSupply`). Every file taken from
 * the export is checked against pass 1: a regular file, of the size and sha256 the layers give.
 */
import { EntriesFile, readEntries, readEntriesAt, type LayerEntry } from '../../entry.js'
import { DflattenError } from '../../errors.js'
import { cleanMemberName, readTar, type TarEntry } from '../../tar/index.js'
import { createContainer, dockerExport, explainFailure, type Streamed } from '../../docker.js'
import { claimContainerName, removeWorkspaceContainer } from '../../workspace.js'
import type { Diffed } from '../../plan.js'
import type { LayerSource } from '../method.js'
import { FileDigest } from './digest.js'

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
export function exportCanSupply<E extends Pick<LayerEntry, 'path' | 'from'>>(entries: Iterable<E>): { ok: true } | { ok: false; path: Buffer } {
  for (const e of entries) if (e.from && hiddenInContainers(e.path)) return { ok: false, path: e.path }
  return { ok: true }
}

export const SECOND_SAVE_HINT = 'set DFLATTEN_SAVE_CONTENT=save to read content from a second docker save instead'

function mismatch(path: Buffer, what: string): DflattenError {
  return new DflattenError('bad-data', `docker export and the image's layers disagree on /${path.toString()}: ${what}; ${SECOND_SAVE_HINT}`)
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
   * `wanted`: the entries that take content from the image, by path (latin1), as `entryOf`
   * makes them from what the map holds. Ends as soon as the last of them has been read; the
   * caller stops the export.
   */
  async *entries<T>(wanted: Map<string, T>, entryOf: (w: T) => LayerEntry): AsyncGenerator<LayerEntry> {
    if (!wanted.size) return
    for await (const member of readTar(this.source)) {
      const path = cleanMemberName(member.name).toString('latin1')
      const w = wanted.get(path)
      if (w === undefined) continue
      wanted.delete(path)
      const e = entryOf(w)
      check(member, e)
      this.current = { entry: e, body: checked(member.body(), e) }
      yield e
      this.current = null
      if (!wanted.size) return
    }
    const missing = wanted.values().next()
    if (!missing.done) throw mismatch(entryOf(missing.value).path, 'the export does not hold it')
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

/**
 * The layer with content from `docker export` of a container of the image: entries without
 * content first, in the entries file's order; then the files as the export delivers them; then
 * the extra names of hardlinked files. The export is read only as far as the last file it must
 * supply. The container is recorded in the workspace before it is created; the method's cleanup
 * removes it should this not get to.
 */
export function exportedLayer(d: Diffed, entriesFile: string, signal?: AbortSignal): LayerSource {
  let run: Streamed | null = null
  let content: ExportContent | null = null
  // A failed export ends its output early: say why it failed rather than what was cut short.
  const explained = (e: unknown): Promise<unknown> => (run ? explainFailure(run, e) : Promise.resolve(e))
  async function start(): Promise<NonNullable<typeof run>> {
    const name = await claimContainerName(d.workspace.dir)
    await createContainer(name, d.source.id, d.source.platform, signal).catch((e: unknown) => {
      if (!(e instanceof DflattenError)) throw e
      throw new DflattenError('tool-failed', `cannot make a container to read ${d.source.ref} through docker export (${e.message}); ${SECOND_SAVE_HINT}`)
    })
    return (run = dockerExport(name, signal))
  }
  async function stop(): Promise<void> {
    if (run && run.child.exitCode === null) run.child.kill()
    await run?.child.catch(() => undefined)
    // Done with it; should this fail, removing the workspace tries again and reports.
    await removeWorkspaceContainer(d.workspace.dir).catch(() => undefined)
  }
  async function* ordered(): AsyncGenerator<LayerEntry> {
    // Started before the entries are read, so the daemon creates the container and begins its
    // walk while the entries without content go out, instead of after them.
    const started = start()
    started.catch(() => undefined) // awaited below; until then a failure must not go unhandled
    try {
      // The entries file lists them as diff wrote them: no content, content, then hardlinks.
      // The ones with content wait for the export by where they are in the file, not as entries.
      const wanted = new Map<string, number>()
      for await (const { entry: e, offset } of readEntriesAt(entriesFile)) {
        if (e.from) wanted.set(e.path.toString('latin1'), offset)
        else if (!wanted.size) yield e
      }
      if (wanted.size) {
        content = new ExportContent((await started).stdout)
        const file = new EntriesFile(entriesFile)
        try {
          yield* content.entries(wanted, (offset) => file.at(offset))
        } catch (e) {
          throw await explained(e)
        } finally {
          file.close()
        }
      }
    } finally {
      await started.catch(() => undefined)
      await stop()
    }
    let after = false
    for await (const e of readEntries(entriesFile)) {
      if (e.from) after = true
      else if (after) yield e
    }
  }
  async function* body(e: LayerEntry): AsyncGenerator<Buffer> {
    if (!content) throw new Error(`export content asked for ${e.path.toString()} before the export started`)
    try {
      yield* content.body(e)
    } catch (err) {
      throw await explained(err)
    }
  }
  return { entries: ordered(), content: body }
}
