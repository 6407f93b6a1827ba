import {
  type BackupContext,
  type Component,
  ComponentError,
  type ComponentInfo,
  ConfigError,
  ConflictError,
  checkComponentConfig,
  checkComponentName,
  checkNestedConfig,
  DEFAULT_REQUEST_TIMEOUT_MS,
  type Entry,
  fetchWithDeadline,
  type IncrementalParent,
  isRecord,
  type OperationContext,
  type PreflightContext,
  type PreflightResult,
  type RestoreContext,
  type RestoreReport,
  refuseOtherMajor,
  toAbortedError,
} from '@bk/core';
import { type InfluxWindow, influxWindow, isIncremental, toDate } from './incremental.ts';
import { readMetastore } from './portable/meta-file.ts';
import { portableBackup, resolveRpcTarget } from './portable/portable-backup.ts';
import { portableDirectoryEntries, readPortableDirectory } from './portable/portable-directory.ts';
import { portableRestore } from './portable/portable-restore.ts';
import { fetchMetastore } from './portable/snapshotter-client.ts';
import { databaseExists, restoreIntoExisting } from './restore-into-existing.ts';

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
  /**
   * The RPC (snapshotter) address as `host:port` (`[::1]:8088` for IPv6), instead of `host` and
   * `rpcPort`; the one-line `backup()` and `restore()` default it to `INFLUX_ADDR`.
   */
  addr?: string;
  /** Host of the RPC (snapshotter) port. It has no authentication: keep it on loopback or a private network. */
  host?: string;
  /** The RPC port: `bind-address` in influxdb.conf, default 8088. */
  rpcPort?: number;
  /**
   * The HTTP API, e.g. `http://127.0.0.1:8086`: reads the server version, and is required to
   * restore into an existing database and to restore incremental backups (points are copied
   * through it).
   */
  httpUrl?: string;
  /** HTTP API login, when `auth-enabled` is on (the RPC port has no authentication). */
  username?: string;
  password?: string;
  /**
   * Back up the newest backup in this directory, written by the stock `influxd backup -portable`,
   * instead of asking a server (`bk backup --from-portable DIR`): the bk backup holds its files as
   * they are, and restores like any other (no RPC address needed to back up).
   */
  fromPortable?: string;
  /** Back up (and restore) only this database; default every database. */
  database?: string;
  /** Only this retention policy; needs `database`. */
  retentionPolicy?: string;
  /**
   * Back up only points from `since` (inclusive, usually the parent backup's window end, see
   * `incrementalSince`) up to the backup's start (exclusive); needs `database`. The server
   * returns whole shards/TSM blocks that overlap the window; the window is recorded in the
   * manifest (`details.window`) and a restore copies only points inside it, so a chain restored
   * in order neither duplicates nor loses points. Points written late with a timestamp before
   * `since` are not in the incremental: take a full backup to catch them.
   */
  incremental?: { since: Date | string };
  /**
   * Where a restore puts the data; default the backup's own names. `intoExisting: true` lets a
   * full backup merge into an existing target when the restore's conflict policy is `overwrite`
   * or `skip` (both merge: see {@link InfluxComponent.restore}); needs `database` and `httpUrl`.
   */
  restore?: { newDatabase?: string; newRetentionPolicy?: string; intoExisting?: boolean };
}

const CONFIG_FIELDS = [
  'kind',
  'name',
  'addr',
  'host',
  'rpcPort',
  'httpUrl',
  'username',
  'password',
  'database',
  'retentionPolicy',
  'restore',
  'incremental',
  'fromPortable',
];
const RESTORE_FIELDS = ['newDatabase', 'newRetentionPolicy', 'intoExisting'];

/** What the component reports to bk in every manifest; the README's table shows the same. */
export const INFLUX_CAPABILITIES = {
  incremental: true,
  pointInTime: false,
  consistentSnapshot: false,
  restoreIntoExisting: true,
  selectiveRestore: true,
} as const;

