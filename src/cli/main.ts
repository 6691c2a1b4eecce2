/**
 * The command line: `dflatten [options] IMAGE`, or `dflatten STAGE [options]` for one stage of
 * the pipeline. It reads the environment once, dispatches, and turns whatever escapes into one
 * line and an exit code.
 */
import type { Settings } from '../settings.js'
import { registryAccessFromEnv, settingsFromEnv, type Env } from './env.js'
import { fail } from './runtime.js'
import { useDockerCommand } from '../docker.js'
import { flattenCommand } from './flatten.js'
import { resolveCommand } from './resolve.js'
import { mountCommand } from './mount.js'
import { diffCommand } from './diff.js'
import { packCommand } from './pack.js'
import { loadCommand } from './load.js'
import { cleanupCommand } from './cleanup.js'

type Command = (argv: string[], settings: Settings) => Promise<number>

/** The stage commands, in pipeline order; any other first argument is the main job's. */
export const STAGE_COMMANDS: Record<string, Command> = {
  resolve: resolveCommand,
  mount: mountCommand,
  diff: diffCommand,
  pack: packCommand,
  load: loadCommand,
  cleanup: cleanupCommand,
}

/** Run one command line; `env` is the environment to read (default: this process's). */
export async function main(argv: string[], env?: Env): Promise<number> {
  try {
    const settings = { ...settingsFromEnv(env), registry: registryAccessFromEnv(env) }
    // The stage commands call docker too, outside flatten(): point every call at the one asked for.
    useDockerCommand(settings.docker ?? 'docker')
    const first = argv.at(0)
    const rest = argv.slice(1)
    const stage = first !== undefined && Object.hasOwn(STAGE_COMMANDS, first) ? STAGE_COMMANDS[first] : undefined
    return stage ? await stage(rest, settings) : await flattenCommand(argv, settings)
  } catch (e) {
    return fail(e)
  }
}
