// The command line's option parsing, per command, with no daemon and no root: what each command
// accepts, what it refuses (as a usage error, exit 2), its --help, and the environment mapping.
import t, { type Test } from 'tap'
import { execa } from 'execa'
import { readFile, readdir } from 'node:fs/promises'
import { dirname, join, relative, resolve as resolvePath } from 'node:path'
import { fileURLToPath } from 'node:url'
import { isDflattenError } from '../../src/errors.js'
import { allMethods } from '../../src/methods/index.js'
import { optionHelp, type OptionTable } from '../../src/cli/options.js'
import { FLATTEN_OPTIONS, USAGE, parseFlattenArgs } from '../../src/cli/flatten.js'
import { RESOLVE_HELP, RESOLVE_OPTIONS, parseResolveArgs } from '../../src/cli/resolve.js'
import { MOUNT_HELP, MOUNT_OPTIONS, parseMountArgs } from '../../src/cli/mount.js'
import { DIFF_HELP, DIFF_OPTIONS, parseDiffArgs } from '../../src/cli/diff.js'
import { PACK_HELP, PACK_OPTIONS, parsePackArgs } from '../../src/cli/pack.js'
import { LOAD_HELP, LOAD_OPTIONS, parseLoadArgs } from '../../src/cli/load.js'
import { CLEANUP_HELP, CLEANUP_OPTIONS, parseCleanupArgs } from '../../src/cli/cleanup.js'
import { methodChoice, methodNames } from '../../src/cli/methods.js'
import { settingsFromEnv } from '../../src/cli/env.js'
import { STAGE_COMMANDS } from '../../src/cli/main.js'
import { BIN } from '../helpers/cli.js'

/** Assert that `fn` throws a usage error whose message matches. */
function refuses(t: Test, fn: () => unknown, message: RegExp, what: string): void {
  try {
    fn()
    t.fail(`${what}: accepted`)
  } catch (e) {
    t.ok(isDflattenError(e, 'usage'), `${what}: a usage error`)
    t.match((e as Error).message, message, `${what}: says why`)
    t.notMatch((e as Error).message, /\n/, `${what}: in one line`)
  }
}

const COMMANDS: Array<{ name: string; table: OptionTable; help: string; parse: (argv: string[]) => unknown; needs: string[] }> = [
  { name: 'dflatten', table: FLATTEN_OPTIONS, help: USAGE, parse: parseFlattenArgs, needs: ['img:1'] },
  { name: 'dflatten resolve', table: RESOLVE_OPTIONS, help: RESOLVE_HELP, parse: parseResolveArgs, needs: ['img:1'] },
  { name: 'dflatten mount', table: MOUNT_OPTIONS, help: MOUNT_HELP, parse: parseMountArgs, needs: [] },
  { name: 'dflatten diff', table: DIFF_OPTIONS, help: DIFF_HELP, parse: parseDiffArgs, needs: [] },
  { name: 'dflatten pack', table: PACK_OPTIONS, help: PACK_HELP, parse: parsePackArgs, needs: [] },
  { name: 'dflatten load', table: LOAD_OPTIONS, help: LOAD_HELP, parse: parseLoadArgs, needs: [] },
  { name: 'dflatten cleanup', table: CLEANUP_OPTIONS, help: CLEANUP_HELP, parse: parseCleanupArgs, needs: [] },
]

/** A value each string option accepts. */
const SAMPLE: Record<string, string> = { tag: 'out:1', base: 'scratch', original: 'img:1', method: 'save', output: '/tmp/x.tar', platform: 'linux/arm64', 'cert-dir': '/etc/certs', 'insecure-registry': 'reg:5000', message: 'squashed', compress: 'gzip' }
/** Options parsed into numbers or tied to another option: test/unit/squash.test.ts covers them. */
const CHECKED_ELSEWHERE = new Set(['layers', 'top'])

t.test('every command lists each of its options in its --help, and every stage has a command', async (t) => {
  for (const c of COMMANDS) {
    for (const o of c.table) {
      t.match(c.help, `--${o.name}`, `${c.name} --help shows --${o.name}`)
      if (o.short) t.match(c.help, `-${o.short}, --${o.name}`, `${c.name} --help shows -${o.short}`)
    }
    t.match(c.help, /^Usage: /, `${c.name} --help starts with its usage`)
    t.match(c.help, /\nOptions:\n/, `${c.name} --help has an Options: block`)
  }
  t.same(Object.keys(STAGE_COMMANDS), ['resolve', 'mount', 'diff', 'pack', 'load', 'cleanup'])
  t.equal(optionHelp([{ name: 'tag', short: 't', type: 'string', value: 'NAME[:TAG]', help: 'a\nb' }]), `  -t, --tag NAME[:TAG]    a\n${' '.repeat(26)}b`)
})

