import { describe, expect, it } from 'vitest';
import {
  backup,
  collect,
  type Entry,
  type IncrementalParent,
  IntegrityError,
  ManifestError,
  MemoryStorage,
  NotFoundError,
  planIncremental,
  prune,
  type RestoreContext,
  type Restorer,
  readParents,
  restore,
  type Source,
} from '../src/index.ts';

const text = (value: string) => new TextEncoder().encode(value);
const at = (minute: number) => () => new Date(Date.UTC(2026, 0, 1, 0, minute, 0));

/** A source whose incremental continuation records the parent it was given. */
function source(name: string, content: string, options: { incremental?: boolean } = {}): Source {
  const made: Source = {
    kind: 'test',
    name,
    describe: async () => ({ details: { content } }),
    async *backup(): AsyncIterable<Entry> {
      const data = text(content);
      yield {
        path: 'data.txt',
        size: data.byteLength,
        body: (async function* () {
          yield data;
        })(),
      };
    },
  };
  if (options.incremental !== false) {
    made.incremental = async (parent: IncrementalParent) => {
      const paths: string[] = [];
      for await (const entry of parent.entries()) paths.push(entry.path);
      return source(name, `${content} after ${parent.backupName} (${paths.join(',')})`, {
        incremental: true,
      });
    };
  }
  return made;
}

interface Call {
  backup: string;
  conflict: RestoreContext['conflict'];
  content: string;
}

function recorder(name: string): Restorer & { calls: Call[] } {
  const calls: Call[] = [];
  return {
    kind: 'test',
    name,
    calls,
    async restore(entries, context) {
      let content = '';
      for await (const entry of entries) {
        if (entry.body) content += new TextDecoder().decode(await collect(entry.body));
      }
      calls.push({ backup: context.backupName, conflict: context.conflict, content });
      return { entries: 1, bytes: content.length };
    },
  };
}

async function incremental(storage: MemoryStorage, minute: number, components: Source[]) {
  const plan = await planIncremental({ storage, components });
  const result = await backup({
    storage,
    components: plan.components,
    ...(plan.parent ? { parent: plan.parent, incrementalComponents: plan.incrementalComponents } : {}),
    now: at(minute),
  });
  return { plan, result };
}

describe('planIncremental', () => {
  it('takes a full backup first, then continues from the newest backup holding the components', async () => {
    const storage = new MemoryStorage();
    const first = await incremental(storage, 0, [
      source('db', 'a'),
      source('plain', 'p', { incremental: false }),
    ]);
    expect(first.plan.parent).toBeNull();
    expect(first.plan.fullComponents).toEqual(['db', 'plain']);
    expect(first.result.manifest.parent).toBeNull();
    // A backup without "db" in between is not a parent for it.
    await backup({ storage, components: [source('other', 'o')], now: at(1) });
    const second = await incremental(storage, 2, [
      source('db', 'b'),
      source('plain', 'q', { incremental: false }),
    ]);
    expect(second.plan.parent).toBe(first.result.name);
    expect(second.plan.incrementalComponents).toEqual(['db']);
    expect(second.plan.fullComponents).toEqual(['plain']);
    const manifest = second.result.manifest;
    expect(manifest.parent).toBe(first.result.name);
    expect(manifest.components.map((component) => [component.name, component.incremental])).toEqual([
      ['db', true],
      ['plain', undefined],
    ]);
  });

  it('returns every component unchanged when none can be incremental', async () => {
    const storage = new MemoryStorage();
    await backup({ storage, components: [source('plain', 'p', { incremental: false })], now: at(0) });
    const plan = await planIncremental({
      storage,
      components: [source('plain', 'q', { incremental: false })],
    });
    expect(plan).toMatchObject({ parent: null, incrementalComponents: [], fullComponents: ['plain'] });
  });
});

