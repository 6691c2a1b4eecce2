/**
 * How the stage commands pass their documents: one JSON document on stdin, one on stdout. The
 * workspace a document carries is handed from command to command; a stage that holds one and
 * fails removes it.
 */
import { parseDoc, type StageDoc } from '../plan.js'
import { release, track } from '../cleanup.js'
import { DflattenError } from '../errors.js'

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(Buffer.from(c as Buffer))
  return Buffer.concat(chunks).toString('utf8')
}

/** The previous stage's document from stdin; `stage` is this command ('dflatten mount'). */
export async function readDoc(stage: string): Promise<unknown> {
  if (process.stdin.isTTY) {
    throw new DflattenError('bad-input', `${stage} reads the previous stage's output on stdin; see '${stage} --help'`)
  }
  return parseDoc(await readAll(process.stdin), stage)
}

export function writeDoc(doc: StageDoc): void {
  process.stdout.write(JSON.stringify(doc, null, 2) + '\n')
}

/**
 * A stage that got a workspace from the previous one: it holds it while it works (so a failure
 * or a signal removes it) and hands it on when it succeeds.
 */
export async function holding<T>(doc: unknown, work: () => Promise<T>): Promise<T> {
  const dir = (doc as { workspace?: { dir?: string } } | null | undefined)?.workspace?.dir
  if (dir) track(dir)
  const out = await work()
  if (dir) release(dir)
  return out
}
