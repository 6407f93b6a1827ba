import { cp, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type InfluxdServer, startInfluxd } from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES } from '../src/exit-codes.ts';
import { assertBuilt, removeTempDirs, runBk, runBkJson, tempDir } from './bk-process.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const DAY = 86_400;
const BASE = 1_704_067_200; // 2024-01-01T00:00:00Z

async function influxQuery(server: InfluxdServer, q: string, database?: string): Promise<unknown> {
  const url = new URL('/query', server.httpUrl);
  url.searchParams.set('q', q);
  if (database) url.searchParams.set('db', database);
  const response = await fetch(url, { method: 'POST' });
  expect(response.status, await response.clone().text()).toBe(200);
  return response.json();
}

async function influxWrite(server: InfluxdServer, database: string, lines: string[], precision = 's') {
  const response = await fetch(`${server.httpUrl}/write?db=${database}&precision=${precision}`, {
    method: 'POST',
    body: lines.join('\n'),
  });
  expect(response.status, await response.text()).toBe(204);
}

/** Points per measurement (`count(value)` over all time). */
async function counts(server: InfluxdServer, database: string): Promise<Record<string, number>> {
  const result = (await influxQuery(
    server,
    'SELECT count(value) FROM /.*/ WHERE time >= -9223372036854775806 AND time <= 9223372036854775806',
    database,
  )) as { results: { series?: { name: string; values: [string, number][] }[] }[] };
  return Object.fromEntries(
    (result.results[0]?.series ?? []).map((series) => [series.name, series.values[0]![1]]),
  );
}

