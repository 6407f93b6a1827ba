import { deepStrictEqual, ok, rejects, strictEqual, throws } from 'node:assert/strict';
import { backup, ConfigError, ConflictError, MemoryStorage, restore } from '@bk/core';
import { type InfluxdServer, startInfluxd } from '@bk/test-servers';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { fromConfig, influx } from '../src/influx-component.ts';
import { verifyCounts } from '../src/verify-counts.ts';
import { BASE, counts, DAY, databases, query, write } from './influx-test-helpers.ts';

/** The `value` of one point, or undefined. */
async function valueAt(
  server: InfluxdServer,
  database: string,
  measurement: string,
  host: string,
  seconds: number,
): Promise<unknown> {
  const result = (await query(
    server,
    `SELECT value FROM "${measurement}" WHERE host = '${host}' AND time = ${seconds}s`,
    database,
  )) as { results: { series?: { values: [string, unknown][] }[] }[] };
  return result.results[0]?.series?.[0]?.values[0]?.[1];
}

describe('restore into an existing InfluxDB database (real influxd 1.6.7)', () => {
  let source: InfluxdServer;
  let target: InfluxdServer;
  let backupName: string;
  const storage = new MemoryStorage();

  beforeAll(async () => {
    [source, target] = await Promise.all([startInfluxd(), startInfluxd()]);
    await query(source, 'CREATE DATABASE metrics');
    // 21 days with the default 7-day shard groups: 3–4 shards.
    const cpu = Array.from(
      { length: 210 },
      (_, index) => `cpu,host=h${index % 3} value=${index} ${BASE + index * (DAY / 10)}`,
    );
    const mem = Array.from(
      { length: 84 },
      (_, index) => `mem,host=h${index % 2} value=${index * 2} ${BASE + index * (DAY / 4)}`,
    );
    await write(source, 'metrics', [...cpu, ...mem]);
    const result = await backup({
      storage,
      components: [
        influx({ host: source.host, rpcPort: source.rpcPort, httpUrl: source.httpUrl, database: 'metrics' }),
      ],
    });
    backupName = result.name;
    const recorded = result.manifest.components[0]!.info.details!;
    strictEqual(recorded.incremental, false);
    strictEqual((recorded.window as { start: unknown }).start, null);
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  function restorer(options: { newDatabase?: string; intoExisting?: boolean } = {}) {
    const { intoExisting = true, newDatabase } = options;
    return influx({
      host: target.host,
      rpcPort: target.rpcPort,
      httpUrl: target.httpUrl,
      database: 'metrics',
      restore: { intoExisting, newDatabase },
    });
  }

  it('merges into a database holding other measurements and points; the temporary database is dropped', async () => {
    await query(target, 'CREATE DATABASE metrics');
    const disk = Array.from(
      { length: 50 },
      (_, index) => `disk,host=d value=${index} ${BASE + index * 3600}`,
    );
    // Same measurement, another series, same times as the backup's points.
    const otherCpu = Array.from(
      { length: 20 },
      (_, index) => `cpu,host=h9 value=${index} ${BASE + index * (DAY / 10)}`,
    );
    // Same series and timestamp as a backed-up point: InfluxDB semantics, the backup's value wins.
    await write(target, 'metrics', [...disk, ...otherCpu, `cpu,host=h0 value=-1 ${BASE}`]);
    deepStrictEqual(await counts(target, 'metrics'), { cpu: 21, disk: 50 });

    // Without intoExisting: today's behaviour, refused before anything changes.
    await rejects(
      restore({
        storage,
        name: backupName,
        restorers: [restorer({ intoExisting: false })],
        conflict: 'overwrite',
      }),
      (error: unknown) => ConflictError.isInstance(error),
    );
    // With intoExisting but the policy "fail": refused too.
    await rejects(
      restore({ storage, name: backupName, restorers: [restorer()] }),
      (error: unknown) => ConflictError.isInstance(error) && (error as Error).message.includes('"fail"'),
    );
    deepStrictEqual(await counts(target, 'metrics'), { cpu: 21, disk: 50 });

    const result = await restore({
      storage,
      name: backupName,
      restorers: [restorer()],
      conflict: 'overwrite',
    });
    const details = result.components.influx!.details!;
    strictEqual(details.mode, 'merge');
    strictEqual(details.points, 294);
    ok(String(details.temporaryDatabase).startsWith('metrics_bk_restore_'));
    deepStrictEqual(await counts(target, 'metrics'), { cpu: 230, disk: 50, mem: 84 });
    strictEqual(await valueAt(target, 'metrics', 'cpu', 'h0', BASE), 0);
    strictEqual(await valueAt(target, 'metrics', 'cpu', 'h9', BASE), 0);
    deepStrictEqual(
      (await databases(target)).filter((name) => name.includes('_bk_restore_')),
      [],
    );
    const verified = await verifyCounts({
      source: { httpUrl: source.httpUrl, database: 'metrics' },
      target: { httpUrl: target.httpUrl, database: 'metrics' },
      measurements: ['mem'],
    });
    ok(verified.ok, JSON.stringify(verified.differences));

    // Again with "skip": merges the same points, nothing doubles.
    await restore({ storage, name: backupName, restorers: [restorer()], conflict: 'skip' });
    deepStrictEqual(await counts(target, 'metrics'), { cpu: 230, disk: 50, mem: 84 });
  });

  it('restores natively when the target does not exist yet', async () => {
    const result = await restore({
      storage,
      name: backupName,
      restorers: [restorer({ newDatabase: 'fresh' })],
      conflict: 'overwrite',
    });
    strictEqual(result.components.influx!.details!.mode, 'native');
    deepStrictEqual(await counts(target, 'fresh'), { cpu: 210, mem: 84 });
  });

  it('drops the temporary database when the merge fails', async () => {
    await query(target, 'CREATE DATABASE typed');
    // "value" is a string here: writing the backup's float values conflicts.
    await write(target, 'typed', [`mem,host=x value="text" ${BASE}`]);
    await rejects(
      restore({
        storage,
        name: backupName,
        restorers: [restorer({ newDatabase: 'typed' })],
        conflict: 'overwrite',
      }),
      (error: unknown) => /field type conflict/.test((error as Error).message),
    );
    deepStrictEqual(
      (await databases(target)).filter((name) => name.includes('_bk_restore_')),
      [],
    );
  });

  it('validates its options', () => {
    throws(
      () => influx({ host: '127.0.0.1', rpcPort: 8088, database: 'm', restore: { intoExisting: true } }),
      (error: unknown) => ConfigError.isInstance(error) && (error as Error).message.includes('httpUrl'),
    );
    throws(
      () => fromConfig({ host: '127.0.0.1', rpcPort: 8088, incremental: { since: 5 } }),
      (error: unknown) =>
        ConfigError.isInstance(error) && (error as Error).message.includes('incremental.since'),
    );
    throws(
      () => influx({ host: '127.0.0.1', rpcPort: 8088, incremental: { since: '2024-01-01T00:00:00Z' } }),
      (error: unknown) => ConfigError.isInstance(error) && (error as Error).message.includes('"database"'),
    );
    strictEqual(
      fromConfig({
        host: '127.0.0.1',
        rpcPort: 8088,
        httpUrl: 'http://127.0.0.1:8086',
        database: 'm',
        incremental: { since: '2024-01-01T00:00:00Z' },
        restore: { intoExisting: true },
      }).options.restore?.intoExisting,
      true,
    );
  });
});
