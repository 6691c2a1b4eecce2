/**
 * The stages as commands that pipe together by hand:
 *
 *   dflatten resolve app:1 | dflatten mount | dflatten diff | dflatten pack | dflatten load
 *
 * Each runs the same stage module as the one-shot pipeline. resolve, mount and diff pass a JSON
 * document on; pack writes the image archive; load reads one. The workspace that mount creates
 * is handed down the chain: its owner becomes the shell that runs the chain, so `cleanup` leaves
 * it alone while that shell lives, and each later stage takes it back if it fails.
 */
import { parseArgs } from 'node:util'
import { Readable } from 'node:stream'
import { resolve } from './stages/resolve.js'
import { mount } from './stages/mount.js'
import { diff } from './stages/diff.js'
import { packStage } from './stages/pack.js'
import { loadStage } from './stages/load.js'
import { expectDoc, parseDoc, type MethodChoice, type StageDoc } from './plan.js'
import { cleanupAll, destroy, release, track } from './cleanup.js'
import { abandonedWorkspaces, writeOwner, mountsUnder, workRoot, workspaceContainer } from './workspace.js'
import { pumpAll } from './pipeline.js'
import { DflattenError } from './errors.js'
import { abortOnSignals, settingsFromEnv, stdoutSink, tuneHeap } from './cli.js'

export const STAGE_COMMANDS = ['resolve', 'mount', 'diff', 'pack', 'load', 'cleanup']

const HELP: Record<string, string> = {
  resolve: `Usage: dflatten resolve IMAGE [-t NAME[:TAG]] [-b BASE|scratch] [-m METHOD] [-f]
First stage. Finds IMAGE's base and writes the plan (JSON) to stdout:
  dflatten resolve app:1 | jq .          dflatten resolve app:1 | dflatten mount | ...`,
  mount: `Usage: dflatten resolve IMAGE | dflatten mount
Reads a plan, mounts the image's read-only view and the base's (or, for overlay-copy, a
writable stack) in a work dir under $TMPDIR, and writes the plan with its mount points
(JSON). Next: dflatten diff.`,
  diff: `Usage: ... | dflatten mount | dflatten diff
Reads a mounted plan, works out the new layer's entries (written to the work dir's
'entries' file, one JSON object a line) and writes the plan with a summary of the diff
(JSON). Next: dflatten pack.`,
  pack: `Usage: ... | dflatten diff | dflatten pack [--keep] > image.tar
Reads a diffed plan, writes the image archive (what docker load reads) to stdout, then
unmounts and removes the work dir (--keep leaves it for a look). Look inside with
'tar -tvf -'; load it with 'dflatten load' or 'docker load'. Refuses to write to a terminal.`,
  load: `Usage: ... | dflatten pack | dflatten load [-t NAME[:TAG]]...
Reads an image archive on stdin, loads it with docker load and tags it (-t, repeatable).`,
  cleanup: `Usage: dflatten cleanup [--dry-run]
Unmounts and removes the work dirs that interrupted runs left under $TMPDIR (even after
kill -9). A work dir whose owner is still running is left alone.`,
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(Buffer.from(c as Buffer))
  return Buffer.concat(chunks).toString('utf8')
}

async function readDoc(stage: string): Promise<unknown> {
  if (process.stdin.isTTY) {
    throw new DflattenError('bad-input', `${stage} reads the previous stage's output on stdin; see 'dflatten ${stage.split(' ')[1]} --help'`)
  }
  return parseDoc(await readAll(process.stdin), stage)
}

function writeDoc(doc: StageDoc): void {
  process.stdout.write(JSON.stringify(doc, null, 2) + '\n')
}

/**
 * A stage that got a workspace from the previous one: it holds it while it works (so a failure
 * or a signal removes it) and hands it on when it succeeds.
 */
async function holding<T>(doc: unknown, work: () => Promise<T>): Promise<T> {
  const dir = (doc as { workspace?: { dir?: string } })?.workspace?.dir
  if (dir) track(dir)
  const out = await work()
  if (dir) release(dir)
  return out
}

export async function runStageCommand(cmd: string, argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      tag: { type: 'string', short: 't', multiple: true },
      base: { type: 'string', short: 'b' },
      force: { type: 'boolean', short: 'f' },
      keep: { type: 'boolean' },
      'dry-run': { type: 'boolean' },
      method: { type: 'string', short: 'm' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    process.stdout.write(HELP[cmd] + '\n')
    return 0
  }
  const ac = abortOnSignals()
  const settings = settingsFromEnv()
  const ctx = { signal: ac.signal, settings }
  const stage = `dflatten ${cmd}`
  try {
    switch (cmd) {
      case 'resolve': {
        if (positionals.length !== 1) throw new DflattenError('usage', `give exactly one image; ${HELP.resolve.split('\n')[0]}`)
        writeDoc(
          await resolve({
            image: positionals[0],
            base: values.base,
            tag: values.tag?.[0],
            force: values.force,
            method: values.method as MethodChoice | undefined,
            settings,
          }),
        )
        return 0
      }
      case 'mount': {
        const m = await mount(await readDoc(stage), ctx)
        // Hand the workspace to the shell running the chain; the next stage takes it from there.
        await writeOwner(m.workspace.dir, process.ppid)
        release(m.workspace.dir)
        writeDoc(m)
        return 0
      }
      case 'diff': {
        const doc = await readDoc(stage)
        tuneHeap(expectDoc(doc, 'mounted', stage).method.name)
        writeDoc(await holding(doc, () => diff(doc, ctx)))
        return 0
      }
      case 'pack': {
        if (process.stdout.isTTY) {
          throw new DflattenError('usage', 'pack writes a binary archive; redirect it to a file or pipe it into dflatten load')
        }
        const doc = expectDoc(await readDoc(stage), 'diffed', stage)
        track(doc.workspace.dir)
        if (values.keep) release(doc.workspace.dir)
        await pumpAll([Readable.from([doc]), packStage({ keep: values.keep, signal: ac.signal }), stdoutSink()], ac.signal)
        return 0
      }
      case 'load': {
        if (process.stdin.isTTY) throw new DflattenError('usage', 'load reads an image archive on stdin')
        let loaded = ''
        await pumpAll(
          [process.stdin, loadStage({ signal: ac.signal, tags: values.tag, onDone: (o) => (loaded = [...o.tags, ...o.ids].join(' ')) })],
          ac.signal,
        )
        process.stderr.write(`loaded ${[loaded, ...(values.tag ?? [])].filter(Boolean).join(' ')}\n`)
        return 0
      }
      case 'cleanup': {
        const dirs = await abandonedWorkspaces(settings)
        for (const dir of dirs) {
          const mounts = await mountsUnder(dir)
          const container = await workspaceContainer(dir)
          const held = [mounts.length ? `${mounts.length} mounts` : '', container ? `container ${container}` : ''].filter(Boolean)
          process.stdout.write(`${values['dry-run'] ? 'would remove' : 'removing'} ${dir}${held.length ? ` (${held.join(', ')})` : ''}\n`)
          if (!values['dry-run']) await destroy(dir)
        }
        if (dirs.length === 0) process.stdout.write(`nothing to clean up under ${workRoot(settings)}\n`)
        return 0
      }
    }
    throw new DflattenError('usage', `unknown stage ${cmd}`)
  } finally {
    await cleanupAll((e) => process.stderr.write(`dflatten: cleanup: ${e.message}\n`))
  }
}
