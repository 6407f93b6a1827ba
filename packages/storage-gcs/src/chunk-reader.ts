import { type ByteStream, throwIfAborted, toAbortedError } from '@bk/core';

/** One piece of a body, cut by {@link ChunkReader}. */
export interface BodyChunk {
  /** Valid until the next `nextChunk()` call: the reader reuses its buffer. */
  bytes: Buffer;
  /** Whether the body ends with these bytes. */
  last: boolean;
}

/** The staging buffer starts this small, so a lock file does not cost a whole chunk of memory. */
const INITIAL_STAGING_BYTES = 64 * 1024;

/**
 * Cuts a body into chunks of exactly `chunkSize` bytes (the last may be shorter) in one reused
 * buffer, and tells whether each chunk is the last by reading ahead one producer chunk. Memory:
 * `chunkSize` plus one producer chunk. `nextChunk()` rejects with the signal's reason as soon
 * as the signal aborts, not only between producer chunks.
 */
export class ChunkReader {
  private readonly iterator: AsyncIterator<Uint8Array>;
  private readonly chunkSize: number;
  private readonly signal: AbortSignal | undefined;
  private staging: Buffer;
  private leftover: Uint8Array | undefined;
  private ended = false;
  private pending = false;

  constructor(body: ByteStream, chunkSize: number, signal: AbortSignal | undefined) {
    this.iterator = body[Symbol.asyncIterator]();
    this.chunkSize = chunkSize;
    this.signal = signal;
    this.staging = Buffer.allocUnsafe(Math.min(chunkSize, INITIAL_STAGING_BYTES));
  }

  /** The next chunk; after a chunk with `last: true`, further calls return an empty last chunk. */
  async nextChunk(): Promise<BodyChunk> {
    let filled = 0;
    for (;;) {
      if (this.leftover !== undefined) {
        const take = Math.min(this.leftover.byteLength, this.chunkSize - filled);
        this.reserve(filled + take);
        this.staging.set(this.leftover.subarray(0, take), filled);
        filled += take;
        this.leftover = take < this.leftover.byteLength ? this.leftover.subarray(take) : undefined;
      }
      if (filled === this.chunkSize) {
        if (this.leftover === undefined && !this.ended) this.leftover = await this.pull();
        return { bytes: this.staging.subarray(0, filled), last: this.leftover === undefined };
      }
      if (this.ended) return { bytes: this.staging.subarray(0, filled), last: true };
      this.leftover = await this.pull();
    }
  }

  /** Grows the staging buffer (doubling, up to the chunk size) to hold `size` bytes. */
  private reserve(size: number): void {
    if (size <= this.staging.byteLength) return;
    let capacity = this.staging.byteLength;
    while (capacity < size) capacity = Math.min(this.chunkSize, capacity * 2);
    const grown = Buffer.allocUnsafe(capacity);
    this.staging.copy(grown);
    this.staging = grown;
  }

  /** The next non-empty producer chunk, or `undefined` (and `ended`) at the end. */
  private async pull(): Promise<Uint8Array | undefined> {
    for (;;) {
      const result = await this.raceSignal();
      if (result.done) {
        this.ended = true;
        return undefined;
      }
      if (result.value.byteLength > 0) return result.value;
    }
  }

  private async raceSignal(): Promise<IteratorResult<Uint8Array>> {
    const { signal } = this;
    throwIfAborted(signal);
    this.pending = true;
    let onAbort = (): void => {};
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(toAbortedError(signal as AbortSignal));
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const result = await Promise.race([this.iterator.next(), aborted]);
      this.pending = false;
      return result;
    } catch (error) {
      // A body that threw is finished; one interrupted by the signal still has a read pending.
      if (!signal?.aborted) {
        this.pending = false;
        this.ended = true;
      }
      throw error;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Lets the producer release what it holds when the body was not read to the end. A read the
   * signal interrupted may never settle, so then `return()` is started but not awaited.
   */
  async release(): Promise<void> {
    if (this.ended || typeof this.iterator.return !== 'function') return;
    this.ended = true;
    const released = Promise.resolve(this.iterator.return()).catch(() => {});
    if (!this.pending) await released;
  }
}
