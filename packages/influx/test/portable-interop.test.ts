import { deepStrictEqual, ok, rejects, strictEqual } from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { collect, type Entry, fromBytes } from '@bk/core';
import { type InfluxdServer, startInfluxd } from '@bk/test-servers';
import { afterAll, beforeAll, describe, it } from 'vitest';
import {
  decodeMetaFile,
  fetchMetastore,
  parsePortableManifest,
  portableBackup,
  portableRestore,
} from '../src/index.ts';
import { BASE, counts, DAY, query } from './influx-test-helpers.ts';

const run = promisify(execFile);

/** Writes the entries' bodies as files into `directory`, as extracting the bk archive would. */
async function writeEntries(entries: AsyncIterable<Entry>, directory: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of entries) {
    await writeFile(join(directory, entry.path), await collect(entry.body!), { mode: entry.mode });
    names.push(entry.path);
  }
  return names;
}

/** A portable backup directory as entries: `.meta` first, then the rest in name order. */
async function* directoryEntries(directory: string): AsyncIterable<Entry> {
  const names = (await readdir(directory)).sort(
    (left, right) =>
      Number(right.endsWith('.meta')) - Number(left.endsWith('.meta')) || (left < right ? -1 : 1),
  );
  for (const name of names) {
    const bytes = await readFile(join(directory, name));
    yield { path: name, type: 'file', size: bytes.byteLength, body: fromBytes(bytes) };
  }
}

