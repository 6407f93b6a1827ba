import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { asBufferView, ComponentError, IntegrityError, influxError, throwIfAborted } from './support.ts';

/** The first byte of every RPC connection: selects the snapshotter service of the `tcp.Mux`. */
export const SNAPSHOTTER_MUX = 0x03;
/** The uint64 that opens metastore replies (types 1 and 6). */
export const BACKUP_MAGIC = 0x59590101n;

/** Request type bytes of InfluxDB 1.5 and later. */
export const RequestType = {
  shardBackup: 0,
  metastoreBackup: 1,
  databaseInfo: 3,
  retentionPolicyInfo: 4,
  shardExport: 5,
  metastoreUpdate: 6,
  shardUpdate: 7,
} as const;

/** Go's zero `time.Time`, as its JSON encoder writes it. */
export const ZERO_TIME = '0001-01-01T00:00:00Z';
/** The largest time InfluxDB stores: "no upper bound" for a shard export. */
export const MAX_TIME = '2262-04-11T23:47:16.854775807Z';

/** Where the RPC (snapshotter) port listens: `bind-address` in influxdb.conf. */
export interface RpcAddress {
  host: string;
  port: number;
}

/** The JSON fields of a snapshotter request; omitted ones take Go's zero value. */
export interface SnapshotterRequest {
  type: number;
  backupDatabase?: string;
  restoreDatabase?: string;
  backupRetentionPolicy?: string;
  restoreRetentionPolicy?: string;
  shardId?: number;
  since?: string;
  exportStart?: string;
  exportEnd?: string;
  uploadSize?: number;
}

/**
 * Parses `host:port` (IPv6 as `[::1]:8088`).
 *
 * @throws {ComponentError} when there is no valid port.
 */
export function parseRpcAddress(address: string): RpcAddress {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address);
  const port = Number(match?.[3]);
  if (!match || !(port > 0 && port < 65_536)) {
    throw influxError(`"${address}" is not a host:port RPC address.`);
  }
  return { host: (match[1] ?? match[2])!, port };
}

/**
 * The bytes of one request, framed as the Go client frames it: mux byte, type byte, the ten JSON
 * fields in Go's order, `\n`, then the payload. One buffer, sent in one write, because servers
 * before 1.8.8 read the metastore payload with a single `Read`.
 */
export function encodeRequest(request: SnapshotterRequest, payload?: Uint8Array): Buffer {
  const json = JSON.stringify({
    Type: request.type,
    BackupDatabase: request.backupDatabase ?? '',
    RestoreDatabase: request.restoreDatabase ?? '',
    BackupRetentionPolicy: request.backupRetentionPolicy ?? '',
    RestoreRetentionPolicy: request.restoreRetentionPolicy ?? '',
    ShardID: request.shardId ?? 0,
    Since: request.since ?? ZERO_TIME,
    ExportStart: request.exportStart ?? ZERO_TIME,
    ExportEnd: request.exportEnd ?? ZERO_TIME,
    UploadSize: request.uploadSize ?? 0,
  });
  const parts: Buffer[] = [Buffer.from([SNAPSHOTTER_MUX, request.type]), Buffer.from(`${json}\n`, 'utf8')];
  if (payload) parts.push(asBufferView(payload));
  return Buffer.concat(parts);
}

function openSocket(address: RpcAddress, signal: AbortSignal | undefined): Promise<Socket> {
  throwIfAborted(signal);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: address.host, port: address.port });
    const onAbort = () => socket.destroy(signal?.reason as Error);
    signal?.addEventListener('abort', onAbort, { once: true });
    const cleanup = () => {
      socket.off('connect', onConnect);
      socket.off('error', onError);
    };
    const onConnect = () => {
      cleanup();
      socket.once('close', () => signal?.removeEventListener('abort', onAbort));
      resolve(socket);
    };
    const onError = (error: Error) => {
      cleanup();
      signal?.removeEventListener('abort', onAbort);
      reject(
        influxError(
          `Cannot connect to the InfluxDB RPC port ${address.host}:${address.port}: ${error.message}`,
          { cause: error, retryable: true },
        ),
      );
    };
    socket.once('connect', onConnect);
    socket.once('error', onError);
  });
}

