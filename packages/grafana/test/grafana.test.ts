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
import { startSilentServer } from '@bk/test-servers';
import { claimedVersion, componentRoundTrip } from '@bk/test-suite';
import { afterAll, beforeAll, describe, it } from 'vitest';
import {
  type DatasourceSecrets,
  fromConfig,
  type GrafanaComponent,
  type GrafanaOptions,
  grafana,
} from '../src/index.ts';
import {
  call,
  emptyGrafana,
  type GrafanaUnderTest,
  seedGrafana,
  snapshotGrafana,
  startGrafana,
  statusOf,
} from './grafana-client.ts';

const real = Boolean(process.env.BK_TEST_GRAFANA_URL);
let source: GrafanaUnderTest;
/** An empty Grafana to restore into: a second double, or the same real Grafana emptied. */
let target: GrafanaUnderTest;

function component(server: GrafanaUnderTest, extra: Partial<GrafanaOptions> = {}): GrafanaComponent {
  return grafana({ url: server.url, token: server.token, ...extra });
}

/** The component, with every byte it yields kept for inspection. */
function recording(inner: GrafanaComponent, seen: string[]): Source {
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
  source = await startGrafana();
  target = real ? source : await startGrafana();
  await emptyGrafana(source);
}, 60_000);

afterAll(async () => {
  if (real) await emptyGrafana(source);
  await source?.stop();
  if (target !== source) await target?.stop();
});

