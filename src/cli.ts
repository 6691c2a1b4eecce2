/**
 * The command line: a thin layer over the library. It parses arguments, turns signals into an
 * abort, prints what happened, and maps errors to one line and an exit code.
 */
import { parseArgs } from 'node:util'
import v8 from 'node:v8'
import { createWriteStream, readFileSync } from 'node:fs'
import { rename, rm, stat } from 'node:fs/promises'
import { once } from 'node:events'
import { Writable } from 'node:stream'
import { count, flatten, type FlattenResult, type Progress } from './pipeline.js'
import type { MethodChoice } from './plan.js'
import type { Settings } from './settings.js'
import { getMethod } from './methods/index.js'
import { DflattenError, Interrupted, exitCodeOf, isDflattenError } from './errors.js'
import { runStageCommand, STAGE_COMMANDS } from './commands.js'
import { useDockerCommand } from './docker.js'

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string })
  .version

export const USAGE = `Usage: dflatten [options] IMAGE
       dflatten STAGE [options]     (resolve | mount | diff | pack | load | cleanup)

Loads a new image made of IMAGE's base layers plus ONE layer holding the difference, with
IMAGE's config (env, cmd, entrypoint, user, labels, ports, volumes, healthcheck...) kept.

Options:
  -t, --tag NAME[:TAG]    name of the result (default: <repo>_flatten:<tag>)
  -b, --base IMAGE        keep IMAGE's layers (an ancestor); 'scratch' squashes every layer
                          (default: the nearest tagged ancestor)
  -o, --original IMAGE    the image to flatten (same as the IMAGE argument)
  -m, --method METHOD     how the difference is found:
                            auto          overlay where it can work, else save (default)
                            overlay       read it from read-only overlay views, content read
                                          once, nothing copied (root, local overlay2 daemon)
                            overlay-copy  rsync into a writable overlay stack and pack its
                                          upper dir (the 2014 script's way; slower)
                            save          merge the layers of 'docker save' in user space
                                          (any daemon, no root; reads the image twice:
                                          docker save, then docker export)
      --no-cache          build the result even if an earlier run already made it
  -f, --force             allow the result to take the original's own name
      --output FILE       write the image archive to FILE ('-' for stdout) instead of
                          loading it; 'docker load -i FILE' loads it later
  -q, --quiet             print nothing but errors (no progress line either)
  -v, --verbose           also say which method and why, and each stage's wall time
      --json              print the result as one JSON object on stdout
  -h, --help              show this help
  -V, --version           show the version

Stages, to run one at a time and look between them (see 'dflatten STAGE --help'):
  dflatten resolve IMAGE | dflatten mount | dflatten diff | dflatten pack | dflatten load

The overlay methods need root and a local daemon with the overlay2 driver; save works\nwith any daemon the docker CLI reaches (rootless, remote, containerd image store).`

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`
}

function short(id: string | null): string {
  return id ? id.slice(7, 19) : '-'
}

export function report(r: FlattenResult): string {
  const rows = [
    ['source', r.source.ref, short(r.source.id), count(r.source.layers), mb(r.source.size)],
    ['base', r.base.ref ?? 'scratch', short(r.base.id), count(r.base.layers), ''],
    ['result', r.target, short(r.imageId), count(r.layers), r.outcome === 'written' ? `layer ${mb(r.layerBytes ?? 0)}` : mb(r.size)],
  ]
  const width = (i: number): number => Math.max(...rows.map((row) => row[i].length))
  const lines = rows.map((row) => row.map((c, i) => c.padEnd(width(i))).join('  ').trimEnd())
  const how = {
    flattened: 'flattened',
    cached: 'found from an earlier run (cache)',
    unchanged: 'no layers above the base: the original as is',
    written: 'archive written, not loaded',
  }
  lines.push(`${how[r.outcome]}: ${r.target} ${r.imageId}`)
  return lines.join('\n')
}

/**
 * stdout as the end of a pipeline. Piping into process.stdout directly never finishes when stdout
 * is a file (/dev/null, a redirect): Node keeps that stream open for good. This writes each chunk
 * and moves on once it is flushed, and finishes without closing stdout.
 */
export function stdoutSink(): Writable {
  return new Writable({
    highWaterMark: 1024 * 1024,
    write(chunk: Buffer, _enc, cb) {
      process.stdout.write(chunk, (err) => cb(err ?? null))
    },
  })
}

/** Abort on SIGINT/SIGTERM; the run then cleans up and exits with 130/143. */
let controller: AbortController | null = null

export function abortOnSignals(): AbortController {
  if (controller) return controller
  const ac = (controller = new AbortController())
  const onSignal = (sig: NodeJS.Signals): void => {
    if (ac.signal.aborted) {
      process.stderr.write(`dflatten: ${sig} again; still cleaning up mounts, please wait\n`)
      return
    }
    ac.abort(sig)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  process.on('SIGHUP', onSignal)
  return ac
}

export function fail(e: unknown): number {
  const sig = controller?.signal
  if (sig?.aborted && !(e instanceof Interrupted)) e = new Interrupted(String(sig.reason))
  if (isDflattenError(e)) {
    process.stderr.write(`dflatten: ${e.message}\n`)
    return exitCodeOf(e)
  }
  const err = e as Error
  process.stderr.write(`dflatten: internal error: ${err?.stack ?? String(e)}\n`)
  return 70
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
    clear(): true {
      if (visible) process.stderr.write('\r\x1b[K')
      visible = false
      return true
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

async function mainFlatten(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      tag: { type: 'string', short: 't' },
      base: { type: 'string', short: 'b' },
      original: { type: 'string', short: 'o' },
      force: { type: 'boolean', short: 'f' },
      quiet: { type: 'boolean', short: 'q' },
      json: { type: 'boolean' },
      output: { type: 'string' },
      method: { type: 'string', short: 'm' },
      verbose: { type: 'boolean', short: 'v' },
      'no-cache': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'V' },
    },
  })
  if (values.help) {
    process.stdout.write(USAGE + '\n')
    return 0
  }
  if (values.version) {
    process.stdout.write(`dflatten ${VERSION}\n`)
    return 0
  }
  const images = [...(values.original ? [values.original] : []), ...positionals]
  if (images.length !== 1) {
    process.stderr.write(`dflatten: give exactly one image to flatten\n${USAGE}\n`)
    return 2
  }
  const ac = abortOnSignals()
  const quiet = values.quiet || values.json
  const toStdout = values.output === '-'
  if (toStdout && process.stdout.isTTY) {
    throw new DflattenError('usage', '--output - writes a binary archive; redirect stdout to a file or a pipe')
  }
  // Print the report on stderr when stdout carries the archive.
  const say = toStdout ? process.stderr : process.stdout
  const file = values.output && !toStdout ? await archiveFile(values.output) : null
  const bar = progressBar(!quiet && process.stderr.isTTY === true)
  try {
    const result = await flatten({
      image: images[0],
      base: values.base,
      tag: values.tag,
      force: values.force,
      method: values.method as MethodChoice | undefined,
      noCache: values['no-cache'],
      verbose: values.verbose,
      signal: ac.signal,
      output: toStdout ? stdoutSink() : (file?.stream ?? undefined),
      log: quiet ? undefined : (line) => bar.clear() && process.stderr.write(`dflatten: ${line}\n`),
      onProgress: (p) => bar.update(p),
      onPlan: (plan) => tuneHeap(plan.method.name),
      settings: settingsFromEnv(),
    })
    bar.clear()
    await file?.commit()
    if (values.verbose) {
      const times = Object.entries(result.timings).map(([k, v]) => `${k} ${v.toFixed(2)}s`)
      process.stderr.write(`dflatten: stage times: ${times.join(', ')}\n`)
    }
    if (values.json) say.write(JSON.stringify(result) + '\n')
    else if (!values.quiet) say.write(report(result) + '\n')
    return 0
  } finally {
    await file?.discard()
  }
}

/**
 * The V8 flags in bin/dflatten.js suit the overlay methods: --optimize-for-size keeps the
 * default method's peak RSS at 105 MB instead of 160 MB on the large benchmark image. But it also
 * makes V8 collect the old generation at each step of its growth, and the save method's first
 * pass keeps a header for every path of the layers above the base: on the same image that pass
 * took 19 s instead of 9 s. So the CLI turns it off once it knows the method is save. (The
 * library never touches the process's flags: that is the CLI's business.)
 */
export function tuneHeap(method: string): void {
  if (getMethod(method).largeHeap) v8.setFlagsFromString('--no-optimize-for-size')
}

/** The DFLATTEN_* variables as the library's settings. */
export function settingsFromEnv(env: NodeJS.ProcessEnv = process.env): Settings {
  return {
    workRoot: env.DFLATTEN_TMPDIR || undefined,
    rsync: env.DFLATTEN_RSYNC,
    saveContent: env.DFLATTEN_SAVE_CONTENT === 'save' ? 'save' : undefined,
  }
}

export async function main(argv: string[]): Promise<number> {
  useDockerCommand(process.env.DFLATTEN_DOCKER ?? 'docker')
  try {
    const [first, ...rest] = argv
    if (first && STAGE_COMMANDS.includes(first)) return await runStageCommand(first, rest)
    return await mainFlatten(argv)
  } catch (e) {
    if (e instanceof TypeError && (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`dflatten: ${e.message}\n`)
      return 2
    }
    return fail(e)
  }
}