/**
 * Sends one request and streams the reply until the server closes the connection (one request
 * per connection). An empty reply is yielded as no chunks: the caller decides whether that is
 * an error (the protocol has no error channel; the server logs why and closes).
 */
export async function* rpcReply(
  address: RpcAddress,
  request: Uint8Array,
  signal?: AbortSignal,
): AsyncIterable<Uint8Array> {
  const socket = await openSocket(address, signal);
  try {
    socket.write(request);
    for await (const chunk of socket as AsyncIterable<Buffer>) yield chunk;
    throwIfAborted(signal);
  } catch (error) {
    throwIfAborted(signal);
    if (error instanceof ComponentError) throw error;
    throw influxError(
      `The InfluxDB RPC connection to ${address.host}:${address.port} failed: ${(error as Error).message}`,
      { cause: error, retryable: true },
    );
  } finally {
    socket.destroy();
  }
}

/** Reads a whole (small) reply into memory; refuses more than `limit` bytes. */
export async function rpcCall(
  address: RpcAddress,
  request: Uint8Array,
  signal?: AbortSignal,
  limit = 256 * 1024 * 1024,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of rpcReply(address, request, signal)) {
    total += chunk.byteLength;
    if (total > limit) throw influxError(`The InfluxDB RPC reply exceeds ${limit} bytes.`);
    chunks.push(asBufferView(chunk));
  }
  return Buffer.concat(chunks);
}

/**
 * Retries `attempt` while it fails with a retryable error, like `influxd backup` does (which
 * also retries an empty reply): `attempts` tries, `delayMs` apart.
 */
export async function withRetries<T>(
  attempt: () => Promise<T>,
  signal: AbortSignal | undefined,
  attempts = 5,
  delayMs = 500,
): Promise<T> {
  for (let index = 1; ; index += 1) {
    try {
      return await attempt();
    } catch (error) {
      throwIfAborted(signal);
      const retryable = (error as { retryable?: unknown }).retryable === true;
      if (!retryable || index >= attempts) throw error;
      await sleep(delayMs, undefined, { signal });
    }
  }
}

/**
 * Type 1: the whole metastore as the raw `meta.Data` protobuf blob (every database, RP, shard
 * group, continuous query, and the users with their password hashes).
 *
 * @throws {ComponentError} (retryable) on an empty reply; {@link IntegrityError} on a bad frame.
 */
export async function fetchMetastore(address: RpcAddress, signal?: AbortSignal): Promise<Buffer> {
  const reply = await rpcCall(address, encodeRequest({ type: RequestType.metastoreBackup }), signal);
  if (reply.byteLength === 0) {
    throw influxError('The InfluxDB server returned no metastore (see its log).', { retryable: true });
  }
  if (reply.byteLength < 16 || reply.readBigUInt64BE(0) !== BACKUP_MAGIC) {
    throw new IntegrityError(
      'The RPC port did not answer with a metastore (bad magic): is this the InfluxDB 1.x bind-address (default port 8088)?',
    );
  }
  const length = Number(reply.readBigUInt64BE(8));
  if (reply.byteLength < 16 + length + 8) {
    throw new IntegrityError(
      `The metastore reply is truncated: ${reply.byteLength} bytes for a ${length}-byte blob.`,
    );
  }
  return reply.subarray(16, 16 + length);
}

/**
 * Types 3 and 4: the `db/rp/shardID` paths of a database (every database when `database` is
 * empty) or of one retention policy. `undefined` when the server sent nothing (an unknown
 * database or RP).
 */
export async function listShardPaths(
  address: RpcAddress,
  scope: { database?: string; retentionPolicy?: string },
  signal?: AbortSignal,
): Promise<string[] | undefined> {
  const request =
    scope.retentionPolicy === undefined
      ? { type: RequestType.databaseInfo, backupDatabase: scope.database ?? '' }
      : {
          type: RequestType.retentionPolicyInfo,
          backupDatabase: scope.database ?? '',
          backupRetentionPolicy: scope.retentionPolicy,
        };
  const reply = await rpcCall(address, encodeRequest(request), signal, 64 * 1024 * 1024);
  if (reply.byteLength === 0) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(reply.toString('utf8'));
  } catch (error) {
    throw new IntegrityError('The shard list from the InfluxDB RPC port is not JSON.', { cause: error });
  }
  const paths = (parsed as { Paths?: unknown } | null)?.Paths;
  if (paths === null || paths === undefined) return [];
  if (!Array.isArray(paths) || paths.some((path) => typeof path !== 'string')) {
    throw new IntegrityError('The shard list from the InfluxDB RPC port has no "Paths" array.');
  }
  return paths as string[];
}