describe('GrafanaComponent over the HTTP API', () => {
  it('round-trips nested folders, library panels, dashboards, data sources and alerting into an empty Grafana, naming the secrets it could not take', async () => {
    await seedGrafana(source);
    const before = await snapshotGrafana(source);
    const storage = new MemoryStorage();
    const seen: string[] = [];
    const result = await backup({ storage, components: [recording(component(source), seen)] });

    // The secrets never left Grafana: not in any entry.
    strictEqual(
      seen.length,
      12,
      `expected folders, data sources, library panels, 4 dashboards and 5 alerting entries, got ${seen.length}`,
    );
    ok(!seen.some((text) => text.includes('prom-secret-password')), 'a data source secret is in the backup');
    ok(!seen.some((text) => text.includes('hook-secret')), 'a contact point secret is in the backup');

    // The manifest names the data source and contact point whose secrets were not captured.
    const manifest = await inspect({ storage, name: result.name });
    const info = manifest.components[0]!.info;
    const withoutSecrets = info.details?.datasourcesWithoutSecrets as DatasourceSecrets[];
    deepStrictEqual(withoutSecrets, [
      { uid: 'bk-prom', name: 'Prometheus bk', type: 'prometheus', fields: ['basicAuthPassword'] },
    ]);
    ok(
      info.notCaptured?.some(
        (note) => note.includes('"Prometheus bk"') && note.includes('basicAuthPassword'),
      ),
      `notCaptured does not name the data source: ${JSON.stringify(info.notCaptured)}`,
    );
    ok(info.notCaptured?.some((note) => note.includes('"bk on-call"') && note.includes('password')));
    strictEqual(manifest.components[0]!.version, real ? manifest.components[0]!.version : '11.3.0');
    deepStrictEqual((info.details!.counts as Record<string, number>).folders, 4);

    await emptyGrafana(target);
    const events: ProgressEvent[] = [];
    const restored = await restore({
      storage,
      name: result.name,
      restorers: [component(target)],
      conflict: 'fail',
      onProgress: (event) => events.push(event),
    });
    deepStrictEqual(await snapshotGrafana(target), before);

    const report = restored.components.grafana!;
    const details = report.details as Record<string, unknown>;
    deepStrictEqual(
      (details.secretsToReEnter as { datasources: DatasourceSecrets[] }).datasources,
      withoutSecrets,
    );
    const warnings = events.filter((event) => event.type === 'warning').map((event) => event.message);
    ok(warnings.some((message) => message.includes('"Prometheus bk"') && message.includes('re-enter')));
    ok(warnings.some((message) => message.includes('"bk on-call"') && message.includes('password')));
    deepStrictEqual(details.folders, { created: 4, updated: 0, unchanged: 0, skipped: 0 });
    deepStrictEqual(details.dashboards, { created: 4, updated: 0, unchanged: 0, skipped: 0 });
    deepStrictEqual(details.libraryPanels, { created: 1, updated: 0, unchanged: 0, skipped: 0 });
    if (target.double) deepStrictEqual(target.double.secrets('bk-prom'), {});

    // Restoring again finds everything in place: nothing written, no conflict.
    const again = await restore({
      storage,
      name: result.name,
      restorers: [component(target)],
      conflict: 'fail',
    });
    const tallies = again.components.grafana!.details as Record<string, { created: number; updated: number }>;
    for (const kind of [
      'folders',
      'libraryPanels',
      'dashboards',
      'datasources',
      'alertRules',
      'contactPoints',
    ]) {
      strictEqual(tallies[kind]!.created + tallies[kind]!.updated, 0, `${kind} written again`);
    }
  });

  it('refuses a conflicting restore under "fail" before writing, keeps it under "skip" and replaces it under "overwrite"', async () => {
    await emptyGrafana(source);
    await seedGrafana(source);
    const storage = new MemoryStorage();
    const { name } = await backup({ storage, components: [component(source)] });
    const before = await snapshotGrafana(source);
    await emptyGrafana(target);
    await restore({ storage, name, restorers: [component(target)], conflict: 'fail' });

    // Change a dashboard and drop a template on the target.
    const { dashboard } = (await call(target, 'GET', '/api/dashboards/uid/bk-overview')) as {
      dashboard: Record<string, unknown>;
    };
    await call(target, 'POST', '/api/dashboards/db', {
      dashboard: { ...dashboard, title: 'Overview (edited)' },
      overwrite: false,
    });
    await call(target, 'DELETE', '/api/v1/provisioning/templates/bk-title');
    const { result: panel } = (await call(target, 'GET', '/api/library-elements/bk-lib-latency')) as {
      result: { version: number; model: Record<string, unknown> };
    };
    await call(target, 'PATCH', '/api/library-elements/bk-lib-latency', {
      name: 'Latency',
      kind: 1,
      folderUid: 'bk-ops',
      model: { ...panel.model, title: 'Latency (edited)' },
      version: panel.version,
    });

    await rejects(
      restore({ storage, name, restorers: [component(target)], conflict: 'fail' }),
      (error: unknown) =>
        BkError.isInstance(error) && error.code === 'BK_CONFLICT' && error.message.includes('bk-overview'),
    );
    const templates = (await call(target, 'GET', '/api/v1/provisioning/templates')) as unknown[];
    strictEqual(templates.length, 0, 'a refused restore wrote a template');

    const skipped = await restore({ storage, name, restorers: [component(target)], conflict: 'skip' });
    strictEqual(skipped.components.grafana!.skipped, 2);
    const kept = (await call(target, 'GET', '/api/dashboards/uid/bk-overview')) as {
      dashboard: { title: string };
    };
    strictEqual(kept.dashboard.title, 'Overview (edited)');
    strictEqual(((await call(target, 'GET', '/api/v1/provisioning/templates')) as unknown[]).length, 1);

    await restore({ storage, name, restorers: [component(target)], conflict: 'overwrite' });
    deepStrictEqual(await snapshotGrafana(target), before);
  });

  it('finds names Grafana keeps unique (data source names, dashboard titles in a folder) before writing', async () => {
    await emptyGrafana(source);
    await seedGrafana(source);
    const storage = new MemoryStorage();
    const { name } = await backup({ storage, components: [component(source)] });
    await emptyGrafana(target);
    await call(target, 'POST', '/api/datasources', {
      uid: 'other-prom',
      name: 'Prometheus bk',
      type: 'prometheus',
      access: 'proxy',
    });
    await call(target, 'POST', '/api/dashboards/db', {
      dashboard: { uid: 'other-overview', title: 'Overview' },
    });
    for (const conflict of ['fail', 'overwrite'] as const) {
      await rejects(
        restore({ storage, name, restorers: [component(target)], conflict }),
        (error: unknown) =>
          BkError.isInstance(error) && error.code === 'BK_CONFLICT' && error.message.includes('other-prom'),
      );
    }
    strictEqual(await statusOf(target, '/api/folders/bk-ops'), 404);
    const skipped = await restore({ storage, name, restorers: [component(target)], conflict: 'skip' });
    strictEqual(skipped.components.grafana!.skipped, 2);
    strictEqual(await statusOf(target, '/api/dashboards/uid/bk-overview'), 404);
    await call(target, 'DELETE', '/api/datasources/uid/other-prom');
    await restore({ storage, name, restorers: [component(target)], conflict: 'overwrite' });
    await call(target, 'GET', '/api/dashboards/uid/bk-overview');
    strictEqual(await statusOf(target, '/api/dashboards/uid/other-overview'), 404);
    await call(target, 'GET', '/api/datasources/uid/bk-prom');
  });

  it('refuses a backup of a newer Grafana major before writing, and restores it with force', async () => {
    await emptyGrafana(source);
    await seedGrafana(source);
    const storage = new MemoryStorage();
    const { name, manifest } = await backup({
      storage,
      components: [claimedVersion(component(source), (info) => ({ ...info, version: '99.1.0' }))],
    });
    ok((manifest.components[0]!.info.secrets?.notCaptured.length ?? 0) > 0);
    await emptyGrafana(target);
    const empty = await snapshotGrafana(target);
    await rejects(restore({ storage, name, restorers: [component(target)] }), (thrown: unknown) => {
      strictEqual((thrown as BkError).code, 'BK_VERSION_MISMATCH');
      ok((thrown as Error).message.includes('(backed up from version 99.1.0)'), (thrown as Error).message);
      ok((thrown as Error).message.includes('restore into Grafana 99 or newer'), (thrown as Error).message);
      return true;
    });
    deepStrictEqual(await snapshotGrafana(target), empty);
    const forced = await restore({ storage, name, restorers: [component(target)], force: true });
    ok(forced.preflight.grafana?.targetVersion);
    ok(forced.components.grafana!.entries > 0);
  });

  it('maps folders on restore with "restore.folderMap"', async () => {
    await emptyGrafana(source);
    await seedGrafana(source);
    const storage = new MemoryStorage();
    const { name } = await backup({ storage, components: [component(source)] });
    await emptyGrafana(target);
    await call(target, 'POST', '/api/folders', { uid: 'landing', title: 'Landing' });
    await restore({
      storage,
      name,
      restorers: [component(target, { restore: { folderMap: { 'bk-team': 'landing' } } })],
      conflict: 'fail',
    });
    const board = (await call(target, 'GET', '/api/dashboards/uid/bk-team-board')) as {
      meta: { folderUid: string };
    };
    strictEqual(board.meta.folderUid, 'landing');
    strictEqual(await statusOf(target, '/api/folders/bk-team'), 404);
    await call(target, 'DELETE', '/api/folders/landing');
  });
});

