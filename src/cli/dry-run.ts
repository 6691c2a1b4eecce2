/**
 * `dflatten --dry-run IMAGE`: what flattening would do and reclaim, with nothing loaded. A table
 * on a terminal, plain lines (exact bytes, tab-separated files) otherwise, one JSON object with
 * --json.
 */
import { dryRun, type DryRunReport } from '../dry-run.js'
import { DEFAULT_TOP } from '../reclaim.js'
import { baseLabel } from '../select.js'
import { DflattenError } from '../errors.js'
import type { FlattenOptions } from '../pipeline.js'
import type { Settings } from '../settings.js'
import type { OptionSpec } from './options.js'
import { abortOnSignals, tuneHeap } from './runtime.js'

export const DRY_RUN_OPTIONS = [
  {
    name: 'dry-run',
    type: 'boolean',
    help: 'work out the new layer, load nothing, and report what flattening\nreclaims: the files a later layer deleted or overwrote',
  },
  { name: 'top', type: 'string', value: 'K', help: `with --dry-run: list the K largest of those files (default ${DEFAULT_TOP})` },
] as const satisfies readonly OptionSpec[]

/** --dry-run's options, checked against the others given. */
export function dryRunArgs(values: { 'dry-run'?: boolean; top?: string; output?: string }, command: string): { top?: number } {
  const refuse = (m: string): never => {
    throw new DflattenError('usage', `${m}; see '${command} --help'`)
  }
  if (values.top !== undefined) {
    if (!values['dry-run']) refuse('--top goes with --dry-run')
    if (!/^\d+$/.test(values.top)) refuse(`--top takes how many files to list (a number), not ${JSON.stringify(values.top)}`)
  }
  if (values['dry-run'] && values.output !== undefined) refuse('--dry-run writes no archive; drop --output')
  return values.top === undefined ? {} : { top: Number(values.top) }
}

function mb(bytes: number): string {
  const sign = bytes < 0 ? '-' : ''
  const b = Math.abs(bytes)
  if (b < 1e3) return `${sign}${b} B`
  if (b < 1e6) return `${sign}${(b / 1e3).toFixed(1)} kB`
  if (b < 1e9) return `${sign}${(b / 1e6).toFixed(1)} MB`
  return `${sign}${(b / 1e9).toFixed(2)} GB`
}

function table(rows: string[][], right: number[]): string[] {
  const width = (i: number): number => Math.max(...rows.map((r) => r[i]?.length ?? 0))
  return rows.map((r) => r.map((c, i) => (right.includes(i) ? c.padStart(width(i)) : c.padEnd(width(i)))).join('  ').trimEnd())
}

/** The report as a human reads it: aligned tables on a terminal, plain lines with exact bytes elsewhere. */
export function renderDryRun(r: DryRunReport, tty: boolean): string {
  const base = baseLabel({ ...r.base, layers: Array<string>(r.base.layers) })
  const head = [
    `dry run: ${r.source.ref} (${r.source.layers} layers) onto ${base} by ${r.method}; nothing loaded`,
    `squashed: ${r.squashed.length} layers into one`,
  ]
  if (!tty) {
    return [
      ...head,
      ...r.squashed.map((l) => `layer\t${l.layer}\t${l.bytes}\t${l.createdBy}`),
      `new layer bytes: ${r.layerBytes}`,
      `squashed layers bytes: ${r.squashedBytes}`,
      `reclaimed bytes: ${r.reclaimedBytes}`,
      `reclaimed files: ${r.reclaimedFiles} (${r.reclaimedFileBytes} bytes)`,
      ...r.reclaimed.map((f) => `reclaimed\t${f.bytes}\t${f.path}\t${f.layer}`),
    ].join('\n')
  }
  const layers = table([['LAYER', 'SIZE', 'CREATED BY'], ...r.squashed.map((l) => [String(l.layer), mb(l.bytes), l.createdBy])], [0, 1])
  const sums = table(
    [
      ['squashed layers now', mb(r.squashedBytes)],
      ['new layer', mb(r.layerBytes)],
      ['reclaimed', mb(r.reclaimedBytes)],
    ],
    [1],
  )
  const files = r.reclaimed.length
    ? table([['SIZE', 'PATH', 'ADDED BY'], ...r.reclaimed.map((f) => [mb(f.bytes), f.files === undefined ? f.path : `${f.path} (${f.files} file${f.files === 1 ? '' : 's'})`, f.layer])], [0])
    : ['no file of the squashed layers is deleted or overwritten by a later one']
  const listed = r.reclaimed.reduce((n, f) => n + (f.files ?? 1), 0)
  const more = r.reclaimedFiles > listed ? [`(the ${r.reclaimed.length} largest items: ${listed} of ${r.reclaimedFiles} files, ${mb(r.reclaimedFileBytes)} in all)`] : []
  return [...head, '', ...layers, '', ...sums, '', 'largest files and deleted dirs a later layer removed or overwrote:', ...files, ...more].join('\n')
}

export interface DryRunArgs {
  image: string
  platform?: string
  base?: string
  layers?: number
  message?: string
  tag?: string
  force?: boolean
  method?: FlattenOptions['method']
  verbose?: boolean
  quiet?: boolean
  json?: boolean
  top?: number
}

export async function dryRunCommand(args: DryRunArgs, settings: Settings): Promise<number> {
  const ac = abortOnSignals()
  const quiet = args.quiet || args.json
  const r = await dryRun({
    image: args.image,
    platform: args.platform,
    base: args.base,
    layers: args.layers,
    message: args.message,
    tag: args.tag,
    force: args.force,
    method: args.method,
    verbose: args.verbose,
    top: args.top,
    signal: ac.signal,
    settings,
    log: quiet ? undefined : (line) => process.stderr.write(`dflatten: ${line}\n`),
    onPlan: (plan) => tuneHeap(plan.method),
  })
  if (args.json) process.stdout.write(JSON.stringify(r) + '\n')
  else if (!args.quiet) process.stdout.write(renderDryRun(r, (process.stdout.isTTY as boolean | undefined) === true) + '\n')
  return 0
}
