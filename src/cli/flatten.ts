/**
 * `dflatten [options] IMAGE`: the main job, the whole pipeline in one run. A thin layer over the
 * library's flatten(): it reads the options, prints progress and the result, and writes the
 * archive where --output says.
 */
import { createWriteStream } from 'node:fs'
import { rename, rm, stat } from 'node:fs/promises'
import { once } from 'node:events'
import { parseCompression } from '../compress/index.js'
import { DflattenError } from '../errors.js'
import { count, flatten, type FlattenOptions, type FlattenResult, type Progress } from '../pipeline.js'
import type { Settings } from '../settings.js'
import type { SourceOptions } from '../sources/resolve.js'
import { HELP_OPTION, atMost, helpText, parseOptions, type Values } from './options.js'
import { methodChoice } from './methods.js'
import { abortOnSignals, binaryStdout, tuneHeap, version } from './runtime.js'
import { LAYERS_OPTION, MESSAGE_OPTION, selectionArgs } from './select.js'
import { DRY_RUN_OPTIONS, dryRunArgs, dryRunCommand } from './dry-run.js'
import { baseLabel } from '../select.js'

export const FLATTEN_OPTIONS = [
  {
    name: 'tag',
    short: 't',
    type: 'string',
    value: 'TARGET',
    help: [
      'where the result goes (default: <repo>_flatten:<tag> in the daemon):',
      '  NAME[:TAG]               the local daemon',
      '  docker://HOST/REPO[:TAG] push to a registry (no daemon load)',
      '  oci:DIR[:TAG]            write an OCI image layout dir',
    ].join('\n'),
  },
  {
    name: 'base',
    short: 'b',
    type: 'string',
    value: 'IMAGE',
    help: "keep IMAGE's layers (an ancestor); 'scratch' squashes every layer\n(default: the nearest tagged ancestor)",
  },
  {
    name: 'platform',
    type: 'string',
    value: 'OS/ARCH[/VARIANT][,...]',
    help: [
      "which platform of a local multi-platform image to flatten (default:",
      "the daemon's); the result holds that one. A docker:// or oci: index:",
      'the platforms to flatten (default: all); the result is an index',
    ].join('\n'),
  },
  LAYERS_OPTION,
  { name: 'original', short: 'o', type: 'string', value: 'IMAGE', help: 'the image to flatten (same as the IMAGE argument)' },
  {
    name: 'method',
    short: 'm',
    type: 'string',
    value: 'METHOD',
    help: [
      'how the difference is found:',
      '  auto          overlay, else snapshots, else save: the first that',
      '                can work here (default)',
      '  overlay       read it from read-only overlay views, content read',
      '                once, nothing copied (root, local overlay2 daemon)',
      '  overlay-copy  rsync into a writable overlay stack and pack its',
      "                upper dir (the 2014 script's way; slower)",
      "  snapshots     the overlay method on containerd's overlayfs",
      '                snapshots (root, local daemon on the containerd',
      '                image store)',
      "  save          merge the layers of 'docker save' in user space",
      '                (any daemon, no root; reads the image twice:',
      '                docker save, then docker export)',
    ].join('\n'),
  },
  MESSAGE_OPTION,
  { name: 'no-cache', type: 'boolean', help: 'build the result even if an earlier run already made it' },
  { name: 'force', short: 'f', type: 'boolean', help: "allow the result to take the original's own name" },
  {
    name: 'output',
    type: 'string',
    value: 'FILE',
    help: "write the image archive to FILE ('-' for stdout) instead of\nloading it: a complete image, base included; 'docker load -i\nFILE' loads it on any daemon",
  },
  {
    name: 'output-layer-only',
    type: 'boolean',
    help: 'with --output: leave the base layers out (a small archive that\nloads only on a daemon that has the base)',
  },
  {
    name: 'compress',
    type: 'string',
    value: 'KIND[:LEVEL]',
    help: [
      'how the new layer is stored: gzip[:1-9] | zstd[:1-19] | none',
      '(default: gzip for a registry, an OCI dir and the containerd',
      'store; none for the classic store, which unpacks layers anyway).',
      'zstd: registries, OCI dirs, Docker 23+; not Docker 20.10',
    ].join('\n'),
  },
  { name: 'cert-dir', type: 'string', value: 'DIR', help: 'CAs (*.crt) and a client cert (*.cert, *.key) for registries' },
  { name: 'insecure-registry', type: 'string', multiple: true, value: 'HOST', help: 'reach HOST[:PORT] over plain HTTP or unverified TLS (repeatable)' },
  ...DRY_RUN_OPTIONS,
  { name: 'quiet', short: 'q', type: 'boolean', help: 'print nothing but errors (no progress line either)' },
  { name: 'verbose', short: 'v', type: 'boolean', help: "also say which method and why, and each stage's wall time" },
  { name: 'json', type: 'boolean', help: 'print the result as one JSON object on stdout' },
  HELP_OPTION,
  { name: 'version', short: 'V', type: 'boolean', help: 'show the version' },
] as const

