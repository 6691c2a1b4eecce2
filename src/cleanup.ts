/**
 * Workspaces this process is responsible for, and the stage work still running. Whatever way the
 * process ends (success, error, SIGINT, SIGTERM), the running work is first allowed to settle
 * (its child processes are cancelled), then everything still listed here is unmounted and
 * removed. A stage command that hands its workspace to the next stage lets go of it first.
 */
import { destroyWorkspace } from './workspace.js'
import { allMethods } from './methods/index.js'
import { dropLease } from './destinations/lease.js'

const live = new Set<string>()
const running = new Set<Promise<unknown>>()

export function track(dir: string): void {
  live.add(dir)
}

export function release(dir: string): void {
  live.delete(dir)
}

/**
 * Remove a workspace: what each method recorded in it (containers, ...) and the daemon
 * destination's containerd lease, then its mounts and the dir. Every method is asked, as the dir
 * of a killed run does not say which one made it.
 */
export async function destroy(dir: string): Promise<void> {
  for (const m of allMethods()) await m.cleanup?.(dir)
  await dropLease(dir)
  await destroyWorkspace(dir)
  live.delete(dir)
}

/** Note work in progress, so cleanup waits for it instead of racing it. */
export function inFlight<T>(p: Promise<T>): Promise<T> {
  running.add(p)
  const done = (): void => void running.delete(p)
  p.then(done, done)
  return p
}

/** Let running work settle, then remove every workspace still held; report failures, go on. */
export async function cleanupAll(onError: (e: Error) => void = () => {}): Promise<void> {
  while (running.size) await Promise.allSettled([...running])
  for (const dir of [...live].reverse()) {
    try {
      await destroy(dir)
    } catch (e) {
      onError(e as Error)
    }
  }
}
