import {
  type BackupContext,
  type Component,
  type ComponentInfo,
  ConfigError,
  type Entry,
  type OperationContext,
  type RestoreContext,
  type RestoreReport,
} from '@bk/core';
import { readMetastore } from './portable/meta-file.ts';
import { portableBackup, resolveRpcTarget } from './portable/portable-backup.ts';
import { portableRestore } from './portable/portable-restore.ts';
import { fetchMetastore } from './portable/snapshotter-client.ts';

/**
 * Options of an {@link InfluxComponent}.
 *
 * @example
 * const options: InfluxOptions = {
 *   host: '127.0.0.1',
 *   rpcPort: 8088,
 *   httpUrl: 'http://127.0.0.1:8086',
 *   database: 'metrics',
 *   restore: { newDatabase: 'metrics_restored' },
 * };
 */
export interface InfluxOptions {
  /** The component's name, unique within one backup; default `influx`. */
  name?: string;
  /** Host of the RPC (snapshotter) port. It has no authentication: keep it on loopback or a private network. */
  host: string;
  /** The RPC port: `bind-address` in influxdb.conf, default 8088. */
  rpcPort: number;
  /** The HTTP API, e.g. `http://127.0.0.1:8086`; used only to read the server version. */
  httpUrl?: string;
  /** Back up (and restore) only this database; default every database. */
  database?: string;
  /** Only this retention policy; needs `database`. */
  retentionPolicy?: string;
  /** Where a restore puts the data; default the backup's own names. */
  restore?: { newDatabase?: string; newRetentionPolicy?: string };
}

const CONFIG_FIELDS = [
  'kind',
  'name',
  'host',
  'rpcPort',
  'httpUrl',
  'database',
  'retentionPolicy',
  'restore',
];
const RESTORE_FIELDS = ['newDatabase', 'newRetentionPolicy'];

const NOT_CAPTURED = [
  'users, passwords and privileges are in the backup (the metastore) but a restore does not recreate them',
  'continuous queries are in the backup but a restore does not recreate them',
  'pending tombstones (recent DELETE / DROP SERIES not yet compacted) are ignored on restore: deleted points can come back',
  'the RPC port used for backup and restore has no authentication; anyone who can reach it can read and overwrite all data',
];

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalName(value: unknown, field: string, where: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '' || /[/\\\0]/.test(value)) {
    throw new ConfigError(
      `${where}: "${field}" must be a non-empty name without "/", got ${JSON.stringify(value)}.`,
    );
  }
  return value;
}

/**
 * Backs up and restores InfluxDB 1.5+ (tested on 1.6.7) over its RPC port, in the portable
 * format of `influxd backup -portable`: the archive holds `<B>.meta`, `<B>.s<shardID>.tar.gz`
 * and `<B>.manifest`, so extracting this component's folder gives a directory that the real
 * `influxd restore -portable` accepts, and a directory `influxd backup -portable` wrote restores
 * through {@link InfluxComponent.restore}.
 *
 * Restore goes only into databases that do not exist yet (`restore.newDatabase` to restore
 * beside the original); an existing target fails with `ConflictError` before anything changes.
 *
 * @example
 * import { backup } from '@bk/core';
 * import { influx } from '@bk/influx';
 *
 * await backup({ storage, components: [influx({ host: '127.0.0.1', rpcPort: 8088, database: 'metrics' })] });
 */
export class InfluxComponent implements Component {
  readonly kind = 'influx' as const;
  readonly name: string;
  readonly options: Readonly<InfluxOptions>;