const NOT_CAPTURED = [
  'users, passwords and privileges are in the backup (the metastore) but a restore does not recreate them',
  'continuous queries are in the backup but a restore does not recreate them',
  'pending tombstones (recent DELETE / DROP SERIES not yet compacted) are ignored on restore: deleted points can come back',
  'the RPC port used for backup and restore has no authentication; anyone who can reach it can read and overwrite all data',
];

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
 * Restore goes natively into a database that does not exist yet (`restore.newDatabase` to
 * restore beside the original). An existing target fails with `ConflictError` before anything
 * changes, unless `restore.intoExisting` is set and the conflict policy is not `fail`: then the
 * backup is restored into a temporary database and merged into the target through line protocol
 * (see `restoreIntoExisting`). Incremental backups (`incremental.since`) always restore that
 * way, filtered to their recorded window; restore a chain with core `restore({ chain: true })`.
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
  /** The options, with `addr` resolved into `host` and `rpcPort`. */
  readonly options: Readonly<InfluxOptions & { host: string; rpcPort: number }>;
  /** The window `describe` recorded, used by the `backup` that follows it. */
  #window: { start: Date | null; end: Date } | undefined;

  /**
   * Validates the options; opens no connection.
   *
   * @throws {ConfigError} naming the invalid option.
   */
  constructor(options: InfluxOptions) {
    const where = 'influx component';
    if (typeof options !== 'object' || options === null || Array.isArray(options))
      throw new ConfigError(`${where}: the options must be an object.`);
    const name = options.name ?? 'influx';
    if (typeof name !== 'string')
      throw new ConfigError(`${where}: "name" must be a string, got ${JSON.stringify(name)}.`);
    // The archive keeps a component's entries under `<name>/`: one safe path segment.
    checkComponentName(name);
    const context = `influx component "${name}"`;
    if (options.addr !== undefined && (options.host !== undefined || options.rpcPort !== undefined)) {
      throw new ConfigError(`${context}: give "addr" or "host" and "rpcPort", not both.`);
    }
    if (
      options.fromPortable !== undefined &&
      (typeof options.fromPortable !== 'string' || options.fromPortable === '')
    ) {
      throw new ConfigError(`${context}: "fromPortable" must be a directory path.`);
    }
    if (options.fromPortable !== undefined && options.incremental !== undefined) {
      throw new ConfigError(`${context}: "fromPortable" cannot be combined with "incremental".`);
    }
    // A stock backup directory needs no server to be backed up; restoring it needs the address.
    const withoutServer =
      options.fromPortable !== undefined && options.addr === undefined && options.host === undefined;
    let rpc: { host: string; port: number };
    try {
      rpc = withoutServer
        ? { host: '', port: 0 }
        : options.addr !== undefined
          ? resolveRpcTarget({ rpcAddress: options.addr })
          : resolveRpcTarget({ host: options.host, rpcPort: options.rpcPort });
    } catch (error) {
      const message =
        options.addr !== undefined
          ? `"addr" must be host:port, got ${JSON.stringify(options.addr)}.`
          : (error as Error).message.replace('(or "rpcAddress")', '(or "addr")');
      throw new ConfigError(`${context}: ${message}`, { cause: error });
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
    if (options.username !== undefined && typeof options.username !== 'string') {
      throw new ConfigError(`${context}: "username" must be a string.`);
    }
    if (options.password !== undefined && typeof options.password !== 'string') {
      throw new ConfigError(`${context}: "password" must be a string.`);
    }
    if (options.incremental !== undefined) {
      checkNestedConfig(options.incremental, 'incremental', ['since'], context);
      try {
        toDate(options.incremental.since, 'incremental.since');
      } catch (error) {
        throw new ConfigError(`${context}: ${(error as Error).message}`, { cause: error });
      }
      if (options.database === undefined)
        throw new ConfigError(`${context}: "incremental" needs "database".`);
    }
    if (options.restore?.intoExisting !== undefined) {
      if (typeof options.restore.intoExisting !== 'boolean') {
        throw new ConfigError(`${context}: "restore.intoExisting" must be true or false.`);
      }
      if (options.restore.intoExisting && (options.database === undefined || options.httpUrl === undefined)) {
        throw new ConfigError(`${context}: "restore.intoExisting" needs "database" and "httpUrl".`);
      }
    }
    this.name = name;
    this.options = { ...options, name, host: rpc.host, rpcPort: rpc.port };
  }

  /**
   * A copy of this component that backs up only the points written since `parent`'s window end
   * (`incremental.since`), for `planIncremental` and `bk backup --incremental`.
   *
   * @throws {ConfigError} when `database` is not set, when the parent recorded no window (made
   *   by an older bk) or covered another database or retention policy.
   */
  incremental(parent: IncrementalParent): InfluxComponent {
    const where = `influx component "${this.name}"`;
    if (this.options.database === undefined) {
      throw new ConfigError(`${where}: an incremental backup needs "database".`);
    }
    const window = influxWindow(parent.component.info);
    if (!window) {
      throw new ConfigError(
        `${where}: backup "${parent.backupName}" recorded no time window (made by an older bk); take a full backup (without --incremental) to start a chain.`,
      );
    }
    const details = parent.component.info.details ?? {};
    const database = details.database ?? null;
    const retentionPolicy = details.retentionPolicy ?? null;
    if (database !== this.options.database || retentionPolicy !== (this.options.retentionPolicy ?? null)) {
      throw new ConfigError(
        `${where}: backup "${parent.backupName}" covers database ${JSON.stringify(database)}, retention policy ${JSON.stringify(retentionPolicy)}, not the configured ones; take a full backup (without --incremental) to start a new chain.`,
      );
    }
    return new InfluxComponent({ ...this.options, incremental: { since: window.end } });
  }

  /**
   * Reads the version (HTTP `/ping`, when `httpUrl` is set) and the databases in the metastore,
   * and fixes the backup's time window: `end` is now, `start` is `incremental.since` (or `null`
   * for a full backup). The `backup` that follows covers that window.
   */
  async describe(context: OperationContext): Promise<ComponentInfo> {
    const since = this.options.incremental
      ? toDate(this.options.incremental.since, 'incremental.since')
      : null;
    const end = new Date();
    if (since && since > end) {
      throw new ConfigError(
        `influx component "${this.name}": "incremental.since" (${since.toISOString()}) is in the future.`,
      );
    }
    this.#window = { start: since, end };
    const window: InfluxWindow = { start: since?.toISOString() ?? null, end: end.toISOString() };
    const info: ComponentInfo = {
      capabilities: { ...INFLUX_CAPABILITIES },
      notCaptured: [...NOT_CAPTURED],
      secrets: {
        captured: [
          {
            kind: 'password-hash',
            what: "every InfluxDB user's password hash (bcrypt) and privileges, in the metastore",
            paths: ['*.meta'],
          },
        ],
        notCaptured: [
          {
            kind: 'private-key',
            what: "the server's TLS certificate and key (https-private-key in influxdb.conf): files outside the database",
          },
        ],
      },
    };
    if (this.options.httpUrl !== undefined) {
      const url = new URL('/ping', this.options.httpUrl);
      let response: Response;
      try {
        // Never waits for ever on a server that accepts the connection and does not answer.
        response = await fetchWithDeadline(fetch, { idleMs: DEFAULT_REQUEST_TIMEOUT_MS })(url, {
          signal: context.signal,
        });
      } catch (error) {
        if (context.signal.aborted) throw toAbortedError(context.signal);
        const cause =
          error instanceof Error && error.cause instanceof Error ? ` (${error.cause.message})` : '';
        throw new ComponentError(
          this.name,
          `cannot reach the InfluxDB HTTP API at ${url.origin} ("httpUrl"): ${(error as Error).message}${cause}.`,
          { cause: error, retryable: true },
        );
      }
      await response.body?.cancel();
      const version = response.headers.get('x-influxdb-version');
      if (version) info.version = version;
    }
    const fromPortable =
      this.options.fromPortable === undefined
        ? undefined
        : await readPortableDirectory(this.options.fromPortable);
    const blob =
      fromPortable?.metastore ??
      (await fetchMetastore({ host: this.options.host, port: this.options.rpcPort }, context.signal));
    const { databases } = readMetastore(blob);
    info.details = {
      format: 'influxd backup -portable',
      ...(fromPortable ? { fromPortable: fromPortable.manifestName } : {}),
      database: this.options.database ?? null,
      retentionPolicy: this.options.retentionPolicy ?? null,
      incremental: since !== null,
      window,
      databases: databases.map((database) => ({
        name: database.name,
        retentionPolicies: database.retentionPolicies,
        continuousQueries: database.continuousQueries,
      })),
    };
    return info;
  }

  /**
   * The portable backup's files, each under its own name. An incremental takes a time-bounded
   * export of `[since, end]` (whole overlapping TSM blocks; the restore trims to the window).
   */
  backup(context: BackupContext): AsyncIterable<Entry> {
    const window = this.#window;
    this.#window = undefined;
    const directory = this.options.fromPortable;
    if (directory !== undefined) {
      return (async function* () {
        yield* portableDirectoryEntries(await readPortableDirectory(directory), context.signal);
      })();
    }
    const since = this.options.incremental
      ? toDate(this.options.incremental.since, 'incremental.since')
      : null;
    return portableBackup({
      host: this.options.host,
      rpcPort: this.options.rpcPort,
      database: this.options.database,
      retentionPolicy: this.options.retentionPolicy,
      ...(since ? { start: window?.start ?? since, end: window?.end ?? new Date() } : {}),
      signal: context.signal,
    });
  }

  /**
   * Restores into `restore.newDatabase` (default the original name):
   *
   * - a full backup into a missing target: natively (`influxd restore -portable`), keeping
   *   retention policies and shard groups;
   * - a full backup into an existing target: `ConflictError` with the policy `fail` or without
   *   `restore.intoExisting`; otherwise merged (temporary database → line protocol → target);
   * - an incremental backup: always merged, only points inside its recorded window; an existing
   *   target with the policy `fail` is a `ConflictError` (core `restore({ chain: true })` passes
   *   `overwrite` for every link after the first).
   *
   * Merging follows InfluxDB: a point with the same series and timestamp is overwritten by the
   * backup's. `skip` cannot keep the target's points (InfluxDB has no insert-if-absent), so it
   * merges like `overwrite`; the report's `details.conflict` says so.
   *
   * @throws {ConflictError} when the target exists and may not be merged into.
   */
  /**
   * The target's version (`X-Influxdb-Version` of HTTP `/ping`, when `httpUrl` is set): a backup
   * restores only into the InfluxDB major it came from (1.x portable backups and 2.x backups are
   * different formats). Forceable. Without `httpUrl` the version is not known and not judged.
   */
  async preflight(context: PreflightContext): Promise<PreflightResult> {
    if (this.options.httpUrl === undefined) return {};
    const url = new URL('/ping', this.options.httpUrl);
    let targetVersion: string | undefined;
    try {
      const response = await fetchWithDeadline(fetch, { idleMs: DEFAULT_REQUEST_TIMEOUT_MS })(url, {
        signal: context.signal,
      });
      await response.body?.cancel();
      targetVersion = response.headers.get('x-influxdb-version') ?? undefined;
    } catch (error) {
      if (context.signal.aborted) throw toAbortedError(context.signal);
      throw new ComponentError(
        this.name,
        `cannot reach the InfluxDB HTTP API at ${url.origin} ("httpUrl") to read its version: ${(error as Error).message}.`,
        { cause: error, retryable: true },
      );
    }
    const refusal = refuseOtherMajor('InfluxDB', context.component.version, targetVersion);
    return { ...(targetVersion ? { targetVersion } : {}), ...(refusal ? { refusal } : {}) };
  }

  async restore(entries: AsyncIterable<Entry>, context: RestoreContext): Promise<RestoreReport> {
    const incremental = isIncremental(context.component.info);
    const intoExisting = this.options.restore?.intoExisting === true;
    if (incremental || intoExisting) {
      const { database, httpUrl } = this.options;
      if (database === undefined || httpUrl === undefined) {
        throw new ConfigError(
          `influx component "${this.name}": restoring ${incremental ? 'an incremental backup' : 'into an existing database'} needs "database" and "httpUrl".`,
        );
      }
      const target = this.options.restore?.newDatabase ?? database;
      const connection = { httpUrl, username: this.options.username, password: this.options.password };
      const exists = await databaseExists({ ...connection, signal: context.signal }, target);
      if (exists && context.conflict === 'fail') {
        throw new ConflictError(
          target,
          `InfluxDB database "${target}" already exists and the conflict policy is "fail"; restore with conflict "overwrite" to merge into it, or under another name ("restore.newDatabase").`,
        );
      }
      if (exists || incremental) {
        const window = incremental ? influxWindow(context.component.info) : undefined;
        if (incremental && !window) {
          throw new ConfigError(`The incremental backup "${context.backupName}" recorded no time window.`);
        }
        const merged = await restoreIntoExisting(entries, {
          ...connection,
          host: this.options.host,
          rpcPort: this.options.rpcPort,
          database,
          retentionPolicy: this.options.retentionPolicy,
          newDatabase: target,
          newRetentionPolicy: this.options.restore?.newRetentionPolicy,
          start: window?.start ?? undefined,
          end: window?.end,
          signal: context.signal,
        });
        return {
          entries: merged.entries,
          bytes: merged.bytes,
          skipped: merged.skipped,
          details: {
            mode: 'merge',
            conflict: context.conflict === 'fail' ? 'none' : `${context.conflict} (merged)`,
            databases: merged.databases,
            points: merged.lines,
            temporaryDatabase: merged.temporaryDatabase,
            window: window ?? null,
          },
        };
      }
    }
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
      details: { mode: 'native', databases: report.databases, shards: report.shards },
    };
  }
}

