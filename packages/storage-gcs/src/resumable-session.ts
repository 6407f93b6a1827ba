import { setTimeout as sleep } from 'node:timers/promises';
import { StorageError, toAbortedError } from '@bk/core';
import { isRetryable, toBkError } from './gcs-error.ts';

/** How chunk requests are retried; mirrors the client's `retryOptions`. */
export interface ChunkRetryPolicy {
  /** Retries after the first attempt; 0 turns retrying off. */
  maxRetries: number;
  /** The first delay is 1 s; each next one is this many times longer. */
  retryDelayMultiplier: number;
  /** Upper bound of one delay, in seconds. */
  maxRetryDelay: number;
}

/** What GCS answers when an upload finalises: the object resource (the fields bk reads). */
export interface UploadedObject {
  name: string;
  size: string | number;
  generation: string | number;
  md5Hash?: string;
  crc32c?: string;
  updated?: string;
  etag?: string;
}

/** How long cancelling a session may take; it runs after an error, without the caller's signal. */
const CANCEL_TIMEOUT_MS = 10_000;

/**
 * The client side of one GCS resumable upload session (the JSON API's `uploadType=resumable`),
 * spoken over `fetch`: chunks go up with `Content-Range: bytes a-b/*`, GCS answers 308 with the
 * persisted `Range`, the last chunk carries the total and finalises the object. A failed chunk
 * request is retried after asking GCS how much it kept (`Content-Range: bytes *\/*`), so a
 * retry resends only what is missing. The session URI authorises the upload by itself, so it
 * is never logged or put in an error message.
 */
export class ResumableSession {
  private readonly uri: string;
  private readonly retry: ChunkRetryPolicy;
  private readonly key: string;
  private readonly where: string;

  /**
   * @param uri The session URI from the initiating `POST ...?uploadType=resumable`.
   * @param key The bk key, for `AlreadyExistsError`.
   * @param where `gs://bucket/name`, for messages.
   * @param fetcher The `fetch` chunks go through (with a progress deadline).
   */
  private readonly fetcher: typeof fetch;

  constructor(
    uri: string,
    key: string,
    where: string,
    retry: ChunkRetryPolicy,
    fetcher: typeof fetch = fetch,
  ) {
    this.fetcher = fetcher;
    this.uri = uri;
    this.key = key;
    this.where = where;
    this.retry = retry;
  }

  /**
   * Uploads `bytes` at `offset` (a multiple of 256 KiB long) without finalising.
   * @throws {StorageError} When GCS refuses it or retries run out.
   */
  async putChunk(bytes: Uint8Array, offset: number, signal: AbortSignal | undefined): Promise<void> {
    const result = await this.send(bytes, offset, undefined, undefined, signal);
    if (result !== undefined)
      throw new StorageError(`GCS finalised ${this.where} before its last chunk; the upload is incomplete.`);
  }

  /**
   * Uploads the last `bytes` at `offset` and finalises the object of `total` bytes. `hashHeader`
   * (`md5=…` and/or `crc32c=…`) makes GCS refuse the object when its bytes differ. Not cut short
   * by `signal`: once the last bytes are on their way, the caller waits for the answer and
   * deletes the object if it no longer wants it.
   * @throws {AlreadyExistsError} When the session was created with `ifGenerationMatch: 0` and
   *   the key was taken meanwhile (412).
   */
  async finish(
    bytes: Uint8Array,
    offset: number,
    total: number,
    hashHeader: string,
  ): Promise<UploadedObject> {
    const result = await this.send(bytes, offset, total, hashHeader, undefined);
    if (result === undefined)
      throw new StorageError(`GCS did not finalise ${this.where} after its last chunk (${total} bytes).`);
    return result;
  }

  /** Best effort: `DELETE` on the session URI (GCS answers 499), so nothing of it remains. */
  async cancel(): Promise<void> {
    try {
      const response = await this.fetcher(this.uri, {
        method: 'DELETE',
        headers: { 'content-length': '0' },
        signal: AbortSignal.timeout(CANCEL_TIMEOUT_MS),
      });
      await response.body?.cancel();
    } catch {
      // An unreachable session expires by itself within a week and never becomes an object.
    }
  }

