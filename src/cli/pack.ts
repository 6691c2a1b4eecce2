/** `dflatten pack`: reads a diffed plan, writes the image archive to stdout. */
import { Readable } from 'node:stream'
import { packStage, type PackOptions } from '../stages/pack.js'
import { pumpAll } from '../pipeline.js'
import { expectDoc } from '../plan.js'
import { release, track } from '../cleanup.js'
import type { Settings } from '../settings.js'
import { HELP_OPTION, atMost, helpText, parseOptions } from './options.js'
import { readDoc } from './documents.js'
import { parseCompression } from '../compress/index.js'
import { binaryStdout, cleaningUp, stageContext } from './runtime.js'

const COMMAND = 'dflatten pack'
const NOT_A_TERMINAL = 'pack writes a binary archive; redirect it to a file or pipe it into dflatten load'

export const PACK_OPTIONS = [
  { name: 'keep', type: 'boolean', help: 'leave the work dir mounted after packing, for a look' },
  {
    name: 'compress',
    type: 'string',
    value: 'KIND[:LEVEL]',
    help: "the new layer: gzip[:1-9] | zstd[:1-19] | none (default: as the\nplan's daemon keeps layers: gzip on the containerd store, else none)",
  },
  HELP_OPTION,
] as const

export const PACK_HELP = helpText(
  PACK_OPTIONS,
  `Usage: ... | dflatten diff | dflatten pack [--keep] [--compress KIND] > image.tar
Reads a diffed plan, writes the image archive (what docker load reads) to stdout, then
unmounts and removes the work dir (--keep leaves it for a look). Look inside with
'tar -tvf -'; load it with 'dflatten load' or 'docker load'. Refuses to write to a terminal.`,
)

export function parsePackArgs(argv: string[]): { help?: boolean; keep?: boolean; compress?: string } {
  const { values, positionals } = parseOptions(PACK_OPTIONS, argv, COMMAND)
  if (!values.help) atMost(positionals, 0, COMMAND, 'no arguments (the diffed plan comes on stdin)')
  if (values.compress !== undefined) parseCompression(values.compress)
  return values
}

export async function packCommand(argv: string[], settings: Settings): Promise<number> {
  const args = parsePackArgs(argv)
  if (args.help) {
    process.stdout.write(PACK_HELP + '\n')
    return 0
  }
  const ctx = stageContext(settings)
  return cleaningUp(async () => {
    // Refused before the document is read: a terminal must not wait for stdin first.
    const sink = binaryStdout(NOT_A_TERMINAL)
    const doc = expectDoc(await readDoc(COMMAND), 'diffed', COMMAND)
    track(doc.workspace.dir)
    if (args.keep) release(doc.workspace.dir)
    // settings is not a PackOptions field on this branch yet: it rides along in a variable.
    const opts: PackOptions & { settings: Settings } = { keep: args.keep, signal: ctx.signal, settings: ctx.settings, compression: args.compress === undefined ? undefined : parseCompression(args.compress) }
    await pumpAll([Readable.from([doc]), packStage(opts), sink], ctx.signal)
    return 0
  })
}
