import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, gunzip, throwIfAborted, toAbortedError } from '@bk/core';
import { quoteIdentifier } from './escape.ts';
import { listRetentionPolicies } from './export-line-protocol.ts';
import { InfluxQueryError } from './influx-query-error.ts';
import {
  authHeaders,
  checkResponse,
  endpoint,
  executeInflux,
  fetchFailure,
  type InfluxConnection,
} from './query-influx.ts';
import { splitLines } from './split-lines.ts';

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
   * Writes in flight at once. Default 2. Memory ceiling: about `(concurrency + 1) × batchSize`
   * lines (the batches in flight plus the one being filled).
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
  lines: string[];
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
    yield* compressed ? gunzip(rest) : rest;
  } finally {
    await iterator.return?.();
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
 * Points are written in batches of `batchSize` lines by up to `concurrency` concurrent
 * `POST /write` requests, reading the source only as fast as they finish (memory: about
 * `(concurrency + 1) × batchSize` lines). 5xx, timeouts and connection errors are retried with
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

  const dispatch = async (full: Batch) => {
    const place = `${full.database}\u0000${full.retentionPolicy ?? ''}`;
    if (options.createDatabase && !created.has(place)) {
      await drain();
      await createPlace(options, full.database, full.retentionPolicy, signal);
      created.add(place);
    }
    while (inFlight.size >= concurrency) await Promise.race(inFlight);
    checkFailure();
    const task = writeBatch(full, options, requestSignal).then(
      () => {
        result.batches += 1;
        result.lines += full.lines.length;
      },
      (error: unknown) => fail(error),
    );
    const tracked = task.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  };
  const flush = async () => {
    if (batch === undefined || batch.lines.length === 0) return;
    const full = batch;
    batch = undefined;
    await dispatch(full);
  };

  try {
    for await (const line of splitLines(maybeGunzip(source))) {
      checkFailure();
      if (line.startsWith('#')) {
        if (line.startsWith('# DDL')) {
          await flush();
          mode = 'ddl';
        } else if (line.startsWith('# DML')) {
          mode = 'dml';
        } else if (line.startsWith('# CONTEXT-DATABASE:')) {
          await flush();
          contextDatabase = line.slice('# CONTEXT-DATABASE:'.length).trim();
        } else if (line.startsWith('# CONTEXT-RETENTION-POLICY:')) {
          await flush();
          contextRetentionPolicy = line.slice('# CONTEXT-RETENTION-POLICY:'.length).trim();
        }
        continue;
      }
      if (line.trim() === '') continue;
      if (mode === 'ddl') {
        await drain();
        await executeInflux({ ...options, query: line.trim(), signal });
        result.statements += 1;
        continue;
      }
      if (batch === undefined) {
        const database = options.database ?? contextDatabase;
        if (database === undefined || database === '') {
          throw new ConfigError(
            'importLineProtocol: no database for the points. Pass `database` or start the input with `# CONTEXT-DATABASE: <name>`.',
          );
        }
        batch = { database, retentionPolicy: options.retentionPolicy ?? contextRetentionPolicy, lines: [] };
      }
      batch.lines.push(line);
      if (batch.lines.length >= batchSize) await flush();
    }
    await flush();
    await drain();
    return result;
  } catch (error) {
    fail(error);
    await Promise.allSettled(inFlight);
    throw failure?.error ?? error;
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
  signal: AbortSignal,
): Promise<void> {
  const params: Record<string, string> = {
    db: batch.database,
    precision: PRECISION_PARAM[options.precision ?? 'ns'],
  };
  if (batch.retentionPolicy !== undefined && batch.retentionPolicy !== '') params.rp = batch.retentionPolicy;
  const url = endpoint(options, 'write', params);
  const target = `POST /write?db=${batch.database}${params.rp === undefined ? '' : `&rp=${params.rp}`}`;
  const body = batch.lines.join('\n');
  const retries = options.retries ?? 3;
  for (let attempt = 0; ; attempt += 1) {
    if (signal.aborted) throw toAbortedError(signal);
    const attemptSignal = AbortSignal.any([signal, AbortSignal.timeout(options.requestTimeoutMs ?? 60_000)]);
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: { ...authHeaders(options), 'content-type': 'text/plain; charset=utf-8' },
        body,
        signal: attemptSignal,
      });
      await checkResponse(response, target);
      await response.body?.cancel();
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
