/** The registry protocol layer: references, credentials, authentication, transport, the Distribution API. */
export { parseRegistryRef, isRegistryRef, formatRef, manifestReference, withReference, DOCKER_HUB, DOCKER_HUB_API, type RegistryRef } from './reference.js'
export { loadCredentials, type Credentials } from './credentials.js'
export { parseChallenges, repositoryScope, Authenticator, type Challenge } from './auth.js'
export { Transport, NetworkError, allowsPlainHttp, hostName, type TransportOptions, type HttpRequest, type HttpResponse } from './transport.js'
export { RegistrySession, type SessionOptions, type SessionRequest } from './session.js'
export { connect, RegistryClient, type ConnectOptions, type FetchedManifest, type BlobStream, type CopyOutcome } from './client.js'
export { type UploadOptions, type UploadResult } from './upload.js'
export { sha256, Digester } from './digest.js'
export {
  MEDIA_TYPES,
  MANIFEST_ACCEPT,
  parseManifest,
  findPlatform,
  isIndexType,
  isDockerType,
  type Descriptor,
  type Platform,
  type ImageManifest,
  type ImageIndex,
  type ParsedManifest,
} from './manifest.js'
