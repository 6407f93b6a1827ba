import {
  type BackupResult,
  type BackupTarget,
  bindComponent,
  type EmbeddedBackupOptions,
  type EmbeddedRestoreOptions,
  type RestoreResult,
} from '@bk/core';
import { KibanaComponent, type KibanaOptions } from './kibana-component.ts';

// `import(name)` written here, in @bk/kibana, finds the storage package the application installed
// beside it (an optional peer), whatever the package manager's layout.
const bound = bindComponent<KibanaOptions>({
  create: (options) => new KibanaComponent(options),
  importPackage: (name) => import(name),
});

/**
 * Backs up Kibana's saved objects into `target` in one call: a URL (`s3://bucket/prefix`, `file:///…`,
 * `swift://…`, `az://…`, `gs://…`), a directory, or a `Storage`. An `s3:` target reads
 * `S3_REGION`, `S3_REGION_ENDPOINT`, `S3_ACCESS_KEY` and `S3_SECRET_KEY`; the target's storage
 * package (`@bk/storage-s3`, …) must be installed beside `@bk/kibana`.
 *
 * @param options the component's options ({@link KibanaOptions}) and the run's (`prefix`, `labels`,
 *   `onProgress`, `signal`, `env` instead of `process.env`, …).
 * @throws {ConfigError} for an invalid option or target, or when the target's storage package is
 *   not installed; whatever the core `backup` throws.
 * @example
 * import { backup } from '@bk/kibana';
 *
 * const { name } = await backup('s3://backups/kibana', { url: 'http://127.0.0.1:5601', username: 'bk', password: process.env.KIBANA_PASSWORD! });
 */
export function backup(
  target: BackupTarget,
  options: KibanaOptions & EmbeddedBackupOptions,
): Promise<BackupResult> {
  return bound.backup(target, options);
}

/**
 * Restores Kibana's saved objects from `target` in one call, by default from the newest backup that holds this
 * component (`backup: 'backup_…'` for another). Same target and options as {@link backup}, plus
 * `conflict` (default `fail`) and `chain`.
 *
 * @throws {NotFoundError} when no backup in the target holds the component.
 * @throws {ConflictError} when data exists and the conflict policy is `fail`.
 * @example
 * import { restore } from '@bk/kibana';
 *
 * await restore('s3://backups/kibana', { url: 'http://127.0.0.1:5601', username, password, conflict: 'skip' });
 */
export function restore(
  target: BackupTarget,
  options: KibanaOptions & EmbeddedRestoreOptions,
): Promise<RestoreResult> {
  return bound.restore(target, options);
}
