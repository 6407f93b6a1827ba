import { deepStrictEqual, ok, rejects, strictEqual } from 'node:assert/strict';
import { BkError, backup, inspect, MemoryStorage, restore } from '@bk/core';
import { componentRoundTrip } from '@bk/test-suite';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { type ElasticsearchOptions, elasticsearch, fromConfig } from '../src/index.ts';
import {
  type ClusterUnderTest,
  emptyCluster,
  real,
  seedIndex,
  snapshotIndex,
  startCluster,
} from './elasticsearch-client.ts';

let source: ClusterUnderTest;
/** Where restores go: a second double, or the same real cluster under renamed indices. */
let target: ClusterUnderTest;

function component(cluster: ClusterUnderTest, extra: Partial<ElasticsearchOptions> = {}) {
  return elasticsearch({
    url: cluster.url,
    ...(cluster.username ? { username: cluster.username, password: cluster.password! } : {}),
    indices: ['bk-test-*'],
    ...extra,
  });
}

const renamed = { renamePattern: '^(.*)$', renameReplacement: 'restored-$1' };

beforeAll(async () => {
  source = await startCluster();
  target = real ? source : await startCluster();
  await emptyCluster(source);
}, 60_000);

afterAll(async () => {
  if (real) await emptyCluster(source);
  await source?.stop();
  if (target !== source) await target?.stop();
});

