import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type ByteStream,
  collect,
  fromBytes,
  IntegrityError,
  MemoryStorage,
  type ObjectInfo,
  type PutOptions,
} from '@bk/core';
import { type InfluxdServer, startInfluxd } from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  dayDumpName,
  dumpMeasurementDays,
  nanosToRfc3339,
  parseDayDump,
  parseDayDumpName,
  readDayDump,
} from '../src/json-dump/index.ts';
import { InfluxQueryError, JsonNumber } from '../src/line-protocol/index.ts';

const DAY = 86_400_000_000_000n;
const DAY1 = BigInt(Date.parse('2026-11-18T00:00:00Z')) * 1_000_000n;
const DAY1_POINTS = 2_500;
const DAY3_POINTS = 7;

let influxd: InfluxdServer;
let fake: Server;
let fakeUrl: string;
let handler: (url: URL, request: IncomingMessage, response: ServerResponse) => void = (_u, _r, response) =>
  response.end();

/** A MemoryStorage that also records every chunk each `put` body delivered. */
class RecordingStorage extends MemoryStorage {
  readonly chunks = new Map<string, Uint8Array[]>();
  override async put(key: string, body: ByteStream | Uint8Array, options?: PutOptions): Promise<ObjectInfo> {
    const chunks: Uint8Array[] = [];
    this.chunks.set(key, chunks);
    const source = body instanceof Uint8Array ? fromBytes(body) : body;
    async function* tee(): ByteStream {
      for await (const chunk of source) {
        chunks.push(chunk);
        yield chunk;
      }
    }
    return super.put(key, tee(), options);
  }
}

async function keys(storage: MemoryStorage): Promise<string[]> {
  const found: string[] = [];
  for await (const info of storage.list('')) found.push(info.key);
  return found.sort();
}

async function query(
  q: string,
  database?: string,
): Promise<{ results: Array<{ series?: Array<{ values: number[][] }> }> }> {
  const body = new URLSearchParams({ q, ...(database === undefined ? {} : { db: database }) });
  const response = await fetch(`${influxd.httpUrl}/query`, { method: 'POST', body });
  expect(response.status).toBe(200);
  return response.json();
}

async function write(lines: string[]): Promise<void> {
  const response = await fetch(`${influxd.httpUrl}/write?db=d&precision=n`, {
    method: 'POST',
    body: lines.join('\n'),
  });
  expect(response.status, await response.text()).toBe(204);
}

async function dbCount(from: string, to: string): Promise<number> {
  const result = await query(`SELECT count(v) FROM temp WHERE time >= '${from}' AND time < '${to}'`, 'd');
  return result.results[0]?.series?.[0]?.values[0]?.[1] ?? 0;
}

beforeAll(async () => {
  influxd = await startInfluxd();
  fake = createServer((request, response) =>
    handler(new URL(request.url ?? '/', 'http://x'), request, response),
  );
  await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
  fakeUrl = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
  await query('CREATE DATABASE d');
  const lines: string[] = [];
  for (let index = 0; index < DAY1_POINTS; index += 1) {
    const host = index % 2 === 0 ? 'a' : 'b b';
    const extra = index % 5 === 0 ? ',zone=eu' : '';
    lines.push(
      `temp,host=${host.replace(' ', '\\ ')}${extra} v=${index / 4},n=${index}i,s="x \\"${index}\\"" ${DAY1 + BigInt(index) * 1_000_001n}`,
    );
  }
  lines.push(`temp,host=big v=1,n=9007199254740993i,ok=true ${DAY1 + 3_600_000_000_000n}`);
  // Day 2 (2026-11-19) has no temp points, only another measurement's.
  lines.push(`other v=1 ${DAY1 + DAY + 5n}`);
  for (let index = 0; index < DAY3_POINTS; index += 1) {
    lines.push(`temp,host=c v=${index} ${DAY1 + 2n * DAY + BigInt(index) * 1_000_000_000n}`);
  }
  // 2026-11-21 00:00:00 exactly: outside [from, to).
  lines.push(`temp,host=c v=99 ${DAY1 + 3n * DAY}`);
  await write(lines);
}, 120_000);

afterAll(async () => {
  await influxd?.stop();
  await new Promise((resolve) => fake?.close(resolve));
});