  /**
   * Validates the options; opens no connection.
   *
   * @throws {ConfigError} naming the invalid option.
   */
  constructor(options: InfluxOptions) {
    const where = 'influx component';
    if (!isRecord(options)) throw new ConfigError(`${where}: the options must be an object.`);
    const name = options.name ?? 'influx';
    if (typeof name !== 'string' || name === '' || name === '.' || name === '..' || /[/\\\0]/.test(name)) {
      throw new ConfigError(
        `${where}: "name" must be a non-empty string without "/", got ${JSON.stringify(name)}.`,
      );
    }
    const context = `influx component "${name}"`;
    try {
      resolveRpcTarget({ host: options.host, rpcPort: options.rpcPort });
    } catch (error) {
      throw new ConfigError(`${context}: ${(error as Error).message}`, { cause: error });
    }
    if (options.httpUrl !== undefined) {
      let url: URL | undefined;
      try {
        url = new URL(options.httpUrl);
      } catch {}
      if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
        throw new ConfigError(
          `${context}: "httpUrl" must be an http(s) URL, got ${JSON.stringify(options.httpUrl)}.`,
        );
      }
    }
    optionalName(options.database, 'database', context);
    optionalName(options.retentionPolicy, 'retentionPolicy', context);
    if (options.retentionPolicy !== undefined && options.database === undefined) {
      throw new ConfigError(`${context}: "retentionPolicy" needs "database".`);
    }
    if (options.restore !== undefined) {
      if (!isRecord(options.restore)) throw new ConfigError(`${context}: "restore" must be an object.`);
      optionalName(options.restore.newDatabase, 'restore.newDatabase', context);
      optionalName(options.restore.newRetentionPolicy, 'restore.newRetentionPolicy', context);
      if (options.restore.newRetentionPolicy !== undefined && options.retentionPolicy === undefined) {
        throw new ConfigError(`${context}: "restore.newRetentionPolicy" needs "retentionPolicy".`);
      }
    }
    this.name = name;
    this.options = { ...options, name };
  }

  /** Reads the version (HTTP `/ping`, when `httpUrl` is set) and the databases in the metastore. */
  async describe(context: OperationContext): Promise<ComponentInfo> {
    const info: ComponentInfo = {
      capabilities: {
        incremental: false,
        pointInTime: false,
        consistentSnapshot: false,
        restoreIntoExisting: false,
        selectiveRestore: true,
      },
      notCaptured: [...NOT_CAPTURED],
    };
    if (this.options.httpUrl !== undefined) {
      const response = await fetch(new URL('/ping', this.options.httpUrl), { signal: context.signal });
      await response.body?.cancel();
      const version = response.headers.get('x-influxdb-version');
      if (version) info.version = version;
    }
    const blob = await fetchMetastore(
      { host: this.options.host, port: this.options.rpcPort },
      context.signal,
    );
    const { databases } = readMetastore(blob);
    info.details = {
      format: 'influxd backup -portable',
      database: this.options.database ?? null,
      retentionPolicy: this.options.retentionPolicy ?? null,
      databases: databases.map((database) => ({
        name: database.name,
        retentionPolicies: database.retentionPolicies,
        continuousQueries: database.continuousQueries,
      })),
    };
    return info;
  }

  /** The portable backup's files, each under its own name. */
  backup(context: BackupContext): AsyncIterable<Entry> {
    return portableBackup({
      host: this.options.host,
      rpcPort: this.options.rpcPort,
      database: this.options.database,
      retentionPolicy: this.options.retentionPolicy,
      signal: context.signal,
    });
  }

  /**
   * Restores online into a new database (`restore.newDatabase`, default the original name).
   *
   * @throws {ConflictError} when the target database exists, whatever the conflict policy.
   */
  async restore(entries: AsyncIterable<Entry>, context: RestoreContext): Promise<RestoreReport> {
    const report = await portableRestore(entries, {
      host: this.options.host,
      rpcPort: this.options.rpcPort,
      database: this.options.database,
      retentionPolicy: this.options.retentionPolicy,
      newDatabase: this.options.restore?.newDatabase,
      newRetentionPolicy: this.options.restore?.newRetentionPolicy,
      signal: context.signal,
    });
    return {
      entries: report.entries,
      bytes: report.bytes,
      skipped: report.skipped,
      details: { databases: report.databases, shards: report.shards },
    };
  }
}

/** Same as `new InfluxComponent(options)`. */
export function influx(options: InfluxOptions): InfluxComponent {
  return new InfluxComponent(options);
}

/**
 * Builds the component from the CLI's JSON config (`{ "kind": "influx", "host": …, "rpcPort": … }`).
 *
 * @throws {ConfigError} naming an unknown or invalid field.
 */
export function fromConfig(config: Record<string, unknown>): InfluxComponent {
  const where = 'influx component config';
  if (!isRecord(config)) throw new ConfigError(`${where}: must be a JSON object.`);
  for (const field of Object.keys(config)) {
    if (!CONFIG_FIELDS.includes(field)) {
      throw new ConfigError(
        `${where}: "${field}" is not a field of an influx component; known fields: ${CONFIG_FIELDS.join(', ')}.`,
      );
    }
  }
  if (config.kind !== undefined && config.kind !== 'influx') {
    throw new ConfigError(`${where}: "kind" must be "influx", got ${JSON.stringify(config.kind)}.`);
  }
  if (isRecord(config.restore)) {
    for (const field of Object.keys(config.restore)) {
      if (!RESTORE_FIELDS.includes(field)) {
        throw new ConfigError(
          `${where}: "restore.${field}" is not known; known: ${RESTORE_FIELDS.join(', ')}.`,
        );
      }
    }
  }
  const { kind: _kind, ...options } = config;
  return new InfluxComponent(options as unknown as InfluxOptions);
}
