import { createHash, randomBytes } from 'node:crypto';
import { BkError, type ByteStream } from '@bk/core';
import { type GcsDouble, startGcsDouble } from '@bk/test-servers';
import { storageContract } from '@bk/test-suite';
import { Storage } from '@google-cloud/storage';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GcsStorage, type GcsStorageOptions } from '../src/index.ts';

// One double for this file: the chunked resumable protocol, preconditions and fault injection,
// which the emulator cannot do. Small chunks make every multi-chunk case cheap.
const MiB = 1024 * 1024;
const BUCKET = 'bk-double';

let double: GcsDouble;

beforeAll(async () => {
  // Objects without crc32c: the double would hash in JavaScript at ~60 MB/s, and md5 is checked.
  double = await startGcsDouble({ crc32c: false });
});

afterAll(async () => {
  await double?.stop();
});

function client(): Storage {
  // At most 1 s between retries (the library's floor), so fault tests stay short.
  return new Storage({
    apiEndpoint: double.url,
    projectId: 'bk-test',
    retryOptions: { autoRetry: true, maxRetries: 3, retryDelayMultiplier: 2, maxRetryDelay: 1 },
  });
}

function doubled(options: Partial<GcsStorageOptions> = {}): GcsStorage {
  return new GcsStorage({
    bucket: BUCKET,
    prefix: `run-${randomBytes(4).toString('hex')}`,
    storage: client(),
    chunkSize: MiB,
    ...options,
  });
}

async function readAll(stream: ByteStream): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function code(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    if (BkError.isInstance(error)) return error.code;
    throw error;
  }
}

/** Sessions the double saw for objects under `storage`'s prefix. */
function sessionsOf(storage: GcsStorage) {
  return double.sessions().filter((session) => session.name.startsWith(storage.prefix));
}

describe('GcsStorage meets the storage contract (GCS double, 1 MiB chunks)', () => {
  storageContract(it, async () => ({ storage: doubled() }), { largeObjectBytes: 8 * MiB + 12_345 });
});

