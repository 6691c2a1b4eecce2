/**
 * Stage 3, diff: rsync the image's read-only view into the writable stack. overlayfs records in
 * the upper dir exactly what differs from the base: new and changed entries as themselves,
 * deletions as whiteouts, replaced directories as opaque ones.
 */
import { lstat, readdir } from 'node:fs/promises'
import type { Transform } from 'node:stream'
import { execa, ExecaError } from 'execa'
import { DflattenError } from '../errors.js'
import { expectDoc, type Diffed, type DiffSummary, type Mounted } from '../plan.js'
import { objectStage, type StageContext } from './stream.js'

/**
 * rsync must copy everything that makes a file what it is: hardlinks (-H), ACLs (-A), xattrs
 * (-X), numeric ids, nanosecond mtimes, and nothing excluded. --no-inc-recursive because -H only
 * sees every link of a file when it has the whole file list.
 */
const RSYNC_FLAGS = [
  '-aHAX',
  '--numeric-ids',
  '--modify-window=-1',
  '--no-inc-recursive',
  '--delete',
  '--force',
  '--stats',
]

const RSYNC = process.env.DFLATTEN_RSYNC ?? 'rsync'

async function rsync(args: string[], ctx: StageContext, input?: Buffer): Promise<string> {
  try {
    const r = await execa(RSYNC, args, { input, env: { LC_ALL: 'C' }, maxBuffer: 64 * 1024 * 1024, cancelSignal: ctx.signal })
    return r.stdout
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') {
      throw new DflattenError('rsync is not installed; the overlay method needs it (apt-get install rsync)')
    }
    if (e instanceof ExecaError && !e.isCanceled) {
      const lines = String(e.stderr ?? '').trim().split('\n').filter(Boolean)
      const why = lines.find((l) => !l.startsWith('rsync error:')) ?? lines[0] ?? e.shortMessage
      throw new DflattenError(`rsync failed (exit ${String(e.exitCode)}): ${why.trim()}`)
    }
    throw e
  }
}

function stat(out: string, label: string): number {
  const m = new RegExp(`^${label}: ([\\d,]+)`, 'm').exec(out)
  return m ? Number(m[1].replace(/,/g, '')) : 0
}

/** Relative paths of the regular files that the layers above the base wrote. */
async function filesWrittenAbove(dirs: string[]): Promise<Buffer[]> {
  const seen = new Set<string>()
  const walk = async (root: string, rel: Buffer | null): Promise<void> => {
    const abs = rel ? Buffer.concat([Buffer.from(root + '/'), rel]) : Buffer.from(root)
    for (const name of await readdir(abs, { encoding: 'buffer' })) {
      const relPath = rel ? Buffer.concat([rel, Buffer.from('/'), name]) : name
      const st = await lstat(Buffer.concat([Buffer.from(root + '/'), relPath]))
      if (st.isDirectory()) await walk(root, relPath)
      else if (st.isFile()) seen.add(relPath.toString('latin1'))
    }
  }
  for (const d of dirs) await walk(d, null)
  return [...seen].sort().map((s) => Buffer.from(s, 'latin1'))
}

async function missingFromUpper(m: Mounted, candidates: Buffer[]): Promise<Buffer[]> {
  const out: Buffer[] = []
  const under = (root: string, rel: Buffer): Buffer => Buffer.concat([Buffer.from(root + '/'), rel])
  for (const rel of candidates) {
    const inUpper = await lstat(under(m.workspace.upper, rel)).then(() => true, () => false)
    if (inUpper) continue
    const src = await lstat(under(m.workspace.sourceView, rel)).catch(() => null)
    if (src?.isFile()) out.push(rel)
  }
  return out
}

export async function diff(doc: unknown, ctx: StageContext = {}): Promise<Diffed> {
  const m = expectDoc(doc, 'mounted', 'dflatten diff')
  const src = m.workspace.sourceView + '/'
  const dst = m.workspace.stack + '/'
  const out = await rsync([...RSYNC_FLAGS, src, dst], ctx)
  const createdRegular = Number((/^Number of created files: [\d,]+ \(reg: ([\d,]+)/m.exec(out)?.[1] ?? '0').replace(/,/g, ''))
  const summary: DiffSummary = {
    // Created entries of every kind, plus existing regular files that were rewritten.
    changed: stat(out, 'Number of created files') + stat(out, 'Number of regular files transferred') - createdRegular,
    deleted: stat(out, 'Number of deleted files'),
    bytes: stat(out, 'Total transferred file size'),
  }

  // rsync's quick check calls a file unchanged when size and mtime match. A later layer can
  // rewrite a base file keeping both (builds that pin mtimes do), so every regular file the
  // layers above the base wrote, and that rsync left alone, is copied again regardless.
  const above = m.layerDirs.slice(m.base.layers.length)
  const recheck = await missingFromUpper(m, await filesWrittenAbove(above))
  if (recheck.length) {
    const list = Buffer.concat(recheck.flatMap((p) => [p, Buffer.from([0])]))
    const again = await rsync(['-aHAX', '--numeric-ids', '--ignore-times', '--from0', '--files-from=-', '--stats', src, dst], ctx, list)
    summary.changed += stat(again, 'Number of regular files transferred')
    summary.bytes += stat(again, 'Total transferred file size')
  }
  return { ...m, dflatten: 'diffed', diff: summary }
}

export function diffStage(ctx: StageContext = {}): Transform {
  return objectStage(diff, ctx)
}

