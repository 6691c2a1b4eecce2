/**
 * The Distribution API on one repository: manifests (get, head, put) and blobs (head, get as a
 * verified stream, cross-repository mount, streamed upload, copy between registries). Every
 * failure is one line naming the registry and the reference.
 */
import { Readable } from 'node:stream'
import { DflattenError } from '../errors.js'
import { repositoryScope } from './auth.js'
import { loadCredentials, type Credentials } from './credentials.js'
import { Digester, sha256 } from './digest.js'
import { MANIFEST_ACCEPT } from './manifest.js'
import { formatRef, manifestReference, type RegistryRef } from './reference.js'
import { RegistrySession, type SessionOptions } from './session.js'
import { header, type HttpResponse } from './transport.js'
import { uploadBlob, uploadBytes, cancelUpload, type UploadOptions, type UploadResult } from './upload.js'

/** What opening a repository needs besides the reference. */
export interface ConnectOptions extends Omit<SessionOptions, 'registry' | 'apiHost' | 'credentials'> {
  /** The Docker config dir to take credentials from (the CLI passes `$DOCKER_CONFIG` or `~/.docker`). */
  configDir?: string
  /** Credentials to use instead of the Docker config's. */
  credentials?: Credentials
  /** A session to the same registry to share (its tokens and connections). */
  session?: RegistrySession
  /** Upload in Content-Range chunks of this size instead of one streamed PATCH. */
  chunkSize?: number
}

/** A manifest as fetched: the exact bytes, their media type and digest. */
export interface FetchedManifest {
  bytes: Buffer
  mediaType: string
  digest: string
}

/** A blob being read: a stream that errors at the end unless the bytes match the digest. */
export interface BlobStream {
  stream: Readable
  /** The size the registry announced, if it did. */
  size?: number
}

/** What `copyBlob` did. */
export type CopyOutcome = 'exists' | 'mounted' | 'copied'

/** The largest manifest read, as distribution's own limit: more is not a manifest. */
const MANIFEST_LIMIT = 4 * 1024 * 1024
const DIGEST = /^sha256:[0-9a-f]{64}$/

/** Open a client for the repository of `ref`, with credentials from the Docker config dir if given. */
export async function connect(ref: RegistryRef, options: ConnectOptions = {}): Promise<RegistryClient> {
  let session = options.session
  if (!session) {
    const credentials = options.credentials ?? (options.configDir ? await loadCredentials(options.configDir, ref.registry) : undefined)
    session = new RegistrySession({ ...options, registry: ref.registry, apiHost: ref.apiHost, credentials })
  }
  return new RegistryClient(session, ref, { chunkSize: options.chunkSize })
}

/** Operations on one repository of one registry. */
export class RegistryClient {
  readonly session: RegistrySession
  readonly ref: RegistryRef
  /** The reference as messages name it. */
  readonly label: string
  private readonly uploadDefaults: Pick<UploadOptions, 'chunkSize'>

  constructor(session: RegistrySession, ref: RegistryRef, uploadDefaults: Pick<UploadOptions, 'chunkSize'> = {}) {
    this.session = session
    this.ref = ref
    this.label = formatRef(ref)
    this.uploadDefaults = uploadDefaults
  }

  /** The repository path (`library/busybox`). */
  get repository(): string {
    return this.ref.repository
  }

  /** The scopes for reading, and for writing, this repository. */
  get pullScope(): string[] {
    return [repositoryScope(this.repository, ['pull'])]
  }
  get pushScope(): string[] {
    return [repositoryScope(this.repository, ['pull', 'push'])]
  }

  /** `/v2/<name>/<rest>`. */
  path(rest: string): string {
    return `/v2/${this.repository}/${rest}`
  }

  /**
   * A manifest's bytes, media type and digest; `reference` is a tag or a digest (default: the
   * ref's own). Fetched by digest, the bytes are checked against it. A missing one is
   * 'image-not-found'.
   */
  async getManifest(reference = manifestReference(this.ref), accept: string[] = MANIFEST_ACCEPT, signal?: AbortSignal): Promise<FetchedManifest> {
    const what = this.what(reference)
    const res = await this.session.send({
      method: 'GET',
      url: this.path(`manifests/${reference}`),
      headers: { accept: accept.join(', ') },
      scopes: this.pullScope,
      signal,
      what,
    })
    if (res.status !== 200) throw await this.session.failure(res, what, 'image-not-found')
    const bytes = await readLimited(res, MANIFEST_LIMIT, what)
    const digest = sha256(bytes)
    if (DIGEST.test(reference) && digest !== reference) {
      throw new DflattenError('bad-data', `${what}: the registry sent a manifest whose digest is ${digest}`)
    }
    const said = header(res.headers, 'docker-content-digest')
    if (said?.startsWith('sha256:') && said !== digest) {
      throw new DflattenError('bad-data', `${what}: the manifest's bytes hash to ${digest}, the registry says ${said}`)
    }
    const mediaType = (header(res.headers, 'content-type') ?? '').split(';')[0].trim() || mediaTypeInside(bytes)
    return { bytes, mediaType, digest }
  }