describe('GcsStorage resumable uploads (GCS double)', () => {
  it('sends a large body in chunkSize requests and publishes it only at the end', async () => {
    const storage = doubled();
    const bytes = randomBytes(5 * MiB + 300_000);
    const info = await storage.put('five.bin', bytes);
    expect(info.size).toBe(bytes.byteLength);
    const [session] = sessionsOf(storage);
    expect(session).toMatchObject({ state: 'final', chunkRequests: 6, persisted: bytes.byteLength });
    expect((await readAll(await storage.get('five.bin'))).equals(bytes)).toBe(true);
  });

  it('a body of exactly one chunk goes in one request; one byte more takes a session', async () => {
    const storage = doubled();
    await storage.put('exact.bin', randomBytes(MiB));
    expect(sessionsOf(storage)).toHaveLength(0);
    await storage.put('over.bin', randomBytes(MiB + 1));
    expect(sessionsOf(storage)).toMatchObject([{ state: 'final', chunkRequests: 2 }]);
    expect((await storage.stat('over.bin'))?.size).toBe(MiB + 1);
  });

  it('retries a chunk that failed with 503, resending only what is missing', async () => {
    const storage = doubled();
    double.chunkFault = (session, chunkNumber) =>
      session.name.startsWith(storage.prefix) && chunkNumber === 3 ? { status: 503 } : undefined;
    try {
      const bytes = randomBytes(4 * MiB + 7);
      await storage.put('retried.bin', bytes);
      expect((await readAll(await storage.get('retried.bin'))).equals(bytes)).toBe(true);
      // 5 chunks plus the failed attempt.
      expect(sessionsOf(storage)).toMatchObject([{ state: 'final', chunkRequests: 6 }]);
    } finally {
      double.chunkFault = undefined;
    }
  });

  it('recovers from a connection dropped mid-chunk by asking how much GCS kept', async () => {
    const storage = doubled();
    double.chunkFault = (session, chunkNumber) =>
      session.name.startsWith(storage.prefix) && chunkNumber === 2 ? { drop: true } : undefined;
    try {
      const bytes = randomBytes(3 * MiB + 11);
      await storage.put('dropped.bin', bytes);
      expect((await readAll(await storage.get('dropped.bin'))).equals(bytes)).toBe(true);
    } finally {
      double.chunkFault = undefined;
    }
  });

  it('fault injection: the Nth chunk fails for good → rejects, nothing visible, session cancelled', async () => {
    for (const [status, retryable] of [
      [400, false],
      [503, true],
    ] as const) {
      const storage = doubled();
      double.chunkFault = (session, chunkNumber) =>
        session.name.startsWith(storage.prefix) && chunkNumber >= 3 ? { status } : undefined;
      try {
        const error = await storage
          .put('failed.bin', randomBytes(6 * MiB))
          .catch((caught: unknown) => caught);
        expect(BkError.isInstance(error) && error.code).toBe('BK_STORAGE');
        expect(BkError.isInstance(error) && error.retryable).toBe(retryable);
      } finally {
        double.chunkFault = undefined;
      }
      expect(await storage.stat('failed.bin')).toBeUndefined();
      expect(double.objectNames(BUCKET).filter((name) => name.startsWith(storage.prefix))).toEqual([]);
      expect(sessionsOf(storage)).toMatchObject([{ state: 'cancelled' }]);
      // 400 is final at once; 503 is retried maxRetries (3) times.
      expect(sessionsOf(storage)[0]?.chunkRequests).toBe(status === 400 ? 3 : 6);
    }
  });

  it('abort mid-upload rejects with BK_ABORTED, cancels the session and leaves nothing', async () => {
    const storage = doubled();
    const controller = new AbortController();
    const body = (async function* () {
      for (let index = 0; index < 10; index += 1) {
        if (index === 4) controller.abort();
        yield randomBytes(MiB);
      }
    })();
    expect(await code(storage.put('aborted.bin', body, { signal: controller.signal }))).toBe('BK_ABORTED');
    expect(await storage.stat('aborted.bin')).toBeUndefined();
    expect(sessionsOf(storage)).toMatchObject([{ state: 'cancelled' }]);
  });

  it('abort while a chunk is in flight is noticed at once', async () => {
    const storage = doubled();
    const controller = new AbortController();
    double.chunkFault = (session, chunkNumber) => {
      if (session.name.startsWith(storage.prefix) && chunkNumber === 2)
        controller.abort(new Error('operator'));
      return undefined;
    };
    try {
      const error = await storage
        .put('in-flight.bin', randomBytes(4 * MiB), { signal: controller.signal })
        .catch((caught: unknown) => caught);
      expect(BkError.isInstance(error) && error.code).toBe('BK_ABORTED');
    } finally {
      double.chunkFault = undefined;
    }
    expect(await storage.stat('in-flight.bin')).toBeUndefined();
    expect(sessionsOf(storage)).toMatchObject([{ state: 'cancelled' }]);
  });

  it('a checksum that differs from what was sent deletes the object and rejects', async () => {
    for (const size of [1000, 3 * MiB]) {
      const storage = doubled();
      double.corruptNextObject = true;
      const error = await storage.put('corrupt.bin', randomBytes(size)).catch((caught: unknown) => caught);
      expect(BkError.isInstance(error) && error.code, `size ${size}`).toBe('BK_STORAGE');
      expect(String((error as Error).message)).toMatch(/md5/);
      expect(await storage.stat('corrupt.bin')).toBeUndefined();
    }
  });

  it('create-if-absent race over chunked uploads: exactly one wins, the others cancel', async () => {
    const storage = doubled();
    const bodies = Array.from({ length: 4 }, () => randomBytes(3 * MiB + 1));
    const results = await Promise.allSettled(
      bodies.map((body) => storage.put('race.bin', body, { ifNoneMatch: true })),
    );
    const winners = results.flatMap((result, index) => (result.status === 'fulfilled' ? [index] : []));
    expect(winners).toHaveLength(1);
    for (const result of results)
      if (result.status === 'rejected') expect((result.reason as BkError).code).toBe('BK_ALREADY_EXISTS');
    const stored = await readAll(await storage.get('race.bin'));
    expect(stored.equals(bodies[winners[0] as number] as Buffer)).toBe(true);
    // Each put that started a session either finalised it (the winner) or lost at finalisation.
    expect(sessionsOf(storage).filter((session) => session.state === 'final')).toHaveLength(1);
  });

  it('checksum "crc32c" is verified too', async () => {
    const crcDouble = await startGcsDouble();
    try {
      const storage = new GcsStorage({
        bucket: BUCKET,
        storage: new Storage({ apiEndpoint: crcDouble.url, projectId: 'bk-test' }),
        chunkSize: 256 * 1024,
        checksum: 'crc32c',
      });
      const bytes = randomBytes(600_000);
      await storage.put('small.bin', bytes.subarray(0, 1000));
      await storage.put('chunked.bin', bytes);
      expect((await readAll(await storage.get('chunked.bin'))).equals(bytes)).toBe(true);
    } finally {
      await crcDouble.stop();
    }
  });

  it('list follows page tokens past 1000 objects', async () => {
    const storage = doubled();
    const count = 1_003;
    for (let start = 0; start < count; start += 50)
      await Promise.all(
        Array.from({ length: Math.min(50, count - start) }, (_, offset) =>
          storage.put(`many/${String(start + offset).padStart(4, '0')}`, new Uint8Array([1])),
        ),
      );
    const keys: string[] = [];
    for await (const object of storage.list('many/')) keys.push(object.key);
    expect(new Set(keys).size).toBe(count);
  }, 120_000);

  it('round-trips a 1 GiB random stream byte-identically', async () => {
    const storage = doubled({ chunkSize: 16 * MiB });
    const total = 1024 * MiB;
    const sent = createHash('sha256');
    // Generated on the fly, 1 MiB at a time: the body is never held whole.
    const body = (async function* () {
      for (let offset = 0; offset < total; offset += MiB) {
        const chunk = randomBytes(MiB);
        sent.update(chunk);
        yield chunk;
      }
    })();
    const info = await storage.put('gib.bin', body);
    expect(info.size).toBe(total);
    expect(sessionsOf(storage)).toMatchObject([{ state: 'final', chunkRequests: 64 }]);
    const received = createHash('sha256');
    let size = 0;
    for await (const chunk of await storage.get('gib.bin')) {
      received.update(chunk);
      size += chunk.byteLength;
    }
    expect(size).toBe(total);
    expect(received.digest('hex')).toBe(sent.digest('hex'));
    await storage.delete('gib.bin');
  }, 300_000);
});
