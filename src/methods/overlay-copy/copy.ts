/**
 * The seed's method, on overlayfs: rsync the image's read-only view into a writable stack of the
 * base's layers, and let the kernel record the difference in the stack's upper dir (changed
 * entries as themselves, deletions as 0/0 character devices, replaced directories as opaque ones).
 * It writes the whole difference to disk and reads it back, so it is slower than the default
 * method; it stays as the independent cross-check the tests compare against.
 */
import { lstat, readdir } from 'node:fs/promises'
import { execa, ExecaError } from 'execa'
import type { LayerEntry } from '../../entry.js'
import { DflattenError } from '../../errors.js'
import { isOverlayOpaque, isOverlayWhiteout, isReservedName } from '../../whiteout.js'
import { readTreeXattrs, type XattrMap } from '../../xattrs.js'
import { joinPath, LinkTracker, statEntry, whiteoutEntry } from '../stat.js'

/**
 * rsync must copy everything that makes a file what it is: hardlinks (-H), ACLs (-A), xattrs
 * (-X), numeric ids, nanosecond mtimes, and nothing excluded. --no-inc-recursive because -H only
 * sees every link of a file when it has the whole file list.
 */
const RSYNC_FLAGS = ['-aHAX', '--numeric-ids', '--modify-window=-1', '--no-inc-recursive', '--delete', '--force']

async function rsync(command: string, args: string[], signal?: AbortSignal, input?: Buffer): Promise<void> {
  try {
    await execa(command, args, { input, env: { LC_ALL: 'C' }, cancelSignal: signal })
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') {
      throw new DflattenError('tool-missing', 'rsync is not installed; --method overlay-copy needs it (apt-get install rsync)')
    }
    if (e instanceof ExecaError && !e.isCanceled) {
      // Typed undefined once narrowed to ExecaError; this call buffers it.
      const stderr: unknown = e.stderr
      const lines = (typeof stderr === 'string' ? stderr : '').trim().split('\n').filter(Boolean)
      const why = lines.find((l) => !l.startsWith('rsync error:')) ?? lines.at(0) ?? e.shortMessage
      throw new DflattenError('tool-failed', `rsync failed (exit ${String(e.exitCode)}): ${why.trim()}`)
    }
    throw e
  }
}

/** Relative paths of the regular files that the given layer dirs hold. */
async function regularFiles(dirs: string[]): Promise<Buffer[]> {
  const seen = new Set<string>()
  const walk = async (root: string, rel: Buffer | null): Promise<void> => {
    const abs = rel ? Buffer.concat([Buffer.from(root + '/'), rel]) : Buffer.from(root)
    for (const d of await readdir(abs, { encoding: 'buffer', withFileTypes: true })) {
      const relPath = joinPath(rel, d.name)
      if (d.isDirectory()) await walk(root, relPath)
      else if (d.isFile()) seen.add(relPath.toString('latin1'))
    }
  }
  for (const d of dirs) await walk(d, null)
  return [...seen].sort().map((s) => Buffer.from(s, 'latin1'))
}

export interface CopyViews {
  sourceView: string
  stack: string
  upper: string
}

/** Make the stack's upper dir hold the difference between the base and the image; `command` runs rsync. */
export async function copyDifference(views: CopyViews, layersAbove: string[], signal?: AbortSignal, command = 'rsync'): Promise<void> {
  const src = views.sourceView + '/'
  const dst = views.stack + '/'
  await rsync(command, [...RSYNC_FLAGS, src, dst], signal)

  // rsync's quick check calls a file unchanged when size and mtime match. A later layer can
  // rewrite a base file keeping both (builds that pin mtimes do), so every regular file the
  // layers above the base wrote, and that rsync left alone, is copied again regardless.
  const under = (root: string, rel: Buffer): Buffer => Buffer.concat([Buffer.from(root + '/'), rel])
  // Nor is a file in the upper dir always one rsync wrote: a new second name for a base file
  // (-H) makes overlayfs copy the base's content up, which the quick check then keeps. So a
  // file with more than one name there is copied again too, with every other name (all in the
  // layers above: a file's names share one layer), so -H links them again.
  const again: Buffer[] = []
  for (const rel of await regularFiles(layersAbove)) {
    const up = await lstat(under(views.upper, rel)).catch(() => null)
    if (up && up.nlink < 2) continue
    const st = await lstat(under(views.sourceView, rel)).catch(() => null)
    if (st?.isFile()) again.push(rel)
  }
  if (again.length) {
    const list = Buffer.concat(again.flatMap((p) => [p, Buffer.from([0])]))
    await rsync(command, ['-aHAX', '--numeric-ids', '--ignore-times', '--from0', '--files-from=-', src, dst], signal, list)
  }
}

/**
 * The upper dir of a writable overlay as layer entries: depth first, names in byte order, each
 * directory before its contents and its opaque marker right after it. Whiteouts are checked
 * before hardlinks: overlayfs may share one whiteout inode between many names.
 */
export async function* upperDirEntries(upper: string, xattrs?: XattrMap): AsyncGenerator<LayerEntry> {
  const attrs = xattrs ?? (await readTreeXattrs(upper))
  const links = new LinkTracker()
  const root = Buffer.from(upper + '/')

  async function* walk(dir: Buffer | null): AsyncGenerator<LayerEntry> {
    const abs = dir ? Buffer.concat([root, dir]) : root
    const names = (await readdir(abs, { encoding: 'buffer' })).sort((a, b) => Buffer.compare(a, b))
    for (const name of names) {
      const path = joinPath(dir, name)
      const full = Buffer.concat([root, path])
      const st = await lstat(full, { bigint: true })
      if (isOverlayWhiteout(st)) {
        yield whiteoutEntry(path)
        continue
      }
      if (isReservedName(name)) {
        throw new DflattenError('unsupported-image', `cannot store ${path.toString()} in a layer: names starting with .wh. mean deletions`)
      }
      const x = attrs.get(path.toString('latin1'))
      const entry = await statEntry(path, full, st, x, links)
      if (!entry) continue
      yield entry
      if (entry.kind === 'dir') {
        if (isOverlayOpaque(x)) yield { ...whiteoutEntry(path), kind: 'opaque' }
        yield* walk(path)
      }
    }
  }
  yield* walk(null)
}
