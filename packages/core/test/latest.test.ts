import { describe, expect, it } from 'vitest';
import {
  backup,
  type Component,
  ConfigError,
  collect,
  type Entry,
  inspect,
  MemoryStorage,
  NotFoundError,
  resolveName,
  restore,
} from '../src/index.ts';

function component(name: string, restored: string[] = []): Component {
  const bytes = new TextEncoder().encode(name);
  return {
    kind: 'test',
    name,
    describe: async () => ({}),
    async *backup() {
      yield {
        path: `${name}.txt`,
        size: bytes.byteLength,
        body: (async function* () {
          yield bytes;
        })(),
      } satisfies Entry;
    },
    async restore(entries) {
      for await (const entry of entries) {
        await collect(entry.body!);
        restored.push(entry.path);
      }
      return { entries: restored.length, bytes: 0 };
    },
  };
}

describe('"latest" with components', () => {
  it('is the newest backup holding every component asked for', async () => {
    const storage = new MemoryStorage();
    const both = await backup({ storage, components: [component('zookeeper'), component('postgres')] });
    const postgresOnly = await backup({ storage, components: [component('postgres')] });
    expect(await resolveName({ storage, name: 'latest' })).toBe(postgresOnly.name);
    expect(await resolveName({ storage, name: 'latest', components: ['postgres'] })).toBe(postgresOnly.name);
    expect(await resolveName({ storage, name: 'latest', components: ['zookeeper'] })).toBe(both.name);
    expect((await inspect({ storage, name: 'latest', components: ['zookeeper', 'postgres'] })).name).toBe(
      both.name,
    );
    // A name is taken as given, whatever it holds.
    expect(await resolveName({ storage, name: postgresOnly.name, components: ['zookeeper'] })).toBe(
      postgresOnly.name,
    );

    const restored: string[] = [];
    const result = await restore({
      storage,
      name: 'latest',
      only: ['zookeeper'],
      restorers: [component('zookeeper', restored)],
    });
    expect(result.name).toBe(both.name);
    expect(restored).toEqual(['zookeeper.txt']);
  });

  it('calls a component no backup holds a config error naming the components there are', async () => {
    const storage = new MemoryStorage();
    await backup({ storage, components: [component('postgres')] });
    const failure = await resolveName({ storage, name: 'latest', components: ['etcd'] }).catch(
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(ConfigError);
    expect((failure as Error).message).toContain('"etcd"');
    expect((failure as Error).message).toContain('known: postgres');
  });

  it('is not found when each component is held but never together', async () => {
    const storage = new MemoryStorage();
    await backup({ storage, components: [component('postgres')] });
    await backup({ storage, components: [component('zookeeper')] });
    const failure = await resolveName({
      storage,
      name: 'latest',
      components: ['postgres', 'zookeeper'],
    }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(NotFoundError);
    expect((failure as Error).message).toContain('holds "postgres", "zookeeper"');
  });
});
