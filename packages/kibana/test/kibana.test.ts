import { deepStrictEqual, ok, rejects, strictEqual } from 'node:assert/strict';
import {
  BkError,
  backup,
  type Entry,
  inspect,
  MemoryStorage,
  type ProgressEvent,
  restore,
  type Source,
} from '@bk/core';
import { componentRoundTrip } from '@bk/test-suite';
import { afterAll, beforeAll, describe, it } from 'vitest';
import {
  type ConnectorSecrets,
  fromConfig,
  type KibanaComponent,
  type KibanaOptions,
  kibana,
} from '../src/index.ts';
import {
  call,
  emptyKibana,
  type KibanaUnderTest,
  real,
  seedKibana,
  snapshotKibana,
  startKibana,
  TEST_SPACE,
} from './kibana-client.ts';

let source: KibanaUnderTest;
/** An empty Kibana to restore into: a second double, or the same real Kibana emptied. */
let target: KibanaUnderTest;

function component(server: KibanaUnderTest, extra: Partial<KibanaOptions> = {}): KibanaComponent {
  return kibana({ url: server.url, username: server.username, password: server.password, ...extra });
}

/** The component, with every byte it yields kept for inspection. */
function recording(inner: KibanaComponent, seen: string[]): Source {
  return {
    kind: inner.kind,
    name: inner.name,
    describe: (context) => inner.describe(context),
    async *backup(context) {
      for await (const entry of inner.backup(context)) {
        const chunks: Uint8Array[] = [];
        for await (const chunk of entry.body ?? []) chunks.push(chunk);
        const bytes = Buffer.concat(chunks);
        seen.push(bytes.toString('utf8'));
        yield {
          ...entry,
          body: (async function* () {
            yield bytes;
          })(),
        } satisfies Entry;
      }
    },
  };
}

beforeAll(async () => {
  source = await startKibana();
  target = real ? source : await startKibana();
  await emptyKibana(source);
}, 60_000);

afterAll(async () => {
  if (real) await emptyKibana(source);
  await source?.stop();
  if (target !== source) await target?.stop();
});

