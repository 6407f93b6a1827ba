import { describe, expect, it } from 'vitest';
import {
  BkError,
  backup,
  type CleanupIncompleteOptions,
  type CleanupIncompleteResult,
  ConfigError,
  catalog,
  collect,
  type Entry,
  type IncompleteUpload,
  IntegrityError,
  list,
  MemoryStorage,
  NotFoundError,
  prune,
  type Restorer,
  restore,
  type Source,
  verify,
} from '../src/index.ts';

function source(name: string, make: () => AsyncIterable<Entry>): Source {
  return { kind: 'test', name, describe: async () => ({ version: '1' }), backup: make };
}

const text = (value: string) => new TextEncoder().encode(value);

async function* oneFile(path: string, data: Uint8Array): AsyncIterable<Entry> {
  yield {
    path,
    size: data.byteLength,
    body: (async function* () {
      yield data;
    })(),
  };
}

function recorder(name: string): Restorer & { published: string[] } {
  const published: string[] = [];
  return {
    kind: 'test',
    name,
    published,
    async restore(entries) {
      let count = 0;
      for await (const entry of entries) {
        if (entry.body) await collect(entry.body);
        published.push(entry.path);
        count += 1;
      }
      return { entries: count, bytes: 0 };
    },
  };
}

async function keys(storage: MemoryStorage): Promise<string[]> {
  const found: string[] = [];
  for await (const object of storage.list('')) found.push(object.key);
  return found.sort();
}

describe('backup leaves nothing behind when it fails', () => {
  it('on a source error', async () => {
    const storage = new MemoryStorage();
    const failing = source('broken', async function* () {
      yield* oneFile('a', text('a'));
      throw new Error('server went away');
    });
    await expect(backup({ storage, components: [failing] })).rejects.toThrow('server went away');
    expect(await keys(storage)).toEqual([]);
  });

  it('on abort', async () => {
    const storage = new MemoryStorage();
    const controller = new AbortController();
    const slow = source('slow', async function* () {
      yield* oneFile('a', text('a'));
      controller.abort();
      yield* oneFile('b', text('b'));
    });
    const error = await backup({ storage, components: [slow], signal: controller.signal }).catch(
      (caught: unknown) => caught,
    );
    expect(BkError.isInstance(error) && error.code).toBe('BK_ABORTED');
    expect(await keys(storage)).toEqual([]);
  });

  it('when a body is shorter than announced', async () => {
    const storage = new MemoryStorage();
    const liar = source('liar', async function* () {
      yield {
        path: 'f',
        size: 10,
        body: (async function* () {
          yield text('abc');
        })(),
      };
    });
    await expect(backup({ storage, components: [liar] })).rejects.toBeInstanceOf(IntegrityError);
    expect(await keys(storage)).toEqual([]);
  });

  it('when a component yields an unsafe path', async () => {
    const storage = new MemoryStorage();
    const unsafe = source('unsafe', () => oneFile('../escape', text('x')));
    await expect(backup({ storage, components: [unsafe] })).rejects.toMatchObject({ code: 'BK_UNSAFE_PATH' });
    expect(await keys(storage)).toEqual([]);
  });
});

describe('selection', () => {
  it('backs up and restores only the named components, and names unknown ones', async () => {
    const storage = new MemoryStorage();
    const a = source('a', () => oneFile('x', text('1')));
    const b = source('b', () => oneFile('y', text('2')));
    const result = await backup({ storage, components: [a, b], only: ['b'] });
    expect(result.manifest.components.map((component) => component.name)).toEqual(['b']);
    await expect(backup({ storage, components: [a], only: ['nope'] })).rejects.toBeInstanceOf(ConfigError);
    await expect(restore({ storage, name: 'latest', restorers: [] })).rejects.toThrow(
      /No restorer is configured for "b"/,
    );
    await expect(restore({ storage, name: 'backup_20000101_000000', restorers: [] })).rejects.toBeInstanceOf(
      NotFoundError,
    );
  });
});

