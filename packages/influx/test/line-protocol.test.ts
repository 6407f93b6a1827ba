import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { collect, fromBytes, gunzip, gzip } from '@bk/core';
import { type InfluxdServer, startInfluxd } from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportLineProtocol, importLineProtocol } from '../src/line-protocol/index.ts';
import { verifyCounts } from '../src/verify-counts.ts';

const run = promisify(execFile);

let first: InfluxdServer;
let second: InfluxdServer;
let sandbox: string;

const DAY = 86_400_000_000_000n;
const BASE = 1_795_000_000_000_000_000n; // 2026-11-18
const CPU_POINTS = 12_000; // more than the default max-row-limit (10 000)

async function query(server: InfluxdServer, q: string, database?: string): Promise<unknown> {
  const body = new URLSearchParams({ q, ...(database === undefined ? {} : { db: database }) });
  const response = await fetch(`${server.httpUrl}/query`, { method: 'POST', body });
  expect(response.status).toBe(200);
  return response.json();
}

async function write(server: InfluxdServer, database: string, lines: string[], rp?: string): Promise<void> {
  const url = `${server.httpUrl}/write?db=${database}&precision=n${rp === undefined ? '' : `&rp=${rp}`}`;
  for (let index = 0; index < lines.length; index += 5_000) {
    const response = await fetch(url, { method: 'POST', body: lines.slice(index, index + 5_000).join('\n') });
    expect(response.status, (await response.text()).slice(0, 500)).toBe(204);
  }
}

/** The points of an export, without its header (which names the database). */
function points(text: string): string[] {
  return text.split('\n').filter((line) => line !== '' && !line.startsWith('# CONTEXT-DATABASE'));
}

async function exportText(server: InfluxdServer, database: string, chunkSize?: number): Promise<string> {
  const bytes = await collect(exportLineProtocol({ httpUrl: server.httpUrl, database, chunkSize }));
  return new TextDecoder().decode(bytes);
}

async function countOf(server: InfluxdServer, database: string, from: string): Promise<unknown> {
  return query(server, `SELECT count(*) FROM ${from}`, database);
}

beforeAll(async () => {
  [first, second] = await Promise.all([startInfluxd(), startInfluxd()]);
  sandbox = await mkdtemp(join(tmpdir(), 'bk-influx-lp-'));
  await query(first, 'CREATE DATABASE src');
  await query(first, 'CREATE RETENTION POLICY week ON src DURATION 0s REPLICATION 1');
  const cpu: string[] = [];
  for (let index = 0; index < CPU_POINTS; index += 1) {
    const time = BASE + BigInt(index % 3) * DAY + BigInt(index) * 1_000_000n;
    const host = index % 2 === 0 ? 'web\\ 1\\,a\\=b' : 'db';
    const note = `say "hi", to \\\\ all ${index}`;
    cpu.push(
      `cpu\\ load,host=${host},zone=eu\\,1 usage=${index / 7},count=${index}i,note="${note.replace(/"/g, '\\"')}",ok=${index % 3 === 0} ${time}`,
    );
  }
  cpu.push(`cpu\\ load,host=big count=9007199254740993i,usage=1 ${BASE}`);
  const disk: string[] = [];
  for (let index = 0; index < 300; index += 1) {
    disk.push(`disk,path=/var/lib free=${index * 3}i,field\\ with\\ space=1.5 ${BASE + BigInt(index)}`);
  }
  await write(first, 'src', cpu);
  await write(first, 'src', disk);
  await write(first, 'src', ['disk,path=/week free=1i 1795000000000000000', 'rare only=true 1'], 'week');
}, 120_000);

afterAll(async () => {
  await Promise.all([first?.stop(), second?.stop()]);
  if (sandbox !== undefined) await rm(sandbox, { recursive: true, force: true });
});