describe('KibanaComponent', () => {
  it('round-trips the saved objects of two spaces with the references between them, naming the connector whose secrets it could not take', async () => {
    await emptyKibana(source);
    await seedKibana(source);
    const before = await snapshotKibana(source);
    const storage = new MemoryStorage();
    const seen: string[] = [];
    const result = await backup({ storage, components: [recording(component(source), seen)] });
    ok(!seen.some((text) => text.includes('hook-secret-password')), 'a connector secret is in the backup');
    const objects = seen.slice(1).join('');
    ok(objects.includes('"bk-test-dash"') && objects.includes('"bk-test-vis"'));

    const manifest = await inspect({ storage, name: result.name });
    const info = manifest.components[0]!.info;
    const connectors = info.details!.connectorsWithoutSecrets as ConnectorSecrets[];
    deepStrictEqual(
      connectors.filter((connector) => connector.id.startsWith('bk-test-')),
      [{ space: TEST_SPACE, id: 'bk-test-hook', name: 'bk on-call hook', actionTypeId: '.webhook' }],
    );
    ok(info.notCaptured?.some((line) => line.includes('"bk on-call hook"') && line.includes('re-enter')));
    ok((info.details!.spaces as string[]).includes(TEST_SPACE));

    await emptyKibana(target);
    const events: ProgressEvent[] = [];
    const restored = await restore({
      storage,
      name: result.name,
      restorers: [component(target)],
      conflict: 'fail',
      onProgress: (event) => events.push(event),
    });
    deepStrictEqual(await snapshotKibana(target), before);
    const details = restored.components.kibana!.details as Record<string, unknown>;
    deepStrictEqual(details.createdSpaces, [TEST_SPACE]);
    ok(
      events.some(
        (event) =>
          event.type === 'warning' &&
          event.message.includes('"bk on-call hook"') &&
          event.message.includes('re-enter'),
      ),
    );
    if (target.double) deepStrictEqual(target.double.secrets(TEST_SPACE, 'bk-test-hook'), undefined);

    // Restoring again finds everything in place: nothing written, no conflict.
    const again = await restore({
      storage,
      name: result.name,
      restorers: [component(target)],
      conflict: 'fail',
    });
    const spaces = (
      again.components.kibana!.details as {
        spaces: Record<string, { created: number; updated: number; unchanged: number }>;
      }
    ).spaces;
    strictEqual(spaces[TEST_SPACE]!.created + spaces[TEST_SPACE]!.updated, 0);
    ok(spaces[TEST_SPACE]!.unchanged >= 6);
  }, 60_000);

  it.skipIf(real)(
    'pages past savedObjects.maxImportExportSize on export and import',
    async () => {
      const small = await startKibana({ maxImportExportSize: 50 });
      const empty = await startKibana({ maxImportExportSize: 50 });
      try {
        await seedKibana(small, 180);
        const before = await snapshotKibana(small);
        // Kibana refuses one export of everything.
        await call(small, 'POST', '/api/saved_objects/_export', { type: ['visualization'] }, [400]).then(
          (answer) =>
            ok(String((answer as { message: string }).message).includes("Can't export more than 50 objects")),
        );
        const storage = new MemoryStorage();
        const result = await backup({ storage, components: [component(small, { batchSize: 40 })] });
        const manifest = await inspect({ storage, name: result.name });
        strictEqual(
          (manifest.components[0]!.info.details!.counts as Record<string, Record<string, number>>).default!
            .visualization,
          181,
        );
        await restore({
          storage,
          name: result.name,
          restorers: [component(empty, { batchSize: 40 })],
          conflict: 'fail',
        });
        deepStrictEqual(await snapshotKibana(empty), before);
      } finally {
        await small.stop();
        await empty.stop();
      }
    },
    60_000,
  );

  it('refuses objects changed on the target under "fail" before writing anything; "skip" keeps them, "overwrite" replaces them', async () => {
    await emptyKibana(source);
    await seedKibana(source);
    const before = await snapshotKibana(source);
    const storage = new MemoryStorage();
    const result = await backup({ storage, components: [component(source)] });
    await emptyKibana(target);
    await call(target, 'POST', '/api/saved_objects/dashboard/bk-test-dash', {
      attributes: { title: 'Changed on the target', panelsJSON: '[]', optionsJSON: '{}' },
      references: [],
    });
    const restoreWith = (conflict: 'fail' | 'skip' | 'overwrite') =>
      restore({ storage, name: result.name, restorers: [component(target)], conflict });
    await rejects(restoreWith('fail'), (error: unknown) => {
      ok(BkError.isInstance(error) && error.code === 'BK_CONFLICT', String(error));
      ok(
        (error as Error).message.includes('dashboard "Overview default" (id bk-test-dash, space default)'),
        (error as Error).message,
      );
      return true;
    });
    strictEqual(
      ((await call(target, 'GET', '/api/spaces/space')) as { id: string }[]).some(
        (space) => space.id === TEST_SPACE,
      ),
      false,
      'fail created a space',
    );
    strictEqual(
      (
        (await call(target, 'GET', '/api/saved_objects/visualization/bk-test-vis', undefined, [404])) as {
          statusCode?: number;
        }
      ).statusCode,
      404,
      'fail imported an object',
    );

    await restoreWith('skip');
    const skipped = (await call(target, 'GET', '/api/saved_objects/dashboard/bk-test-dash')) as {
      attributes: { title: string };
    };
    strictEqual(skipped.attributes.title, 'Changed on the target');
    await restoreWith('overwrite');
    deepStrictEqual(await snapshotKibana(target), before);
  }, 60_000);

  it.skipIf(real)(
    'refuses a restore into an older Kibana, or one more than a major ahead, before writing anything',
    async () => {
      await emptyKibana(source);
      await seedKibana(source);
      const storage = new MemoryStorage();
      const result = await backup({ storage, components: [component(source)] });
      for (const version of ['8.14.3', '10.0.0']) {
        const other = await startKibana({ version });
        try {
          await rejects(
            restore({ storage, name: result.name, restorers: [component(other)], conflict: 'fail' }),
            (error: unknown) => {
              ok(BkError.isInstance(error) && error.code === 'BK_VERSION_MISMATCH', String(error));
              ok((error as Error).message.includes(`target's version ${version}:`), (error as Error).message);
              return true;
            },
          );
          ok(
            !other.double!.requests.some((line) => line.startsWith('POST ')),
            other.double!.requests.join(', '),
          );
        } finally {
          await other.stop();
        }
      }
    },
    60_000,
  );

  it('validates its config', async () => {
    const check = (config: Record<string, unknown>, text: string) =>
      rejects(
        async () => fromConfig(config),
        (error: unknown) => {
          ok(BkError.isInstance(error) && error.code === 'BK_CONFIG', String(error));
          ok((error as Error).message.includes(text), (error as Error).message);
          ok(!(error as Error).message.includes('s3cret'));
          return true;
        },
      );
    await check({ kind: 'kibana', url: 'http://127.0.0.1:5601' }, '"username" and "password"');
    await check(
      { kind: 'kibana', url: 'http://u:s3cret@127.0.0.1:5601', username: 'a', password: 'b' },
      'credentials',
    );
    await check(
      { kind: 'kibana', url: 'http://127.0.0.1:5601', username: 'a', password: 's3cret', batchSize: 0 },
      '"batchSize"',
    );
    await check(
      { kind: 'kibana', url: 'http://127.0.0.1:5601', username: 'a', password: 's3cret', spaces: [] },
      '"spaces"',
    );
    await check(
      { kind: 'kibana', url: 'http://127.0.0.1:5601', username: 'a', password: 's3cret', bogus: 1 },
      'bogus',
    );
  });
});

describe('@bk/test-suite componentRoundTrip on KibanaComponent', () => {
  componentRoundTrip(
    it,
    async () => {
      await emptyKibana(source);
      return {
        component: component(source),
        seed: () => seedKibana(source),
        snapshot: () => snapshotKibana(source),
        reset: () => emptyKibana(source),
        cleanup: () => emptyKibana(source),
      };
    },
    { timeout: 60_000 },
  );
});
