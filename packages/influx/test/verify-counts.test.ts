import { type InfluxdServer, startInfluxd } from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyCounts } from '../src/verify-counts.ts';

let influxd: InfluxdServer;

const DAY = 86_400_000_000_000n;
const BASE = 1_795_046_400_000_000_000n; // 2026-11-19T00:00:00Z

async function query(q: string, database?: string): Promise<void> {
  const body = new URLSearchParams({ q, ...(database === undefined ? {} : { db: database }) });
  const response = await fetch(`${influxd.httpUrl}/query`, { method: 'POST', body });
  const text = await response.text();
  expect(response.status, text).toBe(200);
  expect(text).not.toContain('"error"');
}

async function write(database: string, lines: string[]): Promise<void> {
  const response = await fetch(`${influxd.httpUrl}/write?db=${database}&precision=n`, {
    method: 'POST',
    body: lines.join('\n'),
  });
  expect(response.status, await response.text()).toBe(204);
}

function sample(): string[] {
  const lines: string[] = [];
  for (let index = 0; index < 90; index += 1) {
    const time = BASE + BigInt(index % 3) * DAY + BigInt(index);
    lines.push(`cpu,host=h${index % 4} usage=${index},idle=${index}i ${time}`);
    lines.push(`mem,host=h${index % 2} free=${index}i ${time}`);
  }
  return lines;
}

const both = (groupByDay?: boolean) =>
  verifyCounts({
    source: { httpUrl: influxd.httpUrl, database: 'left' },
    target: { httpUrl: influxd.httpUrl, database: 'right' },
    groupByDay,
  });

beforeAll(async () => {
  influxd = await startInfluxd();
  for (const database of ['left', 'right']) {
    await query(`CREATE DATABASE ${database}`);
    await write(database, sample());
  }
});

afterAll(async () => {
  await influxd?.stop();
});

describe('verifyCounts', () => {
  it('finds nothing to report on identical databases', async () => {
    expect(await both()).toEqual({ ok: true, differences: [] });
    expect(await both(true)).toEqual({ ok: true, differences: [] });
  });

  it('reports a deleted point per measurement and per day', async () => {
    // index 4: cpu on day 1 (4 % 3), host h0
    await query(`DELETE FROM cpu WHERE time = ${BASE + DAY + 4n}`, 'right');
    expect(await both()).toEqual({
      ok: false,
      differences: [{ measurement: 'cpu', retentionPolicy: 'autogen', source: 90, target: 89 }],
    });
    expect(await both(true)).toEqual({
      ok: false,
      differences: [
        { measurement: 'cpu', retentionPolicy: 'autogen', day: '2026-11-20', source: 30, target: 29 },
      ],
    });
  });

  it('reports an added point, a new measurement and a point that lost a field', async () => {
    await write('right', [`mem,host=h9 free=1i ${BASE + 2n * DAY + 999n}`, `extra value=1 ${BASE}`]);
    // The same point on both sides, but without its `total` field on the right.
    await write('left', [`disk,host=h0 used=1,total=2 ${BASE + 5n}`]);
    await write('right', [`disk,host=h0 used=1 ${BASE + 5n}`]);
    const { ok, differences } = await both(true);
    expect(ok).toBe(false);
    expect(differences).toEqual([
      { measurement: 'cpu', retentionPolicy: 'autogen', day: '2026-11-20', source: 30, target: 29 },
      {
        measurement: 'disk',
        retentionPolicy: 'autogen',
        day: '2026-11-19',
        field: 'total',
        source: 1,
        target: 0,
      },
      { measurement: 'extra', retentionPolicy: 'autogen', day: '2026-11-19', source: 0, target: 1 },
      { measurement: 'mem', retentionPolicy: 'autogen', day: '2026-11-21', source: 30, target: 31 },
    ]);
  });

  it('counts a missing database or retention policy as zero points', async () => {
    const { ok, differences } = await verifyCounts({
      source: { httpUrl: influxd.httpUrl, database: 'left' },
      target: { httpUrl: influxd.httpUrl, database: 'nowhere' },
      measurements: ['mem'],
    });
    expect(ok).toBe(false);
    expect(differences).toEqual([{ measurement: 'mem', retentionPolicy: 'autogen', source: 90, target: 0 }]);
  });
});
