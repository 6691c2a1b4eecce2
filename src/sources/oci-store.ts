/**
 * An OCI image layout dir as an image store: `index.json` names the images (by the
 * `org.opencontainers.image.ref.name` annotation), `blobs/sha256/<hex>` holds everything, each
 * read checked against its digest.
 */
import { createReadStream } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DflattenError } from '../errors.js'
import { Digester, sha256, type Descriptor, type ImageIndex } from '../registry/index.js'
import type { ImageStore } from './blob-source.js'

const REF_NAME = 'org.opencontainers.image.ref.name'
const DIGEST = /^sha256:[0-9a-f]{64}$/

function blobPath(dir: string, digest: string): string {
  if (!DIGEST.test(digest)) throw new DflattenError('bad-data', `${dir}: ${JSON.stringify(digest)} is not a sha256 digest`)
  return join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length))
}

async function readBlob(dir: string, label: string, digest: string, what: string): Promise<Buffer> {
  const bytes = await readFile(blobPath(dir, digest)).catch((err: unknown) => {
    const e = err as NodeJS.ErrnoException
    throw new DflattenError(e.code === 'ENOENT' ? 'image-not-found' : 'host', `${label}: ${what} ${digest.slice(0, 19)} is not in the layout (${e.code ?? e.message})`)
  })
  if (sha256(bytes) !== digest) throw new DflattenError('bad-data', `${label}: ${what} ${digest.slice(0, 19)} does not hash to its name`)
  return bytes
}

/** The OCI layout at `dir`; the image named `tag` (or `digest`, or the only one). */
export function ociStore(dir: string, ref: { tag?: string; digest?: string }, label: string): ImageStore {
  async function top(): Promise<Descriptor> {
    if (ref.digest) return { mediaType: '', digest: ref.digest, size: 0 }
    const text = await readFile(join(dir, 'index.json'), 'utf8').catch((err: unknown) => {
      const e = err as NodeJS.ErrnoException
      throw new DflattenError('image-not-found', `${label}: ${dir} is not an OCI image layout (no index.json: ${e.code ?? e.message})`)
    })
    let index: ImageIndex
    try {
      index = JSON.parse(text) as ImageIndex
    } catch {
      throw new DflattenError('bad-data', `${label}: ${dir}/index.json is not JSON`)
    }
    const all = Array.isArray(index.manifests) ? index.manifests : []
    const named = ref.tag ? all.filter((d) => d.annotations?.[REF_NAME] === ref.tag) : all
    if (named.length === 0) {
      const tags = all.map((d) => d.annotations?.[REF_NAME]).filter(Boolean)
      throw new DflattenError('image-not-found', `${label}: no image ${ref.tag ? `tagged ${ref.tag}` : ''} in ${dir}${tags.length ? ` (it has ${tags.join(', ')})` : ' (it is empty)'}`)
    }
    if (named.length > 1) throw new DflattenError('usage', `${label}: ${dir} holds ${named.length} images${ref.tag ? ` tagged ${ref.tag}` : ''}; name one as oci:${dir}:TAG`)
    return named[0]
  }
  return {
    label,
    async manifest(digest) {
      const d = digest ? { mediaType: '', digest, size: 0 } : await top()
      const bytes = await readBlob(dir, label, d.digest, 'manifest')
      let mediaType = d.mediaType
      try {
        mediaType = (JSON.parse(bytes.toString('utf8')) as { mediaType?: string }).mediaType ?? mediaType
      } catch {
        // parseManifest says so, with the reference
      }
      return { bytes, mediaType, digest: d.digest }
    },
    bytes: (d) => readBlob(dir, label, d.digest, 'blob'),
    open(d) {
      const what = `${label}: blob ${d.digest.slice(0, 19)}`
      const file = createReadStream(blobPath(dir, d.digest))
      const verify = new Digester((got, size) => {
        if (size !== d.size) return new DflattenError('bad-data', `${what}: ${size} bytes, the manifest says ${d.size}`)
        if (got !== d.digest) return new DflattenError('bad-data', `${what}: the bytes hash to ${got}`)
        return undefined
      })
      file.on('error', (e: NodeJS.ErrnoException) => verify.destroy(new DflattenError(e.code === 'ENOENT' ? 'image-not-found' : 'host', `${what} is not in the layout (${e.code ?? e.message})`)))
      verify.on('close', () => file.destroy())
      return Promise.resolve(file.pipe(verify))
    },
    close: () => Promise.resolve(),
  }
}
