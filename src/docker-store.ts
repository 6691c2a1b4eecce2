/**
 * Read-only looks into the classic store's own files, for the kernel methods: image configs and
 * layer metadata under the daemon's root. Nothing here ever writes there.
 */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { access, readFile } from 'node:fs/promises'
import { gunzipLayer } from './compress/gunzip.js'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { DflattenError } from './errors.js'
import type { DaemonInfo } from './docker.js'

/**
 * The raw image config JSON as the classic store keeps it. The image id is its sha256, which is
 * checked, so what we read is exactly what the daemon holds.
 */
export async function readImageConfig(info: DaemonInfo, id: string): Promise<string> {
  const hex = id.replace(/^sha256:/, '')
  const path = `${info.dockerRoot}/image/${info.driver}/imagedb/content/sha256/${hex}`
  let raw: string
  try {
    raw = await readFile(path, 'utf8')
  } catch {
    throw new DflattenError('bad-data', `cannot read the config of image ${id.slice(0, 19)} at ${path}`)
  }
  const digest = 'sha256:' + createHash('sha256').update(raw).digest('hex')
  if (digest !== id) throw new DflattenError('bad-data', `the stored config of ${id} does not match its id`)
  return raw
}

/** Docker's chain ids: the identity of a layer together with everything below it. */
export function chainIds(diffIds: string[]): string[] {
  const out: string[] = []
  for (const d of diffIds) {
    const prev = out[out.length - 1]
    out.push(prev ? 'sha256:' + createHash('sha256').update(`${prev} ${d}`).digest('hex') : d)
  }
  return out
}

/**
 * The byte size of a classic-store layer's tar, which the daemon does not record directly but can
 * be summed from its tar-split metadata (raw header segments plus file payload sizes). The OCI
 * manifest needs it for the base layers' descriptors.
 */
export async function layerTarSize(info: DaemonInfo, chainId: string): Promise<number | null> {
  const path = `${info.dockerRoot}/image/${info.driver}/layerdb/sha256/${chainId.replace(/^sha256:/, '')}/tar-split.json.gz`
  try {
    await access(path)
  } catch {
    return null
  }
  const input: Readable = createReadStream(path).pipe(gunzipLayer())
  let total = 0
  const lines = createInterface({ input, crlfDelay: Infinity })
  for await (const line of lines) {
    if (!line) continue
    const rec = JSON.parse(line) as { type: number; size?: number; payload?: string }
    // tar-split: type 1 is a file (its content's size), type 2 a raw segment (headers, padding).
    if (rec.type === 2 && rec.payload) total += Buffer.from(rec.payload, 'base64').length
    else if (rec.type === 1) total += rec.size ?? 0
  }
  return total
}
