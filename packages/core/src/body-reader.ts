import type { ByteStream } from './contracts.ts';
import { throwIfAborted, toAbortedError } from './errors.ts';
import { isWholeHandedOver, releaseHandedOver } from './handover.ts';
import { toByteStream } from './streams.ts';

/**
 * Pulls a `put` body for a storage adapter, chunk by chunk (`next()`) or in pieces of an exact
 * size (`read(size)`), and lets go of it with `release()`. Every pull races the body against the
 * signal: a pending `next()`, `read()` or `hasMore()` rejects as soon as the signal aborts, not
 * only between chunks, so a body that stalls cannot hold an aborted upload open. Empty chunks are
 * skipped. Calls must not overlap: a caller with several workers serialises its reads.
 *
 * Memory: `next()` holds nothing; `read(size)` allocates one buffer of `size` bytes (at its first
 * chunk) and copies the body's chunks into it, so it owns what it returns and a producer may
 * reuse its chunks' memory. A chunk larger than what a read still needs is split, and its rest is
 * kept (without copying) for the next call. A handed-over chunk (see `handOver`) that `read()`
 * has copied to its end is freed at once.
 *
 * Errors: an abort rejects with `toAbortedError(signal)` (`BK_ABORTED`, or the signal's reason
 * when that is a bk error); an error the body throws is rethrown unchanged and ends the body.
 *
 * @example
 * const reader = new BodyReader(body, signal);
 * try {
 *   for (let part = await reader.read(partSize); part.byteLength > 0; part = await reader.read(partSize)) {
 *     await upload(part, !(await reader.hasMore()));
 *   }
 * } finally {
 *   await reader.release();
 * }
 */
export class BodyReader {
  private readonly iterator: AsyncIterator<Uint8Array>;
  private readonly signal: AbortSignal | undefined;
  /** Buffers handed back with `recycle()`, refilled by `read()` instead of allocating. */
  private readonly spares: Buffer[] = [];
  /** The rest of a chunk a `read()` split, or the chunk `hasMore()` looked ahead at. */
  private leftover: Uint8Array | undefined;
  /** Whether `leftover` is (the tail of) a chunk handed over whole: `read()` may free it. */
  private leftoverWhole = false;
  private done = false;
  /** Whether a pull of the body is unsettled (only after the signal interrupted it). */
  private pending = false;

  /**
   * @param body The bytes to read: a stream, or one array (read as a single chunk).
   * @param signal Aborts every pending and later read.
   */
  constructor(body: ByteStream | Uint8Array, signal?: AbortSignal) {
    this.iterator = toByteStream(body)[Symbol.asyncIterator]();
    this.signal = signal;
  }

  /**
   * The next non-empty chunk as the body yielded it (not copied: it may be the producer's memory,
   * valid until the next call), or `undefined` at the end of the body.
   *
   * @throws {AbortedError} When the signal aborts, at once even while the body stalls.
   * @throws The body's own error, unchanged.
   */
  async next(): Promise<Uint8Array | undefined> {
    const { leftover } = this;
    if (leftover !== undefined) {
      this.leftover = undefined;
      return leftover;
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

  /**
   * The next `size` bytes in one new buffer: exactly `size` unless the body ends first (then a
   * shorter view of the same allocation), and empty (no allocation) once the body has ended.
   *
   * @param size A positive integer.
   * @throws {RangeError} When `size` is not a positive safe integer.
   * @throws {AbortedError} When the signal aborts; the bytes gathered so far are dropped.
   * @throws The body's own error, unchanged.
   * @example
   * const first = await reader.read(8 * 1024 * 1024);
   * if (!(await reader.hasMore())) return putSingle(first);
   */
  async read(size: number): Promise<Buffer> {
    if (!Number.isSafeInteger(size) || size <= 0)
      throw new RangeError(`BodyReader.read needs a positive integer size, not ${size}.`);
    let target: Buffer | undefined;
    let filled = 0;
    while (filled < size) {
      const fromLeftover = this.leftover !== undefined;
      const leftoverWhole = this.leftoverWhole;
      const chunk = await this.next();
      if (chunk === undefined) break;
      // A chunk handed over whole is this reader's alone: freed once copied to its end.
      const whole = fromLeftover ? leftoverWhole : isWholeHandedOver(chunk);
      target ??= this.spare(size) ?? Buffer.allocUnsafe(size);
      const take = Math.min(chunk.byteLength, size - filled);
      if (take < chunk.byteLength) {
        this.leftover = chunk.subarray(take);
        this.leftoverWhole = whole;
        target.set(chunk.subarray(0, take), filled);
      } else {
        target.set(chunk, filled);
        if (whole) releaseHandedOver(chunk);
      }
      filled += take;
    }
    if (target === undefined) return Buffer.alloc(0);
    return filled === size ? target : target.subarray(0, filled);
  }

  /**
   * Hands back a buffer that `read()` returned, once nothing reads it any more (its upload
   * request has settled): the next `read()` fills it instead of allocating. An upload then cycles
   * through `concurrency + 1` part buffers instead of leaving one behind per part for the
   * garbage collector, which keeps the process's resident memory near what is really in use.
   * Never recycle a buffer a request may still send (a retry in flight): its bytes would change.
   *
   * @example
   * const part = await reader.read(partSize);
   * await uploadPart(part);
   * reader.recycle(part);
   */
  recycle(buffer: Buffer): void {
    if (this.spares.length < 16) this.spares.push(buffer);
  }

  private spare(size: number): Buffer | undefined {
    const index = this.spares.findIndex((buffer) => buffer.byteLength >= size);
    if (index < 0) return undefined;
    const [buffer] = this.spares.splice(index, 1);
    return buffer!.byteLength === size ? buffer : buffer!.subarray(0, size);
  }

  /**
   * Whether any byte is left: reads at most one chunk ahead, which the next call returns.
   *
   * @throws {AbortedError} When the signal aborts.
   * @throws The body's own error, unchanged.
   */
  async hasMore(): Promise<boolean> {
    if (this.leftover !== undefined) return true;
    this.leftover = await this.next();
    this.leftoverWhole = this.leftover !== undefined && isWholeHandedOver(this.leftover);
    return this.leftover !== undefined;
  }

  /**
   * Lets the producer release what it holds (its `return()`) when the body was not read to the
   * end; does nothing after the end, after the body threw, or on a second call. While a pull is
   * still pending (the signal interrupted it), `return()` would wait for it, which may never
   * happen, so it is started but not awaited. Never rejects.
   */
  async release(): Promise<void> {
    this.leftover = undefined;
    if (this.done || typeof this.iterator.return !== 'function') return;
    this.done = true;
    const released = Promise.resolve(this.iterator.return()).catch(() => {});
    if (!this.pending) await released;
  }

  /** One `iterator.next()`, raced against the signal. */
  private async pull(): Promise<IteratorResult<Uint8Array>> {
    const { signal } = this;
    throwIfAborted(signal);
    if (signal === undefined) return this.settle(this.iterator.next(), undefined);
    let onAbort = (): void => {};
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(toAbortedError(signal));
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await this.settle(Promise.race([this.iterator.next(), aborted]), signal);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  private async settle(
    result: Promise<IteratorResult<Uint8Array>>,
    signal: AbortSignal | undefined,
  ): Promise<IteratorResult<Uint8Array>> {
    this.pending = true;
    try {
      const settled = await result;
      this.pending = false;
      return settled;
    } catch (error) {
      // A body that threw is finished; one interrupted by the signal still has a pull pending.
      if (!signal?.aborted) {
        this.pending = false;
        this.done = true;
      }
      throw error;
    }
  }
}
