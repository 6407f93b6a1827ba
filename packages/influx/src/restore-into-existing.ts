import { randomBytes } from 'node:crypto';
import { ConfigError, type Entry, throwIfAborted } from '@bk/core';
import { quoteIdentifier } from './line-protocol/escape.ts';
import { exportLineProtocol, type TimeBound } from './line-protocol/export-line-protocol.ts';
import { importLineProtocol } from './line-protocol/import-line-protocol.ts';
import { executeInflux, type InfluxConnection, queryRows } from './line-protocol/query-influx.ts';
import {
  type PortableRestoreOptions,
  type PortableRestoreReport,
  portableRestore,
} from './portable/portable-restore.ts';

/**
 * Options of {@link restoreIntoExisting}: a portable restore selection plus the HTTP API that
 * the points are copied through.
 *
 * @example
 * await restoreIntoExisting(entries, {
 *   rpcAddress: '127.0.0.1:8088',
 *   httpUrl: 'http://127.0.0.1:8086',
 *   database: 'metrics',
 * });
 */
export interface RestoreIntoExistingOptions extends PortableRestoreOptions, InfluxConnection {
  /** The database of the backup to restore; required (one database at a time). */
  database: string;
  /** Copy only points at or after this time (inclusive). */
  start?: TimeBound;
  /** Copy only points before this time (exclusive). */
  end?: TimeBound;
  /** Rows per chunked query response while reading the temporary database; default 10 000. */
  chunkSize?: number;
  /** Lines per `POST /write` into the target; default 5 000. */
  batchSize?: number;
  /** Writes in flight; default 2. */
  concurrency?: number;
  /** Name of the temporary database; default `<target>_bk_restore_<8 hex digits>`. */
  temporaryDatabase?: string;
}

/** What {@link restoreIntoExisting} did. */
export interface RestoreIntoExistingReport extends PortableRestoreReport {
  /** The database the points were written into. */
  target: string;
  /** The temporary database the backup was restored into (dropped again). */
  temporaryDatabase: string;
  /** Points written into the target. */
  lines: number;
  /** `POST /write` requests. */
  batches: number;
}

/** Whether `database` exists on the server (`SHOW DATABASES`). */
export async function databaseExists(
  connection: InfluxConnection & { signal?: AbortSignal },
  database: string,
): Promise<boolean> {
  const rows = await queryRows({ ...connection, query: 'SHOW DATABASES' });
  return rows.some((row) => row.name === database);
}

/**
 * Restores a portable backup into a database that may already exist, with bounded memory and no
 * `SELECT … INTO`:
 *
 * 1. the backup is restored online (as {@link portableRestore} does) into a new temporary
 *    database `<target>_bk_restore_<random>`;
 * 2. its points are streamed out with `exportLineProtocol` (per measurement, chunked queries,
 *    `GROUP BY *` so tags stay tags), limited to `[start, end)` when given, and piped into
 *    `importLineProtocol` (bounded batches and writes in flight) into the target, which is
 *    created when missing (a missing retention policy gets `DURATION INF`);
 * 3. the temporary database is dropped, also when a step failed.
 *
 * Merge semantics are InfluxDB's: a point with the same measurement, tag set and timestamp as an
 * existing one replaces its field values (fields the backup lacks keep theirs); everything else
 * in the target stays. Memory: about one query chunk plus `(concurrency + 1) × batchSize` lines.
 * Disk: the temporary database needs room for the restored shards.
 *
 * @throws {ConfigError} without `database` or `httpUrl`; otherwise what {@link portableRestore},
 *   the queries or the writes throw.
 */
export async function restoreIntoExisting(
  entries: AsyncIterable<Entry>,
  options: RestoreIntoExistingOptions,
): Promise<RestoreIntoExistingReport> {
  if (typeof options.database !== 'string' || options.database === '') {
    throw new ConfigError('Restoring into an existing database needs "database": the one to restore.');
  }
  if (typeof options.httpUrl !== 'string' || options.httpUrl === '') {
    throw new ConfigError(
      'Restoring into an existing database needs "httpUrl": points are copied over HTTP.',
    );
  }
  const { signal } = options;
  throwIfAborted(signal);
  const connection: InfluxConnection = {
    httpUrl: options.httpUrl,
    username: options.username,
    password: options.password,
  };
  const target = options.newDatabase ?? options.database;
  const temporary = options.temporaryDatabase ?? `${target}_bk_restore_${randomBytes(4).toString('hex')}`;
  if (temporary === target || temporary === options.database) {
    throw new ConfigError(`"temporaryDatabase" must differ from the target, got "${temporary}".`);
  }
  const drop = () =>
    // Not under `signal`: an aborted restore must still clean up. DROP of a missing database is a no-op.
    executeInflux({ ...connection, query: `DROP DATABASE ${quoteIdentifier(temporary)}` });
  let report: RestoreIntoExistingReport;
  try {
    const restored = await portableRestore(entries, {
      rpcAddress: options.rpcAddress,
      host: options.host,
      rpcPort: options.rpcPort,
      database: options.database,
      newDatabase: temporary,
      retentionPolicy: options.retentionPolicy,
      shard: options.shard,
      signal,
    });
    const points = exportLineProtocol({
      ...connection,
      database: temporary,
      retentionPolicy: options.retentionPolicy,
      start: options.start,
      end: options.end,
      chunkSize: options.chunkSize,
      signal,
    });
    const imported = await importLineProtocol(points, {
      ...connection,
      database: target,
      retentionPolicy: options.newRetentionPolicy ?? options.retentionPolicy,
      batchSize: options.batchSize,
      concurrency: options.concurrency,
      createDatabase: true,
      signal,
    });
    report = {
      ...restored,
      databases: [target],
      target,
      temporaryDatabase: temporary,
      lines: imported.lines,
      batches: imported.batches,
    };
  } catch (error) {
    await drop().catch(() => {
      // The original failure is what the caller needs; a leftover `*_bk_restore_*` database can be dropped by hand.
    });
    throw error;
  }
  await drop();
  return report;
}
