import { setTimeout as sleep } from 'node:timers/promises';
import { StorageError, toAbortedError } from '@bk/core';
import { authenticate, type SwiftAuth, type SwiftSession } from './swift-auth.ts';

/** One request to the Swift API, relative to the account's storage URL. */
export interface SwiftRequest {
  method: 'GET' | 'HEAD' | 'PUT' | 'DELETE' | 'POST';
  /** The already-encoded path below the storage URL, e.g. `/container/a%20b`; `''` for the account. */
  path: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Uint8Array | string;
  /**
   * Whether the request may be sent again after a 5xx, 429 or a connection error. A 401 is
   * always answered by renewing the token once and sending the request again.
   */
  idempotent: boolean;
  signal?: AbortSignal;
}

/** Statuses worth another try: throttling, timeouts and server errors. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** Talks to one Swift account: keeps the token, renews it on 401, retries with backoff. */
export class SwiftClient {
  private session: Promise<SwiftSession> | undefined;
  private readonly auth: SwiftAuth;
  private readonly fetcher: typeof fetch;
  private readonly retries: number;

  /**
   * @param auth How to get a token.
   * @param fetcher The `fetch` to use (tests inject faults through it).
   * @param retries How many times an idempotent request is repeated after a retryable failure.
   */
  constructor(auth: SwiftAuth, fetcher: typeof fetch, retries: number) {
    this.auth = auth;
    this.fetcher = fetcher;
    this.retries = retries;
  }

  private async currentSession(signal: AbortSignal | undefined): Promise<SwiftSession> {
    if (!this.session) {
      const pending = authenticate(this.auth, this.fetcher, signal);
      this.session = pending;
      // A failed or aborted login must not be cached for every later call.
      pending.catch(() => {
        if (this.session === pending) this.session = undefined;
      });
    }
    return this.session;
  }

  /** Exponential backoff with full jitter: 0–200 ms, 0–400 ms, … capped at 5 s. */
  async backoff(attempt: number, signal: AbortSignal | undefined): Promise<void> {
    const delay = Math.random() * Math.min(5_000, 200 * 2 ** attempt);
    try {
      await sleep(delay, undefined, { signal });
    } catch (error) {
      throw signal?.aborted ? toAbortedError(signal) : error;
    }
  }

  /** The number of retries this client makes for idempotent requests. */
  get maxRetries(): number {
    return this.retries;
  }

  /**
   * Sends a request and returns the response, whatever its status, except that a 401 renews the
   * token (once) and idempotent requests are repeated after retryable statuses and connection
   * errors. The last retryable response is returned as is, for the caller to turn into an error.
   *
   * @throws {AbortedError} When `signal` aborts.
   * @throws {StorageError} (retryable) When the connection fails on every attempt.
   */
  async send(request: SwiftRequest, describe: string): Promise<Response> {
    let renewed = false;
    for (let attempt = 0; ; attempt += 1) {
      if (request.signal?.aborted) throw toAbortedError(request.signal);
      const session = await this.currentSession(request.signal);
      const query = request.query ? `?${new URLSearchParams(request.query)}` : '';
      let response: Response;
      try {
        response = await this.fetcher(`${session.storageUrl}${request.path}${query}`, {
          method: request.method,
          ...requestBody(request.body, { ...request.headers, 'X-Auth-Token': session.token }),
          signal: request.signal,
        });
      } catch (error) {
        if (request.signal?.aborted) throw toAbortedError(request.signal);
        if (request.idempotent && attempt < this.retries) {
          await this.backoff(attempt, request.signal);
          continue;
        }
        const detail = error instanceof Error ? `${error.message}${causeCode(error)}` : String(error);
        throw new StorageError(`Could not ${describe}: ${detail}.`, { cause: error, retryable: true });
      }
      if (response.status === 401 && !renewed && this.auth.kind !== 'token') {
        await response.body?.cancel();
        renewed = true;
        if (this.session && (await this.session.catch(() => undefined)) === session) this.session = undefined;
        attempt -= 1;
        continue;
      }
      if (request.idempotent && isRetryableStatus(response.status) && attempt < this.retries) {
        await response.body?.cancel();
        await this.backoff(attempt, request.signal);
        continue;
      }
      return response;
    }
  }
}

/**
 * The body and headers of one attempt. fetch copies an array body before sending it, which
 * would hold every segment in flight twice; a stream over the same bytes (made anew for each
 * attempt, with their `Content-Length`) is sent without a copy.
 */
function requestBody(
  body: Uint8Array | string | undefined,
  headers: Record<string, string>,
): Pick<RequestInit, 'body' | 'headers'> & { duplex?: 'half' } {
  if (!(body instanceof Uint8Array)) return { body, headers };
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (body.byteLength > 0) controller.enqueue(body);
      controller.close();
    },
  });
  return { body: stream, headers: { ...headers, 'Content-Length': String(body.byteLength) }, duplex: 'half' };
}

/** ` (ECONNRESET)` when a fetch failure carries a system error code. */
function causeCode(error: Error): string {
  const cause = error.cause as { code?: unknown } | undefined;
  return typeof cause?.code === 'string' ? ` (${cause.code})` : '';
}

/** A `StorageError` for an unexpected status; never includes headers (they hold the token). */
export async function statusError(describe: string, response: Response): Promise<StorageError> {
  const text = await response.text().catch(() => '');
  const detail = text
    .replace(/<[^>]*>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 200);
  return new StorageError(`Could not ${describe}: HTTP ${response.status}${detail ? ` (${detail})` : ''}.`, {
    retryable: isRetryableStatus(response.status),
  });
}