describe('exportLineProtocol → importLineProtocol', () => {
  it('round-trips every point, type and escape into another database, past max-row-limit', async () => {
    const text = await exportText(first, 'src', 1_000);
    expect(text.startsWith('# DML\n# CONTEXT-DATABASE: src\n# CONTEXT-RETENTION-POLICY: autogen\n')).toBe(
      true,
    );
    expect(text).toContain('# CONTEXT-RETENTION-POLICY: week\n');
    expect(text).toContain('count=9007199254740993i');
    expect(text).toContain(
      'cpu\\ load,host=web\\ 1\\,a\\=b,zone=eu\\,1 count=0i,note="say \\"hi\\", to \\\\ all 0",ok=true,usage=0 1795000000000000000',
    );
    expect(text).toContain('disk,path=/var/lib field\\ with\\ space=1.5,free=3i 1795000000000000001');
    expect(points(text).filter((line) => !line.startsWith('#'))).toHaveLength(CPU_POINTS + 1 + 300 + 2);

    const result = await importLineProtocol(exportLineProtocol({ httpUrl: first.httpUrl, database: 'src' }), {
      httpUrl: second.httpUrl,
      database: 'copy',
      createDatabase: true,
      batchSize: 1_000,
      concurrency: 3,
    });
    expect(result).toEqual({ lines: CPU_POINTS + 1 + 300 + 2, batches: 14, statements: 0 });

    const counts = await verifyCounts({
      source: { httpUrl: first.httpUrl, database: 'src' },
      target: { httpUrl: second.httpUrl, database: 'copy' },
      groupByDay: true,
    });
    expect(counts).toEqual({ ok: true, differences: [] });
    // Every point, tag, field type and value identical: the two exports agree line for line.
    expect(points(await exportText(second, 'copy'))).toEqual(points(text));
  });

  it('exports only the asked time range, retention policy and measurements', async () => {
    const text = new TextDecoder().decode(
      await collect(
        exportLineProtocol({
          httpUrl: first.httpUrl,
          database: 'src',
          retentionPolicy: 'autogen',
          measurements: ['disk', 'absent'],
          start: BASE + 10n,
          end: new Date(Number((BASE + 20n) / 1_000_000n) + 1),
        }),
      ),
    );
    const lines = text.split('\n').filter((line) => line !== '');
    expect(lines.slice(0, 3)).toEqual([
      '# DML',
      '# CONTEXT-DATABASE: src',
      '# CONTEXT-RETENTION-POLICY: autogen',
    ]);
    // [BASE + 10 ns, BASE + 1 ms): points 10..299 of disk.
    expect(lines.slice(3)).toHaveLength(290);
    expect(lines[3]).toBe('disk,path=/var/lib field\\ with\\ space=1.5,free=30i 1795000000000000010');
  });

  it('writes files that the real `influx -import -compressed -precision ns` reads', async () => {
    const file = join(sandbox, 'src.lp.gz');
    await writeFile(
      file,
      await collect(gzip(exportLineProtocol({ httpUrl: first.httpUrl, database: 'src' }))),
    );
    // influx -import needs the database and retention policies to exist.
    await query(second, 'CREATE DATABASE src');
    await query(second, 'CREATE RETENTION POLICY week ON src DURATION 0s REPLICATION 1');
    const { stdout, stderr: errors } = await run('influx', [
      '-host',
      '127.0.0.1',
      '-port',
      String(second.httpPort),
      '-import',
      '-path',
      file,
      '-compressed',
      '-precision',
      'ns',
    ]);
    const stderr = stdout + errors;
    expect(stderr).toContain(`Processed ${CPU_POINTS + 1 + 300 + 2} inserts`);
    expect(stderr).toContain('Failed 0 inserts');
    const counts = await verifyCounts({
      source: { httpUrl: first.httpUrl, database: 'src' },
      target: { httpUrl: second.httpUrl, database: 'src' },
      groupByDay: true,
    });
    expect(counts).toEqual({ ok: true, differences: [] });
    expect(points(await exportText(second, 'src'))).toEqual(points(await exportText(first, 'src')));
  });

  it('imports influx_inspect-style annotated files (DDL, contexts, comments), plain or gzipped', async () => {
    const file = [
      '# INFLUXDB EXPORT: 1677-09-21T00:12:43Z - 2262-04-11T23:47:16Z',
      '# DDL',
      'CREATE DATABASE hand WITH NAME autogen',
      'CREATE RETENTION POLICY short ON hand DURATION 0s REPLICATION 1',
      '# DML',
      '# CONTEXT-DATABASE:hand',
      '# CONTEXT-RETENTION-POLICY:autogen',
      '# writing tsm data',
      'weather,city=Z\\,rich temp=1.5,text="a \\"b\\"" 1000000000000000000',
      'weather,city=Bern temp=2,n=3i 1000000000000000001\r',
      '',
      '# CONTEXT-RETENTION-POLICY:short',
      '# writing wal data',
      'weather,city=Bern temp=3 1000000000000000002',
    ].join('\n');
    const plain = await importLineProtocol(fromBytes(file), { httpUrl: second.httpUrl });
    expect(plain).toEqual({ lines: 3, batches: 2, statements: 2 });
    const text = await exportText(second, 'hand');
    expect(text).toBe(
      [
        '# DML',
        '# CONTEXT-DATABASE: hand',
        '# CONTEXT-RETENTION-POLICY: autogen',
        'weather,city=Bern n=3i,temp=2 1000000000000000001',
        'weather,city=Z\\,rich temp=1.5,text="a \\"b\\"" 1000000000000000000',
        '# CONTEXT-RETENTION-POLICY: short',
        'weather,city=Bern temp=3 1000000000000000002',
        '',
      ].join('\n'),
    );
    // Gzipped input is detected by its magic bytes; `database` redirects every point.
    const zipped = await importLineProtocol(gzip(fromBytes(file.replace(/CREATE .*\n/g, ''))), {
      httpUrl: second.httpUrl,
      database: 'hand2',
      retentionPolicy: 'autogen',
      createDatabase: true,
      precision: 'ns',
    });
    expect(zipped).toEqual({ lines: 3, batches: 2, statements: 0 });
    expect(await countOf(second, 'hand2', 'weather')).toEqual({
      results: [
        {
          statement_id: 0,
          series: [
            {
              name: 'weather',
              columns: ['time', 'count_n', 'count_temp', 'count_text'],
              values: [['1970-01-01T00:00:00Z', 1, 3, 1]],
            },
          ],
        },
      ],
    });
    // Round trip through gunzip to check the detector leaves plain input alone.
    expect(new TextDecoder().decode(await collect(gunzip(gzip(fromBytes(file)))))).toBe(file);
  });

  it('cuts lines across any chunking, keeps batches within batchBytes and sends a longer line alone', async () => {
    const long = `big,k=v s="${'x'.repeat(70_000)}" 1000000000000000000`;
    const lines = [
      ...Array.from(
        { length: 3_000 },
        (_, index) => `m,h=h${index % 7} v=${index}i ${1_000_000_000_000_000_000n + BigInt(index)}`,
      ),
      long,
      'm,h=é v=-1i 999999999999999999',
    ];
    const text = `${lines.join('\r\n')}\n\n`;
    const bytes = new TextEncoder().encode(text);
    async function* pieces(): AsyncIterable<Uint8Array> {
      // Uneven chunks: lines, the é and the \r\n all end up split between two chunks somewhere.
      for (
        let offset = 0, size = 1;
        offset < bytes.byteLength;
        offset += size, size = (size * 7 + 3) % 997 || 1
      )
        yield bytes.slice(offset, offset + size);
    }
    const result = await importLineProtocol(pieces(), {
      httpUrl: second.httpUrl,
      database: 'chunked',
      createDatabase: true,
      batchBytes: 64 * 1024,
    });
    expect(result.lines).toBe(3_002);
    // 3,000 lines of ~40 bytes fit in two 64 KiB batches; the 70 kB line goes alone.
    expect(result.batches).toBeGreaterThanOrEqual(3);
    expect(await countOf(second, 'chunked', 'm')).toMatchObject({
      results: [{ series: [{ values: [['1970-01-01T00:00:00Z', 3_001]] }] }],
    });
    const big = (await query(second, 'SELECT s FROM big', 'chunked')) as {
      results: { series: { values: unknown[][] }[] }[];
    };
    expect(String(big.results[0]!.series[0]!.values[0]![1])).toBe('x'.repeat(70_000));
    const accent = (await query(second, `SELECT v FROM m WHERE h = 'é'`, 'chunked')) as {
      results: { series: { values: unknown[][] }[] }[];
    };
    expect(accent.results[0]!.series[0]!.values).toEqual([['2001-09-09T01:46:39.999999999Z', -1]]);
  });
});
