export {
  AGE_CHUNK_SIZE,
  type AgeDecryptOptions,
  type AgeEncryptOptions,
  type AgeIdentity,
  ageDecryptKeys,
  agePassphraseKey,
  checkAgeRecipients,
  decryptAge,
  decryptAgeBytes,
  encryptAge,
  encryptAgeBytes,
  formatAgeIdentityFile,
  generateAgeIdentity,
  parseAgeIdentities,
  parseAgeIdentity,
  parseAgeRecipients,
  rewrapAge,
} from './age.ts';
export {
  type ArchivedEntry,
  chunkName,
  DEFAULT_CHUNK_SIZE,
  type ReadArchiveOptions,
  readArchive,
} from './archive.ts';
export { BodyReader } from './body-reader.ts';
export { checkComponentConfig, checkNestedConfig, isRecord } from './component-config.ts';
export {
  type ComponentSecretsSummary,
  componentSecrets,
  describeSecret,
  SECRET_PATHS_LISTED,
} from './component-secrets.ts';
export {
  type CompressionFormat,
  type CompressOptions,
  compress,
  compressionMemoryCeiling,
  DEFAULT_BLOCK_SIZE,
  decompress,
  defaultWorkers,
  looksIncompressible,
  resolveCompressOptions,
  storedGzipMember,
  zstdAvailable,
} from './compress.ts';
export type {
  BackupContext,
  ByteStream,
  CleanupIncompleteOptions,
  CleanupIncompleteResult,
  Component,
  ComponentCapabilities,
  ComponentInfo,
  ComponentSecrets,
  ConflictPolicy,
  Entry,
  EntryType,
  GetOptions,
  IncompleteUpload,
  IncrementalParent,
  ObjectInfo,
  OperationContext,
  PreflightContext,
  PreflightResult,
  PutOptions,
  RestoreContext,
  RestoreReport,
  Restorer,
  SecretKind,
  SecretNote,
  Source,
  Storage,
  StorageCapabilities,
} from './contracts.ts';
export {
  DEFAULT_REQUEST_TIMEOUT_MS,
  type DeadlineFetchOptions,
  fetchWithDeadline,
  ProgressDeadline,
} from './deadline-fetch.ts';
export {
  type BackupTarget,
  type BoundComponent,
  bindComponent,
  type ComponentBinding,
  type EmbeddedBackupOptions,
  type EmbeddedRestoreOptions,
  type ImportPackage,
  type OpenStorageOptions,
  openStorage,
  STORAGE_PACKAGES,
} from './embed.ts';
export { type ComponentEntry, EntryIndexWriter, manifestEntries } from './entry-index.ts';
export { compareEntryPaths, ENTRY_TREE_HELD_PATHS, EntryTree } from './entry-tree.ts';
export {
  AbortedError,
  AlreadyExistsError,
  BkError,
  type BkErrorCode,
  type BkErrorOptions,
  ComponentError,
  ConfigError,
  ConflictError,
  DecryptionError,
  IntegrityError,
  ManifestError,
  ManifestVersionError,
  NotFoundError,
  StorageError,
  throwIfAborted,
  toAbortedError,
  UnencryptedSecretsError,
  UnsafePathError,
  UnsupportedError,
  VersionMismatchError,
} from './errors.ts';
export { type GzipOptions, gunzip, gzip } from './gzip.ts';
export { type GunzipOptions, gunzipMembers } from './gzip-members.ts';
export {
  handOver,
  releaseHandedOver,
  releaseWholeHandedOver,
  type Sharing,
  shareHandedOver,
  spansWholeBuffer,
} from './handover.ts';
export { type DigestResult, digest, sha256Hex } from './hash.ts';
export {
  MANIFEST_ENTRY,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  type Manifest,
  type ManifestComponent,
  type ManifestEncryption,
  type ManifestEntry,
  type ManifestEntryIndex,
  parseManifest,
  READABLE_MANIFEST_VERSIONS,
  type SidecarManifest,
  serializeManifest,
  validateManifest,
  validateSidecar,
} from './manifest.ts';
export { MemoryStorage } from './memory-storage.ts';
export { formatMtime, mtimeNanoseconds, parseMtime, utimesSeconds } from './mtime.ts';
export {
  AGE_SUFFIX,
  ARCHIVE_SUFFIX,
  archiveSuffix,
  type BackupName,
  compareBackupNames,
  ENTRY_INDEX_SUFFIX,
  formatBackupName,
  joinKey,
  LOCK_SUFFIX,
  parseBackupName,
  SIDECAR_SUFFIX,
  ZSTD_ARCHIVE_SUFFIX,
} from './naming.ts';
export { DEFAULT_RANGE_BYTES, getInParallel, openForRead, type ParallelGetOptions } from './parallel-get.ts';
export { checkComponentName, checkRange, checkStorageKey, linkStaysInside, safeEntryPath } from './paths.ts';
export { ignoreProgress, type ProgressEvent, type ProgressListener } from './progress.ts';
export { type CommandResult, runCommand } from './run-command.ts';
export { type BackupOptions, type BackupResult, backup, selectComponents } from './runners/backup.ts';
export {
  type BackupSummary,
  type CatalogItem,
  type CatalogOptions,
  catalog,
  type InspectOptions,
  inspect,
  inspectSummary,
  list,
  resolveName,
} from './runners/catalog.ts';
export { type ChainLink, type ResolveChainOptions, resolveChain } from './runners/chain.ts';
export {
  type IncrementalPlan,
  type PlanIncrementalOptions,
  planIncremental,
  readParents,
} from './runners/incremental.ts';
export {
  type PruneOptions,
  type PruneResult,
  prune,
  type RetentionPolicy,
  selectKept,
} from './runners/prune.ts';
export { type RekeyOptions, type RekeyResult, rekey } from './runners/rekey.ts';
export { type RestoreOptions, type RestoreResult, restore } from './runners/restore.ts';
export { type VerifyOptions, type VerifyResult, verify } from './runners/verify.ts';
export { openSidecar, type SealedSidecar, sealedSummary, sealSidecar } from './sealed-sidecar.ts';
export { abortable, collect, countBytes, fromBytes, rechunk, toByteStream } from './streams.ts';
export { packTar, type TarRecord, type TarRecordInput, unpackTar } from './tar.ts';
export { BK_VERSION } from './version.ts';
export {
  compareVersions,
  type ParsedVersion,
  parseVersion,
  refuseOlderTarget,
  refuseOtherMajor,
} from './version-rules.ts';
