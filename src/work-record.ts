/**
 * Something a run makes outside its work dir (a container, a view snapshot, a lease), recorded in
 * the work dir before it is made, so that however the run ends (even killed mid-create) cleanup
 * knows what to remove. The three kinds differ only in the record's name and how the thing goes.
 */
import { randomBytes } from 'node:crypto'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { DflattenError } from './errors.js'
import { WORKSPACE_PREFIX } from './work-dirs.js'

export interface WorkRecord<T> {
  /** What the work dir records, or null. */
  read(dir: string): Promise<T | null>
  /** Record `r` (before the thing exists). */
  write(dir: string, r: T): Promise<void>
  /**
   * Remove the recorded thing, then the record. When that fails the record stays, and so does
   * the work dir (its removal stops on the error), for a later cleanup to try again.
   */
  release(dir: string): Promise<void>
}

export function workRecord<T>(file: string, remove: (r: T) => Promise<void>, failure: (r: T) => string): WorkRecord<T> {
  const read = async (dir: string): Promise<T | null> => {
    try {
      return JSON.parse(await readFile(join(dir, file), 'utf8')) as T
    } catch {
      return null
    }
  }
  return {
    read,
    write: (dir, r) => writeFile(join(dir, file), JSON.stringify(r) + '\n'),
    async release(dir) {
      const r = await read(dir)
      if (!r) return
      try {
        await remove(r)
      } catch (e) {
        throw new DflattenError('host', `${failure(r)} (${(e as Error).message}); not removing ${dir}`)
      }
      await rm(join(dir, file), { force: true })
    },
  }
}

/** A name for a thing a work dir will own: `PREFIX<work dir id>-<8 hex>`. */
export function ownedName(prefix: string, dir: string): string {
  return `${prefix}${basename(dir).slice(WORKSPACE_PREFIX.length)}-${randomBytes(4).toString('hex')}`
}
