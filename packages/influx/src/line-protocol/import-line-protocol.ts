import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { pipeline, Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { createGunzip } from 'node:zlib';
import { ConfigError, IntegrityError, throwIfAborted, toAbortedError } from '@bk/core';
import { quoteIdentifier } from './escape.ts';
import { listRetentionPolicies } from './export-line-protocol.ts';
import { InfluxQueryError } from './influx-query-error.ts';
import {
  authHeaders,
  endpoint,
  executeInflux,
  fetchFailure,
  type InfluxConnection,
  statusError,
} from './query-influx.ts';

/** Timestamp precision of the lines, as `influx -import -precision` takes it. */
export type LineProtocolPrecision = 'ns' | 'u' | 'ms' | 's' | 'm' | 'h';

export interface ImportLineProtocolOptions extends InfluxConnection {
  /**
   * Write every point into this database, whatever `# CONTEXT-DATABASE:` says (restore under a
   * new name). Unset: the annotations decide, as with `influx -import`.
   */
  database?: string;
  /** Write every point into this retention policy, whatever `# CONTEXT-RETENTION-POLICY:` says. */
  retentionPolicy?: string;
  /** Default `ns`. */
  precision?: LineProtocolPrecision;
  /** Lines per `POST /write`. Default 5 000. */
  batchSize?: number;
  /**
   * Bytes per `POST /write` at most (a batch is sent early when the next line would pass it);
   * default 4 MiB. A longer single line is sent alone.
   */
  batchBytes?: number;
  /**
   * Writes in flight at once. Default 2. Memory ceiling: `(concurrency + 1) × batchBytes` (the
   * batches in flight plus the one being filled, each one buffer of line-protocol bytes reused
   * from batch to batch) plus one decompressed input chunk (1 MiB).
   */
  concurrency?: number;
  /** Retries of a write that failed with 5xx, a timeout or a connection error (never 4xx). Default 3. */
  retries?: number;
  /** Milliseconds before one write attempt is abandoned (and retried). Default 60 000. */
  requestTimeoutMs?: number;
  /**
   * Before the first write to a database or retention policy, create it when it is missing
   * (`CREATE DATABASE`; a missing retention policy gets `DURATION INF REPLICATION 1`, since line
   * protocol does not carry the original's). Default false: a missing one fails the import.
   */
  createDatabase?: boolean;
  signal?: AbortSignal;
}

export interface ImportLineProtocolResult {
  /** Points (line-protocol lines) written. */
  lines: number;
  /** `POST /write` requests that succeeded. */
  batches: number;
  /** `# DDL` statements executed. */
  statements: number;
}

interface Batch {
  database: string;
  retentionPolicy: string | undefined;
  /** The lines, each followed by `\n`, in `buffer[0, length)`. */
  buffer: Buffer;
  length: number;
  lines: number;
}

const NEWLINE = 0x0a;
const HASH = 0x23;
const CARRIAGE_RETURN = 0x0d;

/** Whether `line[start, end)` is empty or only blanks (what `String.prototype.trim` removes, in ASCII). */
function isBlank(bytes: Uint8Array, start: number, end: number): boolean {
  for (let index = start; index < end; index += 1) {
    const byte = bytes[index]!;
    if (byte !== 0x20 && (byte < 0x09 || byte > 0x0d)) return false;
  }
  return true;
}

const GZIP_MAGIC = [0x1f, 0x8b];

/** Decompresses the source when it starts with the gzip magic bytes, else passes it on. */
async function* maybeGunzip(source: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  const iterator = source[Symbol.asyncIterator]();
  const head: Uint8Array[] = [];
  let headBytes = 0;
  let done = false;
  try {
    while (headBytes < GZIP_MAGIC.length) {
      const next = await iterator.next();
      if (next.done) {
        done = true;
        break;
      }
      head.push(next.value);
      headBytes += next.value.byteLength;
    }
    const first = Buffer.concat(head, headBytes);
    const rest = (async function* () {
      yield first;
      while (!done) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value;
      }
    })();
    const compressed = first[0] === GZIP_MAGIC[0] && first[1] === GZIP_MAGIC[1];
    yield* compressed ? gunzipped(rest) : rest;
  } finally {
    await iterator.return?.();
  }
}

