// How dflatten runs the docker CLI, with stand-in CLIs so nothing depends on a daemon.
import t from 'tap'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  daemonInfo,
  dockerExport,
  dockerSave,
  explainFailure,
  findImage,
  finished,
  inspectImage,
  useDockerCommand,
} from '../../src/docker.js'
import { loadStage } from '../../src/stages/load.js'
import { isDflattenError } from '../../src/errors.js'

const dir = await mkdtemp(join(tmpdir(), 'dflatten-test-cli-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))
const ID = 'sha256:' + 'ab'.repeat(32)

// One stand-in CLI; FAKE_MODE says how it behaves, FAKE_DIR is where it leaves traces.
const fake = join(dir, 'docker')
await writeFile(
  fake,
  `#!/bin/bash
log() { echo "$*" >> "$FAKE_DIR/log"; }
log "$1 start"
case "$1:$FAKE_MODE" in
  save:late) head -c 102400 /dev/zero ;;
  save:fail | export:fail)
    head -c 3000000 /dev/zero
    echo "Error response from daemon: stand-in $1 failure" >&2
    exit 1 ;;
  save:down)
    echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?" >&2
    exit 1 ;;
  load:ok)
    cat > "$FAKE_DIR/loaded"
    log "load read $(wc -c < "$FAKE_DIR/loaded")"
    echo "Loaded image ID: ${ID}" ;;
  load:hang)
    # Sits out a SIGTERM, as the real CLI may while it streams; reads nothing, so writes block.
    trap '' TERM
    echo $$ > "$FAKE_DIR/pid"
    exec sleep 600 ;;
  tag:*) log "tag $2 $3" ;;
  image:*)
    echo "Error: No such image: $3" >&2
    exit 1 ;;
  info:*)
    echo "Error response from daemon: stand-in info failure" >&2
    exit 1 ;;
  *) echo "the stand-in does not know $1 in mode $FAKE_MODE" >&2; exit 3 ;;
esac
`,
)
await chmod(fake, 0o755)
useDockerCommand(fake)
process.env.FAKE_DIR = dir

const mode = async (m: string): Promise<void> => {
  process.env.FAKE_MODE = m
  await rm(join(dir, 'log'), { force: true })
  await rm(join(dir, 'pid'), { force: true })
}
const log = async (): Promise<string[]> =>
  existsSync(join(dir, 'log')) ? (await readFile(join(dir, 'log'), 'utf8')).trim().split('\n') : []

/** `n` MB of zeros, a MB at a time: more than a pipe holds, so writes into docker load block. */
const megabytes = (n: number): Readable =>
  Readable.from(
    (function* () {
      for (let i = 0; i < n; i++) yield Buffer.alloc(1024 * 1024)
    })(),
  )

const gone = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return false
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH'
  }
}

async function pidOfFake(): Promise<number> {
  for (let i = 0; i < 100 && !existsSync(join(dir, 'pid')); i++) await sleep(50)
  return Number(await readFile(join(dir, 'pid'), 'utf8'))
}

t.test('docker save output waits for a reader that starts late', async (t) => {
  await mode('late')
  const { child, stdout } = dockerSave('any')
  // The save method's second pass starts reading when pack reaches the first file.
  await sleep(300)
  let bytes = 0
  for await (const c of stdout) bytes += (c as Buffer).length
  await child
  t.equal(bytes, 102400, 'every byte arrives')
})

t.test('a docker save that fails part way ends its output in docker words, not a short read', async (t) => {
  await mode('fail')
  const s = dockerSave('any')
  let bytes = 0
  const err = await (async () => {
    for await (const c of s.stdout) bytes += (c as Buffer).length
  })().then(
    () => null,
    (e: unknown) => e,
  )
  t.ok(isDflattenError(err, 'tool-failed'), 'the reader gets an error, not an end')
  t.equal((err as Error).message, 'docker save failed: Error response from daemon: stand-in save failure')
  t.ok(bytes <= 3000000, 'no more than docker sent')
  t.equal(((await explainFailure(s, new Error('truncated tar'))) as Error).message, (err as Error).message, 'explainFailure agrees')
  await t.rejects(finished(s), { code: 'tool-failed', message: /stand-in save failure/ })
})

t.test('a docker export that fails part way says why', async (t) => {
  await mode('fail')
  const s = dockerExport('any')
  await t.rejects(pipeline(s.stdout, async function* (src: AsyncIterable<Buffer>) {
    for await (const _ of src) yield* []
  }), { code: 'tool-failed', message: 'docker export failed: Error response from daemon: stand-in export failure' })
})

t.test('a daemon that is not there: daemon-down, from a stream too', async (t) => {
  await mode('down')
  const s = dockerSave('any')
  await t.rejects(
    (async () => {
      for await (const _ of s.stdout) {
        // read to the end
      }
    })(),
    { code: 'daemon-down', message: /^the Docker daemon is not reachable: Cannot connect/ },
  )
})

