import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, compress, type Entry, fromBytes, NotFoundError } from '@bk/core';
import { encodeMetaFile } from './meta-file.ts';
import {
  type PortableManifestFile,
  portableBaseName,
  serializePortableManifest,
} from './portable-manifest.ts';
import {
  encodeRequest,
  fetchMetastore,
  listShardPaths,
  MAX_TIME,
  parseRpcAddress,
  parseShardPath,
  RequestType,
  type RpcAddress,
  rpcReply,
  type ShardPath,
  withRetries,
  ZERO_TIME,
} from './snapshotter-client.ts';
import { influxError, throwIfAborted } from './support.ts';
import { checkTar } from './tar-check.ts';

/** Where the RPC port listens: `rpcAddress` (`host:port`) or `host` + `rpcPort`. */
export interface RpcTarget {
  /** `host:port` of the RPC port (`bind-address`, default `127.0.0.1:8088`). */
  rpcAddress?: string;
  host?: string;
  rpcPort?: number;
}

/**
 * Options of {@link portableBackup}; the same selection as `influxd backup -portable`.
 *
 * @example
 * const entries = portableBackup({ host: '127.0.0.1', rpcPort: 8088, database: 'metrics' });
 */
export interface PortableBackupOptions extends RpcTarget {
  /** Only this database (`-db`); default every database, `_internal` included when it exists. */
  database?: string;
  /** Only this retention policy (`-rp`); needs `database`. */
  retentionPolicy?: string;
  /** Only this shard ID (`-shard`); needs `database` and `retentionPolicy`. */
  shard?: number;
  /**
   * Only data from this time on (`-start`): a shard *export*, which keeps whole TSM blocks (up
   * to 1000 points) that overlap the window, so points slightly outside it come along.
   */
  start?: Date;
  /** Only data up to this time (`-end`); see `start`. */
  end?: Date;
  /** Only TSM files modified after this time (`-since`); cannot be combined with start/end. */
  since?: Date;
  /**
   * gzip level of the shard archives, 1–9; default 1: on TSM files (already encoded) level 6
   * saves ~2–3 % more for twice the CPU, and level 1 comes out the size of `influxd backup`'s
   * archives (its Go compressor at its default level).
   */
  compressionLevel?: number;
  /**
   * 1 MiB blocks of a shard archive compressed at once, on libuv's thread pool, each an
   * independent gzip member (as `pigz` writes; `influxd restore` and every gunzip read them);
   * default: core's `defaultWorkers()` (one more than the cores, at most 3). `0` compresses each
   * shard in one stream, as `influxd backup` did before 1.6. Memory: about 4 MiB per worker.
   */
  compressionWorkers?: number;
  /** The clock naming the files (`20060102T150405Z`); default now. */
  now?: () => Date;
  signal?: AbortSignal;
}

/** Resolves `rpcAddress` or `host` + `rpcPort`. @throws {ConfigError} when neither is given. */
export function resolveRpcTarget(target: RpcTarget): RpcAddress {
  if (target.rpcAddress !== undefined) {
    try {
      return parseRpcAddress(target.rpcAddress);
    } catch (error) {
      throw new ConfigError(`"rpcAddress" must be host:port, got ${JSON.stringify(target.rpcAddress)}.`, {
        cause: error,
      });
    }
  }
  if (typeof target.host !== 'string' || target.host === '') {
    throw new ConfigError('"host" (or "rpcAddress") must name the InfluxDB server.');
  }
  const port = target.rpcPort;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new ConfigError(`"rpcPort" must be a TCP port, got ${JSON.stringify(port)}.`);
  }
  return { host: target.host, port };
}

