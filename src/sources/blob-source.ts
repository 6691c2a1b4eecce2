/**
 * Where an image is read from when no daemon holds it: a registry repository or an OCI image
 * layout dir. Its blobs open as the destinations' BlobSource does: a stream that fails at its
 * end unless it matches the digest.
 */
import type { BlobSource } from '../destinations/destination.js'
import type { FetchedManifest } from '../registry/index.js'

export type { BlobSource }

/** A registry repository or an OCI layout dir, named by one reference. */
export interface ImageStore extends BlobSource {
  /** The reference as messages name it (`127.0.0.1:5000/app:1`, `oci:/srv/img:app`). */
  readonly label: string
  /** The manifest (or index) the reference names, or the one with `digest`; its bytes checked. */
  manifest(digest?: string, signal?: AbortSignal): Promise<FetchedManifest>
  /** A small blob whole (a config), checked against its digest and size. */
  bytes(d: { digest: string; size: number }, signal?: AbortSignal): Promise<Buffer>
  close(): Promise<void>
}
