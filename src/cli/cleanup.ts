/** `dflatten cleanup`: removes what interrupted runs left behind. */
import { destroy } from '../cleanup.js'
import { abandonedWorkspaces, mountsUnder, workRoot, workspaceContainer } from '../workspace.js'
import type { Settings } from '../settings.js'
import { HELP_OPTION, atMost, helpText, parseOptions } from './options.js'
import { abortOnSignals, cleaningUp } from './runtime.js'

const COMMAND = 'dflatten cleanup'

export const CLEANUP_OPTIONS = [
  { name: 'dry-run', type: 'boolean', help: 'say what would be removed, remove nothing' },
  HELP_OPTION,
] as const

export const CLEANUP_HELP = helpText(
  CLEANUP_OPTIONS,
  `Usage: dflatten cleanup [--dry-run]
Unmounts and removes the work dirs that interrupted runs left under $TMPDIR (even after
kill -9). A work dir whose owner is still running is left alone.`,
)

export function parseCleanupArgs(argv: string[]): { help?: boolean; 'dry-run'?: boolean } {
  const { values, positionals } = parseOptions(CLEANUP_OPTIONS, argv, COMMAND)
  if (!values.help) atMost(positionals, 0, COMMAND, 'no arguments')
  return values
}

export async function cleanupCommand(argv: string[], settings: Settings): Promise<number> {
  const args = parseCleanupArgs(argv)
  if (args.help) {
    process.stdout.write(CLEANUP_HELP + '\n')
    return 0
  }
  abortOnSignals()
  const dryRun = args['dry-run']
  return cleaningUp(async () => {
    const dirs = await abandonedWorkspaces(settings)
    for (const dir of dirs) {
      const mounts = await mountsUnder(dir)
      const container = await workspaceContainer(dir)
      const held = [mounts.length ? `${mounts.length} mounts` : '', container ? `container ${container}` : ''].filter(Boolean)
      process.stdout.write(`${dryRun ? 'would remove' : 'removing'} ${dir}${held.length ? ` (${held.join(', ')})` : ''}\n`)
      if (!dryRun) await destroy(dir)
    }
    if (dirs.length === 0) process.stdout.write(`nothing to clean up under ${workRoot(settings)}\n`)
    return 0
  })
}
