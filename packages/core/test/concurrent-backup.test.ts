import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import {
  BkError,
  type ByteStream,
  backup,
  collect,
  type Entry,
  list,
  MemoryStorage,
  type ObjectInfo,
  type PutOptions,
  parseBackupName,
  resolveName,
  type Source,
  type StorageCapabilities,
  verify,
} from '../src/index.ts';
import { UNIQUE_SEQUENCE_BASE } from '../src/naming.ts';

/**
 * A store like Swift's s3api: a put replaces whatever is there and `If-None-Match` is ignored,
 * with latency on every request so that concurrent runs interleave.
 */
class LastWriterWinsStorage extends MemoryStorage {
  override readonly capabilities: StorageCapabilities = {
    atomicPublish: true,
    conditionalCreate: false,
    rangeRead: true,
    multipart: false,
  };
  /** Runs after a put has stored its object. */
  afterPut: ((key: string) => Promise<void>) | undefined;

  override async put(
    key: string,
    body: ByteStream | Uint8Array,
    options: PutOptions = {},
  ): Promise<ObjectInfo> {
    await sleep(5 + Math.random() * 20);
    const { ifNoneMatch: _ignored, ...rest } = options;
    const info = await super.put(key, body, rest);
    await this.afterPut?.(key);
    return info;
  }

  override async stat(key: string, options: { signal?: AbortSignal } = {}): Promise<ObjectInfo | undefined> {
    await sleep(5 + Math.random() * 20);
    return super.stat(key, options);
  }
}

function source(data: string): Source {
  return {
    kind: 'test',
    name: 'c',
    describe: async () => ({ version: '1' }),
    async *backup(): AsyncIterable<Entry> {
      const bytes = new TextEncoder().encode(data);
      yield {
        path: 'f',
        size: bytes.byteLength,
        body: (async function* () {
          yield bytes;
        })(),
      };
    },
  };
}

const sameSecond = () => new Date('2026-11-21T10:15:00.250Z');

describe('concurrent backups on a store without create-if-absent', () => {
  it('gives every run its own name, and every backup verifies', async () => {
    const storage = new LastWriterWinsStorage();
    const runs = 20;
    const results = await Promise.all(
      Array.from({ length: runs }, (_, index) =>
        backup({ storage, components: [source(`run ${index}`)], now: sameSecond }),
      ),
    );
    const names = results.map((result) => result.name);
    expect(new Set(names).size).toBe(runs);
    for (const name of names) {
      expect(name).toMatch(/^backup_20261121_101500_1250\d{12}$/);
      expect(parseBackupName(name)!.sequence).toBeGreaterThanOrEqual(UNIQUE_SEQUENCE_BASE);
    }
    const listed = await list({ storage });
    expect(listed.map((item) => item.name).sort()).toEqual([...names].sort());
    for (const [index, name] of names.entries()) {
      const verified = await verify({ storage, name });
      expect(verified.manifest.name).toBe(name);
      const inner = verified.manifest.components[0]!;
      expect(inner.stats.bytes).toBe(`run ${index}`.length);
    }
    expect(await resolveName({ storage, name: 'latest' })).toBe(listed.at(-1)!.name);
  });

  it('fails, and leaves the name alone, when another writer replaces the lock', async () => {
    const storage = new LastWriterWinsStorage();
    storage.afterPut = async (key) => {
      if (key.endsWith('.tar.gz')) {
        const lockKey = key.replace(/\.tar\.gz$/, '.lock');
        await MemoryStorage.prototype.put.call(storage, lockKey, new TextEncoder().encode('{"run":"other"}'));
      }
    };
    const error = await backup({ storage, components: [source('x')], now: sameSecond }).catch(
      (caught: unknown) => caught,
    );
    expect(BkError.isInstance(error) && error.code).toBe('BK_STORAGE');
    expect((error as Error).message).toMatch(/another writer used the same name/);
    expect(await list({ storage })).toEqual([]);
    const keys: string[] = [];
    for await (const object of storage.list('')) keys.push(object.key);
    // The other writer's lock is still there.
    const lock = keys.find((key) => key.endsWith('.lock'))!;
    expect(new TextDecoder().decode(await collect(await storage.get(lock)))).toBe('{"run":"other"}');
  });

  it('fails when the sidecar it wrote is replaced before it reports success', async () => {
    const storage = new LastWriterWinsStorage();
    storage.afterPut = async (key) => {
      if (key.endsWith('.manifest.json'))
        await MemoryStorage.prototype.put.call(storage, key, new TextEncoder().encode('{}'));
    };
    await expect(backup({ storage, components: [source('x')], now: sameSecond })).rejects.toThrow(
      /manifest\.json" in memory:\/\/ changed after this backup run wrote it/,
    );
  });
});