t.test('every command accepts each of its options, long and short', async (t) => {
  for (const c of COMMANDS) {
    for (const o of c.table) {
      if (o.name === 'help' || o.name === 'version' || (o.name === 'original' && c.name === 'dflatten') || CHECKED_ELSEWHERE.has(o.name)) continue
      const forms = [`--${o.name}`, ...(o.short ? [`-${o.short}`] : [])]
      for (const form of forms) {
        const argv = o.type === 'string' ? [...c.needs, form, SAMPLE[o.name]] : [...c.needs, form]
        const got = c.parse(argv) as Record<string, unknown>
        const want = o.type === 'boolean' ? true : o.multiple ? [SAMPLE[o.name]] : SAMPLE[o.name]
        t.same(got[o.name], want, `${c.name} ${argv.join(' ')}`)
      }
    }
    t.same(c.parse(['--help']), { help: true }, `${c.name} --help`)
    t.same(c.parse(['-h']), { help: true }, `${c.name} -h`)
  }
  t.same(parseFlattenArgs(['--original', 'img:1', '--json']), { image: 'img:1', json: true, method: undefined }, '--original names the image')
  t.same(parseFlattenArgs(['-o', 'img:1']), { image: 'img:1', method: undefined }, '-o names the image')
  t.same(parseFlattenArgs(['-V']), { version: true })
  t.same(parseFlattenArgs([]), { noImage: true }, 'no image: the usage is shown')
  t.same(parseFlattenArgs(['img:1', '--output=-']), { image: 'img:1', output: '-', method: undefined }, "--output - (stdout) is a value")
  t.same(parseFlattenArgs(['img:1', '--output', '-']), { image: 'img:1', output: '-', method: undefined })
  t.same(parseFlattenArgs(['-qvf', 'img:1']), { image: 'img:1', quiet: true, verbose: true, force: true, method: undefined }, 'short flags group')
  t.same(parseFlattenArgs(['-tout:2', 'img:1']), { image: 'img:1', tag: 'out:2', method: undefined }, 'a short value may be attached')
  t.same(parseFlattenArgs(['--', '-odd-image']), { image: '-odd-image', method: undefined }, 'after --, an argument is an image')
  t.same(parseLoadArgs(['-t', 'a:1', '--tag', 'b:2']), { tag: ['a:1', 'b:2'] }, 'load -t repeats')
  t.same(parseResolveArgs(['img:1', '-t', 'x:1', '-b', 'base:1', '-m', 'overlay', '-f']), { image: 'img:1', tag: 'x:1', base: 'base:1', method: 'overlay', force: true })
  t.same(parseCleanupArgs(['/tmp/dflatten-abcdef', '-f', '/tmp/dflatten-ghijkl']), { force: true, 'dry-run': undefined, dirs: ['/tmp/dflatten-abcdef', '/tmp/dflatten-ghijkl'] }, 'cleanup DIR...')
})

t.test('an option a command does not have is refused', async (t) => {
  for (const c of COMMANDS) {
    refuses(t, () => c.parse([...c.needs, '--bogus']), /^unknown option --bogus; see '.+ --help'$/, `${c.name} --bogus`)
    refuses(t, () => c.parse([...c.needs, '-Z']), /^unknown option -Z/, `${c.name} -Z`)
  }
  // Each stage has only its own options: what another stage takes is unknown here.
  refuses(t, () => parseMountArgs(['--keep']), /unknown option --keep/, 'mount --keep')
  refuses(t, () => parseDiffArgs(['-t', 'x:1']), /unknown option -t/, 'diff -t')
  refuses(t, () => parseCleanupArgs(['--keep']), /unknown option --keep/, 'cleanup --keep')
  refuses(t, () => parseResolveArgs(['img:1', '--output', 'x']), /unknown option --output/, 'resolve --output')
  refuses(t, () => parseResolveArgs(['img:1', '-V']), /unknown option -V/, 'resolve -V')
  refuses(t, () => parseLoadArgs(['--dry-run']), /unknown option --dry-run/, 'load --dry-run')
  refuses(t, () => parseFlattenArgs(['img:1', '--keep']), /unknown option --keep/, 'flatten --keep')
  refuses(t, () => parseFlattenArgs(['-qx', 'img:1']), /unknown option -x/, 'an unknown flag in a group')
  refuses(t, () => parseFlattenArgs(['img:1', '--h']), /unknown option --h/, 'a short name is not a long one')
})

