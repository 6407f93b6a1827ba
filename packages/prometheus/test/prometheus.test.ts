import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ARCHIVE_SUFFIX,
  backup,
  type Entry,
  fromBytes,
  ignoreProgress,
  inspect,
  MemoryStorage,
  type RestoreContext,
  type RestoreResult,
  restore,
} from '@bk/core';
import { type PrometheusServer, startPrometheus } from '@bk/test-servers';
import { claimedVersion, recordedEntries } from '@bk/test-suite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PrometheusComponent, prometheus } from '../src/index.ts';
import { rawSamples, type SampleWindow, seriesList, waitForSamples } from './prometheus-queries.ts';

const RULES =
  'groups:\n  - name: self\n    rules:\n      - record: job:up:sum\n        expr: sum by (job) (up)\n';

let source: PrometheusServer;
let sandbox: string;
let startedAt: number;
const storage = new MemoryStorage();
let backupName: string;
let window: SampleWindow;
let before: { up: unknown[]; build: unknown[]; all: unknown[]; series: unknown[] };

function restoreContext(conflict: RestoreContext['conflict'] = 'fail'): RestoreContext {
  return {
    signal: new AbortController().signal,
    progress: ignoreProgress,
    backupName: 'test',
    component: { name: 'prometheus', kind: 'prometheus', info: {} },
    conflict,
  };
}

async function* entriesOf(list: Entry[]): AsyncGenerator<Entry> {
  yield* list;
}

async function contentOf(url: string): Promise<typeof before> {
  return {
    up: await rawSamples(url, 'up', window),
    build: await rawSamples(url, 'prometheus_build_info', window),
    all: await rawSamples(url, '{job="self"}', window),
    series: await seriesList(url, '{job="self"}', window.end - window.seconds * 1000, window.end),
  };
}

beforeAll(async () => {
  startedAt = Date.now();
  [source, sandbox] = await Promise.all([
    startPrometheus({ ruleFiles: { 'self.yml': RULES } }),
    mkdtemp(join(tmpdir(), 'bk-prometheus-test-')),
  ]);
  await waitForSamples(source.url, 5);
  // Samples stamped up to `end` are committed by the time they are read (a scrape takes ms).
  window = { end: Date.now() - 1_500, seconds: Math.ceil((Date.now() - startedAt) / 1000) + 5 };
  before = await contentOf(source.url);
  // Data dir, config file and rule files are all found through the API.
  const result = await backup({ storage, components: [prometheus({ url: source.url })] });
  backupName = result.name;
});

afterAll(async () => {
  await source?.stop();
  if (sandbox) await rm(sandbox, { recursive: true, force: true });
});

