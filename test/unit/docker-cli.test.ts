// How dflatten runs the docker CLI, with a stand-in CLI so nothing depends on a daemon.
import t from 'tap'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

const dir = await mkdtemp(join(tmpdir(), 'dflatten-test-cli-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))
const fake = join(dir, 'docker')
// 100 KB and exit at once: the output outlives the process, in the pipe and the stream.
await writeFile(fake, '#!/bin/sh\nhead -c 102400 /dev/zero\n')
await chmod(fake, 0o755)
process.env.DFLATTEN_DOCKER = fake
const { dockerSave } = await import('../../src/docker.js')

t.test('docker save output waits for a reader that starts late', async (t) => {
  const { child, stdout } = dockerSave('any')
  // The save method's second pass starts reading when pack reaches the first file.
  await sleep(300)
  let bytes = 0
  for await (const c of stdout) bytes += (c as Buffer).length
  await child
  t.equal(bytes, 102400, 'every byte arrives')
})
