/** `dflatten mount`: reads a plan, mounts the views, writes the mounted plan. */
import { mount } from '../stages/mount.js'
import { release } from '../cleanup.js'
import { writeOwner } from '../workspace.js'
import type { Settings } from '../settings.js'
import { HELP_OPTION, atMost, helpText, parseOptions } from './options.js'
import { readDoc, writeDoc } from './documents.js'
import { cleaningUp, stageContext } from './runtime.js'

const COMMAND = 'dflatten mount'

export const MOUNT_OPTIONS = [HELP_OPTION] as const

export const MOUNT_HELP = helpText(
  MOUNT_OPTIONS,
  `Usage: dflatten resolve IMAGE | dflatten mount
Reads a plan, mounts the image's read-only view and the base's (or, for overlay-copy, a
writable stack) in a work dir under $TMPDIR, and writes the plan with its mount points
(JSON). Next: dflatten diff.`,
)

export function parseMountArgs(argv: string[]): { help?: boolean } {
  const { values, positionals } = parseOptions(MOUNT_OPTIONS, argv, COMMAND)
  if (!values.help) atMost(positionals, 0, COMMAND, 'no arguments (the plan comes on stdin)')
  return values
}

export async function mountCommand(argv: string[], settings: Settings): Promise<number> {
  if (parseMountArgs(argv).help) {
    process.stdout.write(MOUNT_HELP + '\n')
    return 0
  }
  const ctx = stageContext(settings)
  return cleaningUp(async () => {
    const m = await mount(await readDoc(COMMAND), ctx)
    // Hand the workspace to the shell running the chain; the next stage takes it from there.
    await writeOwner(m.workspace.dir, process.ppid)
    release(m.workspace.dir)
    writeDoc(m)
    return 0
  })
}