describe('portable backup/restore interop with influxd 1.6.7', () => {
  let source: InfluxdServer;
  let target: InfluxdServer;
  let scratch: string;
  const expected = { cpu: 120, disk: 45 };

  beforeAll(async () => {
    [source, target] = await Promise.all([startInfluxd(), startInfluxd()]);
    scratch = await mkdtemp(join(tmpdir(), 'bk-influx-interop-'));
    await query(source, 'CREATE DATABASE metrics');
    await query(source, 'CREATE DATABASE other');
    const lines = [
      ...Array.from(
        { length: 120 },
        (_, index) => `cpu,host=h${index % 4} value=${index} ${BASE + index * (DAY / 6)}`,
      ),
      ...Array.from(
        { length: 45 },
        (_, index) => `disk,path=/d${index % 3} value=${index}i ${BASE + index * (DAY / 2)}`,
      ),
    ];
    for (const [database, body] of [
      ['metrics', lines.join('\n')],
      ['other', `x value=1 ${BASE}`],
    ]) {
      const response = await fetch(`${source.httpUrl}/write?db=${database}&precision=s`, {
        method: 'POST',
        body,
      });
      strictEqual(response.status, 204);
    }
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it('A: files bk writes restore with the real `influxd restore -portable`', async () => {
    const directory = await mkdtemp(join(scratch, 'bk-'));
    const names = await writeEntries(
      portableBackup({ rpcAddress: source.rpcAddress, database: 'metrics' }),
      directory,
    );
    ok(names[0]!.endsWith('.meta') && names.at(-1)!.endsWith('.manifest'), names.join(' '));
    const shards = names.filter((name) => /\.s\d+\.tar\.gz$/.test(name));
    ok(shards.length >= 3, `expected several shards, got ${names.join(' ')}`);
    const manifest = parsePortableManifest(await readFile(join(directory, names.at(-1)!), 'utf8'));
    strictEqual(manifest.meta.fileName, names[0]);
    deepStrictEqual(
      manifest.files?.map((file) => file.fileName),
      shards,
    );
    ok(
      manifest.files?.every(
        (file) => file.database === 'metrics' && file.policy === 'autogen' && file.size % 512 === 0,
      ),
    );
    // The .meta wraps exactly the metastore the server hands out.
    deepStrictEqual(
      decodeMetaFile(await readFile(join(directory, names[0]!))),
      await fetchMetastore({ host: source.host, port: source.rpcPort }),
    );

    await run('influxd', [
      'restore',
      '-portable',
      '-host',
      target.rpcAddress,
      '-db',
      'metrics',
      '-newdb',
      'via_cli',
      directory,
    ]);
    deepStrictEqual(await counts(target, 'via_cli'), expected);
  });

  it('writes each shard as gzip members compressed in parallel, which gzip -t accepts, and stops cleanly midway', async () => {
    const directory = await mkdtemp(join(scratch, 'members-'));
    const names = await writeEntries(
      portableBackup({ rpcAddress: source.rpcAddress, database: 'metrics', compressionWorkers: 2 }),
      directory,
    );
    for (const name of names.filter((file) => file.endsWith('.tar.gz'))) {
      await run('gzip', ['-t', join(directory, name)]);
      const listed = await run('tar', ['-tzf', join(directory, name)]);
      ok(/metrics\/autogen\/\d+\/\d+-\d+\.tsm/.test(listed.stdout), listed.stdout);
    }
    // A consumer that stops after the first shard: the next shard, already requested, is let go.
    for await (const entry of portableBackup({ rpcAddress: source.rpcAddress, database: 'metrics' })) {
      if (entry.path.endsWith('.tar.gz')) {
        await collect(entry.body!);
        break;
      }
    }
    deepStrictEqual(await counts(source, 'metrics'), expected);
  });

  it('B: a directory the real `influxd backup -portable` wrote restores through portableRestore', async () => {
    const directory = join(scratch, 'cli-backup');
    await run('influxd', ['backup', '-portable', '-host', source.rpcAddress, '-db', 'metrics', directory]);
    const report = await portableRestore(directoryEntries(directory), {
      rpcAddress: target.rpcAddress,
      database: 'metrics',
      newDatabase: 'via_bk',
    });
    deepStrictEqual(report.databases, ['via_bk']);
    ok(Object.keys(report.shards).length >= 3);
    deepStrictEqual(await counts(target, 'via_bk'), expected);
  });

  it('restores one retention policy under a new name and refuses an existing target database', async () => {
    const entries: { path: string; bytes: Uint8Array }[] = [];
    for await (const entry of portableBackup({ host: source.host, rpcPort: source.rpcPort })) {
      entries.push({ path: entry.path, bytes: await collect(entry.body!) });
    }
    const replay = async function* (): AsyncIterable<Entry> {
      for (const entry of entries) yield { path: entry.path, type: 'file', body: fromBytes(entry.bytes) };
    };
    await portableRestore(replay(), {
      rpcAddress: target.rpcAddress,
      database: 'metrics',
      newDatabase: 'renamed',
      retentionPolicy: 'autogen',
      newRetentionPolicy: 'kept',
    });
    const policies = (await query(target, 'SHOW RETENTION POLICIES ON renamed')) as {
      results: { series: { values: unknown[][] }[] }[];
    };
    deepStrictEqual(
      policies.results[0]!.series[0]!.values.map((row) => row[0]),
      ['kept'],
    );
    deepStrictEqual(await counts(target, 'renamed'), expected);

    // A full restore (no database) brings back every database under its own name, once.
    const full = await portableRestore(replay(), { rpcAddress: target.rpcAddress });
    deepStrictEqual(full.databases.sort(), ['metrics', 'other']);
    deepStrictEqual(await counts(target, 'metrics'), expected);
    deepStrictEqual(await counts(target, 'other'), { x: 1 });

    for (const options of [
      { database: 'metrics', newDatabase: 'renamed' },
      { database: 'other', newDatabase: 'via_bk' },
      {},
    ]) {
      await rejects(
        portableRestore(replay(), { rpcAddress: target.rpcAddress, ...options }),
        (error: unknown) => {
          strictEqual((error as { code?: string }).code, 'BK_CONFLICT', String(error));
          ok((error as Error).message.includes('already exists'));
          return true;
        },
      );
    }
    // Nothing changed: the target still holds exactly what was restored before.
    deepStrictEqual(await counts(target, 'renamed'), expected);
    await rejects(
      portableRestore(replay(), { rpcAddress: target.rpcAddress, newDatabase: 'x' }),
      /"newDatabase" needs "database"/,
    );
  });
});
