/** `dflatten resolve IMAGE`: the first stage; writes the plan. */
import { resolve, type ResolveOptions } from '../stages/resolve.js'
import type { Settings } from '../settings.js'
import { DflattenError } from '../errors.js'
import { HELP_OPTION, atMost, helpText, parseOptions } from './options.js'
import { methodChoice, methodNames } from './methods.js'
import { writeDoc } from './documents.js'
import { abortOnSignals, cleaningUp } from './runtime.js'
import { LAYERS_OPTION, MESSAGE_OPTION, selectionArgs } from './select.js'

const COMMAND = 'dflatten resolve'

export const RESOLVE_OPTIONS = [
  { name: 'tag', short: 't', type: 'string', value: 'NAME[:TAG]', help: 'name of the result (default: <repo>_flatten:<tag>)' },
  {
    name: 'base',
    short: 'b',
    type: 'string',
    value: 'IMAGE',
    help: "keep IMAGE's layers (an ancestor); 'scratch' squashes every layer\n(default: the nearest tagged ancestor)",
  },
  LAYERS_OPTION,
  MESSAGE_OPTION,
  { name: 'method', short: 'm', type: 'string', value: 'METHOD', help: `auto (default), ${methodNames().join(', ')}; see 'dflatten --help'` },
  { name: 'force', short: 'f', type: 'boolean', help: "allow the result to take the original's own name" },
  { name: 'platform', type: 'string', value: 'OS/ARCH[/VARIANT]', help: "which platform of a multi-platform image (default: the daemon's)" },
  HELP_OPTION,
] as const

const USAGE_LINE = 'Usage: dflatten resolve IMAGE [-t NAME[:TAG]] [-b BASE|scratch | --layers N] [--message TEXT] [-m METHOD] [-f] [--platform P]'

export const RESOLVE_HELP = helpText(
  RESOLVE_OPTIONS,
  `${USAGE_LINE}
First stage. Finds IMAGE's base and writes the plan (JSON) to stdout:
  dflatten resolve app:1 | jq .          dflatten resolve app:1 | dflatten mount | ...`,
)

export type ResolveArgs = { help: true } | ResolveOptions

export function parseResolveArgs(argv: string[]): ResolveArgs {
  const { values, positionals } = parseOptions(RESOLVE_OPTIONS, argv, COMMAND)
  if (values.help) return { help: true }
  atMost(positionals, 1, COMMAND, 'one image')
  if (positionals.length === 0) throw new DflattenError('usage', `give exactly one image; ${USAGE_LINE}`)
  return {
    image: positionals[0],
    base: values.base,
    ...selectionArgs(values, COMMAND),
    tag: values.tag,
    force: values.force,
    platform: values.platform,
    method: methodChoice(values.method),
  }
}

export async function resolveCommand(argv: string[], settings: Settings): Promise<number> {
  const args = parseResolveArgs(argv)
  if ('help' in args) {
    process.stdout.write(RESOLVE_HELP + '\n')
    return 0
  }
  // resolve takes no signal yet; a signal still ends in cleanup and 130/143 like every stage's.
  abortOnSignals()
  // settings is not a ResolveOptions field on this branch yet: it rides along in a variable.
  const opts: ResolveOptions & { settings: Settings } = { ...args, settings }
  return cleaningUp(async () => {
    writeDoc(await resolve(opts))
    return 0
  })
}
