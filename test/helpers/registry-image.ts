// Small real images for the registry tests: gzip layer tars made with tar-stream, a config
// that names their diff ids, and an OCI or Docker manifest, pushed with the client.
import { createHash } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import { Readable } from 'node:stream'
import tar from 'tar-stream'
import { MEDIA_TYPES, type RegistryClient } from '../../src/registry/index.js'

export interface TestImage {
  layers: Buffer[]
  diffIds: string[]
  config: Buffer
  manifest: Buffer
  mediaType: string
  digest: string
}

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`

/** A layer tar (uncompressed) holding `files`. */
export async function layerTar(files: Record<string, string | Buffer>): Promise<Buffer> {
  const pack = tar.pack()
  for (const [name, content] of Object.entries(files)) pack.entry({ name, mtime: new Date(0), mode: 0o644 }, content)
  pack.finalize()
  const chunks: Buffer[] = []
  for await (const c of pack as unknown as AsyncIterable<Buffer>) chunks.push(c)
  return Buffer.concat(chunks)
}

/** An image of gzip layers, one per file set, in the OCI or the Docker family. */
export async function makeImage(fileSets: Record<string, string | Buffer>[], family: 'oci' | 'docker' = 'oci', arch = 'amd64'): Promise<TestImage> {
  const tars = await Promise.all(fileSets.map(layerTar))
  const layers = tars.map((t) => gzipSync(t))
  const diffIds = tars.map(sha)
  const config = Buffer.from(JSON.stringify({ architecture: arch, os: 'linux', config: { Cmd: ['/bin/sh'] }, rootfs: { type: 'layers', diff_ids: diffIds } }))
  const oci = family === 'oci'
  const mediaType = oci ? MEDIA_TYPES.ociManifest : MEDIA_TYPES.dockerManifest
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      config: { mediaType: oci ? MEDIA_TYPES.ociConfig : MEDIA_TYPES.dockerConfig, digest: sha(config), size: config.length },
      layers: layers.map((l) => ({ mediaType: oci ? MEDIA_TYPES.ociLayerGzip : MEDIA_TYPES.dockerLayerGzip, digest: sha(l), size: l.length })),
    }),
  )
  return { layers, diffIds, config, manifest, mediaType, digest: sha(manifest) }
}

/** Push an image's blobs (streamed) and config, then its manifest under `tag`. */
export async function pushImage(client: RegistryClient, image: TestImage, tag: string): Promise<string> {
  for (const l of image.layers) if (!(await client.headBlob(sha(l)))) await client.upload(Readable.from([l]), { digest: sha(l) })
  await client.uploadBytes(image.config)
  return client.putManifest(tag, image.manifest, image.mediaType)
}

export { sha }