describe('restore({ chain: true }) per component', () => {
  it('restores an incremental component from its full copy on, a full one from the newest backup alone', async () => {
    const storage = new MemoryStorage();
    const names: string[] = [];
    for (const [minute, content] of [
      [0, 'v0'],
      [1, 'v1'],
      [2, 'v2'],
    ] as const) {
      const { result } = await incremental(storage, minute, [
        source('db', content),
        source('plain', `p${minute}`, { incremental: false }),
      ]);
      names.push(result.name);
    }
    const db = recorder('db');
    const plain = recorder('plain');
    const result = await restore({ storage, name: 'latest', restorers: [db, plain], chain: true });
    expect(db.calls.map((call) => [call.backup, call.conflict])).toEqual([
      [names[0], 'fail'],
      [names[1], 'overwrite'],
      [names[2], 'overwrite'],
    ]);
    expect(db.calls[2]!.content).toBe(`v2 after ${names[1]} (data.txt)`);
    expect(plain.calls).toEqual([{ backup: names[2], conflict: 'fail', content: 'p2' }]);
    expect(result.chain?.map((link) => Object.keys(link.components))).toEqual([
      ['db'],
      ['db'],
      ['db', 'plain'],
    ]);
  });

  it('fails naming the link, before restoring anything, when a link is missing, damaged or truncated', async () => {
    for (const damage of ['sidecar', 'manifest', 'archive', 'index'] as const) {
      const storage = new MemoryStorage();
      const names: string[] = [];
      for (const minute of [0, 1, 2])
        names.push((await incremental(storage, minute, [source('db', `v${minute}`)])).result.name);
      const victim = names[1]!;
      const keys: string[] = [];
      for await (const object of storage.list('')) keys.push(object.key);
      const keyOf = (suffix: string) => keys.find((key) => key.startsWith(victim) && key.endsWith(suffix))!;
      if (damage === 'sidecar') await storage.delete(keyOf('.manifest.json'));
      if (damage === 'manifest') await storage.put(keyOf('.manifest.json'), text('{"format":'));
      if (damage === 'archive') {
        const bytes = await collect(await storage.get(keyOf('.tar.gz')));
        await storage.put(keyOf('.tar.gz'), bytes.subarray(0, bytes.byteLength - 10));
      }
      if (damage === 'index')
        await storage.delete(
          keys.find((key) => key.startsWith(victim) && key.endsWith('.entries.ndjson.gz'))!,
        );
      const db = recorder('db');
      const failure = restore({ storage, name: names[2]!, restorers: [db], chain: true });
      const expected = {
        sidecar: NotFoundError,
        manifest: ManifestError,
        archive: IntegrityError,
        index: NotFoundError,
      }[damage];
      await expect(failure).rejects.toBeInstanceOf(expected);
      await expect(failure).rejects.toThrow(victim);
      expect(db.calls).toEqual([]);
    }
  });
});

describe('prune and chains', () => {
  it('keeps every backup a kept incremental builds on, and says so', async () => {
    const storage = new MemoryStorage();
    const names: string[] = [];
    for (const minute of [0, 1, 2])
      names.push((await incremental(storage, minute, [source('db', `v${minute}`)])).result.name);
    names.push((await backup({ storage, components: [source('other', 'o')], now: at(3) })).name);
    const result = await prune({ storage, keepLast: 2, dryRun: true });
    expect(result.deleted).toEqual([]);
    expect(result.keptForChain).toEqual([
      { name: names[0], neededBy: names[2] },
      { name: names[1], neededBy: names[2] },
    ]);
    const last = await prune({ storage, keepLast: 1 });
    expect(last.deleted).toEqual(names.slice(0, 3));
    expect(last.keptForChain).toEqual([]);
  });

  it('reads parents of encrypted backups without a key', async () => {
    const storage = new MemoryStorage();
    const recipients = ['age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p'];
    const first = await backup({
      storage,
      components: [source('db', 'a')],
      encryption: { recipients },
      now: at(0),
    });
    const second = await backup({
      storage,
      components: [source('db', 'b')],
      parent: first.name,
      incrementalComponents: ['db'],
      encryption: { recipients },
      now: at(1),
    });
    const parents = await readParents({ storage, names: [first.name, second.name] });
    expect([...parents]).toEqual([
      [first.name, null],
      [second.name, first.name],
    ]);
  });
});
