import { type BkError, StorageError } from './errors.ts';

/** The default of every adapter's and component's `requestTimeout`: a minute without a byte moving. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;

/** Bytes of a request body handed to `fetch` at a time, so a large body shows progress as it is sent. */
const UPLOAD_SLICE_BYTES = 256 * 1024;

export interface DeadlineFetchOptions {
  /**
   * Milliseconds a request may go without a byte moving — waiting for the response headers, while
   * the body is sent, or between two chunks of the response body — before it fails. `0` waits
   * for ever.
   */
  idleMs: number;
  /**
   * Makes the error a stalled request fails with, from a message naming the endpoint; default a
   * retryable `StorageError`. Components pass their own (a `ComponentError`).
   */
  toError?: (message: string) => BkError;
}

/**
 * A progress deadline for one request: `signal` aborts once `idleMs` pass without `touch()`, or
 * when `parent` aborts. Adapters whose client takes an `AbortSignal` pass `signal`, call `touch()`
 * whenever bytes move (an upload's progress, a download's chunk), and `done()` when the request
 * ends; `expired` then says whether the deadline (not the caller) cut it, and `error` is what to
 * throw. `idleMs` 0 never expires.
 *
 * @example
 * const deadline = new ProgressDeadline(60_000, signal, (message) => new StorageError(message, { retryable: true }), endpoint);
 * try { await blob.getProperties({ abortSignal: deadline.signal }); }
 * catch (error) { if (deadline.expired) throw deadline.error; throw error; }
 * finally { deadline.done(); }
 */
export class ProgressDeadline {
  readonly signal: AbortSignal;
  readonly #controller = new AbortController();
  readonly #parent: AbortSignal | undefined;
  readonly #onAbort: () => void;
  readonly #timer: NodeJS.Timeout | undefined;
  #error: BkError | undefined;
  #paused = false;

  /**
   * @param idleMs Milliseconds without progress before `signal` aborts; 0: never.
   * @param parent The caller's signal; its abort is passed on unchanged.
   * @param toError Makes the error from a message naming `endpoint`.
   * @param endpoint What the request talks to, for the message, e.g. `http://10.0.0.5:9000`.
   */
  constructor(
    idleMs: number,
    parent: AbortSignal | undefined,
    toError: (message: string) => BkError,
    endpoint: string,
  ) {
    this.signal = this.#controller.signal;
    this.#parent = parent;
    this.#onAbort = () => this.#controller.abort(parent?.reason);
    if (parent?.aborted) this.#controller.abort(parent.reason);
    else parent?.addEventListener('abort', this.#onAbort, { once: true });
    if (idleMs > 0) {
      this.#timer = setTimeout(() => {
        if (this.#paused) return;
        this.#error = toError(
          `${endpoint} sent nothing for ${idleMs} ms (requestTimeout): it accepted the connection but stopped answering. ` +
            'Check that the endpoint is right and the server is healthy, or raise requestTimeout.',
        );
        this.#controller.abort(this.#error);
      }, idleMs);
      // The socket keeps a process alive while a request is open; the timer need not.
      this.#timer.unref();
    }
  }

  /** Whether the deadline fired (rather than the caller aborting). */
  get expired(): boolean {
    return this.#error !== undefined;
  }

  /** The error the deadline fired with, once `expired`. */
  get error(): BkError | undefined {
    return this.#error;
  }

  /** Bytes moved: the deadline starts again (also after `pause`). */
  touch(): void {
    if (this.#error) return;
    this.#paused = false;
    this.#timer?.refresh();
  }

  /**
   * The caller holds the data and the request waits on it (a consumer between two chunks): no
   * deadline until the next `touch`.
   */
  pause(): void {
    this.#paused = true;
  }

  /** The request ended: no more deadline, no listener left on the caller's signal. */
  done(): void {
    clearTimeout(this.#timer);
    this.#parent?.removeEventListener('abort', this.#onAbort);
  }
}

/** The origin a request goes to, for messages (never the path or query: they may hold secrets). */
function originOf(input: Parameters<typeof fetch>[0]): string {
  try {
    return new URL(input instanceof Request ? input.url : String(input)).origin;
  } catch {
    return 'the endpoint';
  }
}

/** A pull-based copy of `body` that calls `touch` for each slice the transport takes. */
function touchingUpload(body: ReadableStream<Uint8Array>, touch: () => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let pending: Uint8Array | undefined;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (!pending || pending.byteLength === 0) {
          const next = await reader.read();
          if (next.done) {
            controller.close();
            return;
          }
          pending = next.value;
        }
        const slice = pending.subarray(0, UPLOAD_SLICE_BYTES);
        pending = pending.subarray(slice.byteLength);
        touch();
        controller.enqueue(slice);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/** Statuses whose `Response` cannot carry a body. */
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/**
 * Wraps a `fetch` with a progress deadline: a request fails once `idleMs` pass without a byte
 * moving (no response yet, an upload that does not drain, a response body that stops), with an
 * error naming the endpoint's origin. A transfer that keeps moving is never cut, however long it
 * takes. The caller's `signal` still aborts as before and wins over the deadline.
 *
 * Memory: none beyond one timer per request; upload bodies given as a `ReadableStream` are sent
 * in 256 KiB slices of the same buffers (no copy).
 *
 * @example
 * const fetcher = fetchWithDeadline(fetch, { idleMs: 60_000 });
 * const response = await fetcher('http://127.0.0.1:8080/v1/AUTH_test', { signal });
 */
export function fetchWithDeadline(fetcher: typeof fetch, options: DeadlineFetchOptions): typeof fetch {
  const { idleMs } = options;
  if (!idleMs) return fetcher;
  const toError = options.toError ?? ((message: string) => new StorageError(message, { retryable: true }));
  return async (input: Parameters<typeof fetch>[0], init: RequestInit = {}): Promise<Response> => {
    const parent = init.signal ?? undefined;
    parent?.throwIfAborted();
    const deadline = new ProgressDeadline(idleMs, parent, toError, originOf(input));
    const touch = () => deadline.touch();
    const done = () => deadline.done();
    const body = init.body instanceof ReadableStream ? touchingUpload(init.body, touch) : init.body;
    let response: Response;
    try {
      response = await fetcher(input, { ...init, body, signal: deadline.signal });
    } catch (error) {
      done();
      if (deadline.expired) throw deadline.error;
      throw error;
    }
    touch();
    if (!response.body || NULL_BODY_STATUSES.has(response.status)) {
      done();
      return response;
    }
    // Pulled by the consumer: the deadline runs only while a read waits on the server, never
    // while the consumer holds a chunk.
    deadline.pause();
    const reader = response.body.getReader();
    const watched = new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          touch();
          try {
            const next = await reader.read();
            if (next.done) {
              done();
              controller.close();
              return;
            }
            deadline.pause();
            controller.enqueue(next.value);
          } catch (error) {
            done();
            throw deadline.expired ? deadline.error : error;
          }
        },
        cancel(reason) {
          done();
          return reader.cancel(reason);
        },
      },
      { highWaterMark: 0 },
    );
    return new Response(watched, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  };
}
