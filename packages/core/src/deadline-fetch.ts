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
    const controller = new AbortController();
    const onAbort = () => controller.abort(parent!.reason);
    parent?.addEventListener('abort', onAbort, { once: true });
    const endpoint = originOf(input);
    const timer = setTimeout(() => {
      controller.abort(
        toError(
          `${endpoint} sent nothing for ${idleMs} ms (requestTimeout): it accepted the connection but stopped answering. ` +
            'Check that the endpoint is right and the server is healthy, or raise requestTimeout.',
        ),
      );
    }, idleMs);
    // The socket keeps a process alive while a request is open; the timer need not.
    timer.unref();
    const touch = () => timer.refresh();
    const done = () => {
      clearTimeout(timer);
      parent?.removeEventListener('abort', onAbort);
    };
    const body = init.body instanceof ReadableStream ? touchingUpload(init.body, touch) : init.body;
    let response: Response;
    try {
      response = await fetcher(input, { ...init, body, signal: controller.signal });
    } catch (error) {
      done();
      if (controller.signal.aborted && !parent?.aborted) throw controller.signal.reason;
      throw error;
    }
    touch();
    if (!response.body || NULL_BODY_STATUSES.has(response.status)) {
      done();
      return response;
    }
    const watched = response.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, stream) {
          touch();
          stream.enqueue(chunk);
        },
        flush: done,
      }),
    );
    return new Response(watched, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  };
}