describe('@bk/prometheus against a real Prometheus 2.42', () => {
  it('records the version, the data dir and the files found through the API', async () => {
    const manifest = await inspect({ storage, name: backupName });
    const recorded = manifest.components[0]!;
    expect(recorded.kind).toBe('prometheus');
    expect(recorded.version).toBe('2.42.0+ds');
    expect(recorded.info.details).toMatchObject({
      dataDir: source.dataDir,
      dataDirFrom: 'flags',
      configFrom: 'file',
      files: [
        { entry: 'config/prometheus.yml', role: 'config', source: source.configFile },
        { entry: 'config/rules/self.yml', role: 'rules', source: source.ruleFiles[0] },
      ],
    });
    const paths = (await recordedEntries(storage, manifest, recorded.name)).map((entry) => entry.path);
    expect(paths.slice(0, 2)).toEqual(['config/prometheus.yml', 'config/rules/self.yml']);
    const blocks = new Set(
      paths.filter((path) => path.startsWith('tsdb/')).map((path) => path.split('/')[1]),
    );
    expect(blocks.size).toBeGreaterThan(0);
    for (const block of blocks) {
      expect(block).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
      for (const file of ['index', 'meta.json', 'tombstones', 'chunks/000001']) {
        expect(paths).toContain(`tsdb/${block}/${file}`);
      }
    }
    // The snapshot was removed from the data dir once streamed.
    expect(await readdir(join(source.dataDir, 'snapshots'))).toEqual([]);
  });

  it('restores the blocks into a fresh data dir that a second Prometheus serves with the same samples', async () => {
    const dataDir = join(sandbox, 'restored-data');
    const configDir = join(sandbox, 'restored-config');
    const restorer = prometheus({ url: source.url, restore: { dataDir, configDir } });
    const result = await restore({ storage, name: backupName, restorers: [restorer] });
    const report = result.components.prometheus!;
    expect(report.details?.blocks).toHaveLength(
      (await readdir(dataDir)).filter((name) => /^[0-9A-Z]{26}$/.test(name)).length,
    );
    // Staging dirs are gone.
    expect((await readdir(dataDir)).filter((name) => name.startsWith('.'))).toEqual([]);
    expect(await readFile(join(configDir, 'prometheus.yml'), 'utf8')).toBe(
      await readFile(source.configFile, 'utf8'),
    );
    expect(await readFile(join(configDir, 'rules/self.yml'), 'utf8')).toBe(RULES);

    const copy = await startPrometheus({ dataDir, scrapeSelf: false });
    try {
      const after = await contentOf(copy.url);
      expect(after).toEqual(before);
      expect(before.up.length).toBe(1);
      expect((before.up[0] as { values: unknown[] }).values.length).toBeGreaterThanOrEqual(3);
      expect(before.build.length).toBe(1);
      expect(before.all.length).toBeGreaterThan(50);
    } finally {
      await copy.stop();
    }

    // Restoring again: conflict fail refuses before writing, skip keeps, overwrite replaces.
    await expect(restore({ storage, name: backupName, restorers: [restorer] })).rejects.toMatchObject({
      code: 'BK_CONFLICT',
    });
    const skipped: RestoreResult = await restore({
      storage,
      name: backupName,
      restorers: [restorer],
      conflict: 'skip',
    });
    expect(skipped.components.prometheus!.details).toMatchObject({ blocks: [], configFiles: [] });
    expect(skipped.components.prometheus!.skipped).toBe(skipped.components.prometheus!.entries);
    await writeFile(join(configDir, 'prometheus.yml'), 'changed\n');
    const overwritten = await restore({
      storage,
      name: backupName,
      restorers: [restorer],
      conflict: 'overwrite',
    });
    expect(overwritten.components.prometheus!.details?.blocks).toEqual(report.details?.blocks);
    expect(await readFile(join(configDir, 'prometheus.yml'), 'utf8')).toBe(
      await readFile(source.configFile, 'utf8'),
    );
    expect((await readdir(dataDir)).filter((name) => name.startsWith('.'))).toEqual([]);
  });

  it('deletes the snapshot from the data dir when the backup is abandoned or fails', async () => {
    const component = prometheus({ url: source.url, ruleFiles: [] });
    const context = { signal: new AbortController().signal, progress: ignoreProgress, backupName: 'x' };
    const iterator = component.backup(context)[Symbol.asyncIterator]();
    let entry = await iterator.next();
    while (!entry.done && !entry.value.path.startsWith('tsdb/')) entry = await iterator.next();
    expect(entry.done).toBe(false);
    expect((await readdir(join(source.dataDir, 'snapshots'))).length).toBe(1);
    await iterator.return?.();
    expect(await readdir(join(source.dataDir, 'snapshots'))).toEqual([]);

    // A storage that fails mid-archive: the backup rejects and the snapshot is gone too.
    const failing = new MemoryStorage();
    const put = failing.put.bind(failing);
    failing.put = async (key, body, options) => {
      if (!key.endsWith(ARCHIVE_SUFFIX)) return put(key, body, options);
      let seen = 0;
      for await (const chunk of body as AsyncIterable<Uint8Array>) {
        seen += chunk.byteLength;
        if (seen > 1_000) throw new Error(`storage broke while writing ${key}`);
      }
      throw new Error('unreachable');
    };
    await expect(backup({ storage: failing, components: [component] })).rejects.toThrow(/storage broke/);
    expect(await readdir(join(source.dataDir, 'snapshots'))).toEqual([]);

    // An aborted backup.
    const controller = new AbortController();
    const aborting = component.backup({ ...context, signal: controller.signal })[Symbol.asyncIterator]();
    entry = await aborting.next();
    while (!entry.done && !entry.value.path.startsWith('tsdb/')) entry = await aborting.next();
    controller.abort();
    await expect(aborting.next()).rejects.toMatchObject({ code: 'BK_ABORTED' });
    expect(await readdir(join(source.dataDir, 'snapshots'))).toEqual([]);
  });

  it('fails with ConfigError when the data dir is not visible to bk', async () => {
    const component = prometheus({ url: source.url, dataDir: join(sandbox, 'not-there') });
    await expect(
      component.describe({ signal: new AbortController().signal, progress: ignoreProgress }),
    ).rejects.toMatchObject({ code: 'BK_CONFIG', message: expect.stringContaining('not visible') });
  });

  it('stores the API config when no config file is readable, and takes listed rule files', async () => {
    const rules = join(sandbox, 'extra-rules');
    await mkdir(rules, { recursive: true });
    await writeFile(join(rules, 'a.yml'), 'groups: []\n');
    await writeFile(join(rules, 'b.yml'), 'groups: []\n');
    const component = prometheus({
      url: source.url,
      configFile: join(sandbox, 'missing', 'prometheus.yml'),
      ruleFiles: [join(rules, '*.yml')],
    });
    const info = await component.describe({ signal: new AbortController().signal, progress: ignoreProgress });
    expect(info.details).toMatchObject({
      configFrom: 'api',
      files: [
        { entry: 'config/prometheus.yml', source: '/api/v1/status/config' },
        { entry: 'config/a.yml', role: 'rules' },
        { entry: 'config/b.yml', role: 'rules' },
      ],
    });
    expect(info.notCaptured?.some((line) => line.includes('<secret>'))).toBe(true);
  });

  it('never publishes a half-written block and refuses entry paths that leave the target', async () => {
    const dataDir = join(sandbox, 'half');
    const restorer = prometheus({ url: source.url, restore: { dataDir } });
    const block = '01HAAAAAAAAAAAAAAAAAAAAAAA';
    async function* broken(): AsyncGenerator<Uint8Array> {
      yield Buffer.from('partial');
      throw new Error('body broke');
    }
    await expect(
      restorer.restore(
        entriesOf([
          { path: `tsdb/${block}/meta.json`, type: 'file', body: fromBytes(`{"ulid":"${block}"}`) },
          { path: `tsdb/${block}/chunks/000001`, type: 'file', body: broken() },
        ]),
        restoreContext(),
      ),
    ).rejects.toThrow(/body broke/);
    expect(await readdir(dataDir)).toEqual([]);

    for (const path of ['tsdb/../x', `tsdb/${block}/../../x`, 'tsdb/not-a-ulid/index', '/etc/passwd']) {
      await expect(
        restorer.restore(entriesOf([{ path, type: 'file', body: fromBytes('x') }]), restoreContext()),
      ).rejects.toMatchObject({ code: 'BK_UNSAFE_PATH' });
    }
    await expect(
      restorer.restore(
        entriesOf([{ path: 'other/x', type: 'file', body: fromBytes('x') }]),
        restoreContext(),
      ),
    ).rejects.toMatchObject({ code: 'BK_COMPONENT' });
    // A block without meta.json naming it is not published.
    await expect(
      restorer.restore(
        entriesOf([{ path: `tsdb/${block}/index`, type: 'file', body: fromBytes('x') }]),
        restoreContext(),
      ),
    ).rejects.toThrow(/meta\.json/);
    expect(await readdir(dataDir)).toEqual([]);
  });

  it('refuses blocks recorded from another major before writing, reading the local prometheus --version when the server is down, and restores them with force', async () => {
    const other = new MemoryStorage();
    const newer = await backup({
      storage: other,
      components: [
        claimedVersion(prometheus({ url: source.url }), (info) => ({ ...info, version: '3.1.0' })),
      ],
    });
    const dataDir = join(sandbox, 'from-3');
    const restorer = prometheus({ url: 'http://127.0.0.1:1', restore: { dataDir } });
    const refused = await restore({ storage: other, name: newer.name, restorers: [restorer] }).catch(
      (error: unknown) => error,
    );
    expect(refused).toMatchObject({ code: 'BK_VERSION_MISMATCH', targetVersion: '2.42.0+ds' });
    expect((refused as Error).message).toContain(
      "(backed up from version 3.1.0) into the target's version 2.42.0+ds: Prometheus 3 backups restore only into Prometheus 3.x",
    );
    await expect(readdir(dataDir)).rejects.toMatchObject({ code: 'ENOENT' });
    const forced = await restore({ storage: other, name: newer.name, restorers: [restorer], force: true });
    expect(forced.preflight.prometheus?.targetVersion).toBe('2.42.0+ds');
    expect((await readdir(dataDir)).length).toBeGreaterThan(0);
  });

  it('refuses to restore without restore.dataDir', async () => {
    await expect(
      new PrometheusComponent({ url: source.url }).restore(entriesOf([]), restoreContext()),
    ).rejects.toMatchObject({ code: 'BK_CONFIG' });
  });
});
