import {
  type ByteStream,
  type GetOptions,
  type ObjectInfo,
  type PutOptions,
  type Storage,
  type StorageCapabilities,
  StorageError,
  toByteStream,
} from '@bk/core';

/** A `Storage` method that {@link FaultyStorage} can fail. */
export type StorageMethod = 'put' | 'get' | 'stat' | 'list' | 'delete';

/**
 * When and how {@link FaultyStorage} fails.
 *
 * @example
 * // Fail the archive upload after 64 KiB of it have been read.
 * const plan: FaultPlan = {
 *   failOn: (method, callNumber, key) => method === 'put' && key.endsWith('.tar.gz'),
 *   failBodyAfterBytes: 64 * 1024,
 * };
 */
export interface FaultPlan {
  /**
   * Decides whether a call fails. `callNumber` counts the calls of that method, from 1 (the
   * third `put` is `('put', 3, key)`); for `list`, `key` is the prefix.
   */
  failOn: (method: StorageMethod, callNumber: number, key: string) => boolean;
  /** The error a failing call throws; default a non-retryable `StorageError` naming the call. */
  error?: () => Error;
  /**
   * For a failing `put`: instead of rejecting at once, pass the put on to the wrapped storage
   * with a body that throws after this many bytes (or at its end, if it is shorter), as a
   * connection that drops mid-upload would. The wrapped storage sees a real mid-body failure.
   */
  failBodyAfterBytes?: number;
}

/** One call that reached a {@link FaultyStorage}, failed or not. */
export interface StorageCall {
  method: StorageMethod;
  /** The key; for `list`, the prefix. */
  key: string;
}

/**
 * Wraps a storage and fails the calls a {@link FaultPlan} picks, to test that whatever uses the
 * storage cleans up after a failure (no half backup, no stray lock). Every call is recorded in
 * {@link FaultyStorage.calls}; calls that do not fail go to the wrapped storage unchanged.
 *
 * @example
 * const inner = new MemoryStorage();
 * const storage = new FaultyStorage(inner, {
 *   failOn: (method, _callNumber, key) => method === 'put' && key.endsWith('.manifest.json'),
 * });
 * await expect(backup({ storage, components })).rejects.toThrow();
 * for await (const object of inner.list('')) throw new Error(`left behind: ${object.key}`);
 */
export class FaultyStorage implements Storage {
  /** `faulty(` and the wrapped storage's description `)`. */
  readonly description: string;
  /** The wrapped storage's capabilities. */
  readonly capabilities: StorageCapabilities;
  /** Every call, in order. */
  readonly calls: StorageCall[] = [];
  private readonly counts = new Map<StorageMethod, number>();

  /** The storage that serves the calls that do not fail. */
  readonly inner: Storage;
  /** Which calls fail, and how. */
  readonly plan: FaultPlan;

  /**
   * @param inner The storage that serves the calls that do not fail.
   * @param plan Which calls fail, and how.
   * @example
   * const storage = new FaultyStorage(new MemoryStorage(), { failOn: (method) => method === 'delete' });
   */
  constructor(inner: Storage, plan: FaultPlan) {
    this.inner = inner;
    this.plan = plan;
    this.description = `faulty(${inner.description})`;
    this.capabilities = inner.capabilities;
  }

  /** Records the call and returns whether the plan fails it. */
  private shouldFail(method: StorageMethod, key: string): boolean {
    const callNumber = (this.counts.get(method) ?? 0) + 1;
    this.counts.set(method, callNumber);
    this.calls.push({ method, key });
    return this.plan.failOn(method, callNumber, key);
  }

  private fault(method: StorageMethod, key: string): Error {
    return (
      this.plan.error?.() ??
      new StorageError(`Injected fault: ${method}("${key}") failed (call ${this.counts.get(method)}).`)
    );
  }

  /**
   * Stores through the wrapped storage, or fails: at once, or mid-body with
   * `failBodyAfterBytes`.
   *
   * @throws The plan's error (default `StorageError`) when the plan fails this call.
   * @example
   * await storage.put('a.txt', new TextEncoder().encode('a'));
   */
  async put(key: string, body: ByteStream | Uint8Array, options?: PutOptions): Promise<ObjectInfo> {
    if (!this.shouldFail('put', key)) return this.inner.put(key, body, options);
    const error = this.fault('put', key);
    const limit = this.plan.failBodyAfterBytes;
    if (limit === undefined) throw error;
    return this.inner.put(key, failingBody(toByteStream(body), limit, error), options);
  }

  /**
   * Reads through the wrapped storage, or fails.
   *
   * @throws The plan's error (default `StorageError`) when the plan fails this call.
   * @example
   * const stream = await storage.get('a.txt');
   */
  async get(key: string, options?: GetOptions): Promise<ByteStream> {
    if (this.shouldFail('get', key)) throw this.fault('get', key);
    return this.inner.get(key, options);
  }

  /**
   * Stats through the wrapped storage, or fails.
   *
   * @throws The plan's error (default `StorageError`) when the plan fails this call.
   * @example
   * const info = await storage.stat('a.txt');
   */
  async stat(key: string, options?: { signal?: AbortSignal }): Promise<ObjectInfo | undefined> {
    if (this.shouldFail('stat', key)) throw this.fault('stat', key);
    return this.inner.stat(key, options);
  }

  /**
   * Lists through the wrapped storage, or fails on the first read.
   *
   * @throws The plan's error (default `StorageError`) when the plan fails this call.
   * @example
   * for await (const object of storage.list('nightly/')) console.log(object.key);
   */
  async *list(prefix: string, options?: { signal?: AbortSignal }): AsyncIterable<ObjectInfo> {
    if (this.shouldFail('list', prefix)) throw this.fault('list', prefix);
    yield* this.inner.list(prefix, options);
  }

  /**
   * Deletes through the wrapped storage, or fails.
   *
   * @throws The plan's error (default `StorageError`) when the plan fails this call.
   * @example
   * await storage.delete('a.txt');
   */
  async delete(key: string, options?: { signal?: AbortSignal }): Promise<void> {
    if (this.shouldFail('delete', key)) throw this.fault('delete', key);
    return this.inner.delete(key, options);
  }
}

/** Yields the first `limit` bytes of `body`, then throws `error`. */
async function* failingBody(body: ByteStream, limit: number, error: Error): ByteStream {
  let passed = 0;
  for await (const chunk of body) {
    if (passed + chunk.byteLength > limit) {
      if (limit > passed) yield chunk.subarray(0, limit - passed);
      throw error;
    }
    passed += chunk.byteLength;
    yield chunk;
  }
  throw error;
}