describe('dumpMeasurementDays against influxd', () => {
  it('writes one JSON file per non-empty UTC day, with the exact names and counts', async () => {
    const storage = new RecordingStorage();
    const result = await dumpMeasurementDays({
      httpUrl: influxd.httpUrl,
      database: 'd',
      measurement: 'temp',
      from: new Date('2026-11-18T05:30:00Z'),
      to: new Date('2026-11-21T00:00:00Z'),
      storage,
      prefix: 'dumps/',
    });
    const first = 'dumps/temp_2026-11-18-00:00:00_2026-11-19-00:00:00.json';
    const third = 'dumps/temp_2026-11-20-00:00:00_2026-11-21-00:00:00.json';
    expect(result).toEqual([
      { key: first, records: DAY1_POINTS + 1 },
      { key: third, records: DAY3_POINTS },
    ]);
    expect(await keys(storage)).toEqual([first, third]);
    expect(await dbCount('2026-11-18T00:00:00Z', '2026-11-19T00:00:00Z')).toBe(DAY1_POINTS + 1);
    expect(await dbCount('2026-11-19T00:00:00Z', '2026-11-20T00:00:00Z')).toBe(0);
    expect(await dbCount('2026-11-20T00:00:00Z', '2026-11-21T00:00:00Z')).toBe(DAY3_POINTS);

    const text = new TextDecoder().decode(await collect(await storage.get(first)));
    const parsed = JSON.parse(text) as Array<Record<string, unknown>>;
    expect(parsed).toHaveLength(DAY1_POINTS + 1);
    expect(parsed.find((record) => record.n === 0)).toEqual({
      time: '2026-11-18T00:00:00Z',
      host: 'a',
      zone: 'eu',
      n: 0,
      s: 'x "0"',
      v: 0,
    });
    expect(parsed.find((record) => record.host === 'b b' && record.n === 1)).toEqual({
      time: '2026-11-18T00:00:00.001000001Z',
      host: 'b b',
      n: 1,
      s: 'x "1"',
      v: 0.25,
    });
    // int64 stays exact in the text.
    expect(text).toContain('"host":"big","n":9007199254740993,"ok":true,"v":1}');
    const third3 = JSON.parse(new TextDecoder().decode(await collect(await storage.get(third))));
    expect(third3).toHaveLength(DAY3_POINTS);
    expect(third3[6]).toEqual({ time: '2026-11-20T00:00:06Z', host: 'c', v: 6 });

    // Pages of 1 000 records: 2 501 records → 1 000, 1 000, 501.
    const pages = storage.chunks.get(first)!.map((chunk) => new TextDecoder().decode(chunk));
    expect(pages.map((page) => page.split('\n').filter((line) => line.startsWith('{')).length)).toEqual([
      1_000, 1_000, 501,
    ]);
    expect(pages[0]!.startsWith('[\n{')).toBe(true);
    expect(pages[1]!.startsWith(',\n{')).toBe(true);
    expect(pages[2]!.endsWith('}\n]\n')).toBe(true);
    expect(storage.chunks.get(third)).toHaveLength(1);

    // Read back, streaming.
    const records = [];
    for await (const record of readDayDump(storage, first)) records.push(record);
    expect(records).toHaveLength(DAY1_POINTS + 1);
    const big = records.find((record) => record.host === 'big')!;
    expect(big.n).toBeInstanceOf(JsonNumber);
    expect((big.n as JsonNumber).text).toBe('9007199254740993');
  });

  it('honours pageSize and a retention policy, and writes nothing for an empty range', async () => {
    const storage = new RecordingStorage();
    const result = await dumpMeasurementDays({
      httpUrl: influxd.httpUrl,
      database: 'd',
      retentionPolicy: 'autogen',
      measurement: 'temp',
      from: new Date('2026-11-20T00:00:00Z'),
      to: new Date('2026-11-20T00:00:01Z'),
      storage,
      pageSize: 3,
    });
    expect(result).toEqual([{ key: 'temp_2026-11-20-00:00:00_2026-11-21-00:00:00.json', records: 7 }]);
    expect(storage.chunks.get(result[0]!.key)).toHaveLength(3);

    const empty = new RecordingStorage();
    const none = await dumpMeasurementDays({
      httpUrl: influxd.httpUrl,
      database: 'd',
      measurement: 'temp',
      from: new Date('2026-11-19T00:00:00Z'),
      to: new Date('2026-11-20T00:00:00Z'),
      storage: empty,
    });
    expect(none).toEqual([]);
    expect(await keys(empty)).toEqual([]);
    expect(empty.chunks.size).toBe(0);
  });

  it('fails with InfluxQueryError and writes nothing when the query fails', async () => {
    const storage = new RecordingStorage();
    const failure = await dumpMeasurementDays({
      httpUrl: influxd.httpUrl,
      database: 'nosuch',
      measurement: 'temp',
      from: new Date('2026-11-18T00:00:00Z'),
      to: new Date('2026-11-19T00:00:00Z'),
      storage,
    }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(InfluxQueryError);
    expect((failure as Error).message).toContain('database not found');
    expect(await keys(storage)).toEqual([]);
  });
});

describe('dumpMeasurementDays failure detection', () => {
  const chunk = (values: unknown[][], partial: boolean) =>
    `${JSON.stringify({
      results: [
        {
          statement_id: 0,
          series: [
            {
              name: 'm',
              tags: { host: 'a' },
              columns: ['time', 'v'],
              values,
              ...(partial ? { partial } : {}),
            },
          ],
          ...(partial ? { partial } : {}),
        },
      ],
    })}\n`;
  const answer = (documents: string[]) => {
    handler = (_url, _request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      for (const document of documents) response.write(document);
      response.end();
    };
  };
  const dump = (storage: RecordingStorage) =>
    dumpMeasurementDays({
      httpUrl: fakeUrl,
      database: 'd',
      measurement: 'm',
      from: new Date('2026-11-18T00:00:00Z'),
      to: new Date('2026-11-19T00:00:00Z'),
      storage,
      pageSize: 1,
    });
  const t0 = Number(DAY1);

  it('fails with IntegrityError on a response that ends "partial", after pages were handed to put', async () => {
    answer([
      chunk(
        [
          [t0, 1],
          [t0 + 1, 2],
        ],
        true,
      ),
      chunk([[t0 + 2, 3]], true),
    ]);
    const storage = new RecordingStorage();
    const failure = await dump(storage).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(IntegrityError);
    expect((failure as Error).message).toMatch(/partial/);
    const key = 'm_2026-11-18-00:00:00_2026-11-19-00:00:00.json';
    expect(storage.chunks.get(key)!.length).toBeGreaterThan(0);
    expect(await keys(storage)).toEqual([]);
  });

  it('fails with InfluxQueryError on an error document after good chunks, writing nothing', async () => {
    answer([
      chunk(
        [
          [t0, 1],
          [t0 + 1, 2],
        ],
        true,
      ),
      `${JSON.stringify({ results: [{ statement_id: 0, error: 'query interrupted' }] })}\n`,
    ]);
    const storage = new RecordingStorage();
    const failure = await dump(storage).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(InfluxQueryError);
    expect((failure as Error).message).toContain('query interrupted');
    expect(await keys(storage)).toEqual([]);
  });

  it('sends the day-window query chunked', async () => {
    let seen: URL | undefined;
    handler = (url, _request, response) => {
      seen = url;
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(`${JSON.stringify({ results: [{ statement_id: 0 }] })}\n`);
    };
    expect(await dump(new RecordingStorage())).toEqual([]);
    expect(seen!.searchParams.get('chunked')).toBe('true');
    expect(seen!.searchParams.get('chunk_size')).toBe('1');
    expect(seen!.searchParams.get('q')).toBe(
      `SELECT * FROM "m" WHERE time >= '2026-11-18T00:00:00.000Z' AND time < '2026-11-19T00:00:00.000Z' GROUP BY *`,
    );
  });
});

describe('day dump helpers', () => {
  it('names and parses day files, and formats nanosecond times', () => {
    expect(dayDumpName('cpu', new Date('2026-12-31T13:00:00Z'))).toBe(
      'cpu_2026-12-31-00:00:00_2027-01-01-00:00:00.json',
    );
    expect(parseDayDumpName('x/cpu_a_2026-12-31-00:00:00_2027-01-01-00:00:00.json')).toEqual({
      measurement: 'cpu_a',
      from: new Date('2026-12-31T00:00:00Z'),
      to: new Date('2027-01-01T00:00:00Z'),
    });
    expect(parseDayDumpName('cpu_2026-12-31-00:00:00_2027-01-02-00:00:00.json')).toBeUndefined();
    expect(nanosToRfc3339(DAY1 + 123_400n)).toBe('2026-11-18T00:00:00.0001234Z');
    expect(nanosToRfc3339(-1n)).toBe('1969-12-31T23:59:59.999999999Z');
  });

  it('rejects a truncated or malformed dump when reading back', async () => {
    const read = async (text: string) => {
      const out = [];
      for await (const record of parseDayDump(fromBytes(text))) out.push(record);
      return out;
    };
    expect(await read('[\n{"time":"t","v":1},\n{"time":"u"}\n]\n')).toHaveLength(2);
    await expect(read('[\n{"time":"t","v":1},\n')).rejects.toBeInstanceOf(IntegrityError);
    await expect(read('{"time":"t"}\n')).rejects.toBeInstanceOf(IntegrityError);
  });

  it('refuses a measurement that cannot name a file', async () => {
    await expect(
      dumpMeasurementDays({
        httpUrl: fakeUrl,
        database: 'd',
        measurement: 'a/b',
        from: new Date(0),
        to: new Date(1),
        storage: new MemoryStorage(),
      }),
    ).rejects.toThrow(/cannot name a file/);
  });
});
