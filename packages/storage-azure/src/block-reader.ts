import { type ByteStream, throwIfAborted, toAbortedError } from '@bk/core';

/**
 * Below this many bytes a block is gathered as the producer's chunks and joined once; past it,
 * one buffer of the block's full size is allocated and filled, so a block never needs twice its
 * size while it is assembled, and a small body never costs a whole block's allocation.
 */
const GATHER_LIMIT = 1024 * 1024;

/**
 * Cuts a body into blocks of the sizes asked for. `read()` rejects with the signal's reason as
 * soon as the signal aborts, not only between chunks, so a stalled body cannot hold an aborted
 * upload open.
 */
export class BlockReader {
  private readonly iterator: AsyncIterator<Uint8Array>;
  private readonly signal: AbortSignal;
  private leftover: Uint8Array | undefined;
  private done = false;
  private pending = false;
  private bodyError: { error: unknown } | undefined;

  constructor(body: ByteStream, signal: AbortSignal) {
    this.iterator = body[Symbol.asyncIterator]();
    this.signal = signal;
  }

  /** The next `size` bytes as one buffer it owns; shorter only at the end of the body, empty after it. */
  async read(size: number): Promise<Buffer> {
    const parts: Uint8Array[] = [];
    let block: Buffer | undefined;
    let filled = 0;
    while (filled < size) {
      const chunk = this.leftover ?? (await this.next());
      this.leftover = undefined;
      if (chunk === undefined) break;
      const take = Math.min(size - filled, chunk.byteLength);
      if (take < chunk.byteLength) this.leftover = chunk.subarray(take);
      const piece = chunk.subarray(0, take);
      if (block === undefined && filled + take > GATHER_LIMIT) {
        block = Buffer.allocUnsafe(size);
        let offset = 0;
        for (const part of parts) {
          block.set(part, offset);
          offset += part.byteLength;
        }
        parts.length = 0;
      }
      if (block === undefined) parts.push(piece);
      else block.set(piece, filled);
      filled += take;
    }
    if (block !== undefined) return filled === size ? block : block.subarray(0, filled);
    return Buffer.concat(parts, filled);
  }

  /** The next non-empty chunk, or `undefined` at the end. */
  private async next(): Promise<Uint8Array | undefined> {
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
      onAbort = () => reject(toAbortedError(signal));
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const result = await Promise.race([this.iterator.next(), aborted]);
      this.pending = false;
      return result;
    } catch (error) {
      // A body that threw is finished; one interrupted by the signal still has a read pending.
      if (!signal.aborted) {
        this.pending = false;
        this.bodyError ??= { error };
      }
      this.done = !signal.aborted;
      throw error;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** Whether `error` is the one the body itself threw (rethrown unchanged, never wrapped). */
  failed(error: unknown): boolean {
    return this.bodyError !== undefined && this.bodyError.error === error;
  }

  /**
   * Lets the producer release what it holds when the body was not read to the end. While a read
   * is still pending (the signal aborted it), `return()` would wait for that read, which may
   * never come, so it is started but not awaited.
   */
  async release(): Promise<void> {
    this.leftover = undefined;
    if (this.done || typeof this.iterator.return !== 'function') return;
    this.done = true;
    const released = Promise.resolve(this.iterator.return()).catch(() => {});
    if (!this.pending) await released;
  }
}
