import { describe, expect, it } from 'vitest';
import {
  backup,
  type ComponentEntry,
  collect,
  type Entry,
  IntegrityError,
  inspect,
  list,
  MemoryStorage,
  manifestEntries,
  type Restorer,
  restore,
  type Source,
  verify,
} from '../src/index.ts';

function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

function component(
  name: string,
  entries: Array<Omit<Entry, 'body'> & { data?: string; unknownSize?: boolean }>,
): Source & Restorer & { restored: Map<string, string> } {
  const restored = new Map<string, string>();
  return {
    kind: 'test',
    name,
    restored,
    async describe() {
      return { version: '1.0' };
    },
    async *backup() {
      for (const { data, unknownSize, ...entry } of entries) {
        yield {
          ...entry,
          ...(data === undefined
            ? {}
            : {
                size: unknownSize ? undefined : bytes(data).byteLength,
                body: (async function* () {
                  yield bytes(data);
                })(),
              }),
        };
      }
    },
    async restore(input) {
      let count = 0;
      let total = 0;
      for await (const entry of input) {
        const data = entry.body ? new TextDecoder().decode(await collect(entry.body)) : '';
        restored.set(entry.path, data);
        count += 1;
        total += data.length;
      }
      return { entries: count, bytes: total };
    },
  };
}

describe('core runners', () => {
  it('backs up, lists, verifies and restores', async () => {
    const storage = new MemoryStorage();
    const a = component('a', [
      { path: 'dir', type: 'directory' },
      { path: 'dir/one.txt', data: 'hello' },
      { path: 'stream.dump', data: 'x'.repeat(100), unknownSize: true },
    ]);
    const b = component('b', [{ path: 'two', data: 'world' }]);
    const result = await backup({ storage, components: [a, b], chunkSize: 16 });
    expect(result.name).toMatch(/^backup_\d{8}_\d{6}$/);
    expect((await list({ storage })).map((item) => item.name)).toEqual([result.name]);
    const manifest = await inspect({ storage, name: 'latest' });
    expect(manifest.formatVersion).toBe(3);
    expect(manifest.components[0]!.entries).toBeUndefined();
    const listed: ComponentEntry[] = [];
    for await (const item of manifestEntries(storage, manifest)) listed.push(item);
    expect(listed.map(({ component, record }) => `${component.name}/${record.path}`)).toEqual([
      'a/dir',
      'a/dir/one.txt',
      'a/stream.dump',
      'b/two',
    ]);
    expect(listed.find(({ record }) => record.path === 'stream.dump')!.record.chunks).toBe(7);
    expect(await storage.stat(manifest.entryIndex!.key)).toMatchObject({ size: manifest.entryIndex!.size });
    await verify({ storage, name: result.name });
    const a2 = component('a', []);
    const b2 = component('b', []);
    await restore({ storage, name: 'latest', restorers: [a2, b2] });
    expect(a2.restored.get('dir/one.txt')).toBe('hello');
    expect(a2.restored.get('stream.dump')).toBe('x'.repeat(100));
    expect(b2.restored.get('two')).toBe('world');
    const only = component('b', []);
    await restore({ storage, name: 'latest', restorers: [only], only: ['b'] });
    expect(only.restored.get('two')).toBe('world');
  });

  it('keeps two backups of the same second as _1', async () => {
    const storage = new MemoryStorage();
    const now = () => new Date('2026-11-21T10:15:00Z');
    const c = component('c', [{ path: 'f', data: 'x' }]);
    const [first, second] = await Promise.all([
      backup({ storage, components: [c], now }),
      backup({ storage, components: [c], now }),
    ]);
    expect([first.name, second.name].sort()).toEqual(['backup_20261121_101500', 'backup_20261121_101500_1']);
    const third = await backup({ storage, components: [c], now });
    expect(third.name).toBe('backup_20261121_101500_2');
  });

  it('names the damaged entry when a byte flips', async () => {
    const storage = new MemoryStorage();
    const c = component('c', [{ path: 'big', data: 'abcdefghij'.repeat(5000) }]);
    const result = await backup({ storage, components: [c], compressionLevel: 0 });
    storage.corrupt(result.key, (archive) => {
      archive[2000] ^= 0xff;
    });
    const error = await verify({ storage, name: result.name }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as IntegrityError).message).toContain('c/big');
  });
});
