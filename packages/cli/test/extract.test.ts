import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { backup, type ManifestEntry, manifestEntries } from '@bk/core';
import { influx } from '@bk/influx';
import { postgres } from '@bk/postgres';
import { FsStorage } from '@bk/storage-fs';
import { type InfluxdServer, type PostgresServer, startInfluxd, startPostgres } from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/main.ts';

const run = promisify(execFile);

function capture() {
  const text = { value: '' };
  return { text, stream: { write: (chunk: string) => (text.value += chunk) } };
}

/** Runs `bk` in process; `--json` output parsed. */
async function bk(cwd: string, ...argv: string[]) {
  const stdout = capture();
  const stderr = capture();
  const code = await main(['--json', ...argv], {
    stdout: stdout.stream,
    stderr: stderr.stream,
    env: {},
    cwd,
  });
  return { code, json: JSON.parse(stdout.text.value) as Record<string, unknown>, stderr: stderr.text.value };
}

/** Every file under `directory`, relative, sorted. */
async function filesUnder(directory: string, base = directory): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(directory, { withFileTypes: true })) {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) found.push(...(await filesUnder(path, base)));
    else found.push(path.slice(base.length + 1));
  }
  return found.sort();
}

describe('bk extract: the stock tools work on what it writes', () => {
  let pg: PostgresServer;
  let influxd: InfluxdServer;
  let workspace: string;
  let target: string;
  let name: string;

  beforeAll(async () => {
    [pg, influxd] = await Promise.all([startPostgres(), startInfluxd()]);
    workspace = await mkdtemp(join(tmpdir(), 'bk-extract-'));
    await run(join(pg.bin, 'psql'), [
      '-h',
      pg.host,
      '-p',
      String(pg.port),
      '-U',
      pg.user,
      '-d',
      'postgres',
      '-v',
      'ON_ERROR_STOP=1',
      '-c',
      'CREATE DATABASE shop',
    ]);
    await run(join(pg.bin, 'psql'), [
      ...['-h', pg.host, '-p', String(pg.port), '-U', pg.user, '-d', 'shop', '-v', 'ON_ERROR_STOP=1'],
      '-c',
      // Incompressible rows, so the dump spans several 64 KiB chunks.
      'CREATE TABLE orders AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS note FROM generate_series(1, 20000) g',
    ]);
    await fetch(`${influxd.httpUrl}/query?q=${encodeURIComponent('CREATE DATABASE metrics')}`, {
      method: 'POST',
    });
    const lines = Array.from(
      { length: 200 },
      (_, index) => `cpu,host=h${index % 4} value=${index} ${1_704_067_200 + index * 8640}`,
    );
    const written = await fetch(`${influxd.httpUrl}/write?db=metrics&precision=s`, {
      method: 'POST',
      body: lines.join('\n'),
    });
    expect(written.status).toBe(204);

    target = join(workspace, 'backups');
    const made = await backup({
      storage: new FsStorage({ root: target }),
      components: [
        postgres({ name: 'postgres', host: pg.host, port: pg.port, user: pg.user, databases: ['shop'] }),
        influx({ name: 'influx', addr: `${influxd.host}:${influxd.rpcPort}`, database: 'metrics' }),
      ],
      chunkSize: 64 * 1024,
    });
    name = made.name;
    // Stored in chunks: the archive holds part-000000, part-000001, … for the dump.
    const chunked: ManifestEntry[] = [];
    for await (const { record } of manifestEntries(new FsStorage({ root: target }), made.manifest))
      if (record.chunks !== undefined && record.chunks > 1) chunked.push(record);
    expect(chunked.length).toBeGreaterThan(0);
  });
  afterAll(async () => {
    await Promise.all([pg?.stop(), influxd?.stop()]);
    if (workspace) await rm(workspace, { recursive: true, force: true });
  });

  it('writes a PostgreSQL dump, joined from its chunks, that pg_restore -l lists', async () => {
    const to = join(workspace, 'pg-out');
    const result = await bk(
      workspace,
      'extract',
      '--to',
      to,
      '--only',
      'postgres',
      '--target',
      pathToFileURL(target).href,
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.json).toMatchObject({
      name,
      to,
      components: { postgres: { directory: join(to, 'postgres') } },
    });
    const extracted = await filesUnder(join(to, 'postgres'));
    expect(extracted.some((path) => /part-\d{6}$/.test(path))).toBe(false);
    const dump = extracted.find((path) => path.includes('shop'));
    expect(dump, extracted.join(' ')).toBeDefined();
    const listed = await run(join(pg.bin, 'pg_restore'), ['-l', join(to, 'postgres', dump!)]);
    expect(listed.stdout).toMatch(/TABLE public orders/);
    expect(listed.stdout).toMatch(/TABLE DATA public orders/);
  });

  it('writes an InfluxDB component folder that influxd restore -portable restores', async () => {
    const to = join(workspace, 'influx-out');
    const result = await bk(
      workspace,
      'extract',
      name,
      '--to',
      to,
      '--only',
      'influx',
      '--target',
      pathToFileURL(target).href,
    );
    expect(result.code, result.stderr).toBe(0);
    const folder = join(to, 'influx');
    const shards = (await readdir(folder)).filter((file) => /\.s\d+\.tar\.gz$/.test(file));
    expect(shards.length).toBeGreaterThan(0);
    for (const shard of shards) expect((await stat(join(folder, shard))).isFile()).toBe(true);
    const restoredBy = await run('influxd', [
      'restore',
      '-portable',
      '-host',
      `${influxd.host}:${influxd.rpcPort}`,
      '-db',
      'metrics',
      '-newdb',
      'copy',
      folder,
    ]);
    // influxd reopens a restored shard in the background ("shard is disabled" until then).
    let count: unknown;
    let last = '';
    for (let attempt = 0; attempt < 50 && count === undefined; attempt += 1) {
      const counted = await fetch(
        `${influxd.httpUrl}/query?db=copy&q=${encodeURIComponent('SELECT count(value) FROM cpu')}`,
      );
      last = await counted.text();
      const body = JSON.parse(last) as { results: { series?: { values: [string, number][] }[] }[] };
      count = body.results[0]?.series?.[0]?.values[0]?.[1];
      if (count === undefined) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(count, `${last} ${restoredBy.stdout}${restoredBy.stderr}`).toBe(200);
  });

  it('imports a directory the real influxd backup -portable wrote (--from-portable), and bk restore restores it', async () => {
    const stock = join(workspace, 'stock-portable');
    await run('influxd', [
      'backup',
      '-portable',
      '-host',
      `${influxd.host}:${influxd.rpcPort}`,
      '-db',
      'metrics',
      stock,
    ]);
    const imported = join(workspace, 'imported');
    const made = await bk(
      workspace,
      'backup',
      '--from-portable',
      stock,
      '--target',
      pathToFileURL(imported).href,
    );
    expect(made.code, made.stderr).toBe(0);
    expect(made.json).toMatchObject({ components: [{ name: 'influx', kind: 'influx' }] });
    const config = join(workspace, 'from-stock.json');
    await writeFile(
      config,
      JSON.stringify({
        components: [
          {
            kind: 'influx',
            name: 'influx',
            addr: `${influxd.host}:${influxd.rpcPort}`,
            database: 'metrics',
            restore: { newDatabase: 'from_stock' },
          },
        ],
      }),
    );
    const restored = await bk(
      workspace,
      'restore',
      String(made.json.name),
      '--config',
      config,
      '--target',
      pathToFileURL(imported).href,
    );
    expect(restored.code, restored.stderr).toBe(0);
    let count: unknown;
    for (let attempt = 0; attempt < 50 && count === undefined; attempt += 1) {
      const counted = await fetch(
        `${influxd.httpUrl}/query?db=from_stock&q=${encodeURIComponent('SELECT count(value) FROM cpu')}`,
      );
      const body = (await counted.json()) as { results: { series?: { values: [string, number][] }[] }[] };
      count = body.results[0]?.series?.[0]?.values[0]?.[1];
      if (count === undefined) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(count).toBe(200);
    // Without a manifest in the directory, nothing is written and the error says why.
    const empty = join(workspace, 'not-portable');
    await mkdir(empty);
    const refused = await bk(
      workspace,
      'backup',
      '--from-portable',
      empty,
      '--target',
      pathToFileURL(imported).href,
    );
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/holds no \*\.manifest/);
  });

  it('refuses to overwrite without --conflict overwrite, and checks every checksum', async () => {
    const to = join(workspace, 'twice');
    const url = pathToFileURL(target).href;
    expect((await bk(workspace, 'extract', '--to', to, '--only', 'influx', '--target', url)).code).toBe(0);
    expect((await bk(workspace, 'extract', '--to', to, '--only', 'influx', '--target', url)).code).toBe(5);
    const again = await bk(
      workspace,
      'extract',
      '--to',
      to,
      '--only',
      'influx',
      '--conflict',
      'overwrite',
      '--target',
      url,
    );
    expect(again.code).toBe(0);
    // Damage one byte of the archive: extract fails with exit 4, naming the entry when it can.
    const archive = join(target, `${name}.tar.gz`);
    const bytes = await readFile(archive);
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    await writeFile(archive, bytes);
    const damaged = await bk(workspace, 'extract', '--to', join(workspace, 'damaged'), '--target', url);
    expect(damaged.code).toBe(4);
  });
});