/**
 * gunzip with 64 KiB output chunks: core's 1 MiB chunks suit archives, but here each one is
 * copied into a batch at once, and 1 MiB buffers left for the collector cost ~25 MiB of RSS.
 */
async function* gunzipped(source: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  const inflate = pipeline(Readable.from(source), createGunzip({ chunkSize: 64 * 1024 }), () => {});
  try {
    for await (const chunk of inflate as AsyncIterable<Uint8Array>) yield chunk;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('Z_')) {
      throw new IntegrityError(`The line protocol is not valid gzip: ${(error as Error).message}.`, {
        cause: error,
      });
    }
    throw error;
  } finally {
    inflate.destroy();
  }
}

const PRECISION_PARAM: Record<LineProtocolPrecision, string> = {
  ns: 'n',
  u: 'u',
  ms: 'ms',
  s: 's',
  m: 'm',
  h: 'h',
};

function backoff(attempt: number): number {
  const base = Math.min(200 * 2 ** attempt, 5_000);
  return base / 2 + Math.random() * base;
}

/**
 * Imports annotated line protocol, plain or gzipped (detected by its magic bytes), as
 * `influx -import` does: `# DDL` switches to statements run with `POST /query`, `# DML` back to
 * points; `# CONTEXT-DATABASE:` and `# CONTEXT-RETENTION-POLICY:` set where the following points
 * go; other `#` lines and blank lines are skipped. Unlike `influx -import`, a file without any
 * section marker is read as points (DML), not as statements.
 *
 * Points are written in batches of `batchSize` lines (at most `batchBytes`) by up to
 * `concurrency` concurrent `POST /write` requests, reading the source only as fast as they
 * finish. Lines stay bytes from the input to the request (only `#` and DDL lines are decoded):
 * memory is `(concurrency + 1) × batchBytes` of reused buffers plus one input chunk. 5xx, timeouts and connection errors are retried with
 * exponential backoff and jitter; a 4xx (bad line, missing database, field type conflict) fails at
 * once. On failure the in-flight writes are cancelled and awaited, then the first error is thrown;
 * batches already written stay written.
 *
 * @throws {InfluxQueryError} a write or statement failed. {@link ConfigError}: no database known.
 * @example
 * const { lines } = await importLineProtocol(createReadStream('m.lp.gz'), { httpUrl, database: 'copy', createDatabase: true });
 */