t.test('extra arguments are refused', async (t) => {
  refuses(t, () => parseFlattenArgs(['a:1', 'b:1']), /takes one image.*unexpected argument "b:1"/, 'two images')
  refuses(t, () => parseFlattenArgs(['-o', 'a:1', 'b:1']), /unexpected argument "b:1"/, '--original and an image')
  refuses(t, () => parseResolveArgs(['a:1', 'b:1', 'c:1']), /unexpected arguments "b:1" "c:1"/, 'resolve with three')
  refuses(t, () => parseResolveArgs([]), /give exactly one image; Usage: dflatten resolve IMAGE/, 'resolve with none')
  // cleanup's arguments are the work dirs to remove.
  for (const c of COMMANDS.filter((c) => c.needs.length === 0 && c.name !== 'dflatten cleanup')) {
    refuses(t, () => c.parse(['stray']), new RegExp(`^${c.name} takes no arguments.*unexpected argument "stray"`), `${c.name} stray`)
  }
})

t.test('a missing value is refused', async (t) => {
  for (const c of COMMANDS) {
    for (const o of c.table.filter((o) => o.type === 'string')) {
      refuses(t, () => c.parse([...c.needs, `--${o.name}`]), new RegExp(`--${o.name} needs a value`), `${c.name} --${o.name} at the end`)
      refuses(t, () => c.parse([...c.needs, `--${o.name}=`]), /needs a value/, `${c.name} --${o.name}=`)
    }
  }
  refuses(t, () => parseFlattenArgs(['img:1', '-t', '--json']), /--tag needs a value.*not the option --json/, 'an option is not a value')
  refuses(t, () => parseLoadArgs(['-t', '-h']), /--tag needs a value/, 'load -t -h')
  refuses(t, () => parseFlattenArgs(['img:1', '--json=yes']), /--json takes no value/, 'a flag given a value')
  refuses(t, () => parsePackArgs(['--keep=1']), /--keep takes no value/, 'pack --keep=1')
  t.same(parseFlattenArgs(['img:1', '--tag=-x']), { image: 'img:1', tag: '-x', method: undefined }, 'a dash value, attached, is taken')
})

t.test('--method is checked against the methods', async (t) => {
  t.same(methodNames(), allMethods().map((m) => m.name), 'the methods the library has')
  for (const m of ['auto', ...methodNames()]) {
    t.equal((parseFlattenArgs(['img:1', '-m', m]) as { method?: string }).method, m, `flatten -m ${m}`)
    t.equal((parseResolveArgs(['img:1', '--method', m]) as { method?: string }).method, m, `resolve --method ${m}`)
  }
  refuses(t, () => parseFlattenArgs(['img:1', '-m', 'fast']), /^unknown method fast; use auto, overlay, overlay-copy, snapshots, save, registry$/, 'flatten -m fast')
  refuses(t, () => parseResolveArgs(['img:1', '--method=Overlay']), /unknown method Overlay/, 'methods are case-sensitive')
  t.equal(methodChoice(undefined), undefined, 'no --method: the library picks')
})

