// Test images, built locally (no registry here): a busybox base made with `docker import` and
// images on top of it made with the classic builder, whose layers are plain overlay2 diffs.
//
// Every builder is idempotent: it skips the build when the tag exists, carries the label
// dft.recipe of the current recipe, and (for layered images) still sits on the current base.
// Pass { force: true }, or set DFT_REBUILD=1, to build again from scratch.
import { createHash } from 'node:crypto'
import { chmod, chown, link, lchown, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { docker, imageExists, imageId, inspect } from './docker.js'

export interface BuildOptions {
  /** Build even if an up-to-date image exists (only this image, not the base below it). */
  force?: boolean
}

export const BASE = 'dft-base:1'
export const CORNER = 'dft-corner:1'
export const MANY = 'dft-many:1'
export const SIMPLE = 'dft-simple:1'
export const BULK = 'dft-bulk:1'
export const LARGE = 'dft-large:1'
export const HIDDEN = 'dft-hidden:1'

const RECIPE_LABEL = 'dft.recipe'
/** Every file of the base has this mtime, so the base layer's bytes (its diff id) are stable. */
export const BASE_MTIME = 1600000000

// ---------------------------------------------------------------------------------------------
// Base

type Spec =
  | { path: string; kind: 'dir'; mode?: number; owner?: [number, number] }
  | { path: string; kind: 'file'; content: string; mode?: number; owner?: [number, number] }
  | { path: string; kind: 'symlink'; target: string }
  | { path: string; kind: 'hardlink'; target: string }

const BASE_SPEC: Spec[] = [
  { path: 'bin', kind: 'dir' },
  { path: 'etc', kind: 'dir' },
  { path: 'etc/passwd', kind: 'file', content: 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' },
  { path: 'etc/group', kind: 'file', content: 'root:x:0:\napp:x:1000:\n' },
  { path: 'etc/app', kind: 'dir' },
  { path: 'etc/app/conf', kind: 'file', content: 'setting=1\n' },
  { path: 'etc/app/extra', kind: 'file', content: 'extra\n' },
  { path: 'etc/app/sub', kind: 'dir' },
  { path: 'etc/app/sub/deep', kind: 'file', content: 'deep\n' },
  { path: 'data', kind: 'dir' },
  { path: 'data/old', kind: 'dir' },
  { path: 'data/old/a', kind: 'file', content: 'old a\n' },
  { path: 'data/old/b', kind: 'file', content: 'old b\n' },
  { path: 'data/file2dir', kind: 'file', content: 'a file that becomes a dir\n' },
  { path: 'data/emptied', kind: 'dir' },
  { path: 'data/emptied/a', kind: 'file', content: 'in a dir a later layer empties\n' },
  { path: 'data/emptied/sub', kind: 'dir' },
  { path: 'data/emptied/sub/b', kind: 'file', content: 'deeper in it\n' },
  { path: 'data/dir2file', kind: 'dir' },
  { path: 'data/dir2file/inner', kind: 'file', content: 'inside a dir that becomes a file\n' },
  { path: 'data/flip', kind: 'file', content: 'file, then dir, then file\n' },
  { path: 'data/flop', kind: 'dir' },
  { path: 'data/flop/inner', kind: 'file', content: 'dir, then file, then dir\n' },
  { path: 'data/tomove', kind: 'dir' },
  { path: 'data/tomove/moved-file', kind: 'file', content: 'renamed with its dir\n' },
  { path: 'data/pair1', kind: 'file', content: 'a hardlinked pair\n' },
  { path: 'data/pair2', kind: 'hardlink', target: 'data/pair1' },
  { path: 'data/pair-broken1', kind: 'file', content: 'a pair that a later write splits\n' },
  { path: 'data/pair-broken2', kind: 'hardlink', target: 'data/pair-broken1' },
  { path: 'data/hl-base', kind: 'file', content: 'hardlinked from a later layer\n' },
  { path: 'data/private', kind: 'file', content: 'secret\n', mode: 0o600, owner: [1000, 1000] },
  { path: 'data/mode-only', kind: 'file', content: 'only the mode changes\n' },
  { path: 'data/owner-only', kind: 'file', content: 'only the owner changes\n' },
  { path: 'data/samesize', kind: 'file', content: 'AAAAAAAAAAAAAAAA\n' },
  { path: 'data/link', kind: 'symlink', target: 'old/a' },
  { path: 'data/link2', kind: 'symlink', target: '../etc/app/conf' },
  { path: 'usr', kind: 'dir' },
  { path: 'usr/share', kind: 'dir' },
  { path: 'usr/share/doc', kind: 'dir' },
  { path: 'usr/share/doc/x', kind: 'dir' },
  { path: 'usr/share/doc/x/README', kind: 'file', content: 'readme\n' },
  { path: 'usr/share/doc/x/COPYING', kind: 'file', content: 'copying\n' },
  { path: 'home', kind: 'dir' },
  { path: 'home/app', kind: 'dir', owner: [1000, 1000] },
  { path: 'home/app/.profile', kind: 'file', content: 'export PS1=app\n', owner: [1000, 1000] },
  { path: 'root', kind: 'dir', mode: 0o700 },
  { path: 'tmp', kind: 'dir', mode: 0o1777 },
  { path: 'run', kind: 'dir' },
  { path: 'var', kind: 'dir' },
]

const BUSYBOX = '/bin/busybox'

async function sha256File(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex')
}

function recipeHash(...parts: unknown[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 16)
}

// DFT_REBUILD=1 rebuilds each image once per process, not on every call that needs it.
const rebuiltByEnv = new Set<string>()

function isForced(ref: string, opts: BuildOptions): boolean {
  if (opts.force === true) return true
  if (process.env.DFT_REBUILD !== '1' || rebuiltByEnv.has(ref)) return false
  rebuiltByEnv.add(ref)
  return true
}

async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  try {
    return await fn(dir)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** Same recipe label, and (when given) the parent's layers are a prefix of this image's. */
async function upToDate(ref: string, recipe: string, parent?: string): Promise<boolean> {
  if (!(await imageExists(ref))) return false
  const img = await inspect(ref)
  if (img.Config?.Labels?.[RECIPE_LABEL] !== recipe) return false
  if (parent === undefined) return true
  const below = (await inspect(parent)).RootFS.Layers ?? []
  const layers = img.RootFS.Layers ?? []
  return layers.length > below.length && below.every((l, i) => layers[i] === l)
}

// One build per image at a time within a process; callers share the pending promise.
const pending = new Map<string, Promise<string>>()

async function ensure(ref: string, opts: BuildOptions, recipe: () => Promise<string>, parent: string | undefined, build: (recipe: string, force: boolean) => Promise<void>): Promise<string> {
  const force = isForced(ref, opts)
  const running = pending.get(ref)
  if (running !== undefined && !force) return running
  const job = (async () => {
    const r = await recipe()
    if (!force && (await upToDate(ref, r, parent))) return ref
    const before = (await imageExists(ref)) ? await imageId(ref) : null
    await build(r, force)
    // The replaced image is ours: drop it unless something still uses it (rmi then refuses).
    if (before !== null && before !== (await imageId(ref))) {
      await execa('docker', ['image', 'rm', before], { reject: false })
    }
    return ref
  })()
  pending.set(ref, job)
  try {
    return await job
  } finally {
    if (pending.get(ref) === job) pending.delete(ref)
  }
}

async function writeSpec(root: string, spec: Spec[]): Promise<void> {
  for (const s of spec) {
    const p = join(root, s.path)
    switch (s.kind) {
      case 'dir':
        await mkdir(p)
        await chmod(p, s.mode ?? 0o755)
        if (s.owner) await chown(p, ...s.owner)
        break
      case 'file':
        await writeFile(p, s.content)
        await chmod(p, s.mode ?? 0o644)
        if (s.owner) await chown(p, ...s.owner)
        break
      case 'symlink':
        await symlink(s.target, p)
        await lchown(p, 0, 0)
        break
      case 'hardlink':
        await link(join(root, s.target), p)
        break
    }
  }
}

/** dft-base:1: busybox with every applet in /bin, plus content that dft-corner deletes or changes. */
export async function buildBase(opts: BuildOptions = {}): Promise<string> {
  return ensure(BASE, opts, async () => recipeHash('base', 1, BASE_SPEC, BASE_MTIME, await sha256File(BUSYBOX)), undefined, async (recipe) => {
    await withTempDir('dft-base-', async (dir) => {
      const root = join(dir, 'root')
      await mkdir(root)
      await chmod(root, 0o755) // the image's / gets this mode
      await writeSpec(root, BASE_SPEC)
      await writeFile(join(root, 'bin/busybox'), await readFile(BUSYBOX))
      await chmod(join(root, 'bin/busybox'), 0o755)
      const applets = (await execa(BUSYBOX, ['--list'])).stdout.split('\n').filter((a) => a !== '' && a !== 'busybox')
      for (const a of applets) await symlink('busybox', join(root, 'bin', a))
      await execa('find', [root, '-exec', 'touch', '-h', '-d', `@${BASE_MTIME}`, '{}', '+'])
      // Sorted, numeric, fixed mtimes, gnu format (no atime/ctime records): same bytes each time.
      const archive = join(dir, 'base.tar')
      await execa('tar', ['-C', root, '--sort=name', '--numeric-owner', '--format=gnu', '-cf', archive, '.'])
      await docker(['import', '--change', `LABEL ${RECIPE_LABEL}=${recipe}`, archive, BASE])
    })
  })
}

// ---------------------------------------------------------------------------------------------
// Layered images

async function buildDockerfile(ref: string, dockerfile: string, force: boolean, files: (ctx: string) => Promise<void> = async () => {}): Promise<void> {
  await withTempDir('dft-ctx-', async (ctx) => {
    await writeFile(join(ctx, 'Dockerfile'), dockerfile)
    await files(ctx)
    await docker(['build', '--network', 'none', '--force-rm', ...(force ? ['--no-cache'] : []), '-t', ref, ctx], {
      env: { DOCKER_BUILDKIT: '0' },
    })
  })
}

function withRecipe(dockerfile: string, recipe: string): string {
  return `${dockerfile}LABEL ${RECIPE_LABEL}=${recipe}\n`
}

const LONG_COMPONENT = 'L'.repeat(210)
const DEEP_DIRS = ['d'.repeat(100), 'e'.repeat(100), 'f'.repeat(100)]
const LONG_TARGET = '/' + 't'.repeat(150) + '/target'

/** Where each corner case of dft-corner:1 lives. Paths are JS strings; wrap them in key(). */
export const CORNER_PATHS = {
  deletedFile: '/usr/share/doc/x/README',
  keptSibling: '/usr/share/doc/x/COPYING',
  deletedDir: '/data/old',
  opaqueDir: '/etc/app',
  opaqueNew: '/etc/app/conf2',
  opaqueGone: ['/etc/app/conf', '/etc/app/extra', '/etc/app/sub'],
  /** Replaced by an empty dir: an opaque dir with nothing in it in its layer. */
  emptiedDir: '/data/emptied',
  emptiedGone: ['/data/emptied/a', '/data/emptied/sub'],
  fileToDir: '/data/file2dir',
  dirToFile: '/data/dir2file',
  fileDirFile: '/data/flip',
  dirFileDir: '/data/flop',
  renamedDirFrom: '/data/tomove',
  renamedDirTo: '/data/moved',
  addedThenDeleted: '/corner/ephemeral',
  hardlinkLater: ['/corner/hl-dst', '/corner/hl-src'],
  hardlinkToBase: ['/corner/hl-to-base', '/data/hl-base'],
  baseHardlinkPair: ['/data/pair1', '/data/pair2'],
  splitPair: ['/data/pair-broken1', '/data/pair-broken2'],
  modeOnly: '/data/mode-only',
  ownerOnly: '/data/owner-only',
  sameSizeSameMtimeBase: '/data/samesize',
  sameSizeSameMtimeLayers: '/corner/samesize',
  symlinkRetargeted: '/data/link2',
  fifo: '/corner/special/fifo',
  charDevice: '/corner/special/null',
  blockDevice: '/corner/special/loop200',
  longComponent: `/corner/names/${LONG_COMPONENT}`,
  longPath: `/corner/names/deep/${DEEP_DIRS.join('/')}/leaf.txt`,
  unicode: ['/corner/names/café', '/corner/names/日本語.txt', '/corner/names/emoji-🚀.txt'],
  unicodeHardlink: ['/corner/names/café', '/corner/names/café-hardlink'],
  space: '/corner/names/with space',
  edgeSpaces: '/corner/names/  edge spaces  ',
  newline: '/corner/names/with\nnewline',
  backslash: '/corner/names/back\\slash',
  invalidUtf8: Buffer.concat([Buffer.from('/corner/names/bad-'), Buffer.from([0xff]), Buffer.from('-name')]),
  symlinkAbsolute: '/corner/links/abs',
  symlinkRelative: '/corner/links/rel',
  symlinkDangling: '/corner/links/dangling',
  symlinkToDir: '/corner/links/dirlink',
  symlinkLongTarget: '/corner/links/long-target',
  longTarget: LONG_TARGET,
  tmpFile: '/tmp/tmpfile',
  runFile: '/run/app/pid',
  setuid: '/corner/modes/setuid',
  setgid: '/corner/modes/setgid',
  sgidDir: '/corner/modes/sgid-dir',
  stickyDir: '/corner/modes/sticky',
  noPerms: '/corner/modes/none',
  emptyFile: '/corner/empty',
  emptyDir: '/corner/emptydir',
  random5M: '/corner/random.bin',
  bigIds: '/corner/bigid',
  hugeIds: '/corner/hugeid',
  volumeSeed: '/vol/seed',
  workdir: '/corner/workdir',
  xattrDir: '/corner/xattrs',
  xattrText: '/corner/xattrs/text',
  xattrBinary: '/corner/xattrs/binary',
  xattrCap: '/corner/xattrs/cap',
} as const

/** The xattrs set on the host before `ADD xattrs.tar /`. Values as hex. */
export const XATTRS_ADDED = {
  dir: { 'user.dft.dir': Buffer.from('on a directory').toString('hex') },
  text: { 'user.dft.text': Buffer.from('hello xattr').toString('hex') },
  // NUL, 0xff and a lone continuation byte: not UTF-8
  binary: { 'user.dft.binary': '00ff7f80c328' },
  // what `setcap cap_net_bind_service=+ep` writes: VFS_CAP_REVISION_2, effective, bit 10
  cap: { 'security.capability': '0100000200040000000000000000000000000000' },
} as const

const CORNER_DOCKERFILE = `FROM ${BASE}
# deletions, an opaque dir, type changes, a renamed dir; files for the later layers
RUN set -e; \\
    rm /usr/share/doc/x/README; \\
    rm -r /data/old; \\
    rm -r /data/emptied && mkdir /data/emptied; \\
    rm -r /etc/app && mkdir /etc/app && echo 'setting=2' > /etc/app/conf2; \\
    rm /data/file2dir && mkdir /data/file2dir && echo inside > /data/file2dir/inside; \\
    rm -r /data/dir2file && echo 'now a file' > /data/dir2file; \\
    rm /data/flip && mkdir /data/flip && echo x > /data/flip/x; \\
    rm -r /data/flop && echo 'flop is a file for one layer' > /data/flop; \\
    mv /data/tomove /data/moved; \\
    mkdir /corner; \\
    echo 'deleted in the next layer' > /corner/ephemeral; \\
    echo 'hardlinked in the next layer' > /corner/hl-src; \\
    printf 'first-version-16' > /corner/samesize && touch -d @1600000000 /corner/samesize
# back again; a file deleted, hardlinks made, mode and owner only, same size and mtime
RUN set -e; \\
    rm -r /data/flip && echo 'flip is a file again' > /data/flip; \\
    rm /data/flop && mkdir /data/flop && echo again > /data/flop/again; \\
    rm /corner/ephemeral; \\
    ln /corner/hl-src /corner/hl-dst; \\
    ln /data/hl-base /corner/hl-to-base; \\
    chmod 0755 /data/mode-only; \\
    chown 1234:5678 /data/owner-only; \\
    printf 'BBBBBBBBBBBBBBBB\\n' > /data/samesize && touch -d @1600000000 /data/samesize; \\
    printf 'secnd-version-16' > /corner/samesize && touch -d @1600000000 /corner/samesize; \\
    echo 'appended to one name of a hardlinked pair' >> /data/pair-broken1; \\
    rm /data/link2 && ln -s /etc/app/conf2 /data/link2
# special files, modes, owners, sizes
RUN set -e; \\
    mkdir /corner/special /corner/modes; \\
    mkfifo /corner/special/fifo; \\
    mknod /corner/special/null c 1 3; \\
    mknod /corner/special/loop200 b 7 200; \\
    echo suid > /corner/modes/setuid && chmod 4755 /corner/modes/setuid; \\
    echo sgid > /corner/modes/setgid && chmod 2755 /corner/modes/setgid; \\
    mkdir /corner/modes/sgid-dir && chmod 2775 /corner/modes/sgid-dir; \\
    mkdir /corner/modes/sticky && chmod 1777 /corner/modes/sticky; \\
    echo none > /corner/modes/none && chmod 0000 /corner/modes/none; \\
    : > /corner/empty; \\
    mkdir /corner/emptydir; \\
    echo big > /corner/bigid && chown 300000:300000 /corner/bigid; \\
    echo huge > /corner/hugeid && chown 3000000:3000000 /corner/hugeid; \\
    dd if=/dev/urandom of=/corner/random.bin bs=1048576 count=5 2>/dev/null
# names: long, deep, unicode, spaces, newline, backslash, not UTF-8
RUN set -e; \\
    mkdir -p /corner/names/deep/${DEEP_DIRS.join('/')}; \\
    cd /corner/names; \\
    echo long > ${LONG_COMPONENT}; \\
    echo deep > deep/${DEEP_DIRS.join('/')}/leaf.txt; \\
    echo cafe > café; \\
    ln café café-hardlink; \\
    echo nihongo > 日本語.txt; \\
    echo rocket > emoji-🚀.txt; \\
    echo space > 'with space'; \\
    echo edges > '  edge spaces  '; \\
    echo newline > "$(printf 'with\\nnewline')"; \\
    echo backslash > 'back\\slash'; \\
    echo bad > "bad-$(printf '\\377')-name"
# symlinks; /tmp and /run; the volume's content before VOLUME (later RUNs could not change it)
RUN set -e; \\
    mkdir /corner/links; \\
    cd /corner/links; \\
    ln -s /etc/app/conf2 abs; \\
    ln -s ../special/fifo rel; \\
    ln -s /nonexistent/target dangling; \\
    ln -s /corner/names dirlink; \\
    ln -s ${LONG_TARGET} long-target; \\
    echo tmp > /tmp/tmpfile; \\
    mkdir /run/app && echo 1 > /run/app/pid; \\
    mkdir /vol && echo seed > /vol/seed
ADD xattrs.tar /
ENV DFT_A=1 DFT_B="two words"
LABEL org.example.fixture=corner dft.note="a label with spaces"
WORKDIR /corner/workdir
USER 0
EXPOSE 8080/tcp
VOLUME /vol
HEALTHCHECK --interval=30s --timeout=5s CMD true
STOPSIGNAL SIGUSR1
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo corner"]
`

/** Writes xattrs.tar into the build context: GNU tar keeps xattrs, Docker's ADD applies them. */
async function makeXattrsTar(ctx: string): Promise<void> {
  await withTempDir('dft-xattrs-', async (dir) => {
    const d = join(dir, 'corner/xattrs')
    await mkdir(d, { recursive: true })
    await chmod(d, 0o755)
    const setHex = async (path: string, attrs: Record<string, string>): Promise<void> => {
      for (const [name, hex] of Object.entries(attrs)) await execa('setfattr', ['-h', '-n', name, '-v', '0x' + hex, path])
    }
    await setHex(d, XATTRS_ADDED.dir)
    for (const name of ['text', 'binary', 'cap'] as const) {
      const f = join(d, name)
      await writeFile(f, `${name}\n`)
      await chmod(f, 0o644)
      if (name !== 'cap') await setHex(f, XATTRS_ADDED[name])
    }
    const cap = join(d, 'cap')
    const setcap = await execa('setcap', ['cap_net_bind_service=+ep', cap], { reject: false })
    if (setcap.failed) await setHex(cap, XATTRS_ADDED.cap)
    const got = await execa('getfattr', ['-h', '-n', 'security.capability', '--only-values', cap], { encoding: 'buffer', stripFinalNewline: false })
    const hex = Buffer.from(got.stdout).toString('hex')
    if (hex !== XATTRS_ADDED.cap['security.capability']) throw new Error(`setcap wrote security.capability=${hex}, expected ${XATTRS_ADDED.cap['security.capability']}`)
    await execa('find', [dir, '-exec', 'touch', '-h', '-d', `@${BASE_MTIME}`, '{}', '+'])
    await execa('tar', ['-C', dir, '--xattrs', '--xattrs-include=*', '--numeric-owner', '--sort=name', '--format=posix', '-cf', join(ctx, 'xattrs.tar'), 'corner/xattrs'])
  })
}

/**
 * dft-corner:1: every awkward thing a layer can hold, over several layers. See CORNER_PATHS.
 *
 * Docker keeps only security.capability: the classic builder commits ADD's result through its
 * own archiver, which reads no other xattr, so the user.* ones of xattrs.tar are lost in the
 * layer (and `docker export` would not show them either).
 */
export async function buildCorner(opts: BuildOptions = {}): Promise<string> {
  await buildBase()
  return ensure(CORNER, opts, async () => recipeHash('corner', CORNER_DOCKERFILE, XATTRS_ADDED), BASE, async (recipe, force) => {
    await buildDockerfile(CORNER, withRecipe(CORNER_DOCKERFILE, recipe), force, makeXattrsTar)
  })
}

function manyLayersDockerfile(n: number): string {
  const lines = [`FROM ${BASE}`]
  for (let i = 1; i <= n; i++) {
    switch (i % 10) {
      case 0:
        lines.push(`RUN rm /many/f${i - 5}`)
        break
      case 3:
        lines.push(`RUN chmod 0600 /many/f${i - 1}`)
        break
      case 7:
        lines.push(`RUN rm -rf /many/dir && mkdir /many/dir && echo ${i} > /many/dir/gen${i}`)
        break
      default:
        lines.push(`RUN mkdir -p /many && echo ${i} > /many/f${i}`)
    }
  }
  return lines.join('\n') + '\n'
}

/** dft-many:1: n small RUN layers on the base (adds, deletes, chmods, an opaque dir); n + 1 layers in all. */
export async function buildManyLayers(n = 119, opts: BuildOptions = {}): Promise<string> {
  await buildBase()
  const dockerfile = manyLayersDockerfile(n)
  return ensure(MANY, opts, async () => recipeHash('many', dockerfile), BASE, async (recipe, force) => {
    await buildDockerfile(MANY, withRecipe(dockerfile, recipe), force)
  })
}

const SIMPLE_DOCKERFILE = `FROM ${BASE}
RUN mkdir /simple && echo one > /simple/one && echo two > /simple/two
RUN rm /etc/app/extra /simple/two
RUN chmod 0700 /simple && echo three > /simple/three && chmod 0640 /simple/three
CMD ["cat", "/simple/one"]
`

/** dft-simple:1: three ordinary RUN layers (adds, a deleted base file, chmods) for quick tests. */
export async function buildSimple(opts: BuildOptions = {}): Promise<string> {
  await buildBase()
  return ensure(SIMPLE, opts, async () => recipeHash('simple', SIMPLE_DOCKERFILE), BASE, async (recipe, force) => {
    await buildDockerfile(SIMPLE, withRecipe(SIMPLE_DOCKERFILE, recipe), force)
  })
}

const BULK_DOCKERFILE = `FROM ${BASE}
RUN mkdir /bulk && for i in 1 2 3 4; do dd if=/dev/urandom of=/bulk/r$i bs=1M count=40 2>/dev/null; done
RUN mkdir /bulk/small && cd /bulk/small && for i in $(seq 1 2000); do echo $i > f$i; done
RUN rm /bulk/r1 && dd if=/dev/urandom of=/bulk/late bs=1M count=40 2>/dev/null
`

/**
 * dft-bulk:1: about 200 MB over the base, so a flatten runs long enough to be interrupted in
 * the middle of a stage.
 */
export async function buildBulk(opts: BuildOptions = {}): Promise<string> {
  await buildBase()
  return ensure(BULK, opts, async () => recipeHash('bulk', BULK_DOCKERFILE), BASE, async (recipe, force) => {
    await buildDockerfile(BULK, withRecipe(BULK_DOCKERFILE, recipe), force)
  })
}

const LARGE_DOCKERFILE = `FROM ${BASE}
RUN mkdir /big && dd if=/dev/zero of=/big/two-gigabytes bs=1M count=2048 2>/dev/null && echo end >> /big/two-gigabytes
RUN mkdir /files && cd /files && i=0 && while [ $i -lt 101 ]; do mkdir d$i && j=0 && while [ $j -lt 1000 ]; do echo $i.$j > d$i/f$j; j=$((j+1)); done; i=$((i+1)); done
RUN rm -r /files/d100 && rm /etc/app/conf
`

/** dft-large:1: a 2 GB file and 100,000 small files over the base. */
export async function buildLarge(opts: BuildOptions = {}): Promise<string> {
  await buildBase()
  return ensure(LARGE, opts, async () => recipeHash('large', LARGE_DOCKERFILE), BASE, async (recipe, force) => {
    await buildDockerfile(LARGE, withRecipe(LARGE_DOCKERFILE, recipe), force)
  })
}

const HIDDEN_DOCKERFILE = `FROM ${BASE}
COPY hosts /etc/hosts
COPY hostname /etc/hostname
RUN mkdir /app && echo app > /app/file
`

/** What dft-hidden:1's layers put at paths a container covers with Docker's own files. */
export const HIDDEN_FILES = { 'etc/hosts': '127.0.0.1 flattened.example\n', 'etc/hostname': 'flattened\n' }

/**
 * dft-hidden:1: layers that change /etc/hosts and /etc/hostname, which `docker export` cannot
 * show: a container covers them with Docker's own files.
 */
export async function buildHidden(opts: BuildOptions = {}): Promise<string> {
  await buildBase()
  return ensure(HIDDEN, opts, async () => recipeHash('hidden', HIDDEN_DOCKERFILE, HIDDEN_FILES), BASE, async (recipe, force) => {
    await buildDockerfile(HIDDEN, withRecipe(HIDDEN_DOCKERFILE, recipe), force, async (ctx) => {
      for (const [path, content] of Object.entries(HIDDEN_FILES)) await writeFile(join(ctx, path.slice('etc/'.length)), content)
    })
  })
}

/** Builds all four (base first). */
export async function buildAll(opts: BuildOptions = {}): Promise<string[]> {
  const base = await buildBase(opts)
  return [base, await buildSimple(opts), await buildCorner(opts), await buildManyLayers(119, opts)]
}


// ---------------------------------------------------------------------------------------------
// Repeated layers: the same diff id at two places of RootFS.Layers

export const REPEATED = 'dft-repeated:1'
export const REPEATED_BASE = 'dft-repeated-base:1'
export const REPEATED_OVER = 'dft-repeated-over:1'
export const REPEATED_BASE2 = 'dft-repeated-base2:1'
export const REPEATED_ON = 'dft-repeated-on:1'

/**
 * Writes the same bytes with the same mtimes each time, so each run of it is the same layer.
 * A run right after another changes nothing: the classic store still makes it a layer (the same
 * diff id again), the containerd store leaves it out, so REMOVE comes between runs too.
 */
const SAME = 'RUN mkdir -p /rep && echo same > /rep/f && touch -d @1600000000 /rep/f /rep'
const REMOVE = 'RUN rm /rep/f && touch -d @1600000000 /rep'

const REPEATED_DOCKERFILE = `FROM ${BASE}\n${SAME}\n${SAME}\n${REMOVE}\n${SAME}\nRUN echo top > /top\n`
const REPEATED_BASE_DOCKERFILE = `FROM ${BASE}\n${SAME}\n`
const REPEATED_OVER_DOCKERFILE = `FROM ${REPEATED_BASE}\n${REMOVE}\n${SAME}\nRUN echo over > /over\n`
const REPEATED_BASE2_DOCKERFILE = `FROM ${BASE}\n${SAME}\n${REMOVE}\n${SAME}\n`
const REPEATED_ON_DOCKERFILE = `FROM ${REPEATED_BASE2}\n${REMOVE}\nRUN echo on > /on\n${SAME}\n`

/**
 * Images that hold one layer more than once. dft-repeated:1 above dft-base:1 only;
 * dft-repeated-over:1 repeats a layer of its base dft-repeated-base:1 above it; dft-repeated-on:1
 * sits on dft-repeated-base2:1, which itself holds a layer twice, and repeats two of its layers.
 * Returns every name built, the bases first.
 */
export async function buildRepeated(opts: BuildOptions = {}): Promise<string[]> {
  await buildBase()
  const one = async (ref: string, dockerfile: string, parent: string): Promise<string> =>
    ensure(ref, opts, async () => recipeHash('repeated', ref, dockerfile), parent, async (recipe, force) => {
      await buildDockerfile(ref, withRecipe(dockerfile, recipe), force)
    })
  await one(REPEATED, REPEATED_DOCKERFILE, BASE)
  await one(REPEATED_BASE, REPEATED_BASE_DOCKERFILE, BASE)
  await one(REPEATED_OVER, REPEATED_OVER_DOCKERFILE, REPEATED_BASE)
  await one(REPEATED_BASE2, REPEATED_BASE2_DOCKERFILE, BASE)
  await one(REPEATED_ON, REPEATED_ON_DOCKERFILE, REPEATED_BASE2)
  return [REPEATED, REPEATED_BASE, REPEATED_OVER, REPEATED_BASE2, REPEATED_ON]
}

// ---------------------------------------------------------------------------------------------
// Hardlink groups of every size

export const HARDLINKS_BASE = 'dft-hardlinks-base:1'
export const HARDLINKS = 'dft-hardlinks:1'

const HARDLINKS_BASE_DOCKERFILE = `FROM ${BASE}
RUN mkdir /hlb && cd /hlb && touch empty pair1 && ln pair1 pair2 && echo full > full && echo fullpair > fp1 && ln fp1 fp2 && \\
    echo AAAA > same && touch -d @1600000000 same
`

const HARDLINKS_DOCKERFILE = `FROM ${HARDLINKS_BASE}
# in one layer: an empty pair and triple, a pair with content, an empty pair renamed, a pair across dirs
RUN mkdir -p /hl/d && cd /hl && \\
    touch e && ln e e2 && \\
    touch t1 && ln t1 t2 && ln t1 t3 && \\
    echo x > n && ln n n2 && \\
    touch r && ln r r2 && mv r r-moved && \\
    touch d/e && ln d/e d-e-out
# later: second names for the base's files, a third for the base's pairs, more names for files of
# the layer below, renames, a deleted first name, a base file rewritten keeping size and mtime
RUN ln /hlb/empty /hl/to-base-empty && ln /hlb/full /hl/to-base-full && \\
    ln /hlb/pair1 /hlb/pair3 && ln /hlb/fp1 /hl/fp3 && \\
    ln /hl/e /hl/e3 && ln /hl/n /hl/n3 && \\
    mv /hl/t3 /hl/t3-moved && rm /hl/t2 && mv /hl/d /hl/d-moved && \\
    touch /hl/late && ln /hl/late /hl/late2 && ln /hl/late /hl/late3 && rm /hl/late && \\
    echo BBBB > /hlb/same && touch -d @1600000000 /hlb/same && ln /hlb/same /hl/same-link
`

/** dft-hardlinks:1 on dft-hardlinks-base:1: hardlink groups, empty or not, made in the base and above. */
export async function buildHardlinks(opts: BuildOptions = {}): Promise<string> {
  await buildBase()
  await ensure(HARDLINKS_BASE, opts, async () => recipeHash('hardlinks-base', HARDLINKS_BASE_DOCKERFILE), BASE, async (recipe, force) => {
    await buildDockerfile(HARDLINKS_BASE, withRecipe(HARDLINKS_BASE_DOCKERFILE, recipe), force)
  })
  return ensure(HARDLINKS, opts, async () => recipeHash('hardlinks', HARDLINKS_DOCKERFILE), HARDLINKS_BASE, async (recipe, force) => {
    await buildDockerfile(HARDLINKS, withRecipe(HARDLINKS_DOCKERFILE, recipe), force)
  })
}
