import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  BkError,
  backup,
  catalog,
  collect,
  ENTRY_TREE_HELD_PATHS,
  type Entry,
  EntryTree,
  gunzip,
  gzip,
  inspect,
  MemoryStorage,
  prune,
  type Restorer,
  restore,
  type SidecarManifest,
  type Source,
  serializeManifest,
  sha256Hex,
  verify,
} from '../src/index.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures');

function text(value: string): Uint8Array {
  return new TextEncoder().encode(value);
}

function recorder(name: string): Restorer & { restored: Map<string, Entry & { data: string }> } {
  const restored = new Map<string, Entry & { data: string }>();
  return {
    kind: 'test',
    name,
    restored,
    async restore(input) {
      let entries = 0;
      let bytes = 0;
      for await (const entry of input) {
        const data = entry.body ? new TextDecoder().decode(await collect(entry.body)) : '';
        restored.set(entry.path, { ...entry, data });
        entries += 1;
        bytes += data.length;
      }
      return { entries, bytes };
    },
  };
}

function source(name: string, count: number): Source {
  return {
    kind: 'test',
    name,
    describe: async () => ({}),
    async *backup() {
      yield { path: 'd', type: 'directory', mode: 0o755 };
      for (let index = 0; index < count; index += 1) {
        const body = text(`file ${index}\n`);
        yield {
          path: `d/f${String(index).padStart(6, '0')}`,
          size: body.byteLength,
          mode: 0o644,
          body: (async function* () {
            yield body;
          })(),
        };
      }
    },
  };
}

async function read(storage: MemoryStorage, key: string): Promise<Uint8Array> {
  return collect(await storage.get(key));
}

/** Rewrites a stored backup's entry index with `edit` and makes the sidecar agree with it. */
async function editIndex(storage: MemoryStorage, name: string, edit: (lines: string[]) => string[]) {
  const manifest = await inspect({ storage, name });
  const index = manifest.entryIndex!;
  const plain = new TextDecoder().decode(
    await collect(
      gunzip(
        (async function* () {
          yield await read(storage, index.key);
        })(),
      ),
    ),
  );
  const lines = edit(plain.trimEnd().split('\n'));
  const stored = await collect(
    gzip(
      (async function* () {
        yield text(`${lines.join('\n')}\n`);
      })(),
    ),
  );
  await storage.put(index.key, stored);
  const sidecar: SidecarManifest = {
    ...manifest,
    entryIndex: { ...index, size: stored.byteLength, sha256: sha256Hex(stored) },
  };
  await storage.put(`${name}.manifest.json`, serializeManifest(sidecar));
}

async function failure(promise: Promise<unknown>): Promise<BkError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(BkError.isInstance(error)).toBe(true);
  return error as BkError;
}

describe('earlier manifest formats', () => {
  it('verifies and restores a backup written in format 1 (entries inside the manifest)', async () => {
    const directory = join(FIXTURES, 'format-1');
    const storage = new MemoryStorage();
    for (const file of readdirSync(directory)) await storage.put(file, readFileSync(join(directory, file)));
    const manifest = await inspect({ storage, name: 'latest' });
    expect(manifest.formatVersion).toBe(1);
    const verified = await verify({ storage, name: manifest.name });
    expect(verified).toMatchObject({ entries: 5, bytes: 82 });
    const app = recorder('app');
    const result = await restore({ storage, name: manifest.name, restorers: [app] });
    expect(result.components.app).toEqual({ entries: 5, bytes: 82 });
    expect(app.restored.get('conf/app.cfg')).toMatchObject({ data: 'port = 8080\n', mode: 0o644 });
    expect(app.restored.get('conf/current')).toMatchObject({ type: 'symlink', linkTarget: 'app.cfg' });
    expect(app.restored.get('dump')!.data).toBe(`${'a'.repeat(40)}${'b'.repeat(30)}`);
    expect(app.restored.get('empty')!.data).toBe('');
  });
});

