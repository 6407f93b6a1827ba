import { strictEqual } from 'node:assert/strict';
import type { InfluxdServer } from '@bk/test-servers';

/** Shared by the suites that run against a real influxd: seconds and a Monday to start from. */
export const DAY = 86_400;
export const BASE = 1_704_067_200; // 2024-01-01T00:00:00Z, a Monday

export async function query(server: InfluxdServer, q: string, database?: string): Promise<unknown> {
  const url = new URL('/query', server.httpUrl);
  url.searchParams.set('q', q);
  if (database) url.searchParams.set('db', database);
  const response = await fetch(url, { method: 'POST' });
  strictEqual(response.status, 200, await response.clone().text());
  return response.json();
}

export async function write(
  server: InfluxdServer,
  database: string,
  lines: string[],
  precision = 's',
): Promise<void> {
  const response = await fetch(`${server.httpUrl}/write?db=${database}&precision=${precision}`, {
    method: 'POST',
    body: lines.join('\n'),
  });
  strictEqual(response.status, 204, await response.text());
}

/** Point counts per measurement (every field: `count(*)` takes the largest field count). */
export async function counts(server: InfluxdServer, database: string): Promise<Record<string, number>> {
  const result = (await query(
    server,
    'SELECT count(value) FROM /.*/ WHERE time >= -9223372036854775806 AND time <= 9223372036854775806',
    database,
  )) as {
    results: { series?: { name: string; values: [string, number][] }[]; error?: string }[];
  };
  return Object.fromEntries(
    (result.results[0]?.series ?? []).map((series) => [series.name, series.values[0]![1]]),
  );
}

export async function databases(server: InfluxdServer): Promise<string[]> {
  const result = (await query(server, 'SHOW DATABASES')) as {
    results: { series?: { values: [string][] }[] }[];
  };
  return (result.results[0]?.series?.[0]?.values ?? []).map((row) => row[0]);
}
