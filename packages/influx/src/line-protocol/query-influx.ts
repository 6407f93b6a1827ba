import {
  BkError,
  DEFAULT_REQUEST_TIMEOUT_MS,
  fetchWithDeadline,
  IntegrityError,
  throwIfAborted,
  toAbortedError,
} from '@bk/core';
import { InfluxQueryError } from './influx-query-error.ts';
import { splitLines } from './split-lines.ts';

/** Where an InfluxDB 1.x HTTP API listens, and how to log in. */
export interface InfluxConnection {
  /** Base URL of the HTTP API, e.g. `http://127.0.0.1:8086`. */
  httpUrl: string;
  username?: string;
  password?: string;
  /**
   * Milliseconds a query may go without a byte from InfluxDB (no answer yet, or a streamed result
   * that stops) before it fails with a retryable error naming the server; default 60,000, `0`
   * waits for ever. The time the caller spends between two series does not count.
   */
  requestTimeoutMs?: number;
}

/** `fetch` with the progress deadline of `requestTimeoutMs` (see `fetchWithDeadline`). */
function influxFetch(options: InfluxConnection, query: string): typeof fetch {
  return fetchWithDeadline(fetch, {
    idleMs: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
    toError: (message) =>
      new InfluxQueryError(`InfluxDB did not answer ${query}: ${message}`, { query, retryable: true }),
  });
}

/**
 * A JSON number kept as its source text: nanosecond timestamps and int64 fields do not fit a
 * JavaScript `number`, and floats are passed on exactly as InfluxDB printed them.
 */
export class JsonNumber {
  constructor(readonly text: string) {}
}

/** A cell of a query result: `null` for a missing field value. */
export type InfluxValue = JsonNumber | string | boolean | null;

/** One series (or one chunk of a series) from a query result. */
export interface InfluxSeries {
  name: string;
  tags: Record<string, string>;
  columns: string[];
  values: InfluxValue[][];
}

export interface QueryInfluxOptions extends InfluxConnection {
  database?: string;
  /** One InfluxQL statement. */
  query: string;
  /** Rows per response document; memory is bounded by it. Default 10 000. */
  chunkSize?: number;
  signal?: AbortSignal;
}

interface ResultDocument {
  error?: string;
  results?: Array<{ error?: string; series?: InfluxSeries[]; partial?: boolean }>;
}

/** `Authorization` header for basic auth, when a username is given. */
export function authHeaders(connection: InfluxConnection): Record<string, string> {
  if (connection.username === undefined) return {};
  const token = Buffer.from(`${connection.username}:${connection.password ?? ''}`).toString('base64');
  return { authorization: `Basic ${token}` };
}

export function endpoint(connection: InfluxConnection, path: string, params: Record<string, string>): URL {
  const url = new URL(path, connection.httpUrl.endsWith('/') ? connection.httpUrl : `${connection.httpUrl}/`);
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  return url;
}

function parseDocument(line: string, query: string): ResultDocument {
  try {
    return JSON.parse(line, (_key, value, context?: { source?: string }) =>
      typeof value === 'number' ? new JsonNumber(context?.source ?? String(value)) : value,
    ) as ResultDocument;
  } catch (error) {
    throw new IntegrityError(`InfluxDB sent a response document that is not JSON for ${query}.`, {
      cause: error,
    });
  }
}

/** Fails with the server's message when the response status is not 2xx. */
export async function checkResponse(response: Response, query: string): Promise<void> {
  if (response.ok) return;
  throw statusError(response.status, (await response.text().catch(() => '')).slice(0, 2000), query);
}

/** The error for a non-2xx status, with the server's message from its body (JSON `error` or text). */
export function statusError(status: number, text: string, query: string): InfluxQueryError {
  let message = text.trim();
  try {
    const parsed = JSON.parse(text) as { error?: unknown };
    if (typeof parsed.error === 'string') message = parsed.error;
  } catch {
    // Not JSON: keep the text as it is.
  }
  return new InfluxQueryError(`HTTP ${status} from InfluxDB for ${query}: ${message || '(no body)'}`, {
    query,
    status,
    retryable: status >= 500,
  });
}

