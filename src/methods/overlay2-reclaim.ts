/**
 * A dry run's report for the kernel methods: the squashed layers are dirs, and the image's view
 * (a read-only overlay of every layer) is still mounted. A regular file of a squashed layer
 * survives exactly when the view shows that very file: overlayfs on one filesystem reports a
 * lower file's own inode number. Anything else (no such path, another inode) was deleted or
 * overwritten by a later layer. Nothing is kept but the largest few.
 */
import { lstatSync, readdirSync, type BigIntStats } from 'node:fs'
import { chainIds, layerTarSize } from '../docker-store.js'
import type { DaemonInfo } from '../docker.js'
import { DflattenError } from '../errors.js'
import { DeletedDirs, ReclaimTally, DEFAULT_TOP, type Reclaimed } from '../reclaim.js'
import { joinPath } from './stat.js'

function lstatOrNull(p: Buffer): BigIntStats | null {
  try {
    return lstatSync(p, { bigint: true, throwIfNoEntry: false }) ?? null
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') return null
    throw e
  }
}

/**
 * One squashed layer dir's files that the view no longer shows; under a directory the view lacks
 * (deleted, or replaced by a non-directory), summed as that one directory.
 */
function walkLayer(dir: string, view: string, layer: number, tally: ReclaimTally): void {
  const root = Buffer.from(dir + '/')
  const seen = new Set<bigint>()
  const viewRoot = Buffer.from(view + '/')
  const deleted = new DeletedDirs()
  const walk = (rel: Buffer | null, goneDir: string | null): void => {
    for (const d of readdirSync(rel ? Buffer.concat([root, rel]) : root, { withFileTypes: true, encoding: 'buffer' })) {
      const path = joinPath(rel, d.name)
      if (d.isDirectory()) {
        const there = goneDir === null ? lstatOrNull(Buffer.concat([viewRoot, path])) : null
        walk(path, goneDir ?? (there?.isDirectory() ? null : '/' + path.toString('utf8')))
        continue
      }
      if (!d.isFile()) continue
      const st = lstatSync(Buffer.concat([root, path]), { bigint: true })
      // Hardlinked names share their bytes: counted once.
      if (st.nlink > 1n) {
        if (seen.has(st.ino)) continue
        seen.add(st.ino)
      }
      if (goneDir !== null) {
        deleted.add(goneDir, layer, Number(st.size))
        continue
      }
      const now = lstatOrNull(Buffer.concat([viewRoot, path]))
      if (now?.ino !== st.ino) tally.add({ path: '/' + path.toString('utf8'), bytes: Number(st.size), layer })
    }
  }
  walk(null, null)
  deleted.into(tally)
}

/**
 * The report for layer dirs `layerDirs` (base first) above the first `kept`, against the view;
 * `tarBytes` are the squashed layers' tar sizes, lowest first, as the method's store knows them.
 */
export function reclaimedInDirs(layerDirs: string[], kept: number, view: string, tarBytes: number[], top = DEFAULT_TOP): Reclaimed {
  const tally = new ReclaimTally(top)
  for (let i = kept; i < layerDirs.length; i++) walkLayer(layerDirs[i], view, i, tally)
  return tally.result(tarBytes)
}

/** The classic store's tar sizes of the layers above the first `kept` (0 where it has none recorded). */
export async function classicTarBytes(info: DaemonInfo | null, diffIds: string[], kept: number): Promise<number[]> {
  if (!info) throw new DflattenError('bad-input', 'dflatten: the diffed document names no daemon, whose layers it reads')
  const daemon = info
  return Promise.all(chainIds(diffIds).slice(kept).map(async (c) => (await layerTarSize(daemon, c)) ?? 0))
}