  /** A manifest's digest, media type and size without its body, or undefined when there is none. */
  async headManifest(reference = manifestReference(this.ref), accept: string[] = MANIFEST_ACCEPT, signal?: AbortSignal): Promise<{ digest?: string; mediaType: string; size?: number } | undefined> {
    const what = this.what(reference)
    const res = await this.session.send({ method: 'HEAD', url: this.path(`manifests/${reference}`), headers: { accept: accept.join(', ') }, scopes: this.pullScope, signal, what })
    if (res.status === 404) {
      await res.body.dump()
      return undefined
    }
    if (res.status !== 200) throw await this.session.failure(res, what)
    await res.body.dump()
    const length = header(res.headers, 'content-length')
    return {
      digest: header(res.headers, 'docker-content-digest') ?? (DIGEST.test(reference) ? reference : undefined),
      mediaType: (header(res.headers, 'content-type') ?? '').split(';')[0].trim(),
      size: length === undefined ? undefined : Number(length),
    }
  }

  /** A blob's size if this repository has it, else undefined. */
  async headBlob(digest: string, signal?: AbortSignal): Promise<{ size?: number } | undefined> {
    const what = this.blobWhat(digest)
    const res = await this.session.send({ method: 'HEAD', url: this.path(`blobs/${digest}`), scopes: this.pullScope, signal, what })
    await res.body.dump()
    if (res.status === 404) return undefined
    if (res.status !== 200) throw await this.session.failure(res, what)
    const length = header(res.headers, 'content-length')
    return { size: length === undefined ? undefined : Number(length) }
  }

  /**
   * A blob as a stream, following a redirect to blob storage (without our credentials); the
   * stream fails at its end if the bytes do not hash to `digest` (or are not `size` long), and
   * with one line if the connection drops. Decompressing is the caller's business.
   */
  async getBlob(digest: string, options: { size?: number; signal?: AbortSignal } = {}): Promise<BlobStream> {
    const what = this.blobWhat(digest)
    let url: string | URL = this.path(`blobs/${digest}`)
    let res: HttpResponse
    for (let hops = 0; ; hops++) {
      res = await this.session.send({ method: 'GET', url, scopes: this.pullScope, signal: options.signal, what })
      const location = header(res.headers, 'location')
      if (![301, 302, 303, 307, 308].includes(res.status) || !location) break
      await res.body.dump()
      if (hops === 5) throw new DflattenError('registry', `${what}: registry ${this.session.registry} redirects too often`)
      url = new URL(location, res.url)
    }
    if (res.status !== 200) throw await this.session.failure(res, what)
    const length = header(res.headers, 'content-length')
    const announced = length === undefined ? undefined : Number(length)
    if (options.size !== undefined && announced !== undefined && announced !== options.size) {
      await res.body.dump()
      throw new DflattenError('bad-data', `${what}: the registry announces ${announced} bytes, the manifest says ${options.size}`)
    }
    const expected = options.size ?? announced
    const verifier = new Digester((got, size) => {
      if (expected !== undefined && size !== expected) return new DflattenError('bad-data', `${what}: got ${size} bytes, expected ${expected}`)
      if (got !== digest) return new DflattenError('bad-data', `${what}: the bytes hash to ${got}`)
      return undefined
    })
    const body = res.body
    body.on('error', (e: Error) => {
      verifier.destroy(
        e instanceof DflattenError
          ? e
          : new DflattenError('registry', `${what}: the connection to registry ${this.session.registry} broke after ${verifier.size}${expected !== undefined ? ` of ${expected}` : ''} bytes (${(e as { code?: string }).code ?? e.message})`),
      )
    })
    // Whoever stops reading early (an error downstream) must free the connection too.
    verifier.on('close', () => body.destroy())
    body.pipe(verifier)
    return { stream: verifier, size: expected }
  }

  /**
   * Mount a blob from another repository of the same registry, without sending it. Returns
   * false when the registry would not (it lacks the blob there, or we may not read it); the
   * upload it opened instead is cancelled.
   */
  async mountBlob(digest: string, from: string, signal?: AbortSignal): Promise<boolean> {
    const r = await this.tryMount(digest, from, signal)
    if (r.mounted) return true
    await cancelUpload(this.session, r.location, this.pushScope, this.blobWhat(digest))
    return false
  }

  /**
   * Upload a stream as a blob, as it is made: the digest is known only at the end. The source is
   * consumed (and destroyed on failure); an abort through `signal`, or any failure, cancels the
   * upload session. With `digest`, a stream that does not hash to it is refused.
   */
  upload(source: Readable, options: Omit<UploadOptions, 'scopes'> = {}): Promise<UploadResult> {
    return uploadBlob(this.session, this.path('blobs/uploads/'), source, {
      ...this.uploadDefaults,
      ...options,
      scopes: this.pushScope,
      what: options.what ?? `${this.label}: upload`,
    })
  }

