/**
 * The one thing the snapshots method makes outside its work dir: a view snapshot of the image's
 * top layer, whose mounts name every layer's dir. It is recorded in the work dir before it is
 * created (src/work-record.ts), so that however the run ends (even killed mid-create) cleanup
 * knows what to remove.
 */
import { createView, removeSnapshot, type Containerd } from '../../containerd.js'
import { ownedName, workRecord } from '../../work-record.js'

/** What every view of ours is called: `ctr snapshots ls | grep dflatten-view-` lists them. */
export const VIEW_PREFIX = 'dflatten-view-'

interface ViewRecord {
  key: string
  snapshotter: string
  containerd: Containerd
}

const record = workRecord<ViewRecord>(
  'snapshot',
  (r) => removeSnapshot(r.containerd, r.snapshotter, r.key),
  (r) => `could not remove the view snapshot ${r.key}`,
)

/** Remove the view the work dir records, if any (see WorkRecord.release). */
export const removeView = (dir: string): Promise<void> => record.release(dir)

/** A view of `top`, recorded first; its lower dirs, top first. */
export async function makeView(dir: string, c: Containerd, snapshotter: string, top: string): Promise<string[]> {
  // mount may run again on a kept work dir: the view of the run before goes first.
  await removeView(dir)
  const key = ownedName(VIEW_PREFIX, dir)
  await record.write(dir, { key, snapshotter, containerd: c })
  return createView(c, snapshotter, key, top)
}
