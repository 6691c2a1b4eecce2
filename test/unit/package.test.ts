// What `npm pack` would publish, built from this checkout into a temp dir: the CLI and the
// compiled library with its types, and nothing else (no tests, no benchmark, no source maps
// pointing at sources the package does not hold).
import t from 'tap'
import { cp, mkdtemp, readFile, readdir, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { execa } from 'execa'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

async function sources(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && e.name.endsWith('.ts')) out.push(relative(ROOT, join(e.parentPath, e.name)))
  }
  return out.sort()
}

t.test('the package holds the CLI and the built library, and nothing else', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'dflatten-test-pack-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  for (const f of ['package.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'bin']) await cp(join(ROOT, f), join(dir, f), { recursive: true })
  await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'))
  await execa(join(ROOT, 'node_modules/.bin/tsc'), ['-p', join(ROOT, 'tsconfig.json'), '--outDir', join(dir, 'dist')])

  const r = await execa('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: dir,
    env: { npm_config_cache: join(dir, '.npm'), npm_config_update_notifier: 'false' },
  })
  const [pack] = JSON.parse(r.stdout) as Array<{ files: Array<{ path: string }> }>
  const files = pack.files.map((f) => f.path).sort()

  for (const f of ['package.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'bin/dflatten.js', 'dist/src/index.js', 'dist/src/index.d.ts']) {
    t.ok(files.includes(f), `holds ${f}`)
  }
  const built = (await sources(join(ROOT, 'src'))).map((s) => 'dist/' + s.replace(/\.ts$/, ''))
  t.same(built.filter((b) => !files.includes(b + '.js') || !files.includes(b + '.d.ts')), [], 'every module of src/, compiled, with its types')
  const stray = files.filter((f) => !/^(package\.json|README\.md|LICENSE|CHANGELOG\.md|bin\/dflatten\.js|dist\/src\/.+\.(js|d\.ts))$/.test(f))
  t.same(stray, [], 'no tests, no benchmark, no sources, no source maps')

  const bin = await readFile(join(dir, 'bin/dflatten.js'), 'utf8')
  for (const m of bin.matchAll(/from '\.\.\/(.+?)'/g)) t.ok(files.includes(m[1]), `bin/dflatten.js imports ${m[1]}, which is there`)
  const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as { main: string; types: string; exports: Record<string, string> }
  for (const f of [pkg.main, pkg.types, pkg.exports['.']]) t.ok(files.includes(f.replace(/^\.\//, '')), `package.json points at ${f}, which is there`)
})
