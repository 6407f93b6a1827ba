import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  backup,
  collect,
  type Entry,
  type GetOptions,
  getInParallel,
  IntegrityError,
  MemoryStorage,
  restore,
  sha256Hex,
  verify,
} from '../src/index.ts';

describe('getInParallel', () => {
  it('yields the ranges in order with several in flight', async () => {
    const storage = new MemoryStorage();
    const data = randomBytes(100_000);
    await storage.put('object', data);
    let inFlight = 0;
    let most = 0;
    const get = storage.get.bind(storage);
    storage.get = async (key: string, options?: GetOptions) => {
      inFlight += 1;
      most = Math.max(most, inFlight);
      await new Promise((resolve) => setTimeout(resolve, 5));
      inFlight -= 1;
      return get(key, options);
    };
    const read = await collect(
      getInParallel(storage, 'object', { size: data.byteLength, partSize: 7_000, concurrency: 3 }),
    );
    expect(sha256Hex(read)).toBe(sha256Hex(data));
    expect(most).toBe(3);
  });

  it('fails when a range comes back short', async () => {
    const storage = new MemoryStorage();
    await storage.put('object', randomBytes(10_000));
    await expect(
      collect(getInParallel(storage, 'object', { size: 20_000, partSize: 4_000 })),
    ).rejects.toBeInstanceOf(IntegrityError);
  });

  it('restores and verifies an archive read in parallel ranges', async () => {
    const storage = new MemoryStorage();
    const data = randomBytes(20 * 1024 * 1024);
    const restored: Uint8Array[] = [];
    const component = {
      kind: 'test',
      name: 'blob',
      describe: async () => ({}),
      async *backup(): AsyncIterable<Entry> {
        yield {
          path: 'data.bin',
          size: data.byteLength,
          body: (async function* () {
            yield data;
          })(),
        };
      },
      async restore(entries: AsyncIterable<Entry>) {
        for await (const entry of entries)
          if (entry.body) restored.push(await collect(entry.body, 64 * 1024 * 1024));
        return { entries: restored.length, bytes: data.byteLength };
      },
    };
    const { name } = await backup({ storage, components: [component], compressionLevel: 1 });
    await verify({ storage, name, readConcurrency: 4 });
    await restore({ storage, name, restorers: [component], readConcurrency: 4 });
    expect(sha256Hex(restored[0]!)).toBe(sha256Hex(data));
  });
});
