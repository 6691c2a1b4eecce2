/**
 * The one thing the daemon destination makes in containerd: a lease that holds the new layer's
 * blob from its write into the content store until `docker load` has made an image that names it.
 * It is recorded in the work dir before it is created (src/work-record.ts), so that however the
 * run ends (even killed) cleanup deletes it; it also carries an expiry, after which containerd
 * drops it by itself.
 */
import { createLease, deleteLease } from '../containerd-api.js'
import type { Containerd } from '../containerd.js'
import { ownedName, workRecord } from '../work-record.js'

/** What every lease of ours is called: `ctr leases ls | grep dflatten-` lists them. */
export const LEASE_PREFIX = 'dflatten-'
/** Long enough for any layer's write and load; only a killed run that nobody cleans up waits for it. */
const EXPIRY_MS = 24 * 3600 * 1000

interface LeaseRecord {
  id: string
  containerd: Containerd
}

const record = workRecord<LeaseRecord>(
  'lease',
  (r) => deleteLease(r.containerd, r.id),
  (r) => `could not delete containerd's lease ${r.id}`,
)

/** A new lease, recorded in `dir` first; its id. */
export async function holdLease(dir: string, c: Containerd, signal?: AbortSignal): Promise<string> {
  await record.release(dir)
  const id = ownedName(LEASE_PREFIX, dir)
  await record.write(dir, { id, containerd: c })
  await createLease(c, id, new Date(Date.now() + EXPIRY_MS), signal)
  return id
}

/** Delete the lease `dir` records, if any (see WorkRecord.release). */
export const dropLease = (dir: string): Promise<void> => record.release(dir)
