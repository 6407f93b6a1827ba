import type { ByteStream, Storage } from './contracts.ts';
import { IntegrityError, throwIfAborted, toAbortedError } from './errors.ts';
import { handOverForReuse, releaseWholeHandedOver } from './handover.ts';

/**
 * Bytes per ranged request when none is given: 3 MiB. On a 1 GiB tree from S3 (Swift), 4 MiB
 * ranges cost ~5 MiB more peak memory at the same speed within noise; 2 MiB ones saved another
 * ~10 MiB but restored the tree ~13 % slower (twice the requests).
 */
export const DEFAULT_RANGE_BYTES = 3 * 1024 * 1024;

export interface ParallelGetOptions {
  /** The object's size in bytes (from a manifest or `stat`). */
  size: number;
  /** Bytes per ranged request; default 3 MiB. */
  partSize?: number;
  /**
   * Ranged requests in flight; default 4. Memory ceiling: `(concurrency + 1) × partSize` (the
   * ranges in flight and the one being consumed), 15 MiB with the defaults.
   */
  concurrency?: number;
  signal?: AbortSignal;
}

/**
 * Reads an object as `concurrency` ranged requests in flight, yielded in order: a restore reads
 * as fast as the store serves parallel connections rather than one. Each range must come back
 * whole; a short or long range (the object changed) fails with `IntegrityError`. Stopping early
 * or aborting cancels the requests in flight.
 *
 * Each range is yielded as one buffer, handed over (see `handOver`): the consumer may free it
 * once it has copied what it needs, as `gunzipMembers` does, and its memory is then reused for a
 * later range. The store's own chunks are copied into it as they arrive, so they die young
 * instead of waiting, with the range, for a full collection; one the store handed over (S3's
 * socket reads) is freed as soon as it is copied.
 *
 * @example
 * const archive = getInParallel(storage, 'backup_20261121_101500.tar.gz', { size: sidecar.archive.size });
 */
export async function* getInParallel(storage: Storage, key: string, options: ParallelGetOptions): ByteStream {
  const { size } = options;
  const partSize = options.partSize ?? DEFAULT_RANGE_BYTES;
  const concurrency = Math.max(1, options.concurrency ?? 4);
  throwIfAborted(options.signal);
  const stop = new AbortController();
  const onAbort = () => stop.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onAbort, { once: true });
  // Released ranges come back here (see handOverForReuse): a restore cycles through
  // `concurrency + 1` range buffers instead of allocating one per range.
  const spare: ArrayBuffer[] = [];
  const recycle = (memory: ArrayBuffer) => {
    if (memory.byteLength === partSize && spare.length <= concurrency) spare.push(memory);
  };
  const fetchRange = async (start: number): Promise<Uint8Array> => {
    const end = Math.min(size, start + partSize);
    const memory = end - start === partSize ? spare.pop() : undefined;
    const range = memory ? Buffer.from(memory) : Buffer.allocUnsafeSlow(end - start);
    let received = 0;
    for await (const chunk of await storage.get(key, { range: { start, end }, signal: stop.signal })) {
      if (received + chunk.byteLength > range.byteLength) {
        received += chunk.byteLength;
        break;
      }
      range.set(chunk, received);
      received += chunk.byteLength;
      // Copied: a chunk the store handed over (a socket read) is freed now rather than at the
      // next collection.
      releaseWholeHandedOver(chunk);
    }
    if (received !== end - start) {
      throw new IntegrityError(
        `"${key}" returned ${received > end - start ? 'more than ' : ''}${received} bytes for range ${start}–${end}, not ${end - start}: the object changed or is shorter than recorded.`,
      );
    }
    return handOverForReuse(range, recycle);
  };
  const inFlight: Array<Promise<Uint8Array>> = [];
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
      const range = await inFlight.shift()!;
      refill();
      yield range;
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
  const partSize = options.partSize ?? DEFAULT_RANGE_BYTES;
  const parallel =
    options.concurrency ?? (storage.capabilities.rangeRead && storage.capabilities.multipart ? 4 : 1);
  if (parallel > 1 && size > partSize)
    return getInParallel(storage, key, { size, partSize, concurrency: parallel, signal: options.signal });
  return storage.get(key, { signal: options.signal });
}