/** Same as `new InfluxComponent(options)`. */
export function influx(options: InfluxOptions): InfluxComponent {
  return new InfluxComponent(options);
}

/**
 * Builds the component from the CLI's JSON config (`{ "kind": "influx", "host": …, "rpcPort": … }`).
 * A config with neither `addr` nor `host` takes `addr` from `INFLUX_ADDR`, as the one-line
 * `backup()` does, so a scheduled job can carry the address in its environment.
 *
 * @param env Where to read `INFLUX_ADDR`; default `process.env`.
 * @throws {ConfigError} naming an unknown or invalid field, or when there is no address at all.
 */
export function fromConfig(
  config: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
): InfluxComponent {
  const where = checkComponentConfig(config, 'influx', CONFIG_FIELDS);
  if (isRecord(config.incremental) && typeof config.incremental.since !== 'string') {
    throw new ConfigError(`${where}: "incremental.since" must be an ISO 8601 string.`);
  }
  if (isRecord(config.restore)) checkNestedConfig(config.restore, 'restore', RESTORE_FIELDS, where);
  const { kind: _kind, ...options } = config;
  if (options.addr === undefined && options.host === undefined && options.fromPortable === undefined) {
    if (!env.INFLUX_ADDR) {
      throw new ConfigError(
        `${where}: no InfluxDB to talk to: give "addr" (host:port of the RPC bind-address, e.g. 127.0.0.1:8088), or "host" and "rpcPort", or set INFLUX_ADDR.`,
      );
    }
    options.addr = env.INFLUX_ADDR;
  }
  return new InfluxComponent(options as unknown as InfluxOptions);
}