t.test('the environment maps onto settings, and only there', async (t) => {
  t.same(settingsFromEnv({}), {}, 'nothing set: no settings')
  t.same(
    settingsFromEnv({ DFLATTEN_TMPDIR: '/big', DFLATTEN_DOCKER: '/opt/docker', DFLATTEN_RSYNC: '/opt/rsync', DFLATTEN_SAVE_CONTENT: 'save', HOME: '/root' }),
    { workRoot: '/big', docker: '/opt/docker', rsync: '/opt/rsync', saveContent: 'save' },
  )
  t.same(settingsFromEnv({ DFLATTEN_SAVE_CONTENT: 'export' }), { saveContent: 'export' })
  t.same(settingsFromEnv({ DFLATTEN_TMPDIR: '', DFLATTEN_DOCKER: '' }), {}, 'an empty variable counts as unset')
  t.same(settingsFromEnv({ TMPDIR: '/x' }), {}, "TMPDIR stays the OS's business (os.tmpdir)")
  refuses(t, () => settingsFromEnv({ DFLATTEN_SAVE_CONTENT: 'yes' }), /DFLATTEN_SAVE_CONTENT=yes is not a content source/, 'an unknown content source')

  // No module in src but src/cli/env.ts reads the environment (the library's own readings are
  // tracked in issue 12; other helpers remove them).
  const here = dirname(fileURLToPath(import.meta.url))
  for (const file of await sources(resolvePath(here, '../../src/cli'))) {
    const text = await readFile(file, 'utf8')
    if (!file.endsWith('/env.ts')) t.notMatch(text, /process\.env/, `${relative(here, file)} does not read process.env`)
  }
})

/** Every .ts file under dir. */
async function sources(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...(await sources(p)))
    else if (e.name.endsWith('.ts')) out.push(p)
  }
  return out
}

t.test('no import cycle in src', async (t) => {
  const root = resolvePath(dirname(fileURLToPath(import.meta.url)), '../../src')
  const files = await sources(root)
  const graph = new Map<string, string[]>()
  for (const f of files) {
    const text = await readFile(f, 'utf8')
    // Type-only imports vanish at run time but still tie the modules together; count them too.
    const deps = [...text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+'(\.{1,2}\/[^']+)\.js'/gm)].map((m) => resolvePath(dirname(f), `${m[1]}.ts`))
    graph.set(f, deps)
  }
  const cycles: string[] = []
  const state = new Map<string, 'open' | 'done'>()
  const walk = (f: string, path: string[]): void => {
    if (state.get(f) === 'done') return
    if (state.get(f) === 'open') {
      cycles.push([...path.slice(path.indexOf(f)), f].map((p) => relative(root, p)).join(' -> '))
      return
    }
    state.set(f, 'open')
    for (const d of graph.get(f) ?? []) walk(d, [...path, f])
    state.set(f, 'done')
  }
  for (const f of files) walk(f, [])
  t.ok(files.length > 20, 'the import graph was read')
  t.ok([...graph.values()].some((d) => d.length > 0), 'and has edges')
  t.same(cycles, [], 'no module imports itself through others')
})

t.test('the executable: --help, --version and usage errors need no daemon', async (t) => {
  const run = async (args: string[], env: Record<string, string> = {}) => {
    const r = await execa(BIN, args, { reject: false, env, stdin: 'ignore' })
    return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr }
  }
  const help = await run(['--help'])
  t.equal(help.code, 0)
  t.equal(help.stdout.trim(), USAGE, 'dflatten --help prints the usage')
  const version = await run(['--version'])
  t.equal(version.code, 0)
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  t.equal(version.stdout.trim(), `dflatten ${pkg.version}`)
  for (const [stage, text] of [['resolve', RESOLVE_HELP], ['pack', PACK_HELP], ['cleanup', CLEANUP_HELP]] as const) {
    const r = await run([stage, '--help'])
    t.equal(r.code, 0, `${stage} --help`)
    t.equal(r.stdout.trim(), text, `${stage} --help prints its own help`)
  }
  for (const args of [['img:1', '--bogus'], ['img:1', '-t'], ['a:1', 'b:1'], ['resolve', 'img:1', '--keep'], ['mount', 'x'], ['img:1', '-m', 'fast']]) {
    const r = await run(args)
    t.equal(r.code, 2, `${args.join(' ')}: exit 2`)
    t.match(r.stderr, /^dflatten: [^\n]+$/, `${args.join(' ')}: one line`)
    t.equal(r.stdout, '', `${args.join(' ')}: nothing on stdout`)
  }
  const env = await run(['--help'], { DFLATTEN_SAVE_CONTENT: 'yes' })
  t.equal(env.code, 2, 'a bad DFLATTEN_SAVE_CONTENT is a usage error')
  t.match(env.stderr, /^dflatten: DFLATTEN_SAVE_CONTENT=yes/)
  const none = await run([])
  t.equal(none.code, 2, 'no image: exit 2')
  t.match(none.stderr, /^dflatten: give exactly one image to flatten\nUsage: dflatten/, 'and the usage')
})
