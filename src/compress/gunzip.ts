/**
 * zlib's gunzip for layer blobs. Its default output piece is 16 KiB, and every piece costs a
 * callback, a buffer and a trip through each stage below it; at gigabytes of layer that is
 * seconds of the main thread, so pieces here are 256 KiB.
 */
import { createGunzip, type Gunzip } from 'node:zlib'

const PIECE = 256 * 1024

export function gunzipLayer(): Gunzip {
  return createGunzip({ chunkSize: PIECE })
}
