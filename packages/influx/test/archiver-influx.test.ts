import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
// @bk/storage-fs is not a dependency of @bk/influx; the test reaches its sources directly.
import { FsStorage } from '@bk/storage-fs';
import { type InfluxdServer, startInfluxd } from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DrArchiver, listArchivedFiles, replay } from '../src/archiver/index.ts';
import { verifyCounts } from '../src/verify-counts.ts';
import { killLoop } from './archiver-kill.ts';

const run = promisify(execFile);

let source: InfluxdServer;
let target: InfluxdServer;
let sandbox: string;
let storage: FsStorage;

const DAY0 = 1_795_046_400; // 2026-11-19T00:00:00Z, in seconds
const POINTS = 5_000;
/** Kill -9 rounds: a few in CI; BK_DR_KILLS=20 for the full run. */
const KILLS = Number(process.env.BK_DR_KILLS ?? 4);
let acknowledgedBySource = 0;
/** Where each point goes: two databases, two retention policies, two UTC days. */
const PLACES = [
  { db: 'metrics', rp: 'autogen' },
  { db: 'sensors', rp: 'week' },
] as const;

async function query(server: InfluxdServer, q: string): Promise<void> {
  const response = await fetch(`${server.httpUrl}/query`, {
    method: 'POST',
    body: new URLSearchParams({ q }),
  });
  const text = await response.text();
  expect(response.status, text).toBe(200);
  expect(text).not.toContain('"error"');
}

async function createPlaces(server: InfluxdServer): Promise<void> {
  await query(server, 'CREATE DATABASE metrics');
  await query(server, 'CREATE DATABASE sensors');
  await query(server, 'CREATE RETENTION POLICY week ON sensors DURATION 0s REPLICATION 1');
}

async function dropPlaces(server: InfluxdServer): Promise<void> {
  await query(server, 'DROP DATABASE metrics');
  await query(server, 'DROP DATABASE sensors');
}

function pointLines(): Map<number, string[]> {
  const byPlace = new Map<number, string[]>([
    [0, []],
    [1, []],
  ]);
  for (let index = 0; index < POINTS; index += 1) {
    const time = DAY0 + index * 30; // 5 000 × 30 s ≈ 1.7 days: 2026-11-19 and 2026-11-20
    const place = index % 2;
    const line =
      index % 3 === 0
        ? `disk\\ io,host=h${index % 7},path=/var\\ lib reads=${index}i,note="say \\"hi\\" ${index}" ${time}`
        : `cpu,host=h${index % 5} usage=${index / 3},ok=${index % 2 === 0} ${time}`;
    byPlace.get(place)?.push(line);
  }
  return byPlace;
}

async function expectSameCounts(): Promise<void> {
  for (const { db, rp } of PLACES) {
    const counts = await verifyCounts({
      source: { httpUrl: source.httpUrl, database: db },
      target: { httpUrl: target.httpUrl, database: db },
      retentionPolicy: rp,
      groupByDay: true,
    });
    expect(counts, `${db}.${rp}`).toEqual({ ok: true, differences: [] });
  }
}

beforeAll(async () => {
  [source, target] = await Promise.all([startInfluxd(), startInfluxd()]);
  sandbox = await mkdtemp(join(tmpdir(), 'bk-influx-archiver-'));
  storage = new FsStorage({ root: join(sandbox, 'bucket'), fsync: false });
  await createPlaces(source);
  const archiver = new DrArchiver({
    storage,
    spool: { dir: join(sandbox, 'spool') },
    instance: 'prod-1',
    dayOf: 'timestamp',
    precision: 's',
    maxFileBytes: 64 * 1024, // several files per day
  });
  for (const [place, lines] of pointLines()) {
    const { db, rp } = PLACES[place] as (typeof PLACES)[number];
    for (let index = 0; index < lines.length; index += 250) {
      const batch = lines.slice(index, index + 250);
      // What a writer does: send to InfluxDB and hand the same lines to the archiver.
      const response = await fetch(`${source.httpUrl}/write?db=${db}&rp=${rp}&precision=s`, {
        method: 'POST',
        body: batch.join('\n'),
      });
      expect(response.status, await response.text()).toBe(204);
      await archiver.write(db, rp, batch);
    }
  }
  await archiver.close();
  expect(archiver.stats()).toMatchObject({ linesAccepted: POINTS, linesUploaded: POINTS, spooledBytes: 0 });
  acknowledgedBySource = archiver.stats().linesAccepted;
}, 120_000);

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  if (sandbox !== undefined) await rm(sandbox, { recursive: true, force: true });
});