  /** Upload a small blob held in memory (a config), unless the repository has it already. */
  async uploadBytes(bytes: Buffer, signal?: AbortSignal): Promise<UploadResult> {
    const digest = sha256(bytes)
    if (await this.headBlob(digest, signal)) return { digest, size: bytes.length }
    return uploadBytes(this.session, this.path('blobs/uploads/'), bytes, { scopes: this.pushScope, what: this.blobWhat(digest), signal })
  }

  /**
   * Make a blob of `src` (another repository, here or on another registry) present here: skip
   * it if it is, mount it when on the same registry, else stream it across.
   */
  async copyBlob(src: RegistryClient, digest: string, options: { size?: number; signal?: AbortSignal } = {}): Promise<CopyOutcome> {
    if (await this.headBlob(digest, options.signal)) return 'exists'
    let location: URL | undefined
    if (this.sameRegistry(src) && src.repository !== this.repository) {
      const r = await this.tryMount(digest, src.repository, options.signal)
      if (r.mounted) return 'mounted'
      location = r.location
    }
    let blob: BlobStream
    try {
      blob = await src.getBlob(digest, options)
    } catch (e) {
      if (location) await cancelUpload(this.session, location, this.pushScope, this.blobWhat(digest))
      throw e
    }
    await uploadBlob(this.session, this.path('blobs/uploads/'), blob.stream, {
      ...this.uploadDefaults,
      digest,
      location,
      signal: options.signal,
      scopes: this.pushScope,
      what: this.blobWhat(digest),
    })
    return 'copied'
  }

  /** Push a manifest (or index) under a tag or its digest; returns its digest. */
  async putManifest(reference: string, bytes: Buffer, mediaType: string, signal?: AbortSignal): Promise<string> {
    const what = this.what(reference)
    const digest = sha256(bytes)
    if (DIGEST.test(reference) && reference !== digest) throw new DflattenError('usage', `${what}: the manifest's digest is ${digest}`)
    const res = await this.session.send({
      method: 'PUT',
      url: this.path(`manifests/${reference}`),
      headers: { 'content-type': mediaType },
      body: bytes,
      scopes: this.pushScope,
      signal,
      what,
    })
    if (res.status !== 201 && res.status !== 200 && res.status !== 202) throw await this.session.failure(res, what)
    await res.body.dump()
    const said = header(res.headers, 'docker-content-digest')
    if (said?.startsWith('sha256:') && said !== digest) throw new DflattenError('bad-data', `${what}: the registry stored the manifest as ${said}, not ${digest}`)
    return digest
  }

  /** The tags of this repository (an empty list when it does not exist). */
  async tags(signal?: AbortSignal): Promise<string[]> {
    const what = `${this.session.registry}/${this.repository}`
    const res = await this.session.send({ method: 'GET', url: this.path('tags/list'), scopes: this.pullScope, signal, what })
    if (res.status === 404) {
      await res.body.dump()
      return []
    }
    if (res.status !== 200) throw await this.session.failure(res, what)
    const body = (await res.body.json()) as { tags?: string[] | null }
    return body.tags ?? []
  }

  private sameRegistry(other: RegistryClient): boolean {
    return other.session === this.session || other.session.transport.host === this.session.transport.host
  }

  private async tryMount(digest: string, from: string, signal?: AbortSignal): Promise<{ mounted: true } | { mounted: false; location: URL }> {
    const what = this.blobWhat(digest)
    const query = new URLSearchParams({ mount: digest, from })
    const res = await this.session.send({
      method: 'POST',
      url: `${this.path('blobs/uploads/')}?${query}`,
      scopes: [...this.pushScope, repositoryScope(from, ['pull'])],
      signal,
      what,
    })
    if (res.status === 201) {
      await res.body.dump()
      return { mounted: true }
    }
    const location = header(res.headers, 'location')
    if (res.status === 202 && location) {
      await res.body.dump()
      return { mounted: false, location: new URL(location, res.url) }
    }
    throw await this.session.failure(res, what)
  }

  private what(reference: string): string {
    if (reference === manifestReference(this.ref)) return this.label
    return `${this.session.registry}/${this.repository}${DIGEST.test(reference) ? '@' : ':'}${reference}`
  }

  private blobWhat(digest: string): string {
    return `${this.label}: blob ${digest.slice(0, 19)}`
  }
}

function mediaTypeInside(bytes: Buffer): string {
  try {
    const t = (JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown }).mediaType
    return typeof t === 'string' ? t : ''
  } catch {
    return ''
  }
}

async function readLimited(res: HttpResponse, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = []
  let n = 0
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    n += chunk.length
    if (n > limit) {
      res.body.destroy()
      throw new DflattenError('bad-data', `${what}: the manifest is larger than ${limit} bytes`)
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}