function checkSelection(options: PortableBackupOptions): void {
  if (options.retentionPolicy !== undefined && options.database === undefined) {
    throw new ConfigError('"retentionPolicy" needs "database".');
  }
  if (options.shard !== undefined) {
    if (options.retentionPolicy === undefined)
      throw new ConfigError('"shard" needs "database" and "retentionPolicy".');
    if (!Number.isSafeInteger(options.shard) || options.shard < 0) {
      throw new ConfigError(`"shard" must be a shard ID, got ${JSON.stringify(options.shard)}.`);
    }
  }
  if (options.since !== undefined && (options.start !== undefined || options.end !== undefined)) {
    throw new ConfigError('"since" cannot be combined with "start" or "end".');
  }
  for (const field of ['start', 'end', 'since'] as const) {
    const value = options[field];
    if (value !== undefined && (!(value instanceof Date) || Number.isNaN(value.getTime()))) {
      throw new ConfigError(`"${field}" must be a valid Date.`);
    }
  }
  if (options.start && options.end && options.start > options.end) {
    throw new ConfigError('"start" is after "end".');
  }
}

async function shardPaths(address: RpcAddress, options: PortableBackupOptions): Promise<ShardPath[]> {
  if (options.shard !== undefined) {
    return [
      { database: options.database!, retentionPolicy: options.retentionPolicy!, shardId: options.shard },
    ];
  }
  const paths = await withRetries(
    () =>
      listShardPaths(
        address,
        { database: options.database, retentionPolicy: options.retentionPolicy },
        options.signal,
      ),
    options.signal,
  );
  if (paths === undefined) {
    const what =
      options.retentionPolicy === undefined
        ? `database "${options.database}"`
        : `retention policy "${options.database}"."${options.retentionPolicy}"`;
    throw new NotFoundError(`The InfluxDB server has no ${what}.`);
  }
  return paths.map(parseShardPath);
}

function shardRequest(shard: ShardPath, options: PortableBackupOptions): Buffer {
  if (options.start !== undefined || options.end !== undefined) {
    // Always both bounds: a zero end makes 1.x servers flip the selection (see the README).
    return encodeRequest({
      type: RequestType.shardExport,
      backupDatabase: shard.database,
      backupRetentionPolicy: shard.retentionPolicy,
      shardId: shard.shardId,
      exportStart: options.start?.toISOString() ?? ZERO_TIME,
      exportEnd: options.end?.toISOString() ?? MAX_TIME,
    });
  }
  return encodeRequest({
    type: RequestType.shardBackup,
    backupDatabase: shard.database,
    backupRetentionPolicy: shard.retentionPolicy,
    shardId: shard.shardId,
    since: options.since?.toISOString() ?? ZERO_TIME,
  });
}

/** A shard reply whose first bytes have arrived; `close` ends the connection if `body` is not read. */
interface OpenShard {
  body: AsyncIterable<Uint8Array>;
  close(): Promise<void>;
}

/**
 * Opens a shard's reply and waits for its first bytes; an empty reply (the server's only way to
 * fail: a cache snapshot in progress, an unknown shard) is retried as `influxd backup` does.
 */
async function openShard(
  address: RpcAddress,
  shard: ShardPath,
  request: Buffer,
  signal: AbortSignal | undefined,
): Promise<OpenShard> {
  const attempts = 5;
  for (let attempt = 1; ; attempt += 1) {
    const iterator = rpcReply(address, request, signal)[Symbol.asyncIterator]();
    let failure: unknown;
    try {
      const first = await iterator.next();
      if (!first.done) {
        return {
          body: (async function* () {
            try {
              yield first.value;
              for (;;) {
                const next = await iterator.next();
                if (next.done) return;
                yield next.value;
              }
            } finally {
              await iterator.return?.();
            }
          })(),
          close: async () => {
            await iterator.return?.();
          },
        };
      }
    } catch (error) {
      if ((error as { retryable?: unknown }).retryable !== true) throw error;
      failure = error;
    }
    throwIfAborted(signal);
    if (attempt >= attempts) {
      throw influxError(
        `InfluxDB sent no data for shard ${shard.shardId} (${shard.database}.${shard.retentionPolicy}) after ${attempts} attempts; see the server log.`,
        { cause: failure },
      );
    }
    await sleep(Math.max(500, 3.8 ** attempt), undefined, { signal });
  }
}