t.test('a stream that the reader stops early and kills is no crash', async (t) => {
  await mode('late')
  const s = dockerSave('any')
  s.child.kill()
  await s.child.catch(() => undefined)
  await sleep(50)
  t.pass('no unhandled error')
})

t.test('docker load that succeeds: finishes after the load, tags after the whole archive', async (t) => {
  await mode('ok')
  let done: unknown = null
  const stage = loadStage({ tags: ['x/y:1', 'x/z:2'], onDone: (o) => (done = o) })
  await pipeline(megabytes(8), stage)
  t.same(done, { tags: [], ids: [ID] })
  t.same(await log(), ['load start', `load read ${8 * 1024 * 1024}`, 'tag start', `tag ${ID} x/y:1`, 'tag start', `tag ${ID} x/z:2`])
})

t.test('docker load that rejects the archive: its words, and no tag', async (t) => {
  process.env.FAKE_LOAD = 'reject'
  useDockerCommand(join(import.meta.dirname, '../fixtures', 'fake-docker.sh'))
  t.teardown(() => {
    delete process.env.FAKE_LOAD
    useDockerCommand(fake)
  })
  await mode('none')
  await t.rejects(pipeline(megabytes(4), loadStage({ tags: ['x/y:1'] })), {
    code: 'tool-failed',
    message: 'docker load failed: Error processing tar file(exit status 1): archive/tar: invalid tar header',
  })
  t.same(await log(), [], 'no tag')
})

t.test('docker load that dies part way gives its reason, not EPIPE', async (t) => {
  process.env.FAKE_LOAD = 'daemon-dies'
  useDockerCommand(join(import.meta.dirname, '../fixtures', 'fake-docker.sh'))
  t.teardown(() => {
    delete process.env.FAKE_LOAD
    useDockerCommand(fake)
  })
  for (let i = 0; i < 5; i++) {
    await t.rejects(pipeline(megabytes(16), loadStage()), {
      code: 'daemon-down',
      message: /^the Docker daemon is not reachable: Cannot connect to the Docker daemon/,
    })
  }
})

t.test('an aborted docker load is killed, with SIGKILL', async (t) => {
  await mode('hang')
  const ac = new AbortController()
  const run = pipeline(megabytes(64), loadStage({ signal: ac.signal, tags: ['x/y:1'] }))
  const pid = await pidOfFake()
  t.notOk(gone(pid), 'docker load runs')
  const start = Date.now()
  ac.abort()
  await t.rejects(run)
  t.ok(gone(pid), 'docker load is gone, though it sits out SIGTERM')
  t.ok(Date.now() - start < 2000, 'at once, not after a SIGTERM and a wait')
  t.same(await log(), ['load start'], 'no tag')
})

t.test('a destroyed load stage kills docker load and closes once it is gone', async (t) => {
  await mode('hang')
  const stage = loadStage({ tags: ['x/y:1'] })
  const fed = pipeline(megabytes(64), stage).catch((e: unknown) => e)
  const pid = await pidOfFake()
  const closed = new Promise<boolean>((r) => stage.on('close', () => r(gone(pid))))
  const start = Date.now()
  stage.destroy(new Error('another stage failed'))
  t.equal(await closed, true, 'gone by close')
  t.ok(Date.now() - start < 2000, 'at once, not after a SIGTERM and a wait')
  t.match(await fed, { message: 'another stage failed' })
  t.same(await log(), ['load start'], 'no tag')
})

t.test('a load stage destroyed before its first byte never starts docker load', async (t) => {
  await mode('ok')
  const stage = loadStage()
  stage.destroy()
  await new Promise((r) => stage.on('close', r))
  t.same(await log(), [])
})

t.test('image lookups: missing is a code, not a text', async (t) => {
  await mode('none')
  t.equal(await findImage('nope:1'), null)
  await t.rejects(inspectImage('nope:1'), { code: 'image-not-found', message: 'image not found: nope:1' })
  await t.rejects(daemonInfo(), { code: 'tool-failed', message: 'docker info failed: Error response from daemon: stand-in info failure' })
})

t.test('a docker CLI that is not there: tool-missing, for commands and streams', async (t) => {
  useDockerCommand(join(dir, 'no-such-docker'))
  t.teardown(() => useDockerCommand(fake))
  await t.rejects(daemonInfo(), { code: 'tool-missing' })
  const s = dockerSave('any')
  await t.rejects(
    (async () => {
      for await (const _ of s.stdout) {
        // read to the end
      }
    })(),
    { code: 'tool-missing' },
  )
  await t.rejects(pipeline(megabytes(1), loadStage()), { code: 'tool-missing' })
})
