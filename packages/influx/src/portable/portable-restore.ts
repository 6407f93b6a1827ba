import {
  ConfigError,
  ConflictError,
  collect,
  type Entry,
  gunzip,
  IntegrityError,
  NotFoundError,
  packTar,
  type TarRecordInput,
  unpackTar,
} from '@bk/core';
import { decodeMetaFile, readMetastore } from './meta-file.ts';
import { type RpcTarget, resolveRpcTarget } from './portable-backup.ts';
import { type PortableManifest, parsePortableFileName, parsePortableManifest } from './portable-manifest.ts';
import { listShardPaths, type RpcAddress, updateMetastore, uploadShard } from './snapshotter-client.ts';
import { influxError, throwIfAborted } from './support.ts';

/**
 * Options of {@link portableRestore}; the same selection and renaming as
 * `influxd restore -portable`.
 *
 * @example
 * await portableRestore(entries, { rpcAddress: '127.0.0.1:8088', database: 'metrics', newDatabase: 'metrics_copy' });
 */
export interface PortableRestoreOptions extends RpcTarget {
  /** Restore only this database (`-db`); default every database in the backup except `_internal`. */
  database?: string;
  /** Restore `database` under this name (`-newdb`); needs `database`. */
  newDatabase?: string;
  /** Restore only this retention policy (`-rp`), which becomes the database's default; needs `database`. */
  retentionPolicy?: string;
  /** Restore the retention policy under this name (`-newrp`); needs `retentionPolicy`. */
  newRetentionPolicy?: string;
  /** Upload data only for this shard ID of the backup (`-shard`); the metadata is still imported whole. */
  shard?: number;
  signal?: AbortSignal;
}

/** What {@link portableRestore} did. */
export interface PortableRestoreReport {
  /** Entries read, including skipped ones. */
  entries: number;
  /** Uncompressed tar bytes uploaded. */
  bytes: number;
  /** Shard archives not uploaded: other databases or RPs, `_internal`, or not the selected shard. */
  skipped: number;
  /** Backup shard ID → new shard ID on the target, for the shards uploaded. */
  shards: Record<string, number>;
  /** The databases the restore created. */
  databases: string[];
}

const MAX_META_BYTES = 256 * 1024 * 1024;

function checkOptions(options: PortableRestoreOptions): void {
  if (options.newDatabase !== undefined && options.database === undefined) {
    // 1.5–1.8.9 servers import under the old name and then drop the renamed data silently.
    throw new ConfigError('"newDatabase" needs "database": name the database to restore.');
  }
  if (
    (options.retentionPolicy !== undefined || options.newRetentionPolicy !== undefined) &&
    options.database === undefined
  ) {
    throw new ConfigError('"retentionPolicy" and "newRetentionPolicy" need "database".');
  }
  if (options.newRetentionPolicy !== undefined && options.retentionPolicy === undefined) {
    throw new ConfigError('"newRetentionPolicy" needs "retentionPolicy": name the policy to restore.');
  }
  for (const field of ['database', 'newDatabase', 'retentionPolicy', 'newRetentionPolicy'] as const) {
    const value = options[field];
    if (value !== undefined && (typeof value !== 'string' || value === '' || /[/\\\0]/.test(value))) {
      throw new ConfigError(`"${field}" must be a non-empty name without "/", got ${JSON.stringify(value)}.`);
    }
  }
  if (options.shard !== undefined && (!Number.isSafeInteger(options.shard) || options.shard < 0)) {
    throw new ConfigError(`"shard" must be a shard ID, got ${JSON.stringify(options.shard)}.`);
  }
}

async function drain(entry: Entry): Promise<void> {
  if (entry.body) for await (const _ of entry.body);
}

/** Imports the metastore after checking that no target database exists. */
async function importMetastore(
  address: RpcAddress,
  blob: Buffer,
  options: PortableRestoreOptions,
): Promise<{ shardMap: Map<number, number>; databases: string[] }> {
  const { databases } = readMetastore(blob);
  let targets: string[];
  if (options.database !== undefined) {
    const source = databases.find((database) => database.name === options.database);
    if (!source) throw new NotFoundError(`The backup holds no database "${options.database}".`);
    if (
      options.retentionPolicy !== undefined &&
      !source.retentionPolicies.includes(options.retentionPolicy)
    ) {
      throw new NotFoundError(
        `The backup holds no retention policy "${options.database}"."${options.retentionPolicy}".`,
      );
    }
    targets = [options.newDatabase ?? options.database];
  } else {
    targets = databases.map((database) => database.name).filter((name) => name !== '_internal');
  }
  const checkAbsent = async () => {
    for (const target of targets) {
      if ((await listShardPaths(address, { database: target }, options.signal)) !== undefined) {
        throw new ConflictError(
          target,
          `InfluxDB database "${target}" already exists on ${address.host}:${address.port}. This version restores only into a new database: restore under another name ("newDatabase"), or drop it first.`,
        );
      }
    }
  };
  await checkAbsent();
  const names = {
    backupDatabase: options.database ?? '',
    restoreDatabase: options.newDatabase ?? options.database ?? '',
    backupRetentionPolicy: options.retentionPolicy ?? '',
    restoreRetentionPolicy: options.newRetentionPolicy ?? options.retentionPolicy ?? '',
  };
  // An empty map changes nothing on the server; servers before 1.8.8 also return it when the
  // upload arrived in several TCP bursts, so try again while the targets are still absent.
  for (let attempt = 1; ; attempt += 1) {
    const shardMap = await updateMetastore(address, blob, names, options.signal);
    if (shardMap.size > 0) return { shardMap, databases: targets };
    await checkAbsent();
    if (attempt >= 3) {
      throw influxError(
        `InfluxDB did not import the metadata of ${targets.map((name) => `"${name}"`).join(', ')} (no shards mapped); see the server log.`,
      );
    }
  }
}

