// A chain run by hand hands its work dir to the shell running it: after `dflatten diff` is killed
// with kill -9, `dflatten cleanup` keeps the dir while that shell lives, and says so (which
// process, which command); `--force` removes it, and so does naming it. A dir that is not a
// dflatten work dir is refused and left as it is.
import t, { type Test } from 'tap'
import { execa, type ResultPromise } from 'execa'
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildLarge } from '../helpers/images.js'
import { BIN, dflatten, leftovers, waitFor } from '../helpers/cli.js'

const large = await buildLarge()
const scratch = await mkdtemp(join(tmpdir(), 'dft-cleanup-e2e-'))
t.teardown(() => rm(scratch, { recursive: true, force: true }))

interface HandChain {
  shell: ResultPromise
  workDir: string
  doc: string
}

/** `dflatten resolve IMAGE | dflatten mount > m.json` in a shell that then stays, as a user's would. */
async function mountByHand(t: Test, name: string): Promise<HandChain> {
  const doc = join(scratch, `${name}.json`)
  const shell = execa('bash', ['-c', `${BIN} resolve ${large} | ${BIN} mount > ${doc} && echo mounted; read _`], { stdin: 'pipe', reject: false })
  let out = ''
  shell.stdout.on('data', (d: Buffer) => (out += d.toString()))
  t.ok(await waitFor(() => Promise.resolve(out.includes('mounted') || shell.exitCode !== null)), 'the chain mounted')
  const workDir = (JSON.parse(await readFile(doc, 'utf8')) as { workspace: { dir: string } }).workspace.dir
  return { shell, workDir, doc }
}

/** `dflatten diff < m.json`, killed with kill -9 once it writes entries. */
async function killDiff(t: Test, chain: HandChain): Promise<void> {
  const diff = execa(BIN, ['diff'], { inputFile: chain.doc, reject: false })
  const entries = join(chain.workDir, 'entries')
  const writing = await waitFor(async () => ((await stat(entries).catch(() => null))?.size ?? 0) > 0 || diff.exitCode !== null)
  t.ok(writing && diff.exitCode === null, 'diff is writing entries')
  diff.kill('SIGKILL')
  await diff
}

async function mountsOf(dir: string): Promise<number> {
  return (await readFile('/proc/mounts', 'utf8')).split('\n').filter((l) => l.includes(` ${dir}/`)).length
}

async function endShell(chain: HandChain): Promise<void> {
  chain.shell.stdin?.end()
  await chain.shell
}

t.test('after kill -9 of a hand-run diff: kept while its shell lives, and said why; --force removes it', async (t) => {
  const chain = await mountByHand(t, 'force')
  await killDiff(t, chain)
  t.equal(await mountsOf(chain.workDir), 2, 'the two mounts stay')

  const kept = await dflatten(['cleanup'])
  t.equal(kept.exitCode, 0, kept.stderr)
  const pid = chain.shell.pid ?? 0
  t.match(kept.stdout, `keeping ${chain.workDir} (2 mounts): its owner, pid ${pid} (bash -c `, 'it says what it keeps, whose it is and which command')
  t.match(kept.stdout, /is still running; --force removes it$/)
  t.notMatch(kept.stdout, /nothing to clean up/)
  t.ok(await stat(chain.workDir).catch(() => null), 'the work dir is still there')

  const dry = await dflatten(['cleanup', '--force', '--dry-run'])
  t.match(dry.stdout, `would remove ${chain.workDir} (2 mounts)`)
  t.equal(await mountsOf(chain.workDir), 2, '--dry-run removes nothing')

  const forced = await dflatten(['cleanup', '--force'])
  t.equal(forced.exitCode, 0, forced.stderr)
  t.match(forced.stdout, `removing ${chain.workDir} (2 mounts)`)
  t.same(await leftovers(), { mounts: [], dirs: [], containers: [] }, 'nothing left')
  t.match((await dflatten(['cleanup'])).stdout, /nothing to clean up/)
  await endShell(chain)
})

t.test('cleanup DIR removes that work dir, and refuses one that is not a work dir', async (t) => {
  const chain = await mountByHand(t, 'named')
  await killDiff(t, chain)
  const decoy = join(tmpdir(), 'dflatten-decoy1')
  await mkdir(decoy, { recursive: true })
  await writeFile(join(decoy, 'precious'), 'not dflatten\'s')
  t.teardown(() => rm(decoy, { recursive: true, force: true }))

  const refused = await dflatten(['cleanup', chain.workDir, decoy])
  t.equal(refused.exitCode, 2, 'refused')
  t.equal(refused.stderr, `dflatten: ${decoy} is not a dflatten work dir (no owner record); left as it is`, 'in one line')
  t.equal(await mountsOf(chain.workDir), 2, 'one DIR that is not a work dir stops them all')
  t.equal(await readFile(join(decoy, 'precious'), 'utf8'), 'not dflatten\'s', 'the decoy is untouched')

  const plain = await dflatten(['cleanup', '--force'])
  t.match(plain.stdout, `keeping ${decoy}: no owner record, and not empty: not a dflatten work dir, left as it is`, 'not even --force takes the decoy')
  t.ok(await stat(join(decoy, 'precious')).catch(() => null), 'it is still there')
  await rm(decoy, { recursive: true, force: true })

  const chain2 = await mountByHand(t, 'named2')
  const named = await dflatten(['cleanup', chain2.workDir])
  t.equal(named.exitCode, 0, named.stderr)
  t.equal(named.stdout, `removing ${chain2.workDir} (2 mounts)`, 'exactly the named dir')
  t.same(await leftovers(), { mounts: [], dirs: [], containers: [] }, 'nothing left')
  await endShell(chain)
  await endShell(chain2)
})
