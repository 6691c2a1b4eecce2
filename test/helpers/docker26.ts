// The Docker 26 daemons of scripts/docker26.sh (classic and containerd image store) for the
// e2e tests: started, or found running, once a test file; and DOCKER_HOST pointed at one.
import type { Test } from 'tap'
import { execa } from 'execa'
import { fileURLToPath } from 'node:url'

const SCRIPT = fileURLToPath(new URL('../../scripts/docker26.sh', import.meta.url))

/** What a test file says when DFLATTEN_SKIP_DOCKER26=1 leaves the daemons out. */
export const DOCKER26_LEFT_OUT = 'DFLATTEN_SKIP_DOCKER26=1: Docker 26 daemons left out'

export interface Docker26 {
  /** Whether `docker26.sh start` exited 0. */
  started: boolean
  /** Its last lines on stderr, for a message when it did not. */
  said: string
  /** DOCKER_HOST of the classic-store daemon, when it runs. */
  classic?: string
  /** DOCKER_HOST of the containerd-store daemon, when it runs. */
  containerd?: string
}

/** Start the daemons; null when DFLATTEN_SKIP_DOCKER26=1 leaves them out. */
export async function startDocker26(): Promise<Docker26 | null> {
  if (process.env.DFLATTEN_SKIP_DOCKER26 === '1') return null
  const start = await execa('bash', [SCRIPT, 'start'], { reject: false })
  const host = (name: string): string | undefined => new RegExp(`export ${name}=(\\S+)`).exec(start.stdout)?.[1]
  return {
    started: start.exitCode === 0,
    said: `docker26.sh start: ${start.stderr.split('\n').slice(-3).join(' ')}`,
    classic: host('DFLATTEN_D26_CLASSIC_HOST'),
    containerd: host('DFLATTEN_D26_CTRD_HOST'),
  }
}

/** Point the image builders and docker helpers (they follow DOCKER_HOST) at `host` for this test; undefined: the default daemon. */
export function useDaemon(t: Test, host: string | undefined): void {
  const saved = process.env.DOCKER_HOST
  if (host === undefined) delete process.env.DOCKER_HOST
  else process.env.DOCKER_HOST = host
  t.teardown(() => {
    if (saved === undefined) delete process.env.DOCKER_HOST
    else process.env.DOCKER_HOST = saved
  })
}
