/** dflatten as a library: `import { flatten } from 'dflatten'`. */
export { flatten, findCached, pumpAll, type FlattenOptions, type FlattenResult } from './pipeline.js'
export { resolve, resolveStage, nearestTaggedAncestor, type ResolveOptions } from './stages/resolve.js'
export { mount, mountStage } from './stages/mount.js'
export { diff, diffStage } from './stages/diff.js'
export { pack, packStage, flattenedConfig, type PackOptions, type PackResult } from './stages/pack.js'
export type { StageContext } from './stages/stream.js'
export { loadStage, type LoadOptions } from './stages/load.js'
export { methodNames, getMethod, pickMethod, allMethods } from './methods/index.js'
export type { Method, MethodContext, Probe, PlanFacts, Availability, Difference, ImageParts, LayerSource } from './methods/method.js'
export { directEntries } from './methods/overlay/entries.js'
export { copyDifference, upperDirEntries } from './methods/overlay-copy/copy.js'
export { readEntries, writeEntries } from './entry.js'
export { layerSize, layerStream, encodeHeader } from './layer-tar.js'
export { imageArchive, stableJson } from './image-archive.js'
export type { LayerEntry, EntryKind } from './entry.js'
export type { Plan, Mounted, Diffed, DiffSummary, StageDoc, MethodDoc, MethodName, MethodChoice } from './plan.js'
export type { Settings } from './settings.js'
export { DflattenError, Interrupted } from './errors.js'
export { cleanupAll } from './cleanup.js'
export {
  parseTarget,
  destinationFor,
  compressionFor,
  daemonDestination,
  archiveDestination,
  registryDestination,
  ociDestination,
  daemonBlobs,
  type Destination,
  type BlobSource,
  type NewLayer,
  type ResultImage,
  type WriteResult,
  type Target,
} from './destinations/index.js'
export { parseCompression, type CompressionChoice } from './compress/index.js'
export { dryRun, type DryRunOptions, type DryRunReport } from './dry-run.js'
export { DEFAULT_TOP, ReclaimTally, fromLayerListings, type Reclaimed, type ReclaimedFile } from './reclaim.js'
export { parseLayerCount, keptLayers, type BaseFrom } from './select.js'
export { historyUpToLayer, newLayerEntry } from './history.js'
export type { BaseSide } from './plan.js'
