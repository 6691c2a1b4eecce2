/** The options that choose what to squash, and the new layer's message: shared by `dflatten` and `dflatten resolve`. */
import { checkSelection, parseLayerCount } from '../select.js'
import { DflattenError } from '../errors.js'
import type { OptionSpec } from './options.js'

export const LAYERS_OPTION = {
  name: 'layers',
  type: 'string',
  value: 'N',
  help: [
    'squash the top N layers into one and keep the others as they',
    'are; no image need exist for them (BuildKit, pulled images).',
    "N counts filesystem layers (RootFS.Layers); docker-squash's",
    '-f N counts history entries, metadata-only ones included.',
    'Not with --base',
  ].join('\n'),
} as const satisfies OptionSpec

export const MESSAGE_OPTION = {
  name: 'message',
  type: 'string',
  value: 'TEXT',
  help: "the new layer's history comment, as 'docker history' shows it\n(docker-squash's -m; here -m is --method)",
} as const satisfies OptionSpec

/** --layers as a number and --message, checked: one line and exit 2 for what cannot be. */
export function selectionArgs(values: { base?: string; layers?: string; message?: string }, command: string): { layers?: number; message?: string } {
  const layers = values.layers === undefined ? undefined : parseLayerCount(values.layers)
  try {
    checkSelection({ base: values.base, layers })
  } catch (e) {
    throw e instanceof DflattenError ? new DflattenError(e.code, `${e.message}; see '${command} --help'`) : e
  }
  return { ...(layers === undefined ? {} : { layers }), ...(values.message === undefined ? {} : { message: values.message }) }
}