/**
 * Backs up an InfluxDB 1.5+ server over its RPC (snapshotter) port, producing exactly the files
 * `influxd backup -portable` writes — `<B>.meta`, one `<B>.s<shardID>.tar.gz` per shard, then
 * `<B>.manifest` — so the directory they make restores with `influxd restore -portable`.
 *
 * Pull-based: each shard's tar streams from its socket through a tar completeness check and a
 * parallel gzip (`compressionWorkers`) into the entry body, one shard at a time, while the next
 * shard's request is already sent (memory: the metastore, the compressor's blocks, about 4 MiB
 * per worker, and two sockets' buffers). A shard whose tar breaks off fails the backup with an
 * `IntegrityError`.
 *
 * @throws {ConfigError} for an invalid selection; {@link NotFoundError} for an unknown database
 *   or RP; `ComponentError` when the server cannot be reached or sends nothing.
 * @example
 * for await (const entry of portableBackup({ rpcAddress: '127.0.0.1:8088', database: 'metrics' })) {
 *   console.log(entry.path);
 * }
 */
export async function* portableBackup(options: PortableBackupOptions): AsyncIterable<Entry> {
  const address = resolveRpcTarget(options);
  checkSelection(options);
  const { signal } = options;
  throwIfAborted(signal);
  const base = portableBaseName((options.now ?? (() => new Date()))());
  const blob = await withRetries(() => fetchMetastore(address, signal), signal);
  const metaFile = encodeMetaFile(blob);
  const metaName = `${base}.meta`;
  // 0600: the metastore holds the users' password hashes.
  yield { path: metaName, type: 'file', size: metaFile.byteLength, mode: 0o600, body: fromBytes(metaFile) };
  const files: PortableManifestFile[] = [];
  const shards = await shardPaths(address, options);
  // The next shard is requested while this one streams: the server flushes its cache and links
  // its files meanwhile, instead of between two shards (its socket waits, unread, until then).
  const request = (index: number): Promise<OpenShard> | undefined => {
    const shard = shards[index];
    if (shard === undefined) return undefined;
    const opening = openShard(address, shard, shardRequest(shard, options), signal);
    opening.catch(() => {}); // observed when its turn comes
    return opening;
  };
  let next = request(0);
  try {
    for (let index = 0; index < shards.length; index += 1) {
      const shard = shards[index]!;
      const fileName = `${base}.s${shard.shardId}.tar.gz`;
      const opening = next!;
      next = undefined;
      const reply = await opening;
      next = request(index + 1);
      let size: number | undefined;
      const tar = checkTar(reply.body, `The backup of shard ${shard.shardId}`, (bytes) => {
        size = bytes;
      });
      yield {
        path: fileName,
        type: 'file',
        mode: 0o600,
        body: compress(tar, {
          level: options.compressionLevel ?? 1,
          ...(options.compressionWorkers === undefined ? {} : { workers: options.compressionWorkers }),
          signal,
        }),
      };
      await reply.close();
      if (size === undefined) {
        throw influxError(
          `The body of ${fileName} was not read to its end; the backup cannot list its size.`,
        );
      }
      files.push({
        database: shard.database,
        policy: shard.retentionPolicy,
        shardID: shard.shardId,
        fileName,
        size,
        lastModified: 0,
      });
    }
  } finally {
    // A consumer that stops early (or a failure) must not leave the next shard's connection open.
    if (next) await next.then((reply) => reply.close()).catch(() => {});
  }
  const manifest = Buffer.from(
    serializePortableManifest({ meta: { fileName: metaName, size: blob.byteLength }, limited: false, files }),
    'utf8',
  );
  yield {
    path: `${base}.manifest`,
    type: 'file',
    size: manifest.byteLength,
    mode: 0o600,
    body: fromBytes(manifest),
  };
}
