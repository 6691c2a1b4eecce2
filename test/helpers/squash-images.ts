// Images for the --layers / --message / --dry-run tests: a layer adds a big file under a build
// cache dir and a later layer rm -rf's it (the benchmark's medium image in small), metadata-only
// steps between the layers.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { buildBase } from './images.js'

export const SQUASH = 'dft-squash:1'
export const SQUASH_KIT = 'dft-squash-kit:1'

/** Bytes of the cache file the third layer deletes, and of the file it overwrites. */
export const CACHE_FILE = { path: '/root/.cache/build/objects.bin', bytes: 3 * 1024 * 1024 }
/** What a dry run lists for it: the deleted dir, as one item. */
export const CACHE_DIR = '/root/.cache/'
export const OVERWRITTEN = { path: '/big.bin', bytes: 512 * 1024 }

export function squashDockerfile(base: string): string {
  return `FROM ${base}
LABEL dft.stage=first
RUN mkdir -p /root/.cache/build && dd if=/dev/urandom of=${CACHE_FILE.path} bs=1k count=${CACHE_FILE.bytes / 1024} 2>/dev/null && echo keep > /keep
RUN echo v1 > /app.conf && dd if=/dev/zero of=${OVERWRITTEN.path} bs=1k count=${OVERWRITTEN.bytes / 1024} 2>/dev/null
LABEL dft.stage=late
RUN rm -rf /root/.cache && echo v2 > /app.conf && dd if=/dev/zero of=${OVERWRITTEN.path} bs=1k count=256 2>/dev/null && rm /etc/app/extra
CMD ["cat", "/keep"]
`
}

/** Build with the classic builder (an image per layer) or BuildKit (none); layer cache makes a rebuild the same image. */
export async function buildSquash(ref: string, buildkit: boolean): Promise<string> {
  const base = await buildBase()
  const ctx = await mkdtemp(join(tmpdir(), 'dft-squash-ctx-'))
  try {
    await writeFile(join(ctx, 'Dockerfile'), squashDockerfile(base))
    await execa('docker', ['build', '-q', '--network', 'none', '-t', ref, ctx], { env: { DOCKER_BUILDKIT: buildkit ? '1' : '0' } })
  } finally {
    await rm(ctx, { recursive: true, force: true })
  }
  return ref
}

/** History entries of an image as docker history lists them, oldest first. */
export async function historyOf(ref: string): Promise<Array<{ id: string; createdBy: string; comment: string }>> {
  const r = await execa('docker', ['history', '--no-trunc', '--format', '{"id":{{json .ID}},"createdBy":{{json .CreatedBy}},"comment":{{json .Comment}}}', ref])
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { id: string; createdBy: string; comment: string })
    .reverse()
}