describe('the entry index (format 2)', () => {
  it('keeps the entries out of the sidecar and streams them from a compressed index', async () => {
    const storage = new MemoryStorage();
    const result = await backup({ storage, components: [source('app', 1000)] });
    const sidecar = await read(storage, result.sidecarKey);
    expect(sidecar.byteLength).toBeLessThan(2048);
    expect(result.manifest.entryIndex).toMatchObject({
      entries: 1001,
      key: `${result.name}.entries.ndjson.gz`,
    });
    // ~40 bytes a line once compressed: the sha256 of each file is most of it.
    expect(result.manifest.entryIndex!.size).toBeLessThan(1001 * 60);
    const app = recorder('app');
    await restore({ storage, name: result.name, restorers: [app] });
    expect(app.restored.size).toBe(1001);
    expect(app.restored.get('d/f000999')!.data).toBe('file 999\n');
  });

  it('is listed with its backup and pruned with it', async () => {
    const storage = new MemoryStorage();
    let clock = Date.parse('2026-03-01T00:00:00Z');
    const now = () => new Date((clock += 1000));
    const first = await backup({ storage, components: [source('app', 2)], now });
    const second = await backup({ storage, components: [source('app', 2)], now });
    expect((await catalog({ storage })).map((item) => item.index?.key)).toEqual([
      first.manifest.entryIndex!.key,
      second.manifest.entryIndex!.key,
    ]);
    await prune({ storage, keepLast: 1 });
    const keys: string[] = [];
    for await (const object of storage.list('')) keys.push(object.key);
    expect(keys.sort()).toEqual([second.key, second.manifest.entryIndex!.key, second.sidecarKey].sort());
  });

  it('fails verify on an index whose stored bytes differ from the sidecar', async () => {
    const storage = new MemoryStorage();
    const result = await backup({ storage, components: [source('app', 10)] });
    const stored = await read(storage, result.manifest.entryIndex!.key);
    const damaged = Uint8Array.from(stored);
    damaged[damaged.byteLength - 5]! ^= 0xff;
    await storage.put(result.manifest.entryIndex!.key, damaged);
    expect((await failure(verify({ storage, name: result.name }))).code).toBe('BK_INTEGRITY');
  });

  it('refuses an index that repeats a path, drops one, or changes a sha256', async () => {
    const cases: [string, (lines: string[]) => string[], RegExp][] = [
      ['repeats', (lines) => [...lines.slice(0, 3), lines[2]!, ...lines.slice(3)], /appears twice/],
      ['drops', (lines) => [...lines.slice(0, 3), ...lines.slice(4)], /Expected entry "app\/d\/f000002"/],
      [
        'changes',
        (lines) =>
          lines.map((line, index) => (index === 2 ? line.replace(/"sha256":"./, '"sha256":"0') : line)),
        /sha256|corrupt/,
      ],
    ];
    for (const [what, edit, message] of cases) {
      const storage = new MemoryStorage();
      const result = await backup({ storage, components: [source('app', 10)] });
      await editIndex(storage, result.name, edit);
      const error = await failure(verify({ storage, name: result.name }));
      expect(error.message, what).toMatch(message);
    }
  });

  it('names the component a line belongs to, in the manifest order', async () => {
    const storage = new MemoryStorage();
    const result = await backup({ storage, components: [source('one', 2), source('two', 2)] });
    await editIndex(storage, result.name, (lines) =>
      lines.map((line) => line.replace('{"component":"two"}', '{"component":"one"}')),
    );
    expect((await failure(verify({ storage, name: result.name }))).message).toMatch(
      /out of the manifest's order/,
    );
  });
});

describe('EntryTree past the paths it holds', () => {
  function sortedTree(): EntryTree {
    const tree = new EntryTree();
    expect(tree.add('a', 'directory')).toBeUndefined();
    for (let index = 0; index < ENTRY_TREE_HELD_PATHS; index += 1)
      expect(tree.add(`a/${String(index).padStart(7, '0')}`, 'file')).toBeUndefined();
    return tree;
  }

  it('still finds a repeated path, an entry under a file or link, and refuses disorder', () => {
    const tree = sortedTree();
    expect(tree.add(`a/${String(ENTRY_TREE_HELD_PATHS - 1).padStart(7, '0')}`, 'file')).toMatch(
      /appears twice/,
    );
    expect(tree.add('b', 'symlink')).toBeUndefined();
    expect(tree.add('b/x', 'file')).toMatch(/lies under "b", which is a symbolic link/);
    expect(tree.add('c', 'directory')).toBeUndefined();
    expect(tree.add('c/d', 'file')).toBeUndefined();
    expect(tree.add('c/d/e/f', 'file')).toMatch(/lies under "c\/d", which is a file/);
    expect(tree.add('a/zz', 'file')).toMatch(/must yield its entries sorted/);
    expect(tree.add('c/e', 'directory')).toBeUndefined();
    expect(tree.add('c/e/g', 'file')).toBeUndefined();
  });

  it('keeps holding paths when the entries came unsorted', () => {
    const tree = new EntryTree();
    expect(tree.add('z', 'file')).toBeUndefined();
    for (let index = 0; index < ENTRY_TREE_HELD_PATHS; index += 1)
      expect(tree.add(`a${String(index).padStart(7, '0')}`, 'file')).toBeUndefined();
    expect(tree.add('z', 'file')).toMatch(/appears twice/);
    expect(tree.add('b', 'file')).toBeUndefined();
  });
});

describe('EntryTree while it holds paths', () => {
  it('finds repeats and entries under files among many paths, non-ASCII and deep ones too', () => {
    const tree = new EntryTree();
    const deep = Array.from({ length: 80 }, (_, index) => `d${index}`);
    for (let depth = 1; depth <= deep.length; depth += 1)
      expect(tree.add(deep.slice(0, depth).join('/'), 'directory')).toBeUndefined();
    expect(tree.add(`${deep.join('/')}/été`, 'file')).toBeUndefined();
    expect(tree.add(`${deep.join('/')}/été/x`, 'file')).toMatch(/lies under ".*\/été", which is a file/);
    // Unsorted, so every path stays held.
    for (let index = 5000; index > 0; index -= 1)
      expect(tree.add(`z/${index}/ü${index}`, index % 2 === 0 ? 'file' : 'symlink')).toBeUndefined();
    expect(tree.add('z/4321/ü4321', 'file')).toMatch(/appears twice/);
    expect(tree.add('z/4321/ü4321/a', 'file')).toMatch(
      /lies under "z\/4321\/ü4321", which is a symbolic link/,
    );
    expect(tree.add('z/4322/ü4322/a', 'file')).toMatch(/lies under "z\/4322\/ü4322", which is a file/);
    expect(tree.add('z/4321', 'file')).toMatch(/is a file, yet other entries lie under it/);
    expect(tree.add('z/4321/other', 'file')).toBeUndefined();
    expect(tree.add('d0', 'directory')).toMatch(/appears twice/);
  });
});