/** Wraps a fetch failure: aborts stay aborts, anything else is a retryable connection error. */
export function fetchFailure(error: unknown, query: string, signal: AbortSignal | undefined): Error {
  if (signal?.aborted) return toAbortedError(signal);
  if (BkError.isInstance(error)) return error;
  const detail =
    error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : '';
  return new InfluxQueryError(`Cannot reach InfluxDB for ${query}: ${detail}`, {
    query,
    retryable: true,
    cause: error,
  });
}

/**
 * Runs one InfluxQL statement with `chunked=true&epoch=ns` and yields its series chunk by chunk,
 * parsing the response as a stream of JSON documents, one per line; memory is bounded by
 * `chunkSize` rows. Chunked queries are never cut at the server's `max-row-limit`; a response that
 * ends while the last document still says `"partial": true` fails with an `IntegrityError`, and an
 * `"error"` in any document fails with an {@link InfluxQueryError}.
 */
export async function* queryInflux(options: QueryInfluxOptions): AsyncIterable<InfluxSeries> {
  const { signal, query } = options;
  throwIfAborted(signal);
  const params: Record<string, string> = {
    q: query,
    chunked: 'true',
    chunk_size: String(options.chunkSize ?? 10_000),
    epoch: 'ns',
  };
  if (options.database !== undefined) params.db = options.database;
  let response: Response;
  try {
    response = await influxFetch(options, query)(endpoint(options, 'query', params), {
      headers: authHeaders(options),
      signal,
    });
    await checkResponse(response, query);
  } catch (error) {
    throw fetchFailure(error, query, signal);
  }
  const body = response.body;
  if (body === null) throw new IntegrityError(`InfluxDB sent an empty response for ${query}.`);
  let pending = false;
  let documents = 0;
  try {
    for await (const line of splitLines(body)) {
      if (line.trim() === '') continue;
      const document = parseDocument(line, query);
      documents += 1;
      if (typeof document.error === 'string') {
        throw new InfluxQueryError(`InfluxDB failed ${query}: ${document.error}`, { query });
      }
      pending = false;
      for (const result of document.results ?? []) {
        if (typeof result.error === 'string') {
          throw new InfluxQueryError(`InfluxDB failed ${query}: ${result.error}`, { query });
        }
        for (const series of result.series ?? []) {
          yield {
            name: series.name,
            tags: series.tags ?? {},
            columns: series.columns,
            values: series.values,
          };
        }
        if (result.partial === true) pending = true;
      }
    }
  } catch (error) {
    throw fetchFailure(error, query, signal);
  } finally {
    await body.cancel().catch(() => {});
  }
  if (documents === 0) throw new IntegrityError(`InfluxDB sent an empty response for ${query}.`);
  if (pending) {
    throw new IntegrityError(
      `The InfluxDB response for ${query} ended while still marked "partial": the result is truncated (max-row-limit, a timeout or a dropped connection). Nothing after the cut was read.`,
    );
  }
}

/** Runs a statement that returns no rows worth streaming (DDL) with POST /query. */
export async function executeInflux(
  options: InfluxConnection & { query: string; database?: string; signal?: AbortSignal },
): Promise<void> {
  const { signal, query } = options;
  throwIfAborted(signal);
  const params: Record<string, string> = { q: query };
  if (options.database !== undefined) params.db = options.database;
  try {
    const response = await influxFetch(options, query)(endpoint(options, 'query', {}), {
      method: 'POST',
      headers: { ...authHeaders(options), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(params).toString(),
      signal,
    });
    await checkResponse(response, query);
    const document = JSON.parse(await response.text()) as ResultDocument;
    const error = document.error ?? document.results?.find((result) => result.error)?.error;
    if (error !== undefined) throw new InfluxQueryError(`InfluxDB failed ${query}: ${error}`, { query });
  } catch (error) {
    throw fetchFailure(error, query, signal);
  }
}

/** Every row of a small query (SHOW …) as objects keyed by column. */
export async function queryRows(options: QueryInfluxOptions): Promise<Array<Record<string, InfluxValue>>> {
  const rows: Array<Record<string, InfluxValue>> = [];
  for await (const series of queryInflux(options)) {
    for (const values of series.values) {
      const row: Record<string, InfluxValue> = {};
      series.columns.forEach((column, index) => {
        row[column] = values[index] ?? null;
      });
      rows.push(row);
    }
  }
  return rows;
}