/** A shard path `db/rp/id` split on `/` or `\` (a Windows server). */
export interface ShardPath {
  database: string;
  retentionPolicy: string;
  shardId: number;
}

export function parseShardPath(path: string): ShardPath {
  const parts = path.split(/[/\\]/);
  const shardId = Number(parts.at(-1));
  if (parts.length !== 3 || !Number.isSafeInteger(shardId) || shardId < 0) {
    throw new IntegrityError(`"${path}" is not a db/rp/shardID path.`);
  }
  return { database: parts[0]!, retentionPolicy: parts[1]!, shardId };
}

/**
 * Type 6: imports `blob` (a raw `meta.Data`), renaming as asked, and returns the map from the
 * backup's shard IDs to the new ones. An empty map means the server changed nothing (target
 * database exists, database or RP missing from the blob, decode failure: see the server log).
 */
export async function updateMetastore(
  address: RpcAddress,
  blob: Uint8Array,
  names: {
    backupDatabase?: string;
    restoreDatabase?: string;
    backupRetentionPolicy?: string;
    restoreRetentionPolicy?: string;
  },
  signal?: AbortSignal,
): Promise<Map<number, number>> {
  const request = encodeRequest(
    { type: RequestType.metastoreUpdate, ...names, uploadSize: blob.byteLength },
    blob,
  );
  const reply = await rpcCall(address, request, signal, 64 * 1024 * 1024);
  if (reply.byteLength < 16 || reply.readBigUInt64BE(0) !== BACKUP_MAGIC) {
    throw influxError(
      `Updating the InfluxDB metastore failed (${reply.byteLength}-byte reply); see the server log.`,
    );
  }
  const count = Number(reply.readBigUInt64BE(8));
  if (reply.byteLength !== 16 + 16 * count) {
    throw new IntegrityError(`The shard ID map is truncated: ${reply.byteLength} bytes for ${count} pairs.`);
  }
  const map = new Map<number, number>();
  for (let index = 0; index < count; index += 1) {
    const offset = 16 + 16 * index;
    map.set(Number(reply.readBigUInt64BE(offset)), Number(reply.readBigUInt64BE(offset + 8)));
  }
  return map;
}

/**
 * Type 7: streams a tar (entries already named `db/rp/<newShardID>/…`) into shard `shardId`,
 * with backpressure, then waits for the server to close the connection, its only sign of
 * completion. The server silently skips entries that are not `.tsm` files under that shard.
 */
export async function uploadShard(
  address: RpcAddress,
  shardId: number,
  tar: AsyncIterable<Uint8Array>,
  signal?: AbortSignal,
): Promise<number> {
  const socket = await openSocket(address, signal);
  let failure: Error | undefined;
  socket.on('error', (error) => {
    failure ??= error;
  });
  const closed = once(socket, 'close').catch(() => {});
  let bytes = 0;
  try {
    const header = Buffer.alloc(10);
    header[0] = SNAPSHOTTER_MUX;
    header[1] = RequestType.shardUpdate;
    header.writeBigUInt64BE(BigInt(shardId), 2);
    socket.write(header);
    for await (const chunk of tar) {
      if (failure) break;
      bytes += chunk.byteLength;
      if (!socket.write(chunk)) {
        await Promise.race([once(socket, 'drain'), closed]);
      }
    }
    socket.end();
    // The server closes once the tar is extracted; read and drop anything it might send.
    socket.resume();
    await closed;
    throwIfAborted(signal);
    if (failure) {
      throw influxError(
        `Uploading shard ${shardId} to ${address.host}:${address.port} failed: ${failure.message}`,
        { cause: failure },
      );
    }
    return bytes;
  } finally {
    socket.destroy();
  }
}
