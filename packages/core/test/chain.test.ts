import { describe, expect, it } from 'vitest';
import {
  backup,
  collect,
  type Entry,
  IntegrityError,
  MemoryStorage,
  NotFoundError,
  type RestoreContext,
  type Restorer,
  resolveChain,
  restore,
  type Source,
} from '../src/index.ts';

const text = (value: string) => new TextEncoder().encode(value);

function source(name: string, content: string): Source {
  return {
    kind: 'test',
    name,
    describe: async () => ({ version: '1', details: { content } }),
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

const at = (minute: number) => () => new Date(Date.UTC(2026, 0, 1, 0, minute, 0));
const nameAt = (minute: number) => `backup_20260101_00${String(minute).padStart(2, '0')}00`;

async function makeChain(storage: MemoryStorage, length: number, prefix?: string): Promise<string[]> {
  const names: string[] = [];
  for (let index = 0; index < length; index += 1) {
    const result = await backup({
      storage,
      prefix,
      components: [source('db', `link${index}`)],
      parent: names.at(-1),
      now: at(index),
    });
    names.push(result.name);
  }
  return names;
}

describe('resolveChain', () => {
  it('returns the chain oldest first, from any link and from "latest"', async () => {
    const storage = new MemoryStorage();
    const names = await makeChain(storage, 4);
    expect(names).toEqual([nameAt(0), nameAt(1), nameAt(2), nameAt(3)]);
    const chain = await resolveChain({ storage, name: names[3]! });
    expect(chain.map((link) => link.name)).toEqual(names);
    expect(chain.map((link) => link.manifest.parent)).toEqual([null, ...names.slice(0, 3)]);
    expect((await resolveChain({ storage, name: 'latest' })).map((link) => link.name)).toEqual(names);
    expect((await resolveChain({ storage, name: names[1]! })).map((link) => link.name)).toEqual(
      names.slice(0, 2),
    );
    expect((await resolveChain({ storage, name: names[0]! })).map((link) => link.name)).toEqual([names[0]]);
  });

  it('works under a prefix', async () => {
    const storage = new MemoryStorage();
    const names = await makeChain(storage, 2, 'site-a');
    expect((await resolveChain({ storage, name: names[1]!, prefix: 'site-a' })).map((l) => l.name)).toEqual(
      names,
    );
  });

  it('fails with NotFoundError naming the broken link when a parent is missing', async () => {
    const storage = new MemoryStorage();
    await makeChain(storage, 1);
    const orphan = await backup({
      storage,
      components: [source('db', 'x')],
      parent: 'backup_20250101_000000',
      now: at(5),
    });
    const error = await resolveChain({ storage, name: orphan.name }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(NotFoundError);
    expect((error as Error).message).toContain(`"${orphan.name}" builds on "backup_20250101_000000"`);
  });

  it('fails with NotFoundError when the named backup itself is missing', async () => {
    const storage = new MemoryStorage();
    await expect(resolveChain({ storage, name: nameAt(9) })).rejects.toBeInstanceOf(NotFoundError);
  });

  it('fails with IntegrityError on a cycle', async () => {
    const storage = new MemoryStorage();
    // A names B (not yet written) as parent, B names A.
    await backup({ storage, components: [source('db', 'a')], parent: nameAt(1), now: at(0) });
    await backup({ storage, components: [source('db', 'b')], parent: nameAt(0), now: at(1) });
    const error = await resolveChain({ storage, name: nameAt(1) }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as Error).message).toContain('loops');
    // A backup naming itself.
    await backup({ storage, components: [source('db', 'c')], parent: nameAt(2), now: at(2) });
    await expect(resolveChain({ storage, name: nameAt(2) })).rejects.toBeInstanceOf(IntegrityError);
  });
});

describe('restore({ chain: true })', () => {
  it('restores every link in order; the first with the policy, the later ones with overwrite', async () => {
    const storage = new MemoryStorage();
    const names = await makeChain(storage, 3);
    const restorer = recorder('db');
    const result = await restore({ storage, name: 'latest', restorers: [restorer], chain: true });
    expect(restorer.calls).toEqual([
      { backup: names[0], conflict: 'fail', content: 'link0' },
      { backup: names[1], conflict: 'overwrite', content: 'link1' },
      { backup: names[2], conflict: 'overwrite', content: 'link2' },
    ]);
    expect(result.name).toBe(names[2]);
    expect(result.chain?.map((link) => link.name)).toEqual(names);

    const skipping = recorder('db');
    await restore({ storage, name: names[1]!, restorers: [skipping], chain: true, conflict: 'skip' });
    expect(skipping.calls.map((call) => [call.backup, call.conflict])).toEqual([
      [names[0], 'skip'],
      [names[1], 'skip'],
    ]);
  });

  it('restores only the named backup without chain', async () => {
    const storage = new MemoryStorage();
    const names = await makeChain(storage, 2);
    const restorer = recorder('db');
    const result = await restore({ storage, name: names[1]!, restorers: [restorer] });
    expect(restorer.calls).toEqual([{ backup: names[1], conflict: 'fail', content: 'link1' }]);
    expect(result.chain).toBeUndefined();
  });

  it('restores nothing when a link is missing', async () => {
    const storage = new MemoryStorage();
    const orphan = await backup({
      storage,
      components: [source('db', 'x')],
      parent: 'backup_20250101_000000',
      now: at(5),
    });
    const restorer = recorder('db');
    await expect(
      restore({ storage, name: orphan.name, restorers: [restorer], chain: true }),
    ).rejects.toBeInstanceOf(NotFoundError);
    expect(restorer.calls).toEqual([]);
  });
});
