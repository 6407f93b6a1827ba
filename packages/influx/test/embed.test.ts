import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, list, MemoryStorage } from '@bk/core';
import { type InfluxdServer, type SwiftServer, startInfluxd, startSwift } from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backup, fromConfig, restore } from '../src/index.ts';
import { BASE, counts, DAY, query, write } from './influx-test-helpers.ts';

const ENV_KEYS = [
  'INFLUX_ADDR',
  'S3_REGION',
  'S3_REGION_ENDPOINT',
  'S3_ACCESS_KEY',
  'S3_SECRET_KEY',
] as const;

/** Creates a Swift container, which is the S3 bucket of the same name. */
async function createContainer(swift: SwiftServer, container: string): Promise<void> {
  const auth = await fetch(swift.authUrl, {
    headers: { 'x-auth-user': swift.user, 'x-auth-key': swift.key },
  });
  const token = auth.headers.get('x-auth-token');
  expect(token).toBeTruthy();
  const created = await fetch(`${swift.storageUrl}/${container}`, {
    method: 'PUT',
    headers: { 'x-auth-token': token! },
  });
  expect(created.status).toBeLessThan(300);
}

describe("the one-line embed: import { backup, restore } from '@bk/influx'", () => {
  let influxd: InfluxdServer;
  let swift: SwiftServer;
  const saved: Partial<Record<(typeof ENV_KEYS)[number], string>> = {};

  beforeAll(async () => {
    [influxd, swift] = await Promise.all([startInfluxd(), startSwift()]);
    await createContainer(swift, 'backups');
    for (const key of ENV_KEYS) saved[key] = process.env[key];
    // What a service sets, as in the README.
    process.env.INFLUX_ADDR = `${influxd.host}:${influxd.rpcPort}`;
    process.env.S3_REGION = swift.s3.region;
    process.env.S3_REGION_ENDPOINT = swift.s3.endpoint;
    process.env.S3_ACCESS_KEY = swift.s3.accessKeyId;
    process.env.S3_SECRET_KEY = swift.s3.secretAccessKey;
  });
  afterAll(async () => {
    for (const key of ENV_KEYS) {
      if (saved[key] === undefined) delete process.env[key];
      else process.env[key] = saved[key];
    }
    await Promise.all([influxd?.stop(), swift?.stop()]);
  });

  it("backs up a real InfluxDB to Swift's S3 API from the environment and restores it with equal counts", async () => {
    await query(influxd, 'CREATE DATABASE metrics');
    const cpu = Array.from(
      { length: 120 },
      (_, index) => `cpu,host=h${index % 3} value=${index} ${BASE + index * (DAY / 10)}`,
    );
    const mem = Array.from(
      { length: 48 },
      (_, index) => `mem,host=h${index % 2} value=${index} ${BASE + index * (DAY / 4)}`,
    );
    await write(influxd, 'metrics', [...cpu, ...mem]);
    const before = await counts(influxd, 'metrics');
    expect(before).toEqual({ cpu: 120, mem: 48 });

    // The README's first library example.
    const { name } = await backup('s3://backups/influx');
    expect(name).toMatch(/^backup_\d{8}_\d{6}/);

    await query(influxd, 'DROP DATABASE metrics');
    expect(await counts(influxd, 'metrics').catch(() => ({}))).toEqual({});
    const restored = await restore('s3://backups/influx');
    expect(restored.name).toBe(name);
    expect(await counts(influxd, 'metrics')).toEqual(before);
  });

  it('takes a Storage or a directory as the target, and addr instead of INFLUX_ADDR', async () => {
    const storage = new MemoryStorage();
    const env = { INFLUX_ADDR: 'unused.invalid:1' };
    const made = await backup(storage, {
      addr: `${influxd.host}:${influxd.rpcPort}`,
      database: 'metrics',
      env,
    });
    expect((await list({ storage })).map((item) => item.name)).toEqual([made.name]);

    const directory = await mkdtemp(join(tmpdir(), 'bk-influx-embed-'));
    try {
      const intoDirectory = await backup(directory, { database: 'metrics', prefix: 'influx' });
      const restored = await restore(`file://${directory}`, {
        prefix: 'influx',
        database: 'metrics',
        restore: { newDatabase: 'metrics_copy' },
      });
      expect(restored.name).toBe(intoDirectory.name);
      expect(await counts(influxd, 'metrics_copy')).toEqual(await counts(influxd, 'metrics'));
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });

  it('says what to set when there is no address, and accepts addr in the config', async () => {
    await expect(backup(new MemoryStorage(), { env: {} })).rejects.toThrow(/INFLUX_ADDR=host:port/);
    await expect(backup(new MemoryStorage(), { env: {} })).rejects.toBeInstanceOf(ConfigError);
    const component = fromConfig({ kind: 'influx', name: 'metrics', addr: '127.0.0.1:8088' });
    expect(component.options).toMatchObject({ host: '127.0.0.1', rpcPort: 8088 });
    expect(() => fromConfig({ kind: 'influx', addr: '127.0.0.1:8088', host: 'x' })).toThrow(/not both/);
    expect(() => fromConfig({ kind: 'influx', addr: 'no-port' })).toThrow(/"addr" must be host:port/);
  });

  it("takes the config's address from INFLUX_ADDR when the config gives none, as bk's config file does", () => {
    const env = { INFLUX_ADDR: '10.0.0.7:8089' };
    expect(fromConfig({ kind: 'influx', name: 'metrics' }, env).options).toMatchObject({
      host: '10.0.0.7',
      rpcPort: 8089,
    });
    // An address in the config wins over the environment.
    expect(fromConfig({ kind: 'influx', addr: '127.0.0.1:8088' }, env).options).toMatchObject({
      rpcPort: 8088,
    });
    expect(fromConfig({ kind: 'influx', host: '127.0.0.2', rpcPort: 8090 }, env).options).toMatchObject({
      host: '127.0.0.2',
    });
    expect(() => fromConfig({ kind: 'influx', name: 'metrics' }, {})).toThrow(ConfigError);
    expect(() => fromConfig({ kind: 'influx', name: 'metrics' }, {})).toThrow(/"addr".*or set INFLUX_ADDR/);
  });
});
