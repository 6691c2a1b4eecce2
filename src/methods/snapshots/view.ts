/**
 * The one thing the snapshots method makes outside its work dir: a view snapshot of the image's
 * top layer, whose mounts name every layer's dir. It is recorded in the work dir before it is
 * created, so that however the run ends (even killed mid-create) cleanup knows what to remove.
 */
import { randomBytes } from 'node:crypto'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { DflattenError } from '../../errors.js'
import { WORKSPACE_PREFIX } from '../../work-dirs.js'
import { createView, removeSnapshot, type Containerd } from '../../containerd.js'

const RECORD = 'snapshot'
/** What every view of ours is called: `ctr snapshots ls | grep dflatten-view-` lists them. */
export const VIEW_PREFIX = 'dflatten-view-'

interface ViewRecord {
  key: string
  snapshotter: string
  containerd: Containerd
}

async function recorded(dir: string): Promise<ViewRecord | null> {
  try {
    return JSON.parse(await readFile(join(dir, RECORD), 'utf8')) as ViewRecord
  } catch {
    return null
  }
}

/**
 * Remove the view the work dir records, if any. When that fails the record stays, and so does
 * the work dir (its removal stops on the error), for a later cleanup to try again.
 */
export async function removeView(dir: string): Promise<void> {
  const r = await recorded(dir)
  if (!r) return
  try {
    await removeSnapshot(r.containerd, r.snapshotter, r.key)
  } catch (e) {
    throw new DflattenError('host', `could not remove the view snapshot ${r.key} (${(e as Error).message}); not removing ${dir}`)
  }
  await rm(join(dir, RECORD), { force: true })
}

/** A view of `top`, recorded first; its lower dirs, top first. */
export async function makeView(dir: string, c: Containerd, snapshotter: string, top: string): Promise<string[]> {
  // mount may run again on a kept work dir: the view of the run before goes first.
  await removeView(dir)
  const key = `${VIEW_PREFIX}${basename(dir).slice(WORKSPACE_PREFIX.length)}-${randomBytes(4).toString('hex')}`
  const record: ViewRecord = { key, snapshotter, containerd: c }
  await writeFile(join(dir, RECORD), JSON.stringify(record) + '\n')
  return createView(c, snapshotter, key, top)
}