describe('DrArchiver files against a real influxd', () => {
  it('lays out 2 databases × 2 days of files', async () => {
    const { files, skipped } = await listArchivedFiles({ storage, instance: 'prod-1' });
    expect(skipped).toEqual([]);
    const places = new Set(files.map((file) => `${file.database}/${file.retentionPolicy}/${file.day}`));
    expect([...places].sort()).toEqual([
      'metrics/autogen/20261119',
      'metrics/autogen/20261120',
      'sensors/week/20261119',
      'sensors/week/20261120',
    ]);
    expect(files.length).toBeGreaterThan(4);
  });

  it('imports with the real `influx -import -compressed -precision s`, file by file, to identical counts', async () => {
    await createPlaces(target);
    const { files } = await listArchivedFiles({ storage, instance: 'prod-1' });
    let processed = 0;
    for (const file of files) {
      const { stdout, stderr } = await run('influx', [
        '-host',
        '127.0.0.1',
        '-port',
        String(target.httpPort),
        '-import',
        '-compressed',
        '-path',
        join(storage.root, file.key),
        '-precision',
        's',
      ]);
      const output = stdout + stderr;
      expect(output).toContain('Failed 0 inserts');
      processed += Number(/Processed (\d+) inserts/.exec(output)?.[1] ?? Number.NaN);
    }
    expect(processed).toBe(POINTS);
    await expectSameCounts();
    await dropPlaces(target);
  });

  it('replay() into a wiped server gives identical counts and verifies them', async () => {
    const seen: string[] = [];
    const result = await replay({
      storage,
      instance: 'prod-1',
      httpUrl: target.httpUrl,
      precision: 's',
      // The writer's own count: a lost object would show although the archive agrees with itself.
      expectedLines: acknowledgedBySource,
      onFile: (file) => seen.push(file.day),
    });
    expect(result).toMatchObject({ lines: POINTS, points: POINTS, ok: true, differences: [], skipped: [] });
    // Writers that acknowledged one line more than the archive holds: the archive agrees with
    // itself, the writers' count does not.
    const short = await replay({
      storage,
      instance: 'prod-1',
      httpUrl: target.httpUrl,
      precision: 's',
      expectedLines: acknowledgedBySource + 1,
    });
    expect(short).toMatchObject({ ok: false, differences: [], lines: POINTS, expectedLines: POINTS + 1 });
    expect(seen).toEqual([...seen].sort());
    await expectSameCounts();

    // A day range and one database, into a new database name; verify counts what landed there.
    const oneDay = await replay({
      storage,
      instance: 'prod-1',
      httpUrl: target.httpUrl,
      database: 'metrics',
      from: new Date('2026-11-20T12:00:00Z'),
      to: new Date('2026-11-20T13:00:00Z'),
      targetDatabase: 'metrics_copy',
      precision: 's',
      verify: true,
    });
    expect(oneDay.ok).toBe(true);
    expect(oneDay.lines).toBeGreaterThan(0);
    expect(oneDay.lines).toBeLessThan(POINTS / 2);

    // Replaying again is idempotent: a point with the same series and timestamp overwrites itself.
    const twice = await replay({
      storage,
      instance: 'prod-1',
      httpUrl: target.httpUrl,
      database: 'metrics',
      from: new Date('2026-11-20T00:00:00Z'),
      targetDatabase: 'metrics_copy',
      precision: 's',
      verify: true,
    });
    expect(twice.lines).toBe(oneDay.lines);
    expect(twice.ok).toBe(true);

    // A point the archive does not hold shows up as a difference.
    const extra = await fetch(`${target.httpUrl}/write?db=metrics_copy&precision=s`, {
      method: 'POST',
      body: `cpu,host=intruder usage=1 ${DAY0 + 86_400 + 60}`,
    });
    expect(extra.status).toBe(204);
    const differing = await replay({
      storage,
      instance: 'prod-1',
      httpUrl: target.httpUrl,
      database: 'metrics',
      from: new Date('2026-11-20T00:00:00Z'),
      targetDatabase: 'metrics_copy',
      precision: 's',
      verify: true,
    });
    expect(differing.ok).toBe(false);
    expect(differing.differences).toHaveLength(1);
    const [difference] = differing.differences ?? [];
    expect(difference).toMatchObject({
      database: 'metrics_copy',
      retentionPolicy: 'autogen',
      measurement: 'cpu',
    });
    expect((difference?.points ?? 0) - (difference?.lines ?? 0)).toBe(1);
    await query(target, 'DROP DATABASE metrics_copy');

    await dropPlaces(target);
  });
});

describe('DrArchiver killed with SIGKILL under load, replayed into a fresh influxd', () => {
  it(`keeps every acknowledged line exactly once over ${KILLS} kills and a restart`, async () => {
    const run = await killLoop(join(sandbox, 'kill'), KILLS);
    expect(run.leftInSpool).toEqual([]);
    expect(run.acknowledged.size).toBeGreaterThan(KILLS * 10);
    expect([...run.acknowledged].filter((n) => !run.stored.has(n))).toEqual([]);
    expect([...run.stored].filter(([, count]) => count !== 1)).toEqual([]);

    // Replay into a database of its own: every stored line is one point (a doubled line would
    // count twice in the archive but once in InfluxDB, and fail the check).
    const result = await replay({
      storage: run.storage,
      instance: 'kill',
      httpUrl: target.httpUrl,
      targetDatabase: 'killed',
      precision: 'ns',
      expectedLines: run.stored.size,
    });
    expect(result).toMatchObject({
      ok: true,
      differences: [],
      lines: run.stored.size,
      points: run.stored.size,
    });
    // And every acknowledged line is among the points InfluxDB holds.
    const response = await fetch(
      `${target.httpUrl}/query?${new URLSearchParams({ db: 'killed', q: 'SELECT v FROM "rp"."kill"' })}`,
    );
    const body = (await response.json()) as {
      results: Array<{ series?: Array<{ values: Array<[string, number]> }> }>;
    };
    const values = new Set(body.results[0]?.series?.[0]?.values.map(([, v]) => v));
    expect([...run.acknowledged].filter((n) => !values.has(n))).toEqual([]);
    console.info(
      `kill -9 × ${KILLS}: ${run.acknowledged.size} lines acknowledged, ${run.stored.size} stored and replayed, none lost or doubled`,
    );
  }, 300_000);
});
