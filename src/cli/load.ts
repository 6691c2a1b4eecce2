/** `dflatten load`: reads an image archive on stdin and loads it. */
import { loadStage, type LoadOptions } from '../stages/load.js'
import { pumpAll } from '../pipeline.js'
import { DflattenError } from '../errors.js'
import type { Settings } from '../settings.js'
import { HELP_OPTION, atMost, helpText, parseOptions } from './options.js'
import { cleaningUp, stageContext } from './runtime.js'

const COMMAND = 'dflatten load'

export const LOAD_OPTIONS = [
  { name: 'tag', short: 't', type: 'string', multiple: true, value: 'NAME[:TAG]', help: 'also tag the loaded image NAME[:TAG] (repeatable)' },
  HELP_OPTION,
] as const

export const LOAD_HELP = helpText(
  LOAD_OPTIONS,
  `Usage: ... | dflatten pack | dflatten load [-t NAME[:TAG]]...
Reads an image archive on stdin, loads it with docker load and tags it (-t, repeatable).`,
)

export function parseLoadArgs(argv: string[]): { help?: boolean; tag?: string[] } {
  const { values, positionals } = parseOptions(LOAD_OPTIONS, argv, COMMAND)
  if (!values.help) atMost(positionals, 0, COMMAND, 'no arguments (the archive comes on stdin)')
  return values
}

export async function loadCommand(argv: string[], settings: Settings): Promise<number> {
  const args = parseLoadArgs(argv)
  if (args.help) {
    process.stdout.write(LOAD_HELP + '\n')
    return 0
  }
  const ctx = stageContext(settings)
  return cleaningUp(async () => {
    if (process.stdin.isTTY) throw new DflattenError('usage', 'load reads an image archive on stdin')
    let loaded = ''
    // settings is not a LoadOptions field on this branch yet: it rides along in a variable.
    const opts: LoadOptions & { settings: Settings } = {
      signal: ctx.signal,
      settings: ctx.settings,
      tags: args.tag,
      onDone: (o) => (loaded = [...o.tags, ...o.ids].join(' ')),
    }
    await pumpAll([process.stdin, loadStage(opts)], ctx.signal)
    process.stderr.write(`loaded ${[loaded, ...(args.tag ?? [])].filter(Boolean).join(' ')}\n`)
    return 0
  })
}