export const USAGE = helpText(
  FLATTEN_OPTIONS,
  `Usage: dflatten [options] IMAGE
       dflatten STAGE [options]     (resolve | mount | diff | pack | load | cleanup)

Loads a new image made of IMAGE's base layers plus ONE layer holding the difference, with
IMAGE's config (env, cmd, entrypoint, user, labels, ports, volumes, healthcheck...) kept.`,
  `Stages, to run one at a time and look between them (see 'dflatten STAGE --help'):
  dflatten resolve IMAGE | dflatten mount | dflatten diff | dflatten pack | dflatten load

The overlay methods need root and a local daemon with the overlay2 driver; save works
with any daemon the docker CLI reaches (rootless, remote, containerd image store).`,
)

export type FlattenArgs =
  | { help: true }
  | { version: true }
  | { noImage: true }
  | (Omit<Values<typeof FLATTEN_OPTIONS>, 'help' | 'version' | 'original' | 'method' | 'layers' | 'top'> & {
      image: string
      method?: FlattenOptions['method']
      layers?: number
      top?: number
    })

/** The main command's arguments, checked: exactly one image (argument or -o), a known method. */
export function parseFlattenArgs(argv: string[]): FlattenArgs {
  const { values, positionals } = parseOptions(FLATTEN_OPTIONS, argv, 'dflatten')
  if (values.help) return { help: true }
  if (values.version) return { version: true }
  const images = [...(values.original ? [values.original] : []), ...positionals]
  atMost(images, 1, 'dflatten', 'one image (the argument or --original)')
  if (images.length === 0) return { noImage: true }
  const { help: _h, version: _v, original: _o, method, layers: _l, top: _t, ...rest } = values
  if (rest.compress !== undefined) parseCompression(rest.compress)
  const selected = selectionArgs(values, 'dflatten')
  const dry = dryRunArgs(values, 'dflatten')
  return { ...rest, image: images[0], method: methodChoice(method), ...selected, ...dry }
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`
}

function short(id: string | null): string {
  return id ? id.slice(7, 19) : '-'
}

export function report(r: FlattenResult): string {
  const rows = [
    ['source', r.source.ref, short(r.source.id), count(r.source.layers), mb(r.source.size)],
    ['base', baseLabel({ ...r.base, layers: Array<string>(r.base.layers) }), short(r.base.id), count(r.base.layers), ''],
    ['result', r.target, short(r.imageId), count(r.layers), r.outcome === 'written' || r.outcome === 'pushed' ? `layer ${mb(r.blob?.size ?? r.layerBytes ?? 0)}` : mb(r.size)],
  ]
  for (const p of r.platforms ?? []) rows.push([`  ${p.platform}`, '(named by the index)', short(p.manifestDigest ?? p.imageId), count(p.layers), `layer ${mb(p.blob?.size ?? 0)}`])
  const width = (i: number): number => Math.max(...rows.map((row) => row[i].length))
  const lines = rows.map((row) => row.map((c, i) => c.padEnd(width(i))).join('  ').trimEnd())
  const how = {
    flattened: 'flattened',
    cached: 'found from an earlier run (cache)',
    unchanged: 'no layers above the base: the original as is',
    written: 'written, not loaded',
    pushed: 'pushed',
  }
  // Where images are named by their manifest (a registry, an OCI dir), that is the name to show.
  lines.push(`${how[r.outcome]}: ${r.target} ${r.manifestDigest ?? r.imageId}`)
  return lines.join('\n')
}

/**
 * One status line on stderr while the layer streams: bytes done of total, rate, time left.
 * Only on a terminal, and redrawn at most ten times a second.
 */
function progressBar(enabled: boolean) {
  let start = 0
  let drawn = 0
  let visible = false
  return {
    update(p: Progress): void {
      const now = Date.now()
      start ||= now
      if (!enabled || (now - drawn < 100 && p.done < p.total)) return
      drawn = now
      const rate = p.done / Math.max((now - start) / 1000, 0.001)
      const eta = rate > 0 ? Math.ceil((p.total - p.done) / rate) : 0
      const pct = p.total ? Math.floor((100 * p.done) / p.total) : 0
      process.stderr.write(`\r\x1b[K${p.stage}: ${mb(p.done)} of ${mb(p.total)} (${pct}%), ${mb(rate)}/s, ${eta}s left`)
      visible = true
    },
    clear(): void {
      if (visible) process.stderr.write('\r\x1b[K')
      visible = false
    },
  }
}

/**
 * An archive file written under a temporary name and renamed into place only when complete, so
 * an interrupted run never leaves a truncated archive under the name asked for. A path that is
 * not a regular file (/dev/null, a fifo, /dev/stdout) is written in place: renaming over it
 * would replace the device.
 */
async function archiveFile(path: string) {
  const existing = await stat(path).catch(() => null)
  const inPlace = existing !== null && !existing.isFile()
  const partial = inPlace ? path : `${path}.dflatten-partial`
  const stream = createWriteStream(partial, { mode: 0o644 })
  await once(stream, 'open')
  let committed = false
  return {
    stream,
    commit: async () => {
      if (!inPlace) await rename(partial, path)
      committed = true
    },
    discard: async () => {
      if (!committed && !inPlace) await rm(partial, { force: true })
    },
  }
}

export async function flattenCommand(argv: string[], settings: Settings): Promise<number> {
  const args = parseFlattenArgs(argv)
  if ('noImage' in args) {
    // A bare `dflatten` shows the usage after saying what is missing.
    process.stderr.write(`dflatten: give exactly one image to flatten\n${USAGE}\n`)
    return 2
  }
  if ('help' in args) {
    process.stdout.write(USAGE + '\n')
    return 0
  }
  if ('version' in args) {
    process.stdout.write(`dflatten ${version()}\n`)
    return 0
  }
  if (args['output-layer-only'] && !args.output) throw new DflattenError('usage', "--output-layer-only goes with --output; see 'dflatten --help'")
  if (args['dry-run']) return dryRunCommand(args, settings)
  const ac = abortOnSignals()
  const quiet = args.quiet || args.json
  const toStdout = args.output === '-'
  const sink = toStdout ? binaryStdout('--output - writes a binary archive; redirect stdout to a file or a pipe') : undefined
  // Print the report on stderr when stdout carries the archive.
  const say = toStdout ? process.stderr : process.stdout
  const file = args.output && !toStdout ? await archiveFile(args.output) : null
  const bar = progressBar(!quiet && (process.stderr.isTTY as boolean | undefined) === true)
  try {
    // settings is not a FlattenOptions field on this branch yet; a variable (not a literal) passes it through.
    const registry = { ...settings.registry, certDir: args['cert-dir'], insecure: args['insecure-registry'] }
    const opts: FlattenOptions & SourceOptions & { settings: Settings } = {
      image: args.image,
      platform: args.platform,
      base: args.base,
      layers: args.layers,
      message: args.message,
      tag: args.tag,
      force: args.force,
      method: args.method,
      noCache: args['no-cache'],
      verbose: args.verbose,
      signal: ac.signal,
      settings: { ...settings, registry },
      output: sink ?? file?.stream ?? undefined,
      outputLayerOnly: args['output-layer-only'],
      compression: args.compress === undefined ? undefined : parseCompression(args.compress),
      log: quiet
        ? undefined
        : (line) => {
            bar.clear()
            process.stderr.write(`dflatten: ${line}\n`)
          },
      onProgress: (p) => bar.update(p),
      onPlan: (plan) => tuneHeap(plan.method),
    }
    const result = await flatten(opts)
    bar.clear()
    await file?.commit()
    if (args.verbose) {
      const times = Object.entries(result.timings).map(([k, v]) => `${k} ${v.toFixed(2)}s`)
      process.stderr.write(`dflatten: stage times: ${times.join(', ')}\n`)
    }
    if (args.json) say.write(JSON.stringify(result) + '\n')
    else if (!args.quiet) say.write(report(result) + '\n')
    return 0
  } finally {
    await file?.discard()
  }
}