describe('integrity on restore', () => {
  it('fails the damaged entry before the restorer publishes it, and names it', async () => {
    const storage = new MemoryStorage();
    const data = new Uint8Array(200_000).map((_, index) => (index * 7919) % 251);
    const result = await backup({
      storage,
      components: [
        source('c', async function* () {
          yield* oneFile('first', text('fine'));
          yield* oneFile('second', data);
        }),
      ],
      compressionLevel: 0,
    });
    storage.corrupt(result.key, (archive) => {
      archive[100_000] ^= 0x01;
    });
    const target = recorder('c');
    const error = await restore({ storage, name: result.name, restorers: [target] }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as IntegrityError).entry).toBe('c/second');
    expect(target.published).toEqual(['first']);
  });

  it('detects a truncated archive', async () => {
    const storage = new MemoryStorage();
    const result = await backup({
      storage,
      components: [source('c', () => oneFile('f', text('x'.repeat(100_000))))],
    });
    const bytes = await collect(await storage.get(result.key));
    await storage.put(result.key, bytes.subarray(0, bytes.byteLength - 100));
    await expect(verify({ storage, name: result.name })).rejects.toBeInstanceOf(IntegrityError);
  });
});

describe('prune', () => {
  it('keeps by count and by day, suffix-aware, and clears old leftovers', async () => {
    const storage = new MemoryStorage();
    const component = source('c', () => oneFile('f', text('x')));
    const times = [
      '2026-11-18T10:00:00Z',
      '2026-11-19T09:00:00Z',
      '2026-11-19T10:00:00Z',
      '2026-11-20T10:00:00Z',
      '2026-11-20T10:00:00Z',
    ];
    for (const time of times) await backup({ storage, components: [component], now: () => new Date(time) });
    await storage.put('backup_20261101_000000.lock', text('{}'));
    const dry = await prune({ storage, keepLast: 1, keepDaily: 2, dryRun: true, orphanAgeMs: -1 });
    expect(dry.kept).toEqual(['backup_20261119_100000', 'backup_20261120_100000_1']);
    expect(dry.deleted).toEqual([
      'backup_20261118_100000',
      'backup_20261119_090000',
      'backup_20261120_100000',
    ]);
    expect((await list({ storage })).length).toBe(5);
    const done = await prune({ storage, keepLast: 1, keepDaily: 2, orphanAgeMs: -1 });
    expect(done.orphans).toEqual(['backup_20261101_000000.lock']);
    expect((await list({ storage })).map((item) => item.name)).toEqual([
      'backup_20261119_100000',
      'backup_20261120_100000_1',
    ]);
    expect((await catalog({ storage })).length).toBe(2);
    await expect(prune({ storage })).rejects.toBeInstanceOf(ConfigError);
  });

  it("has the storage's cleanupIncomplete remove what interrupted writes left, past the same age", async () => {
    const calls: CleanupIncompleteOptions[] = [];
    const leftover: IncompleteUpload = {
      kind: 'multipart upload',
      location: 'edge/backup_20261101_000000.tar.gz (upload 1)',
      key: 'edge/backup_20261101_000000.tar.gz',
    };
    const storage = Object.assign(new MemoryStorage(), {
      async cleanupIncomplete(options: CleanupIncompleteOptions): Promise<CleanupIncompleteResult> {
        calls.push(options);
        return { removed: [leftover], notes: ['sessions expire by themselves'] };
      },
    });
    await backup({ storage, prefix: 'edge', components: [source('c', () => oneFile('f', text('x')))] });
    const dry = await prune({ storage, prefix: 'edge', keepLast: 1, dryRun: true });
    expect(dry).toMatchObject({ incomplete: [leftover], notes: ['sessions expire by themselves'] });
    await prune({ storage, prefix: 'edge', keepLast: 1, orphanAgeMs: 0 });
    expect(calls.map(({ olderThanMs, prefix, dryRun }) => ({ olderThanMs, prefix, dryRun }))).toEqual([
      { olderThanMs: 86_400_000, prefix: 'edge/', dryRun: true },
      { olderThanMs: 0, prefix: 'edge/', dryRun: false },
    ]);
    const plain = await prune({ storage: new MemoryStorage(), keepLast: 1 });
    expect(plain).toMatchObject({ incomplete: [], notes: [] });
  });
});
