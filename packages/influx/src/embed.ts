import {
  type BackupResult,
  type BackupTarget,
  bindComponent,
  ConfigError,
  type EmbeddedBackupOptions,
  type EmbeddedRestoreOptions,
  type RestoreResult,
} from '@bk/core';
import { InfluxComponent, type InfluxOptions } from './influx-component.ts';

/** The component, with `addr` taken from `INFLUX_ADDR` when no address is given. */
function influxFromEnv(options: Partial<InfluxOptions>, env: NodeJS.ProcessEnv): InfluxComponent {
  const addressed = options.addr !== undefined || options.host !== undefined || options.rpcPort !== undefined;
  if (!addressed && !env.INFLUX_ADDR) {
    throw new ConfigError(
      'influx: no InfluxDB to talk to: set INFLUX_ADDR=host:port (the RPC bind-address, e.g. 127.0.0.1:8088) or pass "addr".',
    );
  }
  return new InfluxComponent(addressed ? (options as InfluxOptions) : { ...options, addr: env.INFLUX_ADDR });
}

// `import(name)` written here, in @bk/influx, finds the storage package the application
// installed beside it (an optional peer), whatever the package manager's layout.
const bound = bindComponent<Partial<InfluxOptions>>({
  create: influxFromEnv,
  importPackage: (name) => import(name),
});

/**
 * Backs up InfluxDB into `target` in one call: a URL (`s3://bucket/prefix`, `file:///…`,
 * `swift://…`, `az://…`, `gs://…`), a directory, or a `Storage`. The server is `INFLUX_ADDR`
 * (`host:port` of the RPC port) unless the options say otherwise; an `s3:` target reads
 * `S3_REGION`, `S3_REGION_ENDPOINT`, `S3_ACCESS_KEY` and `S3_SECRET_KEY`. The target's storage
 * package (`@bk/storage-s3`, …) must be installed beside `@bk/influx`.
 *
 * @param options the component's options ({@link InfluxOptions}) and the run's (`prefix`,
 *   `labels`, `onProgress`, `signal`, `env` instead of `process.env`, …).
 * @throws {ConfigError} without an address, for an invalid option or target, or when the
 *   target's storage package is not installed; whatever the core `backup` throws.
 * @example
 * import { backup } from '@bk/influx';
 *
 * const { name } = await backup('s3://backups/influx', { database: 'metrics' });
 */
export function backup(
  target: BackupTarget,
  options?: Partial<InfluxOptions> & EmbeddedBackupOptions,
): Promise<BackupResult> {
  return bound.backup(target, options);
}

/**
 * Restores InfluxDB from `target` in one call, by default from the newest backup that holds an
 * InfluxDB component of this name (`backup: 'backup_…'` for another). Same target, environment
 * and options as {@link backup}, plus `conflict`, `chain` and the component's `restore`
 * settings (`newDatabase`, `intoExisting`, …).
 *
 * @throws {NotFoundError} when no backup in the target holds the component.
 * @throws {ConflictError} when the database exists and may not be merged into.
 * @example
 * import { restore } from '@bk/influx';
 *
 * await restore('s3://backups/influx', { database: 'metrics', restore: { newDatabase: 'metrics_restored' } });
 */
export function restore(
  target: BackupTarget,
  options?: Partial<InfluxOptions> & EmbeddedRestoreOptions,
): Promise<RestoreResult> {
  return bound.restore(target, options);
}