describe('GrafanaComponent errors', () => {
  it('names a refused token without showing it', async () => {
    const secret = 'glsa_not-the-right-token-0123456789';
    const error = await component(source, { token: secret })
      .describe({ signal: new AbortController().signal, progress: () => {} })
      .then(
        () => undefined,
        (caught: unknown) => caught,
      );
    ok(BkError.isInstance(error) && error.code === 'BK_COMPONENT', String(error));
    ok(error.message.includes('401') && error.message.includes('"token"'), error.message);
    ok(!error.message.includes(secret));
  });

  it('gives up on a server that never answers after "timeoutMs"', async () => {
    const silent = await startSilentServer();
    try {
      const started = Date.now();
      await rejects(
        grafana({ url: silent.endpoint, token: 't', timeoutMs: 300 }).describe({
          signal: new AbortController().signal,
          progress: () => {},
        }),
        (error: unknown) =>
          BkError.isInstance(error) &&
          error.retryable &&
          /no complete answer within 300 ms/.test(error.message),
      );
      ok(Date.now() - started < 5_000);
    } finally {
      await silent.stop();
    }
  });

  it('checks its config: fields, URL, credentials', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ url: 'http://x' }, /needs "token"/],
      [{ url: 'http://u:p@x', token: 't' }, /must not contain credentials/],
      [{ url: 'ftp://x', token: 't' }, /http:\/\/ or https:\/\//],
      [{ url: 'http://x', token: 'secret-t', username: 'a', password: 'b' }, /either "token"/],
      [{ url: 'http://x', token: 't', timeoutMs: 0 }, /"timeoutMs"/],
      [{ url: 'http://x', token: 't', colour: 'red' }, /"colour" is not a field/],
      [{ url: 'http://x', token: 't', restore: { folderMap: { a: 1 } } }, /folderMap\.a/],
    ];
    for (const [config, message] of bad) {
      let caught: unknown;
      try {
        fromConfig({ kind: 'grafana', ...config });
      } catch (error) {
        caught = error;
      }
      ok(BkError.isInstance(caught) && caught.code === 'BK_CONFIG', `${JSON.stringify(config)} was accepted`);
      ok(message.test(caught.message), caught.message);
      ok(!caught.message.includes('secret-t'));
    }
    const built = fromConfig({
      kind: 'grafana',
      url: 'http://x/grafana/',
      username: 'admin',
      password: 'pw',
    });
    strictEqual(built.options.url, 'http://x/grafana');
    ok(!JSON.stringify(built.options).includes('pw'));
  });
});

describe('@bk/test-suite componentRoundTrip on GrafanaComponent', () => {
  componentRoundTrip(
    it,
    async () => {
      await emptyGrafana(source);
      return {
        component: component(source),
        seed: () => seedGrafana(source, 'suite'),
        snapshot: () => snapshotGrafana(source),
        reset: () => emptyGrafana(source),
        cleanup: () => emptyGrafana(source),
      };
    },
    { timeout: 60_000 },
  );
});