export async function importLineProtocol(
  source: AsyncIterable<Uint8Array>,
  options: ImportLineProtocolOptions,
): Promise<ImportLineProtocolResult> {
  const { signal } = options;
  throwIfAborted(signal);
  const batchSize = Math.max(1, options.batchSize ?? 5_000);
  const concurrency = Math.max(1, options.concurrency ?? 2);
  const result: ImportLineProtocolResult = { lines: 0, batches: 0, statements: 0 };
  const stop = new AbortController();
  const requestSignal = signal === undefined ? stop.signal : AbortSignal.any([signal, stop.signal]);
  const inFlight = new Set<Promise<void>>();
  const created = new Set<string>();
  // node:http rather than fetch for the writes: fetch copies each body through a web stream and
  // held ~50 MiB more at the same batches; one kept-alive connection per write in flight.
  const agent = new (options.httpUrl.startsWith('https:') ? HttpsAgent : HttpAgent)({
    keepAlive: true,
    maxSockets: concurrency,
  });
  let failure: { error: unknown } | undefined;

  const fail = (error: unknown) => {
    failure ??= { error };
    stop.abort(error);
  };
  const checkFailure = () => {
    if (failure !== undefined) throw failure.error;
    throwIfAborted(signal);
  };
  const drain = async () => {
    await Promise.allSettled(inFlight);
    checkFailure();
  };

  let mode: 'ddl' | 'dml' = 'dml';
  let contextDatabase: string | undefined;
  let contextRetentionPolicy: string | undefined;
  let batch: Batch | undefined;
  const batchBytes = Math.max(64 * 1024, options.batchBytes ?? 4 * 1024 * 1024);
  /** Batch buffers written and free again: at most `concurrency + 1` exist at a time. */
  const spare: Buffer[] = [];

  const dispatch = async (full: Batch) => {
    const place = `${full.database}\u0000${full.retentionPolicy ?? ''}`;
    if (options.createDatabase && !created.has(place)) {
      await drain();
      await createPlace(options, full.database, full.retentionPolicy, signal);
      created.add(place);
    }
    while (inFlight.size >= concurrency) await Promise.race(inFlight);
    checkFailure();
    const task = writeBatch(full, options, agent, requestSignal).then(
      () => {
        result.batches += 1;
        result.lines += full.lines;
        if (full.buffer.byteLength === batchBytes) spare.push(full.buffer);
      },
      (error: unknown) => fail(error),
    );
    const tracked = task.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  };
  const flush = async () => {
    if (batch === undefined || batch.lines === 0) return;
    const full = batch;
    batch = undefined;
    await dispatch(full);
  };
  const decoder = new TextDecoder('utf-8');

  /** One line, `bytes[start, end)` without its `\n` and `\r`. */
  const line = async (bytes: Buffer, start: number, end: number): Promise<void> => {
    if (bytes[start] === HASH) {
      const text = decoder.decode(bytes.subarray(start, end));
      if (text.startsWith('# DDL')) {
        await flush();
        mode = 'ddl';
      } else if (text.startsWith('# DML')) {
        mode = 'dml';
      } else if (text.startsWith('# CONTEXT-DATABASE:')) {
        await flush();
        contextDatabase = text.slice('# CONTEXT-DATABASE:'.length).trim();
      } else if (text.startsWith('# CONTEXT-RETENTION-POLICY:')) {
        await flush();
        contextRetentionPolicy = text.slice('# CONTEXT-RETENTION-POLICY:'.length).trim();
      }
      return;
    }
    if (isBlank(bytes, start, end)) return;
    if (mode === 'ddl') {
      await drain();
      await executeInflux({ ...options, query: decoder.decode(bytes.subarray(start, end)).trim(), signal });
      result.statements += 1;
      return;
    }
    const size = end - start + 1;
    if (batch !== undefined && batch.length + size > batch.buffer.byteLength) await flush();
    if (batch === undefined) {
      const database = options.database ?? contextDatabase;
      if (database === undefined || database === '') {
        throw new ConfigError(
          'importLineProtocol: no database for the points. Pass `database` or start the input with `# CONTEXT-DATABASE: <name>`.',
        );
      }
      batch = {
        database,
        retentionPolicy: options.retentionPolicy ?? contextRetentionPolicy,
        buffer:
          size > batchBytes
            ? Buffer.allocUnsafeSlow(size)
            : (spare.pop() ?? Buffer.allocUnsafeSlow(batchBytes)),
        length: 0,
        lines: 0,
      };
    }
    bytes.copy(batch.buffer, batch.length, start, end);
    batch.buffer[batch.length + size - 1] = NEWLINE;
    batch.length += size;
    batch.lines += 1;
    if (batch.lines >= batchSize) await flush();
  };

  try {
    /** The start of a line that continues in the next chunk. */
    let rest: Buffer | undefined;
    for await (const chunk of maybeGunzip(source)) {
      checkFailure();
      const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      let position = 0;
      if (rest !== undefined) {
        const newline = bytes.indexOf(NEWLINE);
        if (newline === -1) {
          rest = Buffer.concat([rest, bytes]);
          continue;
        }
        // The line that spans the two chunks, then the rest of this one.
        const spanning = Buffer.concat([rest, bytes.subarray(0, newline)]);
        rest = undefined;
        const end = spanning.at(-1) === CARRIAGE_RETURN ? spanning.byteLength - 1 : spanning.byteLength;
        await line(spanning, 0, end);
        position = newline + 1;
      }
      for (
        let newline = bytes.indexOf(NEWLINE, position);
        newline !== -1;
        newline = bytes.indexOf(NEWLINE, position)
      ) {
        const end = newline > position && bytes[newline - 1] === CARRIAGE_RETURN ? newline - 1 : newline;
        await line(bytes, position, end);
        position = newline + 1;
      }
      if (position < bytes.byteLength) rest = Buffer.from(bytes.subarray(position));
    }
    if (rest !== undefined && rest.byteLength > 0) {
      const end = rest[rest.byteLength - 1] === CARRIAGE_RETURN ? rest.byteLength - 1 : rest.byteLength;
      await line(rest, 0, end);
    }
    await flush();
    await drain();
    return result;
  } catch (error) {
    fail(error);
    await Promise.allSettled(inFlight);
    throw failure?.error ?? error;
  } finally {
    agent.destroy();
  }
}

