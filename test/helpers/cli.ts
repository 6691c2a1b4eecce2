// Run the real CLI as a user would (the executable itself, shebang and all), and look at what a
// run leaves on the host.
import { execa, type ResultPromise } from 'execa'
import { readFile, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { fileURLToPath } from 'node:url'

export const BIN = fileURLToPath(new URL('../../bin/dflatten.js', import.meta.url))

export interface CliResult {
  exitCode: number
  stdout: string
  stderr: string
}

export async function dflatten(args: string[], opts: { env?: Record<string, string> } = {}): Promise<CliResult> {
  const r = await execa(BIN, args, { reject: false, env: opts.env })
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr }
}

/** Start the CLI without waiting, to signal it mid-run. */
export function spawnDflatten(args: string[], opts: { env?: Record<string, string> } = {}): ResultPromise {
  // No SIGKILL 5 s after a SIGTERM (execa's default): the run's own cleanup may take that long.
  return execa(BIN, args, { reject: false, env: opts.env, forceKillAfterDelay: false })
}

/** A shell pipeline of stage commands, e.g. `resolve X | mount | diff | pack | load`. */
export async function chain(stages: string[], env?: Record<string, string>): Promise<CliResult> {
  const cmd = stages.map((s) => `${BIN} ${s}`).join(' | ')
  const r = await execa('bash', ['-o', 'pipefail', '-c', cmd], { reject: false, env })
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr }
}

/** A dflatten work dir in a mount table line: mkdtemp's `dflatten-` plus six characters. */
export const WORK_DIR = /\/dflatten-[A-Za-z0-9]{6}\//

/**
 * Overlay mounts and dflatten work dirs on the host, and the containers the save method makes
 * for `docker export` (on the daemon DOCKER_HOST names): all must be empty after any run.
 */
export async function leftovers(): Promise<{ mounts: string[]; dirs: string[]; containers: string[] }> {
  const mounts = (await readFile('/proc/mounts', 'utf8')).split('\n').filter((l) => WORK_DIR.test(l))
  const dirs = (await readdir(tmpdir())).filter((n) => /^dflatten-[A-Za-z0-9]{6}$/.test(n))
  const ps = await execa('docker', ['ps', '--all', '--filter', 'label=dflatten.temporary', '--format', '{{.Names}}'])
  return { mounts, dirs, containers: ps.stdout.split('\n').filter(Boolean) }
}

export async function waitFor(cond: () => Promise<boolean>, ms = 60_000): Promise<boolean> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await cond()) return true
    await new Promise((r) => setTimeout(r, 50))
  }
  return false
}
