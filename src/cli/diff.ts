/** `dflatten diff`: reads a mounted plan, writes the entries file and the diffed plan. */
import { diff } from '../stages/diff.js'
import { expectDoc } from '../plan.js'
import type { Settings } from '../settings.js'
import { HELP_OPTION, atMost, helpText, parseOptions } from './options.js'
import { holding, readDoc, writeDoc } from './documents.js'
import { cleaningUp, stageContext, tuneHeap } from './runtime.js'

const COMMAND = 'dflatten diff'

export const DIFF_OPTIONS = [HELP_OPTION] as const

export const DIFF_HELP = helpText(
  DIFF_OPTIONS,
  `Usage: ... | dflatten mount | dflatten diff
Reads a mounted plan, works out the new layer's entries (written to the work dir's
'entries' file, one JSON object a line) and writes the plan with a summary of the diff
(JSON). Next: dflatten pack.`,
)

export function parseDiffArgs(argv: string[]): { help?: boolean } {
  const { values, positionals } = parseOptions(DIFF_OPTIONS, argv, COMMAND)
  if (!values.help) atMost(positionals, 0, COMMAND, 'no arguments (the mounted plan comes on stdin)')
  return values
}

export async function diffCommand(argv: string[], settings: Settings): Promise<number> {
  if (parseDiffArgs(argv).help) {
    process.stdout.write(DIFF_HELP + '\n')
    return 0
  }
  const ctx = stageContext(settings)
  return cleaningUp(async () => {
    const doc = await readDoc(COMMAND)
    tuneHeap(expectDoc(doc, 'mounted', COMMAND).method)
    writeDoc(await holding(doc, () => diff(doc, ctx)))
    return 0
  })
}
