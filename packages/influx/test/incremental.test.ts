import { deepStrictEqual, ok, rejects, strictEqual } from 'node:assert/strict';
import { backup, ConflictError, MemoryStorage, type Restorer, restore } from '@bk/core';
import { type InfluxdServer, startInfluxd } from '@bk/test-servers';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { incrementalSince } from '../src/incremental.ts';
import { influx } from '../src/influx-component.ts';
import { portableRestore } from '../src/portable/portable-restore.ts';
import { verifyCounts } from '../src/verify-counts.ts';
import { BASE, counts, DAY, databases, query, write } from './influx-test-helpers.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('incremental chains against a real influxd 1.6.7', () => {
  let source: InfluxdServer;
  let target: InfluxdServer;

  beforeAll(async () => {
    [source, target] = await Promise.all([startInfluxd(), startInfluxd()]);
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  /** `count` points per measurement stamped now (distinct nanoseconds), all in the current shard. */
  let serial = 0;
  async function writeRecent(measurements: string[], count: number): Promise<void> {
    const base = BigInt(Date.now()) * 1_000_000n;
    const lines: string[] = [];
    for (const measurement of measurements) {
      for (let index = 0; index < count; index += 1) {
        serial += 1;
        lines.push(`${measurement},host=r${index % 2} value=${serial} ${base + BigInt(serial)}`);
      }
    }
    await write(source, 'metrics', lines, 'ns');
    await sleep(20); // the next window ends strictly after these points
  }

  it('ACCEPTANCE: a full backup and three incrementals restore as a chain into an existing database', async () => {
    const storage = new MemoryStorage();
    await query(source, 'CREATE DATABASE metrics');
    // History in older shards plus points in the current shard, which the incrementals re-send whole.
    const cpu = Array.from(
      { length: 210 },
      (_, index) => `cpu,host=h${index % 3} value=${index} ${BASE + index * (DAY / 10)}`,
    );
    const mem = Array.from(
      { length: 84 },
      (_, index) => `mem,host=h${index % 2} value=${index * 2} ${BASE + index * (DAY / 4)}`,
    );
    await write(source, 'metrics', [...cpu, ...mem]);
    await writeRecent(['cpu', 'mem'], 10);
    const options = {
      host: source.host,
      rpcPort: source.rpcPort,
      httpUrl: source.httpUrl,
      database: 'metrics',
    };

    const full = await backup({ storage, components: [influx(options)] });
    const manifests = [full.manifest];
    const increments: Array<[string[], number]> = [
      [['cpu', 'mem'], 7],
      [['cpu', 'net'], 5],
      [['mem', 'net', 'cpu'], 3],
    ];
    const windowPoints: number[] = [];
    for (const [measurements, count] of increments) {
      await writeRecent(measurements, count);
      windowPoints.push(measurements.length * count);
      const parent = manifests.at(-1)!;
      const result = await backup({
        storage,
        parent: parent.name,
        components: [influx({ ...options, incremental: { since: incrementalSince(parent) } })],
      });
      manifests.push(result.manifest);
    }
    // Windows tile time: each starts where its parent ended.
    const windows = manifests.map(
      (manifest) => manifest.components[0]!.info.details!.window as { start: string | null; end: string },
    );
    strictEqual(windows[0]!.start, null);
    for (let index = 1; index < windows.length; index += 1) {
      strictEqual(windows[index]!.start, windows[index - 1]!.end);
      strictEqual(manifests[index]!.components[0]!.info.details!.incremental, true);
      strictEqual(manifests[index]!.parent, manifests[index - 1]!.name);
    }
    const expected = await counts(source, 'metrics');
    deepStrictEqual(expected, { cpu: 210 + 10 + 7 + 5 + 3, mem: 84 + 10 + 7 + 3, net: 5 + 3 });

    // The target already holds other data, in the same and in other measurements.
    await query(target, 'CREATE DATABASE metrics');
    const disk = Array.from(
      { length: 40 },
      (_, index) => `disk,host=d value=${index} ${BASE + index * 3600}`,
    );
    const otherCpu = Array.from(
      { length: 15 },
      (_, index) => `cpu,host=other value=${index} ${BASE + index * DAY}`,
    );
    await write(target, 'metrics', [...disk, ...otherCpu]);

    const restorer = influx({
      host: target.host,
      rpcPort: target.rpcPort,
      httpUrl: target.httpUrl,
      database: 'metrics',
      restore: { intoExisting: true },
    });
    const result = await restore({
      storage,
      name: manifests.at(-1)!.name,
      restorers: [restorer],
      chain: true,
      conflict: 'overwrite',
    });
    deepStrictEqual(
      result.chain?.map((link) => link.name),
      manifests.map((manifest) => manifest.name),
    );
    // Each incremental wrote only the points of its own window, not the whole shard it got back.
    deepStrictEqual(
      result.chain!.slice(1).map((link) => link.components.influx!.details!.points),
      windowPoints,
    );
    deepStrictEqual(await counts(target, 'metrics'), {
      cpu: expected.cpu! + 15,
      mem: expected.mem,
      net: expected.net,
      disk: 40,
    });
    for (const measurement of ['mem', 'net']) {
      const verified = await verifyCounts({
        source: { httpUrl: source.httpUrl, database: 'metrics' },
        target: { httpUrl: target.httpUrl, database: 'metrics' },
        measurements: [measurement],
        groupByDay: true,
      });
      ok(verified.ok, JSON.stringify(verified.differences));
    }
    deepStrictEqual(
      (await databases(target)).filter((name) => name.includes('_bk_restore_')),
      [],
    );
  });

  it('the server over-captures whole TSM blocks; the restore keeps only the window', async () => {
    const storage = new MemoryStorage();
    const options = {
      host: source.host,
      rpcPort: source.rpcPort,
      httpUrl: source.httpUrl,
      database: 'metrics',
    };
    const full = await backup({ storage, components: [influx(options)] });
    const since = incrementalSince(full.manifest);
    await sleep(20);
    // One series: a late point before the window, three inside, one in the future. They land in one
    // TSM block, which the time-bounded export sends whole.
    const start = BigInt(Date.parse(since)) * 1_000_000n;
    const now = BigInt(Date.now()) * 1_000_000n;
    await write(
      source,
      'metrics',
      [
        `edge,host=e value=1 ${start - 1_000_000_000n}`,
        `edge,host=e value=2 ${now}`,
        `edge,host=e value=3 ${now + 1n}`,
        `edge,host=e value=4 ${now + 2n}`,
        `edge,host=e value=5 ${now + 3_600_000_000_000n}`,
      ],
      'ns',
    );
    await sleep(20);
    const inc = await backup({
      storage,
      parent: full.name,
      components: [influx({ ...options, incremental: { since } })],
    });
    // Natively (no window filter) the archive holds all five.
    const raw: Restorer = {
      kind: 'influx',
      name: 'influx',
      restore: async (entries) => {
        const report = await portableRestore(entries, {
          host: target.host,
          rpcPort: target.rpcPort,
          database: 'metrics',
          newDatabase: 'edge_raw',
        });
        return { entries: report.entries, bytes: report.bytes };
      },
    };
    await restore({ storage, name: inc.name, restorers: [raw] });
    strictEqual((await counts(target, 'edge_raw')).edge, 5);
    // Through the component: only the three inside [start, end).
    const restorer = influx({
      host: target.host,
      rpcPort: target.rpcPort,
      httpUrl: target.httpUrl,
      database: 'metrics',
      restore: { newDatabase: 'edge_window' },
    });
    const result = await restore({ storage, name: inc.name, restorers: [restorer] });
    strictEqual((await counts(target, 'edge_window')).edge, 3);
    deepStrictEqual(
      result.components.influx!.details!.window,
      inc.manifest.components[0]!.info.details!.window,
    );
  });

  it('an incremental alone restores only its window, creating the target', async () => {
    const storage = new MemoryStorage();
    const options = {
      host: source.host,
      rpcPort: source.rpcPort,
      httpUrl: source.httpUrl,
      database: 'metrics',
    };
    const full = await backup({ storage, components: [influx(options)] });
    await writeRecent(['solo'], 4);
    const inc = await backup({
      storage,
      parent: full.name,
      components: [influx({ ...options, incremental: { since: incrementalSince(full.manifest) } })],
    });
    const restorer = influx({
      host: target.host,
      rpcPort: target.rpcPort,
      httpUrl: target.httpUrl,
      database: 'metrics',
      restore: { newDatabase: 'solo_only' },
    });
    await restore({ storage, name: inc.name, restorers: [restorer] });
    deepStrictEqual(await counts(target, 'solo_only'), { solo: 4 });
    // The incremental restored into an existing database with the policy "fail" is refused.
    await rejects(restore({ storage, name: inc.name, restorers: [restorer] }), (error: unknown) =>
      ConflictError.isInstance(error),
    );
  });
});
