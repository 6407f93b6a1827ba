import type { ByteStream, Storage } from './contracts.ts';
import { IntegrityError, throwIfAborted, toAbortedError } from './errors.ts';

export interface ParallelGetOptions {
  /** The object's size in bytes (from a manifest or `stat`). */
  size: number;
  /** Bytes per ranged request; default 8 MiB. */
  partSize?: number;
  /** Ranged requests in flight; default 4. Memory ceiling: `concurrency × partSize`. */
  concurrency?: number;
  signal?: AbortSignal;
}

/**
 * Reads an object as `concurrency` ranged requests in flight, yielded in order: a restore reads
 * as fast as the store serves parallel connections rather than one. Each range must come back
 * whole; a short or long range (the object changed) fails with `IntegrityError`. Stopping early
 * or aborting cancels the requests in flight.
 *
 * @example
 * const archive = getInParallel(storage, 'backup_20261121_101500.tar.gz', { size: sidecar.archive.size });
 */
export async function* getInParallel(storage: Storage, key: string, options: ParallelGetOptions): ByteStream {
  const { size } = options;
  const partSize = options.partSize ?? 8 * 1024 * 1024;
  const concurrency = Math.max(1, options.concurrency ?? 4);
  throwIfAborted(options.signal);
  const stop = new AbortController();
  const onAbort = () => stop.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onAbort, { once: true });
  // A range is kept as the chunks the store delivered, not joined into one buffer: joining
  // copied every byte once more and left 8 MiB buffers for the collector.
  const fetchRange = async (start: number): Promise<Uint8Array[]> => {
    const end = Math.min(size, start + partSize);
    const chunks: Uint8Array[] = [];
    let received = 0;
    for await (const chunk of await storage.get(key, { range: { start, end }, signal: stop.signal })) {
      received += chunk.byteLength;
      if (received > end - start) break;
      chunks.push(chunk);
    }
    if (received !== end - start) {
      throw new IntegrityError(
        `"${key}" returned ${received > end - start ? 'more than ' : ''}${received} bytes for range ${start}–${end}, not ${end - start}: the object changed or is shorter than recorded.`,
      );
    }
    return chunks;
  };
  const inFlight: Array<Promise<Uint8Array[]>> = [];
  let next = 0;
  const refill = () => {
    while (inFlight.length < concurrency && next < size) {
      const request = fetchRange(next);
      request.catch(() => {});
      inFlight.push(request);
      next += partSize;
    }
  };
  try {
    refill();
    while (inFlight.length > 0) {
      const chunks = await inFlight.shift()!;
      refill();
      yield* chunks;
    }
  } catch (error) {
    throw options.signal?.aborted ? toAbortedError(options.signal) : error;
  } finally {
    stop.abort();
    options.signal?.removeEventListener('abort', onAbort);
    await Promise.allSettled(inFlight);
  }
}

/**
 * Opens an archive for reading: with parallel ranged requests on a remote store that serves
 * ranges (`rangeRead` and `multipart`), as one stream otherwise (a local disk gains nothing).
 */
export async function openForRead(
  storage: Storage,
  key: string,
  size: number,
  options: { signal?: AbortSignal; concurrency?: number; partSize?: number } = {},
): Promise<ByteStream> {
  const partSize = options.partSize ?? 8 * 1024 * 1024;
  const parallel =
    options.concurrency ?? (storage.capabilities.rangeRead && storage.capabilities.multipart ? 4 : 1);
  if (parallel > 1 && size > partSize)
    return getInParallel(storage, key, { size, partSize, concurrency: parallel, signal: options.signal });
  return storage.get(key, { signal: options.signal });
}