async function createPlace(
  options: ImportLineProtocolOptions,
  database: string,
  retentionPolicy: string | undefined,
  signal: AbortSignal | undefined,
): Promise<void> {
  await executeInflux({ ...options, query: `CREATE DATABASE ${quoteIdentifier(database)}`, signal });
  if (retentionPolicy === undefined || retentionPolicy === '') return;
  const existing = await listRetentionPolicies({ ...options, database, signal });
  if (existing.includes(retentionPolicy)) return;
  await executeInflux({
    ...options,
    query: `CREATE RETENTION POLICY ${quoteIdentifier(retentionPolicy)} ON ${quoteIdentifier(database)} DURATION INF REPLICATION 1`,
    signal,
  });
}

async function writeBatch(
  batch: Batch,
  options: ImportLineProtocolOptions,
  agent: HttpAgent,
  signal: AbortSignal,
): Promise<void> {
  const params: Record<string, string> = {
    db: batch.database,
    precision: PRECISION_PARAM[options.precision ?? 'ns'],
  };
  if (batch.retentionPolicy !== undefined && batch.retentionPolicy !== '') params.rp = batch.retentionPolicy;
  const url = endpoint(options, 'write', params);
  const target = `POST /write?db=${batch.database}${params.rp === undefined ? '' : `&rp=${params.rp}`}`;
  const body = batch.buffer.subarray(0, batch.length);
  const retries = options.retries ?? 3;
  for (let attempt = 0; ; attempt += 1) {
    if (signal.aborted) throw toAbortedError(signal);
    const attemptSignal = AbortSignal.any([signal, AbortSignal.timeout(options.requestTimeoutMs ?? 60_000)]);
    try {
      const { status, text } = await post(url, authHeaders(options), body, agent, attemptSignal);
      if (status < 200 || status > 299) throw statusError(status, text, target);
      return;
    } catch (raw) {
      // A timeout aborts attemptSignal but not `signal`: that is a retryable failure, not an abort.
      const error = fetchFailure(raw, target, signal);
      const retryable = error instanceof InfluxQueryError && error.retryable;
      if (!retryable || attempt >= retries) throw error;
      await sleep(backoff(attempt), undefined, { signal }).catch(() => {
        throw toAbortedError(signal);
      });
    }
  }
}

/** One `POST` of `body`; resolves with the status and the start of the response body (2 000 bytes). */
function post(
  url: URL,
  headers: Record<string, string>,
  body: Uint8Array,
  agent: HttpAgent,
  signal: AbortSignal,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const request = (url.protocol === 'https:' ? httpsRequest : httpRequest)(
      url,
      {
        method: 'POST',
        agent,
        signal,
        headers: {
          ...headers,
          'content-type': 'text/plain; charset=utf-8',
          'content-length': String(body.byteLength),
        },
      },
      (response) => {
        const kept: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          if (size < 2_000) kept.push(chunk);
          size += chunk.byteLength;
        });
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            text: Buffer.concat(kept).toString('utf8').slice(0, 2_000),
          }),
        );
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}
