/**
 * The one thing the daemon destination makes in containerd: a lease that holds the new layer's
 * blob from its write into the content store until `docker load` has made an image that names it.
 * It is recorded in the work dir before it is created, so that however the run ends (even killed)
 * cleanup deletes it; it also carries an expiry, after which containerd drops it by itself.
 */
import { randomBytes } from 'node:crypto'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { DflattenError } from '../errors.js'
import { WORKSPACE_PREFIX } from '../work-dirs.js'
import { createLease, deleteLease } from '../containerd-api.js'
import type { Containerd } from '../containerd.js'

const RECORD = 'lease'
/** What every lease of ours is called: `ctr leases ls | grep dflatten-` lists them. */
export const LEASE_PREFIX = 'dflatten-'
/** Long enough for any layer's write and load; only a killed run that nobody cleans up waits for it. */
const EXPIRY_MS = 24 * 3600 * 1000

interface LeaseRecord {
  id: string
  containerd: Containerd
}

async function recorded(dir: string): Promise<LeaseRecord | null> {
  try {
    return JSON.parse(await readFile(join(dir, RECORD), 'utf8')) as LeaseRecord
  } catch {
    return null
  }
}

/** A new lease, recorded in `dir` first; its id. */
export async function holdLease(dir: string, c: Containerd, signal?: AbortSignal): Promise<string> {
  await dropLease(dir)
  const id = `${LEASE_PREFIX}${basename(dir).slice(WORKSPACE_PREFIX.length)}-${randomBytes(4).toString('hex')}`
  await writeFile(join(dir, RECORD), JSON.stringify({ id, containerd: c } satisfies LeaseRecord) + '\n')
  await createLease(c, id, new Date(Date.now() + EXPIRY_MS), signal)
  return id
}

/**
 * Delete the lease `dir` records, if any. When that fails the record stays, and so does the work
 * dir (its removal stops on the error), for a later cleanup to try again.
 */
export async function dropLease(dir: string): Promise<void> {
  const r = await recorded(dir)
  if (!r) return
  try {
    await deleteLease(r.containerd, r.id)
  } catch (e) {
    throw new DflattenError('host', `could not delete containerd's lease ${r.id} (${(e as Error).message}); not removing ${dir}`)
  }
  await rm(join(dir, RECORD), { force: true })
}
