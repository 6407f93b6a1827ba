import { deepStrictEqual, ok, strictEqual } from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { collect, type Entry, fromBytes } from '@bk/core';
import { type InfluxdServer, startInfluxd } from '@bk/test-servers';
import { afterAll, beforeAll, describe, it } from 'vitest';
import {
  type PortableBackupOptions,
  parsePortableManifest,
  portableBackup,
  portableRestore,
} from '../src/index.ts';
import { BASE, DAY, query, write } from './influx-test-helpers.ts';

const run = promisify(execFile);
const WEEK = 7 * DAY;

/** A backup held in memory, replayable as entries as often as needed. */
interface Held {
  files: { path: string; bytes: Uint8Array }[];
  entries: () => AsyncIterable<Entry>;
}

async function hold(options: PortableBackupOptions): Promise<Held> {
  const files: Held['files'] = [];
  for await (const entry of portableBackup(options)) {
    files.push({ path: entry.path, bytes: await collect(entry.body!) });
  }
  return {
    files,
    entries: async function* () {
      for (const file of files) yield { path: file.path, type: 'file', body: fromBytes(file.bytes) };
    },
  };
}

/** The shard archives a held backup lists in its manifest. */
function manifestShards(held: Held): number[] {
  const manifest = held.files.find((file) => file.path.endsWith('.manifest'))!;
  return (parsePortableManifest(Buffer.from(manifest.bytes).toString('utf8')).files ?? []).map(
    (file) => file.shardID,
  );
}

/** Every point's time (seconds) per measurement in `database`.`rp`. */
async function times(server: InfluxdServer, database: string, rp: string): Promise<Record<string, number[]>> {
  const url = new URL('/query', server.httpUrl);
  url.searchParams.set(
    'q',
    `SELECT value FROM "${database}"."${rp}"./.*/ WHERE time >= -9223372036854775806 AND time <= 9223372036854775806`,
  );
  url.searchParams.set('db', database);
  url.searchParams.set('epoch', 's');
  const response = await fetch(url, { method: 'POST' });
  strictEqual(response.status, 200);
  const result = (await response.json()) as {
    results: { series?: { name: string; values: [number, number][] }[]; error?: string }[];
  };
  strictEqual(result.results[0]?.error, undefined);
  return Object.fromEntries(
    (result.results[0]?.series ?? []).map((series) => [
      series.name,
      series.values.map((row) => row[0]).sort((a, b) => a - b),
    ]),
  );
}

/** Counts per measurement in `database`.`rp` (not only the default RP). */
async function countsIn(
  server: InfluxdServer,
  database: string,
  rp: string,
): Promise<Record<string, number>> {
  return Object.fromEntries(
    Object.entries(await times(server, database, rp)).map(([name, list]) => [name, list.length]),
  );
}

interface Shard {
  id: number;
  database: string;
  rp: string;
  start: number;
  end: number;
}

async function showShards(server: InfluxdServer, database: string): Promise<Shard[]> {
  const result = (await query(server, 'SHOW SHARDS')) as {
    results: { series?: { name: string; columns: string[]; values: unknown[][] }[] }[];
  };
  const series = result.results[0]?.series?.find((entry) => entry.name === database);
  ok(series, `no shards for ${database}`);
  const column = (name: string) => series.columns.indexOf(name);
  return series.values.map((row) => ({
    id: row[column('id')] as number,
    database,
    rp: row[column('retention_policy')] as string,
    start: Date.parse(row[column('start_time')] as string) / 1000,
    end: Date.parse(row[column('end_time')] as string) / 1000,
  }));
}

