import type { ByteStream } from '@bk/core';
import { throwIfAborted, toAbortedError } from '@bk/core';

/** Below this a segment is gathered as a list of chunks; above it, into one preallocated buffer. */
const SMALL_SEGMENT_BYTES = 1024 * 1024;

/**
 * Cuts a body into segments of exactly `size` bytes (the last may be shorter). A pending read
 * rejects as soon as the signal aborts, so a stalled body cannot hold an aborted put open.
 * Calls must not overlap: the caller serialises them.
 */
export class SegmentReader {
  private readonly iterator: AsyncIterator<Uint8Array>;
  private readonly signal: AbortSignal | undefined;
  private leftover: Uint8Array | undefined;
  private done = false;
  private pending = false;

  constructor(body: ByteStream, signal: AbortSignal | undefined) {
    this.iterator = body[Symbol.asyncIterator]();
    this.signal = signal;
  }

  /** The next non-empty chunk, or `undefined` at the end of the body. */
  private async nextChunk(): Promise<Uint8Array | undefined> {
    if (this.leftover) {
      const chunk = this.leftover;
      this.leftover = undefined;
      return chunk;
    }
    while (!this.done) {
      const result = await this.pull();
      if (result.done) {
        this.done = true;
        return undefined;
      }
      if (result.value.byteLength > 0) return result.value;
    }
    return undefined;
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

  /** Whether any byte is left, reading at most one chunk ahead to find out. */
  async hasMore(): Promise<boolean> {
    if (this.leftover) return true;
    const chunk = await this.nextChunk();
    this.leftover = chunk;
    return chunk !== undefined;
  }

  /** Up to `size` bytes: exactly `size` unless the body ends first; empty at the end. */
  async read(size: number): Promise<Uint8Array> {
    const small: Uint8Array[] = [];
    let buffer: Buffer | undefined;
    let filled = 0;
    while (filled < size) {
      const chunk = await this.nextChunk();
      if (!chunk) break;
      const take = Math.min(chunk.byteLength, size - filled);
      if (take < chunk.byteLength) this.leftover = chunk.subarray(take);
      const part = chunk.subarray(0, take);
      if (!buffer && filled + take > SMALL_SEGMENT_BYTES) {
        buffer = Buffer.allocUnsafe(size);
        let offset = 0;
        for (const piece of small) {
          buffer.set(piece, offset);
          offset += piece.byteLength;
        }
        small.length = 0;
      }
      if (buffer) buffer.set(part, filled);
      // Copied, because a producer may reuse its chunk's memory after yielding it.
      else small.push(Uint8Array.prototype.slice.call(part));
      filled += take;
    }
    if (buffer) return buffer.subarray(0, filled);
    return Buffer.concat(small, filled);
  }

  /** Lets the producer release what it holds when the body was not read to the end. */
  async release(): Promise<void> {
    if (this.done || typeof this.iterator.return !== 'function') return;
    this.done = true;
    const released = Promise.resolve(this.iterator.return()).catch(() => {});
    // A read interrupted by the signal may never settle; do not wait for it.
    if (!this.pending) await released;
  }
}
