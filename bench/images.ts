/**
 * The benchmark's images, built locally and idempotently (no registry is reachable):
 *
 *   dfb-debian:bookworm   debootstrap --variant=minbase, docker import (~120 MB, one layer)
 *   dfb-medium:sS         the base + ~600 MB in 6 RUN layers of typical work
 *   dfb-large:sS          the base + ~1.7 GB in the same 6 kinds of step, bigger
 *   dfb-many:sS-lN        the base + N (100) small RUN layers
 *
 * S is BENCH_SCALE: every size in a recipe is multiplied by it, so 0.05 gives tiny images with
 * the same shape. Each built image carries a label with the hash of its Dockerfile; an image
 * whose label matches is reused, anything else is rebuilt. The base is reused whenever it
 * exists, since debootstrap is the slow part and its content does not depend on the scale.
 */
import { createHash } from 'node:crypto'
import { mkdir, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { execa } from 'execa'

/** Everything the benchmark creates starts with this, so it never touches anyone else's images. */
export const PREFIX = 'dfb-'
export const BASE_REF = 'dfb-debian:bookworm'
const RECIPE_LABEL = 'dfb.recipe'

export interface BenchImage {
  /** Short name used in BENCH_ONLY, the table and the chart. */
  key: string
  ref: string
  base: string
  /** One line for the report: what the layers above the base do. */
  description: string
}

export interface ImageFacts {
  id: string
  layers: number
  /** `docker image inspect` Size: the bytes of all layers. */
  size: number
  layerDirs: string[]
}

export type Log = (line: string) => void

// ---------------------------------------------------------------------------------------------
// Small docker helpers, shared with measure.ts.

export async function docker(args: string[], opts: { input?: string } = {}): Promise<string> {
  const r = await execa('docker', args, { input: opts.input, maxBuffer: 512 * 1024 * 1024 })
  return r.stdout
}

interface Inspect {
  Id: string
  RepoTags: string[] | null
  Size: number
  Config: { Labels: Record<string, string> | null } | null
  RootFS: { Layers?: string[] }
  GraphDriver: { Data: Record<string, string> | null }
}

export async function inspect(ref: string): Promise<Inspect | null> {
  const r = await execa('docker', ['image', 'inspect', ref], { reject: false })
  if (r.exitCode !== 0) return null
  return (JSON.parse(r.stdout) as Inspect[])[0]
}

export async function imageFacts(ref: string): Promise<ImageFacts> {
  const img = await inspect(ref)
  if (!img) throw new Error(`image ${ref} is missing`)
  const data = img.GraphDriver.Data ?? {}
  // overlay2 lists the top layer as UpperDir and the rest, nearest first, as LowerDir.
  const layerDirs = [data.UpperDir, ...(data.LowerDir ? data.LowerDir.split(':') : [])].filter(Boolean)
  return { id: img.Id, layers: img.RootFS.Layers?.length ?? 0, size: img.Size, layerDirs }
}

/**
 * Remove an image the benchmark made. Only `dfb-` tags are removed; the image itself goes only
 * when no other tag is left on it, so an image someone else also tagged survives (untagged by us).
 */
export async function removeImage(ref: string): Promise<void> {
  const img = await inspect(ref)
  if (!img) return
  const tags = img.RepoTags ?? []
  const ours = tags.filter((t) => t.startsWith(PREFIX))
  for (const t of ours) await execa('docker', ['rmi', t], { reject: false })
  if (ours.length === tags.length && (await inspect(img.Id))) {
    await execa('docker', ['rmi', img.Id], { reject: false })
  }
}

// ---------------------------------------------------------------------------------------------
// The base: debootstrap minbase, imported as one layer.

/**
 * The Debian mirror this machine's apt already uses (deb.debian.org behind a proxy, a local
 * mirror...), read from /etc/apt/sources.list and sources.list.d in both the one-line and the
 * deb822 formats: the first source that offers the bookworm suite.
 */
export async function debianMirror(suite = 'bookworm'): Promise<string> {
  const files = ['/etc/apt/sources.list']
  const dir = '/etc/apt/sources.list.d'
  for (const n of await readdir(dir).catch(() => [] as string[])) {
    if (n.endsWith('.list') || n.endsWith('.sources')) files.push(join(dir, n))
  }
  for (const f of files) {
    const text = await readFile(f, 'utf8').catch(() => '')
    if (f.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const field = (k: string): string[] =>
          (new RegExp(`^${k}:\\s*(.*)$`, 'mi').exec(stanza)?.[1] ?? '').split(/\s+/).filter(Boolean)
        if (field('Types').includes('deb') && field('Suites').includes(suite)) {
          const uri = field('URIs')[0]
          if (uri) return uri
        }
      }
    } else {
      for (const line of text.split('\n')) {
        const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line)
        if (m && m[2] === suite) return m[1]
      }
    }
  }
  throw new Error(`no apt source on this machine offers Debian ${suite}; cannot debootstrap`)
}

