/** `dflatten cleanup`: removes what interrupted runs left behind. */
import { destroy } from '../cleanup.js'
import { mountsUnder, workspaceContainer } from '../workspace.js'
import { checkWorkDir, surveyWorkDirs, workRoot } from '../work-dirs.js'
import type { Settings } from '../settings.js'
import { HELP_OPTION, helpText, parseOptions } from './options.js'
import { abortOnSignals, cleaningUp } from './runtime.js'

const COMMAND = 'dflatten cleanup'

export const CLEANUP_OPTIONS = [
  { name: 'force', short: 'f', type: 'boolean', help: 'also remove work dirs whose owner still runs (the shell of a chain\nrun by hand), but not one a dflatten run works in' },
  { name: 'dry-run', type: 'boolean', help: 'say what would be removed, remove nothing' },
  HELP_OPTION,
] as const

export const CLEANUP_HELP = helpText(
  CLEANUP_OPTIONS,
  `Usage: dflatten cleanup [--force] [--dry-run] [DIR...]
Unmounts and removes the work dirs that interrupted runs left under $TMPDIR (even after
kill -9). A work dir whose owner still runs is kept, and cleanup says which process that is:
a chain run by hand hands its work dir to its shell. --force removes those too. Given DIRs,
removes exactly those work dirs, whoever owns them, and refuses any DIR that is not a
dflatten work dir.`,
)

export type CleanupArgs = { help: true } | { force?: boolean; 'dry-run'?: boolean; dirs: string[] }

export function parseCleanupArgs(argv: string[]): CleanupArgs {
  const { values, positionals } = parseOptions(CLEANUP_OPTIONS, argv, COMMAND)
  if (values.help) return { help: true }
  return { force: values.force, 'dry-run': values['dry-run'], dirs: positionals }
}

async function held(dir: string): Promise<string> {
  const mounts = await mountsUnder(dir)
  const container = await workspaceContainer(dir)
  const what = [mounts.length ? `${mounts.length} mounts` : '', container ? `container ${container}` : ''].filter(Boolean)
  return what.length ? ` (${what.join(', ')})` : ''
}

export async function cleanupCommand(argv: string[], settings: Settings): Promise<number> {
  const args = parseCleanupArgs(argv)
  if ('help' in args) {
    process.stdout.write(CLEANUP_HELP + '\n')
    return 0
  }
  abortOnSignals()
  const dryRun = args['dry-run']
  const remove = async (dir: string): Promise<void> => {
    process.stdout.write(`${dryRun ? 'would remove' : 'removing'} ${dir}${await held(dir)}\n`)
    if (!dryRun) await destroy(dir)
  }
  return cleaningUp(async () => {
    if (args.dirs.length) {
      // Every DIR is checked before any is touched: one that is not a work dir stops them all.
      const dirs: string[] = []
      for (const d of args.dirs) dirs.push(await checkWorkDir(d, settings))
      for (const dir of new Set(dirs)) await remove(dir)
      return 0
    }
    const found = await surveyWorkDirs(settings, args.force)
    for (const { dir, verdict } of found) {
      if (verdict.remove) await remove(dir)
      else process.stdout.write(`keeping ${dir}${await held(dir)}: ${verdict.why}\n`)
    }
    if (found.length === 0) process.stdout.write(`nothing to clean up under ${workRoot(settings)}\n`)
    return 0
  })
}
