export { decodeMetaFile, encodeMetaFile, type MetaDatabase, readMetastore } from './meta-file.ts';
export {
  type PortableBackupOptions,
  portableBackup,
  type RpcTarget,
  resolveRpcTarget,
} from './portable-backup.ts';
export {
  type PortableDirectory,
  portableDirectoryEntries,
  readPortableDirectory,
} from './portable-directory.ts';
export {
  type PortableManifest,
  type PortableManifestFile,
  parsePortableFileName,
  parsePortableManifest,
  portableBaseName,
  serializePortableManifest,
} from './portable-manifest.ts';
export {
  type PortableRestoreOptions,
  type PortableRestoreReport,
  portableRestore,
} from './portable-restore.ts';
export {
  BACKUP_MAGIC,
  encodeRequest,
  fetchMetastore,
  listShardPaths,
  parseRpcAddress,
  RequestType,
  type RpcAddress,
  type SnapshotterRequest,
  updateMetastore,
  uploadShard,
} from './snapshotter-client.ts';
