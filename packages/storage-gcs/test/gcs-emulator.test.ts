import { randomBytes } from 'node:crypto';
import { BkError, type ByteStream } from '@bk/core';
import { type GcsEmulator, startGcsEmulator } from '@bk/test-servers';
import { storageContract } from '@bk/test-suite';
import { Storage } from '@google-cloud/storage';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GcsStorage, storageFromUrl } from '../src/index.ts';

// One emulator for this file. It cannot run multi-request resumable uploads and ignores
// `ifGenerationMatch`, so these tests use chunks large enough for every body to go in one
// request; the chunked path and preconditions are tested against the double (gcs-double.test.ts).
const CHUNK_SIZE = 128 * 1024 * 1024;

let emulator: GcsEmulator;
const previousHost = process.env.STORAGE_EMULATOR_HOST;

beforeAll(async () => {
  emulator = await startGcsEmulator();
  process.env.STORAGE_EMULATOR_HOST = emulator.host;
}, 60_000);

afterAll(async () => {
  if (previousHost === undefined) delete process.env.STORAGE_EMULATOR_HOST;
  else process.env.STORAGE_EMULATOR_HOST = previousHost;
  await emulator?.stop();
});

function emulated(prefix = `run-${randomBytes(4).toString('hex')}`): GcsStorage {
  return new GcsStorage({
    bucket: emulator.bucket,
    prefix,
    storage: new Storage({ projectId: emulator.projectId }),
    chunkSize: CHUNK_SIZE,
  });
}

async function readAll(stream: ByteStream): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

describe('GcsStorage meets the storage contract (GCS emulator)', () => {
  storageContract(it, async () => ({ storage: emulated() }), {
    // Under the emulator's 130 MB request limit, over the default 16 MiB chunk.
    largeObjectBytes: 100 * 1024 * 1024,
    // The emulator ignores ifGenerationMatch, so only the double and real GCS can settle a race.
    skip: ['concurrent create-if-absent: exactly one wins'],
    timeout: 120_000,
  });
});

describe('GcsStorage against the GCS emulator', () => {
  it('storageFromUrl honours STORAGE_EMULATOR_HOST', async () => {
    const storage = storageFromUrl(new URL(`gs://${emulator.bucket}/from-url?chunkSize=1MiB`));
    expect(storage.description).toBe(`gs://${emulator.bucket}/from-url/`);
    await storage.put('a/b.txt', new TextEncoder().encode('through the URL'));
    expect((await readAll(await storage.get('a/b.txt'))).toString()).toBe('through the URL');
    expect((await storage.stat('a/b.txt'))?.size).toBe(15);
  });

  it('a resumable single-request upload (resumable: true) round-trips and is verified', async () => {
    const storage = new GcsStorage({
      bucket: emulator.bucket,
      prefix: 'single-put',
      storage: new Storage({ projectId: emulator.projectId }),
      resumable: true,
    });
    const bytes = randomBytes(3 * 1024 * 1024 + 5);
    const info = await storage.put('one.bin', bytes);
    expect(info.size).toBe(bytes.byteLength);
    expect((await readAll(await storage.get('one.bin'))).equals(bytes)).toBe(true);
    expect(
      (await readAll(await storage.get('one.bin', { range: { start: 10, end: 20 } }))).equals(
        bytes.subarray(10, 20),
      ),
    ).toBe(true);
  });

  it('refuses a body larger than chunkSize when resumable is false, storing nothing', async () => {
    const storage = new GcsStorage({
      bucket: emulator.bucket,
      prefix: `no-resume-${randomBytes(4).toString('hex')}`,
      storage: new Storage({ projectId: emulator.projectId }),
      chunkSize: 256 * 1024,
      resumable: false,
    });
    const error = await storage
      .put('big.bin', randomBytes(256 * 1024 + 1))
      .catch((caught: unknown) => caught);
    expect(BkError.isInstance(error) && error.code).toBe('BK_CONFIG');
    expect(await storage.stat('big.bin')).toBeUndefined();
  });
});