describe('bk backup --incremental and chain restores against real influxd servers', () => {
  let source: InfluxdServer;
  let target: InfluxdServer;
  let workspace: string;
  let store: string;
  let backupConfig: string;
  let restoreConfig: string;
  const names: string[] = [];
  /** Points written into each window, per measurement: [full, inc1, inc2]. */
  const written: Array<Record<string, number>> = [];
  let serial = 0;

  async function writeRecent(perMeasurement: Record<string, number>): Promise<void> {
    const base = BigInt(Date.now()) * 1_000_000n;
    const lines: string[] = [];
    for (const [measurement, count] of Object.entries(perMeasurement)) {
      for (let index = 0; index < count; index += 1) {
        serial += 1;
        lines.push(`${measurement},host=r${index % 2} value=${serial} ${base + BigInt(serial)}`);
      }
    }
    await influxWrite(source, 'metrics', lines, 'ns');
    await sleep(20); // the next backup's window ends strictly after these points
  }

  beforeAll(async () => {
    assertBuilt();
    [source, target] = await Promise.all([startInfluxd(), startInfluxd()]);
    workspace = await tempDir('incremental');
    store = join(workspace, 'store');
    const component = { kind: 'influx', name: 'influx', database: 'metrics' };
    backupConfig = join(workspace, 'backup.json');
    await writeFile(
      backupConfig,
      JSON.stringify({
        target: store,
        components: [{ ...component, host: source.host, rpcPort: source.rpcPort, httpUrl: source.httpUrl }],
      }),
    );
    restoreConfig = join(workspace, 'restore.json');
    await writeFile(
      restoreConfig,
      JSON.stringify({
        target: store,
        components: [
          {
            ...component,
            host: target.host,
            rpcPort: target.rpcPort,
            httpUrl: target.httpUrl,
            restore: { intoExisting: true },
          },
        ],
      }),
    );
    await influxQuery(source, 'CREATE DATABASE metrics');
    // History in old shards, then points in the current shard.
    await influxWrite(source, 'metrics', [
      ...Array.from(
        { length: 120 },
        (_, index) => `cpu,host=h${index % 3} value=${index} ${BASE + index * (DAY / 10)}`,
      ),
      ...Array.from(
        { length: 40 },
        (_, index) => `mem,host=h${index % 2} value=${index} ${BASE + index * (DAY / 4)}`,
      ),
    ]);
    await writeRecent({ cpu: 10, mem: 10 });
    written.push({ cpu: 130, mem: 50 });
    for (const [index, next] of [{}, { cpu: 7, net: 5 }, { mem: 3, net: 4, cpu: 2 }].entries()) {
      if (index > 0) {
        await writeRecent(next);
        written.push(next);
      }
      const made = await runBkJson<{
        name: string;
        parent: string | null;
        components: { incremental: boolean }[];
      }>(['--config', backupConfig, 'backup', '--incremental']);
      expect(made.code, made.stderr).toBe(0);
      expect(made.json.parent).toBe(names.at(-1) ?? null);
      expect(made.json.components[0]!.incremental).toBe(index > 0);
      names.push(made.json.name);
      await sleep(1100); // one backup name per second
    }
  }, 120_000);

  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
    await removeTempDirs();
  });

  it('says when the first run takes a full backup', async () => {
    const scratch = join(workspace, 'first');
    const run = await runBk([
      '--config',
      backupConfig,
      'backup',
      '--incremental',
      '--target',
      pathToFileURL(scratch).href,
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/no backup in the target holds influx yet: taking a full backup/);
  });

  it('bk ls shows each backup parent', async () => {
    const listed = await runBkJson<{ backups: { name: string; parent: string | null }[] }>([
      '--config',
      backupConfig,
      'ls',
    ]);
    expect(listed.json.backups.map((item) => [item.name, item.parent])).toEqual([
      [names[0], null],
      [names[1], names[0]],
      [names[2], names[1]],
    ]);
    const text = await runBk(['--config', backupConfig, 'ls']);
    expect(text.stdout).toContain(`${names[2]}`);
    expect(text.stdout).toContain(`parent ${names[1]}`);
  });

  it('ACCEPTANCE: restores the newest with its chain into an existing database: exact counts, other data kept', async () => {
    await influxQuery(target, 'CREATE DATABASE metrics');
    // Other data: a measurement the backups do not have, and cpu points of another host.
    await influxWrite(target, 'metrics', [
      ...Array.from({ length: 25 }, (_, index) => `disk,host=t value=${index} ${BASE + index * 60}`),
      ...Array.from({ length: 6 }, (_, index) => `cpu,host=other value=${index} ${BASE + 7 + index * 60}`),
    ]);
    const refused = await runBk(['--config', restoreConfig, 'restore', names[2]!]);
    expect(refused.code, refused.stderr).toBe(EXIT_CODES.conflict);

    const restored = await runBkJson<{ name: string; chain: { name: string }[] }>([
      '--config',
      restoreConfig,
      'restore',
      names[2]!,
      '--conflict',
      'overwrite',
    ]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.json.chain.map((link) => link.name)).toEqual(names);
    const expected: Record<string, number> = { disk: 25, cpu: 6 };
    for (const window of written)
      for (const [measurement, count] of Object.entries(window))
        expected[measurement] = (expected[measurement] ?? 0) + count;
    expect(await counts(target, 'metrics')).toEqual(expected);
    expect(await counts(target, 'metrics')).toEqual({
      ...(await counts(source, 'metrics')),
      disk: 25,
      cpu: 6 + 130 + 7 + 2,
    });
  }, 120_000);

  it('--no-chain restores one link: only the points of its window', async () => {
    const config = join(workspace, 'one-link.json');
    await writeFile(
      config,
      JSON.stringify({
        target: store,
        components: [
          {
            kind: 'influx',
            name: 'influx',
            database: 'metrics',
            host: target.host,
            rpcPort: target.rpcPort,
            httpUrl: target.httpUrl,
            restore: { newDatabase: 'lastlink' },
          },
        ],
      }),
    );
    const restored = await runBkJson<{ chain: { name: string }[] }>([
      '--config',
      config,
      'restore',
      names[2]!,
      '--no-chain',
    ]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.json.chain.map((link) => link.name)).toEqual([names[2]]);
    expect(await counts(target, 'lastlink')).toEqual(written[2]);
  }, 60_000);

  it('a missing or damaged link fails naming it, before anything is written', async () => {
    const before = await counts(target, 'metrics');
    for (const damage of ['missing', 'truncated'] as const) {
      const broken = join(workspace, `broken-${damage}`);
      await cp(store, broken, { recursive: true });
      const files = await readdir(broken);
      if (damage === 'missing') await rm(join(broken, `${names[1]}.manifest.json`));
      else {
        const archive = files.find((file) => file.startsWith(names[0]!) && file.endsWith('.tar.gz'))!;
        await writeFile(join(broken, archive), 'not the archive');
      }
      const run = await runBk([
        '--config',
        restoreConfig,
        'restore',
        names[2]!,
        '--conflict',
        'overwrite',
        '--target',
        pathToFileURL(broken).href,
      ]);
      expect(run.code, run.stderr).toBe(damage === 'missing' ? EXIT_CODES.notFound : EXIT_CODES.integrity);
      expect(run.stderr).toContain(damage === 'missing' ? names[1] : names[0]);
      expect(run.stderr).toMatch(damage === 'missing' ? /chain .* is broken/ : /damaged/);
    }
    expect(await counts(target, 'metrics')).toEqual(before);
  }, 60_000);

  it('bk prune never deletes a backup a kept incremental builds on, and says so', async () => {
    const pruned = await runBkJson<{ deleted: string[]; keptForChain: { name: string; neededBy: string }[] }>(
      ['--config', backupConfig, 'prune', '--keep-last', '1'],
    );
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(pruned.json.deleted).toEqual([]);
    expect(pruned.json.keptForChain).toEqual([
      { name: names[0], neededBy: names[2] },
      { name: names[1], neededBy: names[2] },
    ]);
    const text = await runBk(['--config', backupConfig, 'prune', '--keep-last', '1', '--dry-run']);
    expect(text.stdout).toContain(`kept ${names[0]} (incremental ${names[2]} builds on it)`);
    // A full backup ends the chain's protection once it is the only one kept.
    const full = await runBkJson<{ name: string; parent: null }>(['--config', backupConfig, 'backup']);
    expect(full.json.parent).toBeNull();
    const after = await runBkJson<{ deleted: string[] }>([
      '--config',
      backupConfig,
      'prune',
      '--keep-last',
      '1',
    ]);
    expect(after.json.deleted).toEqual(names);
  }, 60_000);
});
