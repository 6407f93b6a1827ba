import { type ByteStream, throwIfAborted, toAbortedError } from '@bk/core';

/**
 * Pulls a body chunk by chunk. `next()` rejects with the signal's reason as soon as the signal
 * aborts, not only between chunks, so a body that stalls cannot hold an aborted `put` open.
 */
export class BodyReader {
  private readonly iterator: AsyncIterator<Uint8Array>;
  private readonly signal: AbortSignal | undefined;
  private done = false;
  private pending = false;

  constructor(body: ByteStream, signal: AbortSignal | undefined) {
    this.iterator = body[Symbol.asyncIterator]();
    this.signal = signal;
  }

  /** The next non-empty chunk, or `undefined` at the end. */
  async next(): Promise<Uint8Array | undefined> {
    for (;;) {
      const result = await this.pull();
      if (result.done) {
        this.done = true;
        return undefined;
      }
      if (result.value.byteLength > 0) return result.value;
    }
  }

  private async pull(): Promise<IteratorResult<Uint8Array>> {
    const { signal } = this;
    throwIfAborted(signal);
    this.pending = true;
    let onAbort = (): void => {};
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(toAbortedError(signal!));
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const result = await Promise.race([this.iterator.next(), aborted]);
      this.pending = false;
      return result;
    } catch (error) {
      // A body that threw is finished; one interrupted by the signal still has a read pending.
      if (!signal?.aborted) this.pending = false;
      this.done = !signal?.aborted;
      throw error;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Lets the producer release what it holds when the body was not read to the end. While a
   * read is still pending (the signal aborted it), `return()` would wait for that read, which
   * may never come, so it is started but not awaited.
   */
  async release(): Promise<void> {
    if (this.done || typeof this.iterator.return !== 'function') return;
    this.done = true;
    const released = Promise.resolve(this.iterator.return()).catch(() => {});
    if (!this.pending) await released;
  }
}
