import { deepStrictEqual, ok, rejects, strictEqual } from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { BkError, backup, inspect, MemoryStorage, restore } from '@bk/core';
import { componentRoundTrip, recordedEntries } from '@bk/test-suite';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { fromConfig, GrafanaFilesComponent, grafanaFiles } from '../src/index.ts';

let directory: string;

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'bk-grafana-files-'));
});

afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

/** A Grafana-like data dir: grafana.db with two tables written in one transaction each, grafana.ini, provisioning. */
async function seedFiles(root: string, journalMode: 'delete' | 'wal', rows: number): Promise<void> {
  await mkdir(join(root, 'provisioning', 'datasources'), { recursive: true });
  await mkdir(join(root, 'provisioning', 'dashboards'), { recursive: true });
  await writeFile(join(root, 'grafana.ini'), '[security]\nsecret_key = SW2YcwTIb9zpOOhoPsMm\n');
  await writeFile(
    join(root, 'provisioning', 'datasources', 'prometheus.yaml'),
    'apiVersion: 1\ndatasources:\n  - name: Prometheus\n    type: prometheus\n    url: http://127.0.0.1:9090\n',
  );
  await writeFile(join(root, 'provisioning', 'dashboards', 'default.yaml'), 'apiVersion: 1\nproviders: []\n');
  const database = new DatabaseSync(join(root, 'grafana.db'));
  database.exec(`pragma journal_mode = ${journalMode}`);
  database.exec('create table dashboard (id integer primary key, data blob not null)');
  database.exec('create table dashboard_version (id integer primary key, dashboard_id integer not null)');
  database.exec('create table migration_log (id integer primary key, migration_id text)');
  database.exec("insert into migration_log (migration_id) values ('create dashboard table')");
  const insert = database.prepare('insert into dashboard (id, data) values (?, randomblob(2000))');
  const version = database.prepare('insert into dashboard_version (id, dashboard_id) values (?, ?)');
  database.exec('begin');
  for (let id = 1; id <= rows; id += 1) {
    insert.run(id);
    version.run(id, id);
  }
  database.exec('commit');
  database.close();
}

