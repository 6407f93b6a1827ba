import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import {
  BkError,
  type BkErrorCode,
  type ByteStream,
  type CleanupIncompleteResult,
  type ObjectInfo,
  type Storage,
} from '@bk/core';
import type { TestRegistrar } from './test-registrar.ts';

/**
 * Makes a fresh, empty storage for one test, and optionally how to remove it afterwards.
 *
 * @example
 * const factory: StorageFactory = async () => {
 *   const root = await mkdtemp(join(tmpdir(), 'bk-'));
 *   return { storage: new FsStorage(root), cleanup: () => rm(root, { recursive: true, force: true }) };
 * };
 */
export type StorageFactory = () => Promise<{ storage: Storage; cleanup?: () => Promise<void> }>;

/** Tunes {@link storageContract}. */
export interface StorageContractOptions {
  /**
   * Size of the object the multi-chunk round trip writes; default 8 MiB. Raise it to push an
   * adapter past its multipart threshold, lower it for a slow backend.
   */
  largeObjectBytes?: number;
  /** Names of tests not to register (see the README for the list), e.g. `['concurrent create-if-absent: exactly one wins']`. */
  skip?: string[];
  /** Per-test timeout in milliseconds, passed to the registrar; default the runner's. */
  timeout?: number;
}

async function readAll(stream: ByteStream): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function listKeys(storage: Storage, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const object of storage.list(prefix)) keys.push(object.key);
  return keys.sort();
}

async function listAll(storage: Storage, prefix: string): Promise<ObjectInfo[]> {
  const objects: ObjectInfo[] = [];
  for await (const object of storage.list(prefix)) objects.push(object);
  return objects.sort((a, b) => (a.key < b.key ? -1 : 1));
}

function text(value: string): Uint8Array {
  return new TextEncoder().encode(value);
}

/** `total` pseudo-random bytes in chunks of uneven sizes, hashed as they are produced. */
function unevenBody(total: number, seed: Buffer): { body: ByteStream; sha256: () => string } {
  const hash = createHash('sha256');
  const sizes = [1, 65_536, 1_048_576 + 7, 333_333, 4_096, 2_097_152];
  async function* body(): ByteStream {
    let written = 0;
    for (let index = 0; written < total; index += 1) {
      const size = Math.min(sizes[index % sizes.length]!, total - written);
      const chunk = Buffer.alloc(size);
      for (let offset = 0; offset < size; offset += seed.byteLength) seed.copy(chunk, offset);
      chunk[0] = index % 256;
      hash.update(chunk);
      written += size;
      yield chunk;
    }
  }
  return { body: body(), sha256: () => hash.digest('hex') };
}

/**
 * A put of `bytes` random bytes whose body then stalls: `stalled` resolves once the adapter has
 * taken every byte and asked for more; `resume` sends one last byte and ends the body; `abort`
 * aborts the put. `done` is the put's promise.
 */
function stalledPut(
  storage: Storage,
  key: string,
  bytes: number,
): { stalled: Promise<void>; resume: () => void; abort: () => void; done: Promise<ObjectInfo> } {
  const controller = new AbortController();
  let markStalled!: () => void;
  const stalled = new Promise<void>((resolve) => {
    markStalled = resolve;
  });
  let resume!: () => void;
  const resumed = new Promise<void>((resolve) => {
    resume = resolve;
  });
  const chunk = randomBytes(1024 * 1024);
  async function* body(): ByteStream {
    for (let sent = 0; sent < bytes; sent += chunk.byteLength)
      yield chunk.subarray(0, Math.min(chunk.byteLength, bytes - sent));
    markStalled();
    await Promise.race([
      resumed,
      new Promise((resolve) => controller.signal.addEventListener('abort', resolve, { once: true })),
    ]);
    yield new Uint8Array([1]);
  }
  const done = storage.put(key, body(), { signal: controller.signal });
  done.catch(() => {});
  return { stalled, resume, abort: () => controller.abort(), done };
}

function hasCode(code: BkErrorCode): (error: unknown) => boolean {
  return (error) => {
    assert.ok(
      BkError.isInstance(error) && error.code === code,
      `expected a BkError with code ${code}, got ${error instanceof Error ? `${error.name} ${(error as { code?: unknown }).code ?? ''}: ${error.message}` : String(error)}`,
    );
    return true;
  };
}

