import { createHash, randomBytes } from 'node:crypto';
import { BlobServiceClient } from '@azure/storage-blob';
import type { ByteStream } from '@bk/core';
import { type AzuriteServer, startAzurite } from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AzureStorage } from '../src/index.ts';

const MIB = 1024 * 1024;
const TOTAL = 1024 * MIB;

let azurite: AzuriteServer;

beforeAll(async () => {
  azurite = await startAzurite();
});

afterAll(async () => {
  await azurite?.stop();
});

/** `TOTAL` random bytes made 1 MiB at a time (never held whole), hashed as they are produced. */
function randomStream(): { body: ByteStream; sha256: () => string } {
  const hash = createHash('sha256');
  async function* body(): ByteStream {
    for (let made = 0; made < TOTAL; made += MIB) {
      const chunk = randomBytes(MIB);
      hash.update(chunk);
      yield chunk;
    }
  }
  return { body: body(), sha256: () => hash.digest('hex') };
}

describe('AzureStorage with a 1 GiB body (Azurite)', () => {
  it('round-trips 1 GiB byte-identically within its memory ceiling', async () => {
    const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
    const container = service.getContainerClient('large');
    await container.create();
    const storage = new AzureStorage({ container: 'large', client: container });
    let peak = 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().arrayBuffers);
    }, 20);
    const { body, sha256 } = randomStream();
    const started = Date.now();
    let info: Awaited<ReturnType<AzureStorage['put']>>;
    try {
      info = await storage.put('big/one-gib.bin', body);
    } finally {
      clearInterval(sampler);
    }
    const uploadMs = Date.now() - started;
    expect(info.size).toBe(TOTAL);
    const { committedBlocks = [] } = await container
      .getBlockBlobClient('big/one-gib.bin')
      .getBlockList('committed');
    expect(committedBlocks).toHaveLength(TOTAL / (8 * MIB));
    const expected = sha256();
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of await storage.get('big/one-gib.bin')) {
      hash.update(chunk);
      size += chunk.byteLength;
    }
    expect(size).toBe(TOTAL);
    expect(hash.digest('hex')).toBe(expected);
    // 4 blocks in flight + 1 being filled = 40 MiB, plus the SDK's and the sockets' buffers.
    console.log(
      `1 GiB: upload ${uploadMs} ms, total ${Date.now() - started} ms, peak arrayBuffers ${(peak / MIB).toFixed(0)} MiB`,
    );
    expect(peak).toBeLessThan(160 * MIB);
    await container.delete();
  }, 600_000);
});