/** Renames each tar entry `db/rp/oldID/…` to `targetDb/targetRp/newID/…`, the only names the server keeps. */
async function* renamed(
  records: AsyncIterable<Awaited<ReturnType<typeof unpackTar> extends AsyncIterable<infer R> ? R : never>>,
  oldId: number,
  newId: number,
  options: PortableRestoreOptions,
  fileName: string,
): AsyncIterable<TarRecordInput> {
  for await (const record of records) {
    if (record.type !== 'file') continue;
    const parts = record.name.split('/');
    if (parts.length < 4 || parts[2] !== String(oldId)) {
      throw new IntegrityError(`${fileName}: "${record.name}" is not a file of shard ${oldId}.`, {
        entry: fileName,
      });
    }
    const database = options.newDatabase ?? parts[0]!;
    const policy = options.newRetentionPolicy ?? options.retentionPolicy ?? parts[1]!;
    yield {
      name: [database, policy, String(newId), ...parts.slice(3)].join('/'),
      type: 'file',
      size: record.size,
      mode: record.mode,
      mtime: record.mtime,
      body: record.body,
    };
  }
}

/**
 * Restores a portable backup online, as `influxd restore -portable` does: the `.meta` entry is
 * imported with a metastore update (type 6), which creates the database(s) with fresh shard IDs,
 * then each shard archive is gunzipped, its entries renamed to the target database, RP and new
 * shard ID, and streamed as a shard update (type 7). Entries may come in any order as long as
 * the `.meta` comes before the shard archives (bk archives keep the backup's order). Only a new
 * database is restored into: an existing target fails with {@link ConflictError} before
 * anything is changed.
 *
 * A failed shard upload leaves a half-restored database behind (its metadata exists); drop it
 * before trying again.
 *
 * @throws {ConfigError} for an invalid selection, {@link ConflictError} when a target database
 *   exists, {@link NotFoundError} when the backup lacks the database or RP, `IntegrityError`
 *   for a damaged archive, `ComponentError` when the server refuses.
 */
export async function portableRestore(
  entries: AsyncIterable<Entry>,
  options: PortableRestoreOptions,
): Promise<PortableRestoreReport> {
  const address = resolveRpcTarget(options);
  checkOptions(options);
  const { signal } = options;
  throwIfAborted(signal);
  const report: PortableRestoreReport = { entries: 0, bytes: 0, skipped: 0, shards: {}, databases: [] };
  let base: string | undefined;
  let shardMap: Map<number, number> | undefined;
  let manifest: PortableManifest | undefined;
  for await (const entry of entries) {
    throwIfAborted(signal);
    report.entries += 1;
    const fileName = entry.path.split('/').at(-1) ?? entry.path;
    const parsed =
      entry.type === undefined || entry.type === 'file' ? parsePortableFileName(fileName) : undefined;
    if (!parsed) {
      await drain(entry);
      report.skipped += 1;
      continue;
    }
    if (base !== undefined && parsed.base !== base) {
      throw new IntegrityError(
        `"${entry.path}" belongs to another portable backup than "${base}"; restore one backup at a time.`,
        { entry: entry.path },
      );
    }
    base = parsed.base;
    if (parsed.kind === 'manifest') {
      manifest = parsePortableManifest(
        Buffer.from(await collect(entry.body ?? empty(), 16 * 1024 * 1024)).toString('utf8'),
      );
      continue;
    }
    if (parsed.kind === 'meta') {
      if (shardMap) throw new IntegrityError(`A second .meta: "${entry.path}".`, { entry: entry.path });
      const blob = decodeMetaFile(await collect(entry.body ?? empty(), MAX_META_BYTES));
      const imported = await importMetastore(address, blob, options);
      shardMap = imported.shardMap;
      report.databases = imported.databases;
      continue;
    }
    if (parsed.kind !== 'shard') continue;
    if (!shardMap) {
      throw new IntegrityError(
        `"${entry.path}" comes before the backup's .meta; the metastore must be restored first.`,
        {
          entry: entry.path,
        },
      );
    }
    const newId = shardMap.get(parsed.shardId);
    if (newId === undefined || (options.shard !== undefined && options.shard !== parsed.shardId)) {
      await drain(entry);
      report.skipped += 1;
      continue;
    }
    const records = unpackTar(gunzip(entry.body ?? empty()));
    const tar = packTar(renamed(records, parsed.shardId, newId, options, fileName));
    report.bytes += await uploadShard(address, newId, tar, signal);
    report.shards[String(parsed.shardId)] = newId;
  }
  if (!shardMap) {
    throw new IntegrityError(
      base === undefined
        ? 'No portable InfluxDB backup among the entries (no <B>.meta file).'
        : `The backup "${base}" has no .meta file.`,
    );
  }
  const missing = (manifest?.files ?? []).filter(
    (file) =>
      shardMap.has(file.shardID) &&
      report.shards[String(file.shardID)] === undefined &&
      (options.shard ?? file.shardID) === file.shardID,
  );
  if (missing.length > 0) {
    throw new IntegrityError(
      `The manifest lists shard archives that were not restored: ${missing.map((file) => file.fileName).join(', ')}.`,
    );
  }
  return report;
}

async function* empty(): AsyncIterable<Uint8Array> {}