async function ensureBase(workDir: string, log: Log): Promise<void> {
  if (await inspect(BASE_REF)) return
  if (!(await execa('sh', ['-c', 'command -v debootstrap'], { reject: false })).stdout) {
    log('installing debootstrap')
    await execa('apt-get', ['install', '-y', '-qq', 'debootstrap'], { env: { DEBIAN_FRONTEND: 'noninteractive' } })
  }
  const mirror = await debianMirror()
  const root = join(workDir, 'debootstrap-root')
  await rm(root, { recursive: true, force: true })
  await mkdir(workDir, { recursive: true })
  log(`debootstrap --variant=minbase bookworm from ${mirror} (a minute or two)`)
  try {
    await execa('debootstrap', ['--variant=minbase', 'bookworm', root, mirror])
    // What official Debian images also leave out: the downloaded .debs and the package lists
    // (~80 MB). Without them the base is the ~120 MB the benchmark wants.
    await execa('sh', ['-c', `rm -rf ${root}/var/cache/apt/archives/*.deb ${root}/var/lib/apt/lists/*`])
    await execa('sh', ['-c', `tar -C ${root} --numeric-owner -c . | docker import --change 'CMD ["bash"]' - ${BASE_REF}`])
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------------------------
// The images over the base.

/** Sizes of one "typical work" image at scale 1, in MiB. */
interface WorkSizes {
  /** Copies of /usr (~120 MB each); below scale 1 every k-th file only. */
  usrCopies: number
  model: number
  smallFiles: number
  buildCache: number
  assets: number
  extra: number
}

const MEDIUM: WorkSizes = { usrCopies: 1, model: 60, smallFiles: 50, buildCache: 50, assets: 40, extra: 30 }
const LARGE: WorkSizes = { usrCopies: 2, model: 480, smallFiles: 150, buildCache: 200, assets: 150, extra: 100 }

function kib(mib: number, scale: number): number {
  return Math.max(1, Math.round(mib * 1024 * scale))
}

/** Random bytes into a file: incompressible, like models, media or compiled output. */
function random(path: string, k: number): string {
  return `head -c ${k}K /dev/urandom > ${path}`
}

/** Many small files: random bytes cut into `size`-KiB pieces by split. */
function smallFiles(dir: string, k: number, size: number): string {
  return `mkdir -p ${dir} && head -c ${k}K /dev/urandom | split -a 5 -b ${size}K - ${dir}/f`
}

/**
 * A copy of /usr at `dest`. At scale 1 the whole tree (cp -a); below it, every k-th non-directory
 * entry (files, symlinks, hardlinked names), via tar so owners, modes and times are kept.
 */
function copyUsr(dest: string, scale: number): string {
  if (scale >= 1) return `cp -a /usr ${dest}`
  const k = Math.max(1, Math.round(1 / scale))
  return `mkdir -p ${dest} && cd /usr && find . ! -type d | sort | sed -n '1~${k}p' | tar -cf - -T - | tar -xpf - -C ${dest} && cd /`
}

/**
 * Six RUN layers of the kinds of work real images do, each kind of change a flattener must get
 * right: new trees, random data, many small files, a build cache deleted later, base files
 * deleted and replaced (whiteouts, an opaque dir, a new inode under an old name), chmod/chown
 * (copy-ups of whole files), a hardlink to a file of a lower layer, a renamed directory.
 */
function workDockerfile(s: WorkSizes, scale: number): string {
  const copies = Array.from({ length: s.usrCopies }, (_, i) => copyUsr(`/opt/usr-copy-${i + 1}`, scale))
  const half = kib(s.smallFiles / 2, scale)
  const steps = [
    // 1. install: trees of binaries and libraries, plus a large data file.
    ['mkdir -p /data', ...copies, random('/data/model.bin', kib(s.model, scale))],
    // 2. build: the app's many small files, and a build cache of object-sized files.
    [
      smallFiles('/srv/app/src', half, 1),
      smallFiles('/srv/app/static', half, 4),
      smallFiles('/root/.cache/build/objects', kib(s.buildCache * 0.8, scale), 64),
      smallFiles('/root/.cache/build/deps', kib(s.buildCache * 0.2, scale), 8),
    ],
    // 3. slim the base: base files deleted (whiteouts), a base dir replaced (opaque), a base
    // binary replaced by a new inode, a base config edited; plus new assets.
    [
      'rm -rf /usr/share/locale /usr/share/man',
      'rm -rf /usr/share/doc && mkdir -p /usr/share/doc/app && echo "docs" > /usr/share/doc/app/README',
      'cp -a /usr/bin/perl /tmp/perl.new && rm /usr/bin/perl && mv /tmp/perl.new /usr/bin/perl',
      'echo "dfb bench" >> /etc/issue',
      random('/data/assets.bin', kib(s.assets, scale)),
    ],
    // 4. permissions: chown/chmod copy whole files up into the new layer.
    [
      'chown -R 1000:1000 /srv/app',
      'chmod -R g-w,o-rwx /opt/usr-copy-1/lib',
      'chmod 0750 /usr/share/perl5',
      'chown 1000:1000 /etc/issue',
    ],
    // 5. a hardlink to a lower layer's file, and a renamed directory.
    ['ln /data/assets.bin /data/assets.hardlink', 'mv /opt/usr-copy-1 /opt/usr-renamed'],
    // 6. clean up: the build cache deleted, some sources deleted, a last artefact added.
    ['rm -rf /root/.cache', "find /srv/app/src -name 'fa*' -delete", random('/data/extra.bin', kib(s.extra, scale))],
  ]
  return [
    `FROM ${BASE_REF}`,
    'ENV APP_HOME=/srv/app',
    ...steps.map((cmds) => `RUN set -e; ${cmds.join('; ')}`),
    'WORKDIR /srv/app',
    'CMD ["bash"]',
  ].join('\n')
}

/**
 * Many thin layers, as long Dockerfiles or step-by-step commits make: each adds a file, edits a
 * shared one (a copy-up in every layer), deletes a file from three layers down, and every tenth
 * replaces a directory.
 */
function manyDockerfile(layers: number, scale: number): string {
  const k = kib(2, scale)
  const runs: string[] = []
  for (let i = 1; i <= layers; i++) {
    const cmds = [
      'mkdir -p /data /srv/parts',
      random(`/data/layer-${i}.bin`, k),
      `echo "layer ${i}" >> /etc/layers.log`,
      `echo ${i} > /srv/parts/part-${i % 10}`,
    ]
    if (i > 3) cmds.push(`rm /data/layer-${i - 3}.bin`)
    if (i % 10 === 0) cmds.push('rm -rf /srv/parts && mkdir -p /srv/parts && echo reset > /srv/parts/README')
    runs.push(`RUN ${cmds.join(' && ')}`)
  }
  return [`FROM ${BASE_REF}`, ...runs, 'CMD ["bash"]'].join('\n')
}

function scaleTag(scale: number): string {
  return `s${scale}`
}

export interface ImageSpec extends BenchImage {
  dockerfile: string
}

export function imageSpecs(scale: number, manyLayers: number): ImageSpec[] {
  const t = scaleTag(scale)
  return [
    {
      key: 'medium',
      ref: `dfb-medium:${t}`,
      base: BASE_REF,
      description: '~600 MB (at scale 1) in 6 RUN layers: /usr copy, random data, small files, build cache deleted later, base files deleted/replaced, chmod/chown, hardlink, renamed dir',
      dockerfile: workDockerfile(MEDIUM, scale),
    },
    {
      key: 'large',
      ref: `dfb-large:${t}`,
      base: BASE_REF,
      description: '~1.7 GB (at scale 1) in the same 6 kinds of RUN layer, bigger (two /usr copies)',
      dockerfile: workDockerfile(LARGE, scale),
    },
    {
      key: 'many',
      ref: `dfb-many:${t}-l${manyLayers}`,
      base: BASE_REF,
      description: `${manyLayers} thin RUN layers (~2 MB each at scale 1): add a file, edit a shared one, delete an older one, replace a dir every 10th`,
      dockerfile: manyDockerfile(manyLayers, scale),
    },
  ]
}

/** Build (or reuse) the base and the given images. */
export async function ensureImages(specs: ImageSpec[], workDir: string, log: Log): Promise<void> {
  await ensureBase(workDir, log)
  for (const spec of specs) {
    const recipe = createHash('sha256').update(spec.dockerfile).digest('hex').slice(0, 16)
    const have = await inspect(spec.ref)
    if (have?.Config?.Labels?.[RECIPE_LABEL] === recipe) {
      log(`${spec.ref}: up to date`)
      continue
    }
    // A stale image of an older recipe goes first, so it does not linger untagged.
    if (have) await removeImage(spec.ref)
    log(`${spec.ref}: building`)
    const started = Date.now()
    // The classic builder commits one layer per RUN, as the images to flatten have; no network
    // is needed or wanted. The label goes last: it is an empty layer and keeps the RUN cache.
    await execa('docker', ['build', '--network', 'none', '-q', '-t', spec.ref, '-'], {
      input: `${spec.dockerfile}\nLABEL ${RECIPE_LABEL}=${recipe}\n`,
      env: { DOCKER_BUILDKIT: '0' },
    })
    log(`${spec.ref}: built in ${((Date.now() - started) / 1000).toFixed(0)} s`)
  }
}