describe('portable backup selections against influxd 1.6.7', () => {
  let source: InfluxdServer;
  let target: InfluxdServer;
  let scratch: string;
  // autogen: `a`, 3 points a day over 4 weeks (4 weekly shard groups); `second`: `b`, 2 a day over 2 weeks.
  const aTimes = Array.from({ length: 28 * 3 }, (_, index) => BASE + index * (DAY / 3) + 60);
  const bTimes = Array.from({ length: 14 * 2 }, (_, index) => BASE + index * (DAY / 2) + 30);

  beforeAll(async () => {
    [source, target] = await Promise.all([startInfluxd(), startInfluxd()]);
    scratch = await mkdtemp(join(tmpdir(), 'bk-influx-selection-'));
    await query(source, 'CREATE DATABASE sel');
    await query(source, 'CREATE RETENTION POLICY second ON sel DURATION INF REPLICATION 1 SHARD DURATION 1w');
    await write(
      source,
      'sel',
      aTimes.map((time, index) => `a,host=h${index % 2} value=${index} ${time}`),
    );
    await write(
      source,
      'sel&rp=second',
      bTimes.map((time, index) => `b,host=h${index % 2} value=${index} ${time}`),
    );
    deepStrictEqual(await countsIn(source, 'sel', 'autogen'), { a: aTimes.length });
    deepStrictEqual(await countsIn(source, 'sel', 'second'), { b: bTimes.length });
  }, 120_000);
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it('(1) per retention policy: only the selected RP travels', async () => {
    const held = await hold({ rpcAddress: source.rpcAddress, database: 'sel', retentionPolicy: 'second' });
    const secondShards = (await showShards(source, 'sel')).filter((shard) => shard.rp === 'second');
    deepStrictEqual(
      manifestShards(held).sort((x, y) => x - y),
      secondShards.map((shard) => shard.id).sort((x, y) => x - y),
    );
    const report = await portableRestore(held.entries(), {
      rpcAddress: target.rpcAddress,
      database: 'sel',
      newDatabase: 'sel_rp',
    });
    deepStrictEqual(report.databases, ['sel_rp']);
    deepStrictEqual(Object.keys(report.shards).length, secondShards.length);
    deepStrictEqual(await times(target, 'sel_rp', 'second'), { b: bTimes });
    // autogen's definition comes along with the metastore, but none of its data.
    deepStrictEqual(await countsIn(target, 'sel_rp', 'autogen'), {});

    // Restoring just that RP under a new name: it becomes the default and holds the same points.
    await portableRestore(held.entries(), {
      rpcAddress: target.rpcAddress,
      database: 'sel',
      newDatabase: 'sel_rp2',
      retentionPolicy: 'second',
      newRetentionPolicy: 'renamed',
    });
    deepStrictEqual(await times(target, 'sel_rp2', 'renamed'), { b: bTimes });
  });

  it('(2) per shard: exactly the points of that shard group', async () => {
    const shards = (await showShards(source, 'sel')).filter((shard) => shard.rp === 'autogen');
    ok(shards.length >= 3, `expected >= 3 autogen shards, got ${shards.length}`);
    const shard = shards.sort((x, y) => x.start - y.start)[1]!;
    strictEqual(shard.end - shard.start, WEEK);
    const expected = aTimes.filter((time) => time >= shard.start && time < shard.end);
    ok(expected.length > 0 && expected.length < aTimes.length);

    const held = await hold({
      rpcAddress: source.rpcAddress,
      database: 'sel',
      retentionPolicy: 'autogen',
      shard: shard.id,
    });
    deepStrictEqual(manifestShards(held), [shard.id]);
    const report = await portableRestore(held.entries(), {
      rpcAddress: target.rpcAddress,
      database: 'sel',
      newDatabase: 'sel_shard',
    });
    deepStrictEqual(Object.keys(report.shards), [String(shard.id)]);
    deepStrictEqual(await times(target, 'sel_shard', 'autogen'), { a: expected });
    deepStrictEqual(await countsIn(target, 'sel_shard', 'second'), {});
  });

  it('(3) time-bounded: at least the window, only from shards overlapping it', async () => {
    // A window across the boundary between the first and second weekly shard groups.
    const start = BASE + 6 * DAY + 3600;
    const end = BASE + 8 * DAY;
    const shards = await showShards(source, 'sel');
    const overlapping = shards.filter((shard) => shard.start <= end && shard.end > start);
    ok(overlapping.some((shard) => shard.rp === 'autogen'));
    ok(shards.length > overlapping.length);

    const held = await hold({
      rpcAddress: source.rpcAddress,
      database: 'sel',
      start: new Date(start * 1000),
      end: new Date(end * 1000),
    });
    // What the server returns: bk (like `influxd backup -start -end`) asks for every shard of the
    // database with a type-5 export, so the manifest lists every shard. A shard whose TSM files
    // all lie outside the window comes back as an empty tar. An overlapping shard comes back as
    // whole TSM *blocks*: with this little data, one block per series per shard, so a series'
    // points in that shard all come along when any of them (its [first, last] range) meets the
    // window, and none of them otherwise — whole shards at most, never single points.
    deepStrictEqual(
      manifestShards(held).sort((x, y) => x - y),
      shards.map((shard) => shard.id).sort((x, y) => x - y),
    );
    await portableRestore(held.entries(), {
      rpcAddress: target.rpcAddress,
      database: 'sel',
      newDatabase: 'sel_window',
    });
    const restored = {
      autogen: (await times(target, 'sel_window', 'autogen')).a ?? [],
      second: (await times(target, 'sel_window', 'second')).b ?? [],
    };
    const source_ = { autogen: aTimes, second: bTimes };
    for (const rp of ['autogen', 'second'] as const) {
      const inWindow = source_[rp].filter((time) => time >= start && time <= end);
      // At least every point of the window ...
      ok(
        inWindow.every((time) => restored[rp].includes(time)),
        `${rp}: window points missing`,
      );
      // ... and nothing from a shard that does not overlap the window.
      const ranges = overlapping.filter((shard) => shard.rp === rp);
      ok(
        restored[rp].every((time) => ranges.some((shard) => time >= shard.start && time < shard.end)),
        `${rp}: points from a shard outside the window: ${restored[rp].join(',')}`,
      );
      // Exactly the blocks (series × overlapping shard) whose time range meets the window.
      const expected = ranges.flatMap((shard) =>
        [0, 1].flatMap((host) => {
          const block = source_[rp].filter(
            (time, index) => index % 2 === host && time >= shard.start && time < shard.end,
          );
          return block.length > 0 && block[0]! <= end && block.at(-1)! >= start ? block : [];
        }),
      );
      deepStrictEqual(
        restored[rp],
        expected.sort((x, y) => x - y),
      );
    }
    ok(restored.autogen.length < aTimes.length);
  });

  it("(4) the real `influxd restore -portable -rp -newrp` accepts bk's per-RP backup", async () => {
    const held = await hold({ rpcAddress: source.rpcAddress, database: 'sel', retentionPolicy: 'second' });
    const directory = await mkdtemp(join(scratch, 'rp-'));
    for (const file of held.files) await writeFile(join(directory, file.path), file.bytes);
    await run('influxd', [
      'restore',
      '-portable',
      '-host',
      target.rpcAddress,
      '-db',
      'sel',
      '-newdb',
      'sel_cli',
      '-rp',
      'second',
      '-newrp',
      'kept',
      directory,
    ]);
    // The CLI writes each shard's tar and hangs up without waiting for the server, which imports
    // it after the CLI has exited: poll until the data shows.
    let got = await times(target, 'sel_cli', 'kept');
    for (let attempt = 0; attempt < 40 && got.b?.length !== bTimes.length; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      got = await times(target, 'sel_cli', 'kept');
    }
    deepStrictEqual(got, { b: bTimes });
    const policies = (await query(target, 'SHOW RETENTION POLICIES ON sel_cli')) as {
      results: { series: { values: unknown[][] }[] }[];
    };
    deepStrictEqual(
      policies.results[0]!.series[0]!.values.map((row) => row[0]),
      ['kept'],
    );
  });
});
