import { deepStrictEqual, ok, rejects, strictEqual } from 'node:assert/strict';
import {
  backup,
  ConfigError,
  ConflictError,
  MemoryStorage,
  restore,
  type VersionMismatchError,
} from '@bk/core';
import { type InfluxdServer, startInfluxd } from '@bk/test-servers';
import { claimedVersion } from '@bk/test-suite';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { fromConfig, influx } from '../src/index.ts';
import { INFLUX_CAPABILITIES } from '../src/influx-component.ts';
import { BASE, counts, DAY, query, write } from './influx-test-helpers.ts';

async function shardCount(server: InfluxdServer, database: string): Promise<number> {
  const result = (await query(server, 'SHOW SHARDS')) as {
    results: { series?: { name: string; values: unknown[] }[] }[];
  };
  return result.results[0]?.series?.find((series) => series.name === database)?.values.length ?? 0;
}

describe('InfluxComponent against a real influxd 1.6.7', () => {
  let source: InfluxdServer;
  let target: InfluxdServer;

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
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  it('backs up through the core runner and restores into a fresh server under a new name', async () => {
    ok((await shardCount(source, 'metrics')) >= 2);
    const storage = new MemoryStorage();
    const component = influx({
      host: source.host,
      rpcPort: source.rpcPort,
      httpUrl: source.httpUrl,
      database: 'metrics',
    });
    const result = await backup({ storage, components: [component] });
    const recorded = result.manifest.components[0]!;
    strictEqual(recorded.kind, 'influx');
    strictEqual(recorded.version, '1.6.7~rc0');
    ok(recorded.info.notCaptured?.some((text) => text.includes('continuous queries')));
    deepStrictEqual(recorded.info.capabilities, INFLUX_CAPABILITIES);

    const restorer = influx({
      host: target.host,
      rpcPort: target.rpcPort,
      database: 'metrics',
      restore: { newDatabase: 'copy' },
    });
    const restored = await restore({ storage, name: result.name, restorers: [restorer] });
    ok(restored.components.influx!.bytes > 0);
    deepStrictEqual(await counts(target, 'copy'), { cpu: 210, mem: 84 });
    deepStrictEqual(await counts(target, 'copy'), await counts(source, 'metrics'));
    strictEqual(await shardCount(target, 'copy'), await shardCount(source, 'metrics'));

    // Restoring the same backup again finds "copy" and refuses before changing anything.
    const error = await rejects(
      restore({ storage, name: result.name, restorers: [restorer] }),
      (thrown: unknown) => {
        ok(
          ConflictError.isInstance(thrown) && (thrown as ConflictError).code === 'BK_CONFLICT',
          String(thrown),
        );
        ok((thrown as Error).message.includes('"copy" already exists'), (thrown as Error).message);
        return true;
      },
    );
    strictEqual(error, undefined);
    deepStrictEqual(await counts(target, 'copy'), { cpu: 210, mem: 84 });
  });

  it('refuses a backup recorded as another major version before writing, restores it with force, and records the metastore hashes as secrets', async () => {
    const storage = new MemoryStorage();
    const source2 = claimedVersion(
      influx({ host: source.host, rpcPort: source.rpcPort, httpUrl: source.httpUrl, database: 'metrics' }),
      (info) => ({ ...info, version: '2.7.1' }),
    );
    const result = await backup({ storage, components: [source2] });
    deepStrictEqual(
      result.manifest.components[0]!.info.secrets?.captured.map((note) => [note.kind, note.paths]),
      [['password-hash', ['*.meta']]],
    );
    const restorer = influx({
      host: target.host,
      rpcPort: target.rpcPort,
      httpUrl: target.httpUrl,
      database: 'metrics',
      restore: { newDatabase: 'from2' },
    });
    await rejects(restore({ storage, name: result.name, restorers: [restorer] }), (thrown: unknown) => {
      strictEqual((thrown as VersionMismatchError).code, 'BK_VERSION_MISMATCH');
      ok(
        (thrown as Error).message.includes(
          "(backed up from version 2.7.1) into the target's version 1.6.7~rc0: InfluxDB 2 backups restore only into InfluxDB 2.x",
        ),
        (thrown as Error).message,
      );
      return true;
    });
    const databases = JSON.stringify(await query(target, 'SHOW DATABASES'));
    ok(!databases.includes('from2'), databases);
    const forced = await restore({ storage, name: result.name, restorers: [restorer], force: true });
    strictEqual(forced.preflight.influx?.targetVersion, '1.6.7~rc0');
    deepStrictEqual(await counts(target, 'from2'), { cpu: 210, mem: 84 });
  });

  it('fromConfig validates fields and names the bad one', () => {
    const component = fromConfig({ kind: 'influx', host: '127.0.0.1', rpcPort: 8088, database: 'metrics' });
    strictEqual(component.kind, 'influx');
    strictEqual(component.name, 'influx');
    for (const [config, field] of [
      [{ host: '127.0.0.1', rpcPort: 8088, passwd: 'x' }, 'passwd'],
      [{ host: '127.0.0.1', rpcPort: 'x' }, 'rpcPort'],
      [{ rpcPort: 8088 }, 'host'],
      [{ host: '127.0.0.1', rpcPort: 8088, httpUrl: 'ftp://x' }, 'httpUrl'],
      [{ host: '127.0.0.1', rpcPort: 8088, retentionPolicy: 'autogen' }, 'retentionPolicy'],
      [{ host: '127.0.0.1', rpcPort: 8088, restore: { newDb: 'x' } }, 'restore.newDb'],
      [{ kind: 'files', host: '127.0.0.1', rpcPort: 8088 }, 'kind'],
    ] as const) {
      try {
        fromConfig(config as Record<string, unknown>);
        throw new Error(`accepted ${JSON.stringify(config)}`);
      } catch (error) {
        ok(ConfigError.isInstance(error) && error.code === 'BK_CONFIG', String(error));
        ok((error as Error).message.includes(`"${field}"`), (error as Error).message);
      }
    }
  });
});