function isBkError(error: unknown): boolean {
  assert.ok(BkError.isInstance(error), `expected a BkError, got ${String(error)}`);
  return true;
}

interface ContractTest {
  name: string;
  run: (storage: Storage, base: string, skip: (note: string) => boolean) => Promise<void>;
}

/**
 * The tests, in the order they are registered. Every key lives under `base`, a fresh random
 * prefix, so an adapter may run the suite against a shared bucket.
 */
function contractTests(largeObjectBytes: number): ContractTest[] {
  return [
    {
      name: 'put and get round trip a small body',
      async run(storage, base) {
        const key = `${base}small.txt`;
        const info = await storage.put(key, text('hello, storage'));
        assert.equal(info.key, key);
        assert.equal(info.size, 14);
        assert.deepEqual(await readAll(await storage.get(key)), Buffer.from('hello, storage'));
        const stat = await storage.stat(key);
        assert.equal(stat?.key, key);
        assert.equal(stat?.size, 14);
      },
    },
    {
      name: 'put and get round trip a multi-chunk stream',
      async run(storage, base) {
        const key = `${base}nested/deeper/large.bin`;
        const { body, sha256: expected } = unevenBody(largeObjectBytes, randomBytes(4096));
        const info = await storage.put(key, body, { sizeHint: largeObjectBytes });
        assert.equal(info.size, largeObjectBytes);
        const hash = createHash('sha256');
        let size = 0;
        for await (const chunk of await storage.get(key)) {
          hash.update(chunk);
          size += chunk.byteLength;
        }
        assert.equal(size, largeObjectBytes);
        assert.equal(hash.digest('hex'), expected());
        assert.equal((await storage.stat(key))?.size, largeObjectBytes);
      },
    },
    {
      name: 'stores an empty object',
      async run(storage, base) {
        await storage.put(`${base}empty-bytes`, new Uint8Array(0));
        await storage.put(`${base}empty-stream`, (async function* () {})());
        for (const key of [`${base}empty-bytes`, `${base}empty-stream`]) {
          assert.equal((await storage.stat(key))?.size, 0);
          assert.equal((await readAll(await storage.get(key))).byteLength, 0);
        }
        assert.deepEqual(await listKeys(storage, base), [`${base}empty-bytes`, `${base}empty-stream`]);
      },
    },
    {
      name: 'stat of a missing key is undefined',
      async run(storage, base) {
        assert.equal(await storage.stat(`${base}missing`), undefined);
        assert.equal(await storage.stat(`${base}missing/deeper`), undefined);
      },
    },
    {
      name: 'get of a missing key rejects with BK_NOT_FOUND',
      async run(storage, base) {
        await assert.rejects(storage.get(`${base}missing`), hasCode('BK_NOT_FOUND'));
        await assert.rejects(storage.get(`${base}missing/deeper`), hasCode('BK_NOT_FOUND'));
      },
    },
    {
      name: 'put without ifNoneMatch replaces an object',
      async run(storage, base) {
        const key = `${base}replaced`;
        await storage.put(key, text('first version'));
        const info = await storage.put(key, text('second'));
        assert.equal(info.size, 6);
        assert.equal((await readAll(await storage.get(key))).toString(), 'second');
        assert.equal((await storage.stat(key))?.size, 6);
        assert.deepEqual(await listKeys(storage, base), [key]);
      },
    },
    {
      name: 'ifNoneMatch on an existing key rejects with BK_ALREADY_EXISTS and keeps the object',
      async run(storage, base, skip) {
        if (!storage.capabilities.conditionalCreate && skip('conditionalCreate is false')) return;
        const key = `${base}claimed`;
        await storage.put(key, text('original'), { ifNoneMatch: true });
        await assert.rejects(
          storage.put(key, text('intruder'), { ifNoneMatch: true }),
          hasCode('BK_ALREADY_EXISTS'),
        );
        const stream = (async function* () {
          yield text('intruder, streamed');
        })();
        await assert.rejects(storage.put(key, stream, { ifNoneMatch: true }), hasCode('BK_ALREADY_EXISTS'));
        assert.equal((await readAll(await storage.get(key))).toString(), 'original');
        assert.deepEqual(await listKeys(storage, base), [key]);
      },
    },
    {
      name: 'concurrent create-if-absent: exactly one wins',
      async run(storage, base, skip) {
        if (!storage.capabilities.conditionalCreate && skip('conditionalCreate is false')) return;
        const key = `${base}race`;
        const contenders = 8;
        const results = await Promise.allSettled(
          Array.from({ length: contenders }, (_, index) =>
            storage.put(
              key,
              (async function* () {
                // Yield to the event loop so the puts interleave.
                for (let part = 0; part < 4; part += 1) {
                  await new Promise((resolve) => setImmediate(resolve));
                  yield text(`contender ${index} part ${part};`);
                }
              })(),
              { ifNoneMatch: true },
            ),
          ),
        );
        const winners = results.flatMap((result, index) => (result.status === 'fulfilled' ? [index] : []));
        assert.equal(winners.length, 1, `expected exactly one winner, got ${winners.length}`);
        for (const result of results)
          if (result.status === 'rejected') hasCode('BK_ALREADY_EXISTS')(result.reason);
        const expected = [0, 1, 2, 3].map((part) => `contender ${winners[0]} part ${part};`).join('');
        assert.equal((await readAll(await storage.get(key))).toString(), expected);
        assert.deepEqual(await listKeys(storage, base), [key]);
      },
    },
    {
      name: 'ranged reads return the requested bytes',
      async run(storage, base, skip) {
        if (!storage.capabilities.rangeRead && skip('rangeRead is false')) return;
        const key = `${base}ranged.bin`;
        const bytes = randomBytes(3 * 1024 * 1024 + 17);
        await storage.put(key, bytes);
        const read = async (range: { start: number; end?: number }) =>
          readAll(await storage.get(key, { range }));
        assert.deepEqual(await read({ start: 0 }), bytes);
        assert.deepEqual(await read({ start: 1_000_000 }), bytes.subarray(1_000_000));
        assert.deepEqual(await read({ start: 5, end: 10 }), bytes.subarray(5, 10));
        assert.deepEqual(
          await read({ start: 1_048_570, end: 2_097_160 }),
          bytes.subarray(1_048_570, 2_097_160),
        );
        assert.deepEqual(await read({ start: bytes.byteLength - 3 }), bytes.subarray(-3));
        assert.deepEqual(await read({ start: 100, end: bytes.byteLength + 100 }), bytes.subarray(100));
        assert.equal((await read({ start: 7, end: 7 })).byteLength, 0);
      },
    },
    {
      name: 'list returns every object under a prefix',
      async run(storage, base) {
        const keys = ['list/a/one', 'list/a/two', 'list/ab', 'list/b/deep/three', 'other/x'].map(
          (key) => `${base}${key}`,
        );
        for (const [index, key] of keys.entries()) await storage.put(key, text('x'.repeat(index + 1)));
        assert.deepEqual(await listKeys(storage, base), keys);
        assert.deepEqual(await listKeys(storage, `${base}list/`), keys.slice(0, 4));
        // A prefix is a plain string prefix, not a directory: it matches partial names.
        assert.deepEqual(await listKeys(storage, `${base}list/a`), keys.slice(0, 3));
        assert.deepEqual(await listKeys(storage, `${base}list/a/`), keys.slice(0, 2));
        assert.deepEqual(await listKeys(storage, `${base}list/a/t`), keys.slice(1, 2));
        assert.deepEqual(await listKeys(storage, `${base}list/b/deep/three`), keys.slice(3, 4));
        assert.deepEqual(await listKeys(storage, `${base}nothing`), []);
        assert.deepEqual(await listKeys(storage, `${base}list/c`), []);
        const sizes = (await listAll(storage, `${base}list/a/`)).map((object) => object.size);
        assert.deepEqual(sizes, [1, 2]);
      },
    },
    {
      name: 'delete removes an object and ignores a missing one',
      async run(storage, base) {
        const [gone, kept] = [`${base}dir/gone`, `${base}dir/kept`];
        await storage.put(gone, text('gone'));
        await storage.put(kept, text('kept'));
        await storage.delete(gone);
        assert.equal(await storage.stat(gone), undefined);
        await assert.rejects(storage.get(gone), hasCode('BK_NOT_FOUND'));
        assert.deepEqual(await listKeys(storage, base), [kept]);
        await storage.delete(gone);
        await storage.delete(`${base}never/existed`);
        assert.equal((await readAll(await storage.get(kept))).toString(), 'kept');
        await storage.delete(kept);
        assert.deepEqual(await listKeys(storage, base), []);
        // A key whose directory was emptied by the delete can be written again.
        await storage.put(gone, text('back'));
        assert.equal((await readAll(await storage.get(gone))).toString(), 'back');
      },
    },
    {
      name: 'a body that throws mid-way stores nothing',
      async run(storage, base) {
        const key = `${base}broken/object.bin`;
        const failure = new Error('the source broke');
        const body = (async function* () {
          yield randomBytes(1024 * 1024);
          yield randomBytes(1024 * 1024);
          throw failure;
        })();
        await assert.rejects(
          storage.put(key, body),
          (error: unknown) => error === failure || BkError.isInstance(error),
        );
        assert.equal(await storage.stat(key), undefined);
        await assert.rejects(storage.get(key), hasCode('BK_NOT_FOUND'));
        assert.deepEqual(await listKeys(storage, base), []);
        if (!storage.capabilities.atomicPublish) return;
        // Atomic publish: a failed overwrite leaves the previous object whole.
        await storage.put(key, text('previous'));
        const again = (async function* () {
          yield text('half of a new');
          throw failure;
        })();
        await assert.rejects(
          storage.put(key, again),
          (error: unknown) => error === failure || BkError.isInstance(error),
        );
        assert.equal((await readAll(await storage.get(key))).toString(), 'previous');
        assert.deepEqual(await listKeys(storage, base), [key]);
      },
    },
    {
      name: 'an aborted put rejects with BK_ABORTED and stores nothing',
      async run(storage, base) {
        const key = `${base}aborted.bin`;
        const controller = new AbortController();
        const body = (async function* () {
          yield randomBytes(256 * 1024);
          yield randomBytes(256 * 1024);
          controller.abort();
          // Keep producing: an adapter may notice the abort only between chunks.
          for (let index = 0; index < 8; index += 1) yield randomBytes(256 * 1024);
        })();
        await assert.rejects(storage.put(key, body, { signal: controller.signal }), hasCode('BK_ABORTED'));
        assert.equal(await storage.stat(key), undefined);
        assert.deepEqual(await listKeys(storage, base), []);
        const early = AbortSignal.abort();
        await assert.rejects(storage.put(key, text('never'), { signal: early }), hasCode('BK_ABORTED'));
        assert.equal(await storage.stat(key), undefined);
        assert.deepEqual(await listKeys(storage, base), []);
      },
    },
    {
      name: 'cleanupIncomplete leaves a running put and every object alone',
      async run(storage, base, skip) {
        if (!storage.cleanupIncomplete && skip('the storage has no cleanupIncomplete')) return;
        const cleanup = storage.cleanupIncomplete!.bind(storage);
        const stored = `${base}kept/large.bin`;
        const { body: largeBody, sha256 } = unevenBody(largeObjectBytes, randomBytes(4096));
        await storage.put(stored, largeBody, { sizeHint: largeObjectBytes });
        await storage.put(`${base}kept/small.txt`, text('small'));
        const running = stalledPut(storage, `${base}running.bin`, largeObjectBytes);
        await running.stalled;
        // Young: whatever the running put has written so far is not touched, dry run or not.
        const young = { olderThanMs: 3_600_000, prefix: base };
        assert.deepEqual((await cleanup({ ...young, dryRun: true })).removed, []);
        assert.deepEqual((await cleanup(young)).removed, []);
        running.resume();
        const info = await running.done;
        assert.equal(info.size, largeObjectBytes + 1);
        // Old enough, but published: objects (and the parts or segments they are made of) stay.
        const result = await cleanup({ olderThanMs: 0, prefix: base });
        assert.ok(Array.isArray(result.notes));
        for (const item of result.removed) assert.ok(typeof item.kind === 'string' && item.location !== '');
        assert.deepEqual(await listKeys(storage, base), [
          `${base}kept/large.bin`,
          `${base}kept/small.txt`,
          `${base}running.bin`,
        ]);
        const hash = createHash('sha256');
        for await (const chunk of await storage.get(stored)) hash.update(chunk);
        assert.equal(hash.digest('hex'), sha256());
        assert.equal(
          (await readAll(await storage.get(`${base}running.bin`))).byteLength,
          largeObjectBytes + 1,
        );
        assert.deepEqual((await cleanup({ olderThanMs: 0, prefix: base, dryRun: true })).removed, []);
      },
    },
    {
      name: 'cleanupIncomplete removes what an abandoned put left, and dryRun only lists it',
      async run(storage, base, skip) {
        if (!storage.cleanupIncomplete && skip('the storage has no cleanupIncomplete')) return;
        const cleanup = storage.cleanupIncomplete!.bind(storage);
        const key = `${base}abandoned.bin`;
        // A put whose process "died": its body stalls and nothing more happens, as after SIGKILL.
        const abandoned = stalledPut(storage, key, largeObjectBytes);
        await abandoned.stalled;
        const old = { olderThanMs: 0, prefix: base };
        // Parts already handed to the adapter may still be landing: wait until two listings agree.
        const seen = (result: CleanupIncompleteResult) =>
          JSON.stringify(result.removed.map((item) => [item.location, item.size]).sort());
        let listed = await cleanup({ ...old, dryRun: true });
        for (let waited = 0, previous = ''; waited < 5_000; waited += 250) {
          if (listed.removed.length > 0 && seen(listed) === previous) break;
          previous = seen(listed);
          await new Promise((resolve) => setTimeout(resolve, 250));
          listed = await cleanup({ ...old, dryRun: true });
        }
        try {
          if (listed.removed.length === 0) {
            const why = listed.notes.join(' ') || 'a stalled put left nothing the storage can list';
            if (skip(why)) return;
          }
          const again = await cleanup({ ...old, dryRun: true });
          assert.deepEqual(
            again.removed.map((item) => item.location).sort(),
            listed.removed.map((item) => item.location).sort(),
            'a dry run removed something',
          );
          const done = await cleanup(old);
          for (const item of listed.removed)
            assert.ok(
              done.removed.some((removed) => removed.location === item.location),
              `${item.kind} ${item.location} was listed by the dry run but not removed`,
            );
          assert.deepEqual((await cleanup({ ...old, dryRun: true })).removed, []);
        } finally {
          abandoned.abort();
          await abandoned.done.catch(() => {});
        }
        assert.equal(await storage.stat(key), undefined);
        assert.deepEqual(await listKeys(storage, base), []);
        assert.deepEqual((await cleanup({ ...old, dryRun: true })).removed, []);
      },
    },
    {
      name: 'invalid keys are rejected with a BkError',
      async run(storage, base) {
        for (const key of ['../x', '/abs', 'a/../../x', `${base}../../escape`]) {
          await assert.rejects(storage.put(key, text('escape')), isBkError, `put("${key}")`);
          await assert.rejects(storage.get(key), isBkError, `get("${key}")`);
          await assert.rejects(storage.stat(key), isBkError, `stat("${key}")`);
          await assert.rejects(storage.delete(key), isBkError, `delete("${key}")`);
        }
        assert.deepEqual(await listKeys(storage, base), []);
      },
    },
  ];
}

