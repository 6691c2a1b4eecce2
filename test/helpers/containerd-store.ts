// Docker 26 with the containerd image store (scripts/docker26.sh), as the snapshots-method tests
// use it: its DOCKER_HOST, its containerd through ctr, and test images carried over from the
// system's Docker 20.10 in the form a pull leaves them (gzip layers in the content store).
import { execa } from 'execa'
import { join } from 'node:path'
import { startDocker26 } from './docker26.js'

export const CTR = '/opt/dflatten-docker26/root/usr/bin/ctr'
export const CTRD_ADDRESS = '/run/dflatten-d26-ctrd/containerd/containerd.sock'
/** What every view snapshot of the snapshots method is called (src/methods/snapshots/view.ts). */
export const VIEW_PREFIX = 'dflatten-view-'

/**
 * Start the Docker 26 daemons if they are not running; the containerd-store daemon's
 * DOCKER_HOST, or why there is none. Null when DFLATTEN_SKIP_DOCKER26=1.
 */
export async function ctrdDaemon(): Promise<{ host?: string; skip?: string } | null> {
  const d26 = await startDocker26()
  if (d26 === null) return null
  if (d26.started && d26.containerd) return { host: d26.containerd }
  return { skip: d26.said }
}

/** The environment dflatten needs to use that daemon's containerd (plus its work root). */
export function ctrdEnv(host: string, workRoot: string): Record<string, string> {
  return { DOCKER_HOST: host, DFLATTEN_CTR: CTR, DFLATTEN_CONTAINERD_ADDRESS: CTRD_ADDRESS, DFLATTEN_TMPDIR: workRoot }
}

/** `ctr -n moby ARGS` on that daemon's containerd. */
export async function ctr(...args: string[]): Promise<string> {
  return (await execa(CTR, ['-a', CTRD_ADDRESS, '-n', 'moby', ...args])).stdout
}

/** The snapshots of ours (`ctr snapshots ls` lines naming a view). */
export async function views(): Promise<string[]> {
  return (await ctr('snapshots', 'ls')).split('\n').filter((l) => l.includes(VIEW_PREFIX))
}

/**
 * Copy `ref` from the system's daemon into the containerd store as a pull leaves it: skopeo
 * writes an OCI archive with gzip layers, `docker load` unpacks it. Named
 * docker.io/library/NAME:1 (a short name is stored un-normalized and inspect would miss it);
 * returns `NAME:1`.
 */
export async function pulled(ref: string, name: string, scratch: string, host: string): Promise<string> {
  const file = join(scratch, `${name}.tar`)
  await execa('skopeo', ['copy', '-q', '--dest-compress', '--dest-compress-format', 'gzip', `docker-daemon:${ref}`, `oci-archive:${file}:docker.io/library/${name}:1`], {
    env: { ...process.env, DOCKER_HOST: '' },
  })
  await execa('docker', ['load', '-i', file], { env: { ...process.env, DOCKER_HOST: host } })
  await execa('rm', ['-f', file])
  return `${name}:1`
}