  /**
   * Sends `bytes` from `offset`, resuming from what GCS reports on a retryable failure.
   * Resolves the object resource when the upload finalised, `undefined` on 308.
   */
  private async send(
    bytes: Uint8Array,
    offset: number,
    total: number | undefined,
    hashHeader: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<UploadedObject | undefined> {
    const end = offset + bytes.byteLength;
    let from = offset;
    for (let attempt = 0; ; attempt += 1) {
      try {
        for (;;) {
          const part = bytes.subarray(from - offset);
          const range =
            part.byteLength === 0 ? `bytes */${total ?? '*'}` : `bytes ${from}-${end - 1}/${total ?? '*'}`;
          const headers: Record<string, string> = { 'content-range': range };
          if (hashHeader !== undefined) headers['x-goog-hash'] = hashHeader;
          const response = await this.fetcher(this.uri, {
            method: 'PUT',
            headers,
            body: part,
            redirect: 'manual',
            ...(signal ? { signal } : {}),
          });
          const outcome = await this.read(response);
          if (outcome.done) return outcome.object;
          // GCS may keep less than it was sent; the rest goes again, from where it stopped.
          if (outcome.persisted >= end) return undefined;
          if (outcome.persisted < from || part.byteLength === 0)
            throw new StorageError(
              `GCS lost bytes of ${this.where}: it holds ${outcome.persisted}, ${from} were sent before this chunk.`,
            );
          from = outcome.persisted;
        }
      } catch (error) {
        if (signal?.aborted) throw toAbortedError(signal);
        if (!isRetryable(error) || attempt >= this.retry.maxRetries)
          throw toBkError(error, `upload ${this.where}`, this.key);
        await this.backoff(attempt, signal);
        const status = await this.query(total, signal).catch((queryError: unknown) => {
          if (signal?.aborted) throw toAbortedError(signal);
          if (isRetryable(queryError)) return undefined;
          throw toBkError(queryError, `upload ${this.where}`, this.key);
        });
        if (status === undefined) continue;
        if (status.done) return status.object;
        if (status.persisted < offset)
          throw new StorageError(
            `GCS lost bytes of ${this.where}: it holds ${status.persisted}, ${offset} were sent before this chunk.`,
          );
        from = Math.min(status.persisted, end);
        if (from === end && total === undefined) return undefined;
      }
    }
  }

  /** Asks how many bytes GCS holds (`Content-Range: bytes *\/total`). */
  private async query(
    total: number | undefined,
    signal: AbortSignal | undefined,
  ): Promise<{ done: true; object: UploadedObject } | { done: false; persisted: number }> {
    const response = await this.fetcher(this.uri, {
      method: 'PUT',
      headers: { 'content-range': `bytes */${total ?? '*'}`, 'content-length': '0' },
      redirect: 'manual',
      ...(signal ? { signal } : {}),
    });
    return this.read(response);
  }

  private async read(
    response: Response,
  ): Promise<{ done: true; object: UploadedObject } | { done: false; persisted: number }> {
    if (response.status === 308) {
      await response.body?.cancel();
      // `Range: bytes=0-N` means N + 1 bytes are stored; no header means none.
      const match = /^bytes=0-(\d+)$/.exec(response.headers.get('range') ?? '');
      return { done: false, persisted: match ? Number(match[1]) + 1 : 0 };
    }
    const text = await response.text();
    if (response.status === 200 || response.status === 201) {
      try {
        return { done: true, object: JSON.parse(text) as UploadedObject };
      } catch (error) {
        throw new StorageError(`GCS finalised ${this.where} but its answer is not JSON.`, { cause: error });
      }
    }
    const failure = new Error(`${response.status} ${text.slice(0, 300)}`.trim()) as Error & {
      status: number;
    };
    failure.status = response.status;
    throw failure;
  }

  /** Exponential backoff with equal jitter: half the delay fixed, half random. */
  private async backoff(attempt: number, signal: AbortSignal | undefined): Promise<void> {
    const { retryDelayMultiplier, maxRetryDelay } = this.retry;
    const ceiling = Math.min(maxRetryDelay * 1000, 1000 * retryDelayMultiplier ** attempt);
    try {
      await sleep(ceiling / 2 + Math.random() * (ceiling / 2), undefined, signal ? { signal } : {});
    } catch (error) {
      if (signal?.aborted) throw toAbortedError(signal);
      throw error;
    }
  }
}