describe('ElasticsearchComponent, logical mode', () => {
  it('round-trips mappings, settings, aliases and documents (ids, sources, routing) into renamed indices, paging through a point in time that it closes', async () => {
    await emptyCluster(source);
    await seedIndex(source, 'bk-test-orders', 2_345);
    await source.client.indices.create({
      index: 'bk-test-empty',
      mappings: { properties: { a: { type: 'keyword' } } },
    });
    const before = await snapshotIndex(source, 'bk-test-orders');
    strictEqual(before.documents.size, 2_345);

    const storage = new MemoryStorage();
    const result = await backup({ storage, components: [component(source, { pageSize: 300 })] });
    if (source.double) deepStrictEqual(source.double.openContexts(), { pits: 0, scrolls: 0 });

    const manifest = await inspect({ storage, name: result.name });
    const info = manifest.components[0]!.info;
    deepStrictEqual(
      (info.details!.indices as { name: string; documents: number }[]).map((index) => [
        index.name,
        index.documents,
      ]),
      [
        ['bk-test-empty', 0],
        ['bk-test-orders', 2_345],
      ],
    );
    strictEqual(info.details!.documentsRead, 'pit');
    ok(info.notCaptured?.some((line) => line.includes('data streams')));

    const restored = await restore({
      storage,
      name: result.name,
      restorers: [component(target, { restore: { ...renamed, includeAliases: false } })],
      conflict: 'fail',
    });
    const details = restored.components.elasticsearch!.details as Record<string, unknown>;
    deepStrictEqual(details.created, ['restored-bk-test-empty', 'restored-bk-test-orders']);
    strictEqual(details.documents, 2_345);

    const after = await snapshotIndex(target, 'restored-bk-test-orders');
    deepStrictEqual(after.documents, before.documents);
    deepStrictEqual(after.routing, before.routing);
    deepStrictEqual(after.mappings, before.mappings);
    deepStrictEqual(after.settings, before.settings);
    deepStrictEqual(after.aliases, {});
    strictEqual((await snapshotIndex(target, 'restored-bk-test-empty')).documents.size, 0);
  }, 120_000);

  it.skipIf(real)(
    'restores the aliases (filters and write index too) into an empty cluster under the same names',
    async () => {
      await emptyCluster(source);
      await seedIndex(source, 'bk-test-orders', 120);
      const before = await snapshotIndex(source, 'bk-test-orders');
      const storage = new MemoryStorage();
      const result = await backup({ storage, components: [component(source)] });
      const empty = await startCluster();
      try {
        await restore({ storage, name: result.name, restorers: [component(empty)], conflict: 'fail' });
        const after = await snapshotIndex(empty, 'bk-test-orders');
        deepStrictEqual(after, before);
        ok(
          (after.aliases as Record<string, { is_write_index?: boolean }>)['bk-test-orders-write']
            ?.is_write_index,
        );
      } finally {
        await empty.stop();
      }
    },
    60_000,
  );

  it.skipIf(real)(
    'retries _bulk requests and items rejected with 429, with at most "concurrency" requests at once',
    async () => {
      await emptyCluster(source);
      await seedIndex(source, 'bk-test-orders', 1_000);
      const before = await snapshotIndex(source, 'bk-test-orders');
      const storage = new MemoryStorage();
      const result = await backup({ storage, components: [component(source)] });
      const busy = await startCluster();
      try {
        busy.double!.rejectBulkRequests(3);
        busy.double!.rejectBulkItems(40);
        const restored = await restore({
          storage,
          name: result.name,
          restorers: [component(busy, { restore: { bulkDocuments: 100, concurrency: 3 } })],
          conflict: 'fail',
        });
        const details = restored.components.elasticsearch!.details as Record<string, number>;
        ok(details.retries! >= 4, `expected retries, got ${details.retries}`);
        deepStrictEqual((await snapshotIndex(busy, 'bk-test-orders')).documents, before.documents);
        ok(busy.double!.bulkConcurrency() <= 3, `bulk concurrency ${busy.double!.bulkConcurrency()}`);
        ok(busy.double!.bulkConcurrency() >= 2, 'the bulk requests never overlapped');
      } finally {
        await busy.stop();
      }
    },
    60_000,
  );

  it('refuses a restore onto an existing index under "fail" before writing anything; "skip" keeps it, "overwrite" replaces it', async () => {
    await emptyCluster(source);
    await seedIndex(source, 'bk-test-orders', 50);
    await seedIndex(source, 'bk-test-other', 10);
    const storage = new MemoryStorage();
    const result = await backup({ storage, components: [component(source)] });
    await emptyCluster(target);
    await target.client.indices.create({ index: 'restored-bk-test-orders' });
    await target.client.index({
      index: 'restored-bk-test-orders',
      id: 'keep',
      document: { a: 1 },
      refresh: true,
    });

    const restoreWith = (conflict: 'fail' | 'skip' | 'overwrite') =>
      restore({
        storage,
        name: result.name,
        restorers: [component(target, { restore: { ...renamed, includeAliases: false } })],
        conflict,
      });
    await rejects(restoreWith('fail'), (error: unknown) => {
      ok(BkError.isInstance(error) && error.code === 'BK_CONFLICT', String(error));
      ok((error as Error).message.includes('index "restored-bk-test-orders"'), (error as Error).message);
      return true;
    });
    strictEqual(
      await target.client.indices.exists({ index: 'restored-bk-test-other' }),
      false,
      'fail wrote an index',
    );

    const skipped = await restoreWith('skip');
    deepStrictEqual((skipped.components.elasticsearch!.details as { skipped: string[] }).skipped, [
      'restored-bk-test-orders',
    ]);
    deepStrictEqual([...(await snapshotIndex(target, 'restored-bk-test-orders')).documents.keys()], ['keep']);
    strictEqual((await snapshotIndex(target, 'restored-bk-test-other')).documents.size, 10);

    await target.client.indices.delete({ index: 'restored-bk-test-other' });
    await restoreWith('overwrite');
    strictEqual((await snapshotIndex(target, 'restored-bk-test-orders')).documents.size, 50);
  }, 60_000);

  it.skipIf(real)(
    'refuses a restore into an older version before writing anything, unless forced',
    async () => {
      await emptyCluster(source);
      await seedIndex(source, 'bk-test-orders', 5);
      const storage = new MemoryStorage();
      const result = await backup({ storage, components: [component(source)] });
      const older = await startCluster({ version: '8.9.2' });
      try {
        await rejects(
          restore({ storage, name: result.name, restorers: [component(older)], conflict: 'fail' }),
          (error: unknown) => {
            ok(BkError.isInstance(error) && error.code === 'BK_VERSION_MISMATCH', String(error));
            ok((error as Error).message.includes('runs elasticsearch 8.9.2'), (error as Error).message);
            return true;
          },
        );
        ok(
          !older.double!.requests.some((line) => line.startsWith('PUT ') || line.startsWith('POST ')),
          older.double!.requests.join(', '),
        );
        const forced = await restore({
          storage,
          name: result.name,
          restorers: [component(older)],
          conflict: 'fail',
          force: true,
        });
        strictEqual(forced.preflight.elasticsearch?.targetVersion, '8.9.2');
        strictEqual((await snapshotIndex(older, 'bk-test-orders')).documents.size, 5);
      } finally {
        await older.stop();
      }
    },
    60_000,
  );

  it('closes the point in time when a backup stops early', async () => {
    await emptyCluster(source);
    await seedIndex(source, 'bk-test-orders', 700);
    const es = component(source, { pageSize: 100 });
    const signal = new AbortController().signal;
    await es.describe({ signal, progress: () => {} });
    for await (const entry of es.backup({ signal, progress: () => {}, backupName: 'backup_x' })) {
      if (!entry.path.startsWith('documents/')) continue;
      for await (const _chunk of entry.body!) break;
      break;
    }
    if (source.double) deepStrictEqual(source.double.openContexts(), { pits: 0, scrolls: 0 });
  }, 60_000);

  it('reads through a scroll on request (and on OpenSearch), and clears it', async () => {
    await emptyCluster(source);
    await seedIndex(source, 'bk-test-orders', 1_234);
    const before = await snapshotIndex(source, 'bk-test-orders');
    const storage = new MemoryStorage();
    const result = await backup({
      storage,
      components: [component(source, { documents: 'scroll', pageSize: 500 })],
    });
    if (source.double) deepStrictEqual(source.double.openContexts(), { pits: 0, scrolls: 0 });
    await emptyCluster(target);
    await restore({
      storage,
      name: result.name,
      restorers: [component(target, { restore: { ...renamed, includeAliases: false } })],
      conflict: 'fail',
    });
    deepStrictEqual((await snapshotIndex(target, 'restored-bk-test-orders')).documents, before.documents);
  }, 60_000);

  it.skipIf(real)(
    'chooses the scroll on OpenSearch',
    async () => {
      const opensearch = await startCluster({ distribution: 'opensearch', version: '2.17.1' });
      try {
        const response = await fetch(`${opensearch.url}/bk-test-a/_doc/1?refresh=true`, {
          method: 'PUT',
          headers: {
            authorization: `Basic ${Buffer.from(`${opensearch.username}:${opensearch.password}`).toString('base64')}`,
            'content-type': 'application/json',
          },
          body: JSON.stringify({ a: 1 }),
        });
        strictEqual(response.status, 201);
        const storage = new MemoryStorage();
        const result = await backup({ storage, components: [component(opensearch)] });
        const manifest = await inspect({ storage, name: result.name });
        strictEqual(manifest.components[0]!.info.details!.documentsRead, 'scroll');
        strictEqual(manifest.components[0]!.info.details!.distribution, 'opensearch');
        deepStrictEqual(opensearch.double!.openContexts(), { pits: 0, scrolls: 0 });
      } finally {
        await opensearch.stop();
      }
    },
    60_000,
  );

  it('validates its config', () => {
    const check = (config: Record<string, unknown>, text: string) =>
      rejects(
        async () => fromConfig(config),
        (error: unknown) => {
          ok(BkError.isInstance(error) && error.code === 'BK_CONFIG', String(error));
          ok((error as Error).message.includes(text), (error as Error).message);
          return true;
        },
      );
    return Promise.all([
      check({ kind: 'elasticsearch', url: 'http://u:p@127.0.0.1:9200' }, 'must not contain credentials'),
      check({ kind: 'elasticsearch', url: 'http://127.0.0.1:9200', pageSize: 20_000 }, '"pageSize"'),
      check(
        {
          kind: 'elasticsearch',
          url: 'http://127.0.0.1:9200',
          restore: { renamePattern: '(', renameReplacement: 'x' },
        },
        'not a regular expression',
      ),
      check({ kind: 'elasticsearch', url: 'http://127.0.0.1:9200', mode: 'snapshot' }, '"mode"'),
      check({ kind: 'elasticsearch', url: 'http://127.0.0.1:9200', indices: ['a,b'] }, '"indices"'),
      check({ kind: 'elasticsearch', url: 'http://127.0.0.1:9200', bogus: 1 }, 'bogus'),
    ]);
  });
});

describe('@bk/test-suite componentRoundTrip on ElasticsearchComponent', () => {
  componentRoundTrip(
    it,
    async () => {
      await emptyCluster(source);
      return {
        component: component(source, { pageSize: 50 }),
        seed: async () => {
          await seedIndex(source, 'bk-test-suite', 321);
          await source.client.indices.create({ index: 'bk-test-suite-empty' });
        },
        snapshot: async () => {
          const read = async (index: string) => {
            if (!(await source.client.indices.exists({ index }))) return null;
            const found = await snapshotIndex(source, index);
            return {
              ...found,
              documents: Object.fromEntries(found.documents),
              routing: Object.fromEntries(found.routing),
            };
          };
          return { full: await read('bk-test-suite'), empty: await read('bk-test-suite-empty') };
        },
        reset: () => emptyCluster(source),
        cleanup: () => emptyCluster(source),
      };
    },
    { timeout: 60_000 },
  );
});