/** A separate process committing one row into each table per transaction until killed; prints each id committed. */
function startWriter(path: string, from: number): { child: ChildProcess; committed: () => number } {
  const script = `
    const { DatabaseSync } = require('node:sqlite');
    const database = new DatabaseSync(${JSON.stringify(path)}, { timeout: 30000 });
    const pause = new Int32Array(new SharedArrayBuffer(4));
    const insert = database.prepare('insert into dashboard (id, data) values (?, randomblob(2000))');
    const version = database.prepare('insert into dashboard_version (id, dashboard_id) values (?, ?)');
    for (let id = ${from}; ; id += 1) {
      database.exec('begin immediate');
      insert.run(id);
      version.run(id, id);
      database.exec('commit');
      process.stdout.write(id + '\\n');
      Atomics.wait(pause, 0, 0, 1); // 1 ms between transactions: busy, but not a tight loop
    }`;
  const child = spawn(process.execPath, ['--no-warnings', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let last = from - 1;
  child.stdout!.setEncoding('utf8').on('data', (text: string) => {
    const lines = text.trim().split('\n');
    last = Math.max(last, Number(lines[lines.length - 1]));
  });
  return { child, committed: () => last };
}

function rowsOf(path: string): { ids: number; maxId: number; versions: number; integrity: unknown } {
  // Read-write: the killed writer may have left a hot journal that must be rolled back.
  const database = new DatabaseSync(path, { timeout: 30_000 });
  try {
    const integrity = database
      .prepare('pragma integrity_check')
      .all()
      .map((row) => row.integrity_check);
    const { ids, maxId } = database
      .prepare('select count(*) as ids, max(id) as maxId from dashboard')
      .get() as {
      ids: number;
      maxId: number;
    };
    const { versions } = database.prepare('select count(*) as versions from dashboard_version').get() as {
      versions: number;
    };
    return { ids, maxId, versions, integrity };
  } finally {
    database.close();
  }
}

function committedIn(path: string): number {
  const database = new DatabaseSync(path, { readOnly: true, timeout: 30_000 });
  try {
    return Number(database.prepare('select count(*) as n from dashboard').get()?.n);
  } finally {
    database.close();
  }
}

async function until(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('GrafanaFilesComponent (SQLite file mode)', () => {
  for (const journalMode of ['delete', 'wal'] as const) {
    it(`copies grafana.db consistently while another process writes to it (journal_mode ${journalMode})`, async () => {
      const source = join(directory, `source-${journalMode}`);
      const restored = join(directory, `restored-${journalMode}`);
      await seedFiles(source, journalMode, 5_000);
      const writer = startWriter(join(source, 'grafana.db'), 5_001);
      let atStart: number;
      let atEnd: number;
      const storage = new MemoryStorage();
      let name: string;
      try {
        await until(() => writer.committed() >= 5_050);
        // Counted in the database itself: the writer's own reports lag behind its commits.
        atStart = committedIn(join(source, 'grafana.db'));
        const component = grafanaFiles({
          database: join(source, 'grafana.db'),
          config: join(source, 'grafana.ini'),
          provisioning: join(source, 'provisioning'),
          tempDir: directory,
        });
        const started = Date.now();
        ({ name } = await backup({ storage, components: [component] }));
        console.log(
          `journal_mode ${journalMode}: backup took ${Date.now() - started} ms while ${committedIn(join(source, 'grafana.db')) - atStart} transactions committed`,
        );
        atEnd = committedIn(join(source, 'grafana.db'));
        const reported = writer.committed();
        await until(() => writer.committed() >= reported + 20);
      } finally {
        writer.child.kill('SIGKILL');
      }
      const manifest = await inspect({ storage, name });
      deepStrictEqual(
        (await recordedEntries(storage, manifest, manifest.components[0]!.name)).map((entry) => entry.path),
        [
          'database/grafana.db',
          'config/grafana.ini',
          'provisioning/dashboards/default.yaml',
          'provisioning/datasources/prometheus.yaml',
        ],
      );
      strictEqual(manifest.components[0]!.info.capabilities?.pointInTime, true);

      const target = grafanaFiles({
        database: join(source, 'grafana.db'),
        config: join(source, 'grafana.ini'),
        provisioning: join(source, 'provisioning'),
        restore: {
          database: join(restored, 'data', 'grafana.db'),
          config: join(restored, 'grafana.ini'),
          provisioning: join(restored, 'provisioning'),
        },
      });
      await restore({ storage, name, restorers: [target], conflict: 'fail' });
      const copy = rowsOf(join(restored, 'data', 'grafana.db'));
      deepStrictEqual(copy.integrity, ['ok']);
      // One point in time: both tables hold the same transactions, with no gap.
      strictEqual(copy.ids, copy.versions, 'the copy holds half a transaction');
      strictEqual(copy.maxId, copy.ids, 'the copy has a gap');
      ok(copy.ids >= atStart, `the copy (${copy.ids}) is older than the backup's start (${atStart})`);
      ok(copy.ids <= atEnd, `the copy (${copy.ids}) is newer than the backup's end (${atEnd})`);
      ok(rowsOf(join(source, 'grafana.db')).ids > copy.ids, 'the writer kept writing after the copy');
      strictEqual(
        await readFile(join(restored, 'grafana.ini'), 'utf8'),
        await readFile(join(source, 'grafana.ini'), 'utf8'),
      );
      strictEqual(
        await readFile(join(restored, 'provisioning', 'datasources', 'prometheus.yaml'), 'utf8'),
        await readFile(join(source, 'provisioning', 'datasources', 'prometheus.yaml'), 'utf8'),
      );

      // The same restore again: everything exists.
      await rejects(
        restore({ storage, name, restorers: [target], conflict: 'fail' }),
        (error: unknown) => BkError.isInstance(error) && error.code === 'BK_CONFLICT',
      );
      const skipped = await restore({ storage, name, restorers: [target], conflict: 'skip' });
      strictEqual(skipped.components.grafana!.skipped, 4);
    });
  }

  it('removes its copy of the database when the backup is aborted', async () => {
    const source = join(directory, 'aborted');
    const temp = join(directory, 'aborted-temp');
    await mkdir(temp, { recursive: true });
    await seedFiles(source, 'delete', 500);
    const controller = new AbortController();
    await rejects(
      backup({
        storage: new MemoryStorage(),
        components: [grafanaFiles({ database: join(source, 'grafana.db'), tempDir: temp })],
        onProgress: (event) => {
          if (event.type === 'entry-start') controller.abort();
        },
        signal: controller.signal,
      }),
      (error: unknown) => BkError.isInstance(error) && error.code === 'BK_ABORTED',
    );
    deepStrictEqual(await readdir(temp), []);
  });

  it('is chosen with "mode": "file" and checks its paths', () => {
    ok(
      fromConfig({ kind: 'grafana', mode: 'file', database: '/var/lib/grafana/grafana.db' }) instanceof
        GrafanaFilesComponent,
    );
    for (const [config, message] of [
      [{ mode: 'file', database: 'grafana.db' }, /"database" must be an absolute path/],
      [{ mode: 'file', database: '/x.db', url: 'http://x' }, /"url" is not a field/],
      [{ mode: 'disk', database: '/x.db' }, /"mode" must be "api" or "file"/],
    ] as const) {
      let caught: unknown;
      try {
        fromConfig({ kind: 'grafana', ...config });
      } catch (error) {
        caught = error;
      }
      ok(
        BkError.isInstance(caught) && caught.code === 'BK_CONFIG' && message.test(caught.message),
        String(caught),
      );
    }
  });
});

describe('@bk/test-suite componentRoundTrip on GrafanaFilesComponent', () => {
  componentRoundTrip(
    it,
    async () => {
      const root = await mkdtemp(join(directory, 'suite-'));
      const paths = {
        database: join(root, 'grafana.db'),
        config: join(root, 'grafana.ini'),
        provisioning: join(root, 'provisioning'),
      };
      return {
        component: grafanaFiles({ ...paths, tempDir: root }),
        seed: () => seedFiles(root, 'delete', 50),
        snapshot: async () => {
          let database: unknown = null;
          if (existsSync(paths.database)) database = rowsOf(paths.database);
          let config: string | null = null;
          try {
            config = await readFile(paths.config, 'utf8');
          } catch {}
          return { database, config };
        },
        reset: async () => {
          for (const path of Object.values(paths)) await rm(path, { recursive: true, force: true });
        },
        cleanup: () => rm(root, { recursive: true, force: true }),
      };
    },
    { timeout: 60_000 },
  );
});
