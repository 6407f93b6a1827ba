import { once } from 'node:events';
import type { ByteStream } from './contracts.ts';
import { throwIfAborted } from './errors.ts';

/** Turns bytes or a string into a one-chunk stream. */
export async function* fromBytes(bytes: Uint8Array | string): ByteStream {
  yield typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes;
}

/** Accepts a stream or a single buffer and always returns a stream. */
export function toByteStream(body: ByteStream | Uint8Array): ByteStream {
  return body instanceof Uint8Array ? fromBytes(body) : body;
}

/**
 * Reads a whole stream into one buffer. Only for small bodies (manifests, configs): fails with
 * a `RangeError` past `limit` bytes so a wrong call can never exhaust memory.
 */
export async function collect(source: ByteStream, limit = 64 * 1024 * 1024): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of source) {
    total += chunk.byteLength;
    if (total > limit) throw new RangeError(`collect(): stream exceeds ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}

/** Counts bytes as they pass and calls `onBytes` with each chunk's length. */
export async function* countBytes(source: ByteStream, onBytes: (bytes: number) => void): ByteStream {
  for await (const chunk of source) {
    onBytes(chunk.byteLength);
    yield chunk;
  }
}

/** Re-slices a stream into chunks of exactly `size` bytes (the last may be shorter). */
export async function* rechunk(source: ByteStream, size: number): ByteStream {
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  for await (const chunk of source) {
    let offset = 0;
    while (offset < chunk.byteLength) {
      const take = Math.min(size - pendingBytes, chunk.byteLength - offset);
      pending.push(chunk.subarray(offset, offset + take));
      pendingBytes += take;
      offset += take;
      if (pendingBytes === size) {
        yield pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
      }
    }
  }
  if (pendingBytes > 0) yield Buffer.concat(pending, pendingBytes);
}

/** Stops the stream with the signal's reason when it is aborted. */
export async function* abortable<T>(
  source: AsyncIterable<T>,
  signal: AbortSignal | undefined,
): AsyncIterable<T> {
  throwIfAborted(signal);
  for await (const item of source) {
    throwIfAborted(signal);
    yield item;
  }
}

/** A writable that {@link feed} fills: Node streams and streamx streams both fit. */
export interface FeedTarget {
  write(chunk: Uint8Array, callback?: () => void): boolean;
  end(): unknown;
  destroy(error?: Error): unknown;
}

/** A `Buffer` view of the same bytes (no copy): some stream libraries accept only Buffers. */
export function asBuffer(chunk: Uint8Array): Buffer {
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/**
 * Writes `source` into `target` with backpressure, then ends it. A source error destroys the
 * target with that error, so whoever reads the target's other side sees it; aborting `stop`
 * (the reader is gone) ends the loop quietly and releases the source. Never rejects.
 * `onWritten` is called with each chunk once the target's write callback says it is processed.
 */
export async function feed(
  source: ByteStream,
  target: FeedTarget,
  stop: AbortSignal,
  onWritten?: (chunk: Uint8Array) => void,
): Promise<void> {
  try {
    for await (const chunk of source) {
      if (stop.aborted) return;
      const written = onWritten && (() => onWritten(chunk));
      if (!target.write(asBuffer(chunk), written))
        await once(target as unknown as NodeJS.EventEmitter, 'drain', { signal: stop });
    }
    target.end();
  } catch (error) {
    if (!stop.aborted) target.destroy(error as Error);
  }
}