/**
 * Registers the storage contract tests: what every bk storage adapter must do, whatever its
 * backend. Each test makes its own storage with `factory`, keeps its keys under a random
 * prefix, and calls `cleanup` when it ends, pass or fail. Tests of a capability the storage
 * does not declare (`conditionalCreate`, `rangeRead`) are skipped. Imports no test runner.
 *
 * @param it The runner's test registrar, e.g. vitest's `it`.
 * @param factory Makes a fresh storage for one test.
 * @param options The large object's size, tests to skip, a timeout.
 * @example
 * import { describe, it } from 'vitest';
 * import { storageContract } from '@bk/test-suite';
 *
 * describe('MyStorage', () => {
 *   storageContract(it, async () => ({ storage: new MyStorage(testBucket) }));
 * });
 */
export function storageContract(
  it: TestRegistrar,
  factory: StorageFactory,
  options: StorageContractOptions = {},
): void {
  const skipped = new Set(options.skip ?? []);
  for (const test of contractTests(options.largeObjectBytes ?? 8 * 1024 * 1024)) {
    if (skipped.has(test.name)) continue;
    it(
      test.name,
      async (context) => {
        const { storage, cleanup } = await factory();
        try {
          const base = `bk-contract-${randomBytes(6).toString('hex')}/`;
          // Returns true when the runner cannot mark the test skipped, so the test just returns.
          const skip = (note: string): boolean => {
            context?.skip?.(note);
            return true;
          };
          await test.run(storage, base, skip);
        } finally {
          await cleanup?.();
        }
      },
      options.timeout,
    );
  }
}
