/**
 * Which daemons' `docker export` leaks (moby #48516): the save method must not read content
 * through the export there, or every run would leave the exported container's layer mounted
 * and its dirs on disk (its layer and `-init`) until the daemon restarts.
 *
 * The cause, in moby's source: from 24.0 (commit 06619763, "remove GetLayerByID from
 * ImageService interface") the classic store's export takes a reference on the container's
 * layer and mounts it, but releases and unmounts it only when the mount itself fails. `docker
 * rm` then finds the layer still referenced and keeps it, whatever the graph driver. 20.10 and
 * 23.0 released it when the export stream closed. The fix (moby #48517, merged into 28.0, and
 * 28.0's rewrite of the export onto the container's own layer) was never backported: every
 * 24.x, 25.x, 26.x and 27.x release leaks, through 27.5.1. The containerd image store's
 * export (daemon/containerd) unmounts the container's snapshot when done, so it does not leak.
 * `docker cp CONTAINER:/ -` mounts and unmounts the container in a scope of its own and does
 * not leak either (seen on Docker 26.1.5).
 */
import type { DaemonInfo } from '../../docker.js'

/** An engine's release, from `docker info`'s ServerVersion ("26.1.5", "26.1.5+dfsg1", "24.0.7-0ubuntu1"). */
export function engineRelease(serverVersion: string): { major: number; minor: number } | null {
  const m = /^v?(\d+)\.(\d+)(?:[.+~-]|$)/.exec(serverVersion.trim())
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : null
}

/** The releases whose classic-store export leaks: 24.0 up to, not including, 28.0. */
const FIRST_LEAKING = 24
const FIRST_FIXED = 28

/**
 * Why `docker export` on this daemon would leave its container's layer behind, or null when it
 * cleans up after itself. A version that cannot be read counts as leaking: the second save it
 * sends the content through is slower, never wrong.
 */
export function exportLeaks(daemon: Pick<DaemonInfo, 'serverVersion' | 'containerdStore'>): string | null {
  if (daemon.containerdStore) return null
  const release = engineRelease(daemon.serverVersion)
  const effect = "leaves each exported container's layer mounted and on disk until the daemon restarts (moby #48516)"
  if (!release) {
    return `this daemon's version (${JSON.stringify(daemon.serverVersion)}) does not say whether its docker export, which on Docker 24.0 to 27.5 with the classic image store ${effect}, is fixed`
  }
  if (release.major < FIRST_LEAKING || release.major >= FIRST_FIXED) return null
  return `docker export on Docker ${daemon.serverVersion} with the classic image store ${effect}`
}
