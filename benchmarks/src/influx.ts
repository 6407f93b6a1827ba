/**
 * Speed and memory of bk's InfluxDB 1.x paths side by side with InfluxDB's own tools, on the same
 * generated data in one run, against one private `influxd` (started with `startInfluxd()`):
 *
 * - import of one gzipped line-protocol file into a fresh database: `influx -import -compressed`
 *   vs bk's `importLineProtocol` (a tiny script run with node);
 * - portable backup of that database: `influxd backup -portable` vs `bk backup` with an influx
 *   component, to a local directory;
 * - restore under a new name: `influxd restore -portable -db … -newdb …` vs `bk restore` with
 *   `restore.newDatabase`;
 * - merge into an existing database: `bk restore --conflict overwrite` with `restore.intoExisting`
 *   (temporary database, line-protocol export and import) vs `influx -import` of the same points
 *   into an existing database, the stock way to merge.
 *
 * Data: `--points` points over 5 measurements, 2,000 series and 30 days (one-day shards), mixed
 * field types (floats, integers, booleans, strings), streamed into one gzipped line-protocol file
 * before any timing starts; never held in memory. Every database is counted per measurement and
 * field after each row. Only the client processes are measured: the server's work (parsing
 * writes, serving shards) is not in their CPU or RSS.
 *
 *   node src/influx.ts [--points 2000000] [--dir /tmp/bk-bench-influx]
 *     [--only import,restore,merge]   (the import peer and both backups always run)
 */
import { spawnSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { createGzip } from 'node:zlib';
import { startInfluxd } from '@bk/test-servers';
import { type Measurement, measure } from './measure.ts';

const { values } = parseArgs({
  options: {
    points: { type: 'string', default: '2000000' },
    dir: { type: 'string', default: join(tmpdir(), 'bk-bench-influx') },
    only: { type: 'string' },
  },
});
const points = Number(values.points);
const only = values.only === undefined ? undefined : new Set(values.only.split(','));
const work = resolve(values.dir!);
const wanted = (row: string) => only === undefined || only.has(row);
const root = resolve(import.meta.dirname, '../..');
const bk = join(root, 'packages/cli/dist/bin.js');
const influxDist = join(root, 'packages/influx/dist/index.js');

const DAYS = 30;
const SERIES_PER_MEASUREMENT = 400;
const MEASUREMENTS: Array<{ name: string; fields: (index: number, random: () => number) => string }> = [
  {
    name: 'cpu',
    fields: (i, r) =>
      `usage_user=${(r() * 100).toFixed(2)},usage_system=${(r() * 20).toFixed(3)},idle=${(r() * 100).toFixed(1)},procs=${i % 512}i`,
  },
  {
    name: 'mem',
    fields: (i, r) =>
      `used=${Math.floor(r() * 2 ** 34)}i,free=${Math.floor(r() * 2 ** 33)}i,pct=${(r() * 100).toFixed(4)},swapping=${i % 7 === 0}`,
  },
  {
    name: 'disk',
    fields: (_index, r) =>
      `read_bytes=${Math.floor(r() * 1e9)}i,write_bytes=${Math.floor(r() * 1e9)}i,latency=${r().toFixed(6)},healthy=${r() > 0.01}`,
  },
  {
    name: 'net',
    fields: (i, r) =>
      `rx=${Math.floor(r() * 1e7)}i,tx=${Math.floor(r() * 1e7)}i,errors=${i % 13}i,state="${['up', 'down', 'degraded'][i % 3]}"`,
  },
  {
    name: 'app',
    fields: (i, r) =>
      `latency_ms=${(r() * 500).toFixed(2)},requests=${i}i,status="${['ok', 'warn', 'error', 'ok'][i % 4]}",cached=${i % 2 === 0}`,
  },
];
const SERIES = MEASUREMENTS.length * SERIES_PER_MEASUREMENT;
const start = BigInt(Date.parse('2026-10-01T00:00:00Z')) * 1_000_000n;
const spanNs = BigInt(DAYS) * 86_400_000_000_000n;
const rounds = Math.ceil(points / SERIES);
const stepNs = spanNs / BigInt(rounds);

/** `points` lines in time order: every series once per round, rounds spread over 30 days. */
async function* lineProtocol(database: string, create: boolean): AsyncIterable<string> {
  yield `${create ? `# DDL\nCREATE DATABASE ${database}\n` : ''}# DML\n# CONTEXT-DATABASE: ${database}\n`;
  let seed = 0x9e3779b9;
  const random = () => {
    // xorshift32: reproducible, cheap, and values that do not compress to nothing in TSM.
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };
  let batch: string[] = [];
  for (let index = 0; index < points; index += 1) {
    const series = index % SERIES;
    const round = Math.floor(index / SERIES);
    const measurement = MEASUREMENTS[series % MEASUREMENTS.length]!;
    const host = Math.floor(series / MEASUREMENTS.length);
    const time = start + BigInt(round) * stepNs + BigInt(series) * 1000n;
    batch.push(
      `${measurement.name},host=host${host},region=r${host % 8},rack=k${host % 20} ${measurement.fields(index, random)} ${time}`,
    );
    if (batch.length === 10_000) {
      yield `${batch.join('\n')}\n`;
      batch = [];
    }
  }
  if (batch.length > 0) yield `${batch.join('\n')}\n`;
}

async function influxQuery(httpUrl: string, query: string, database?: string): Promise<unknown> {
  const params = new URLSearchParams({ q: query, ...(database ? { db: database } : {}) });
  const response = await fetch(`${httpUrl}/query?${params}`, { method: 'POST' });
  if (!response.ok) throw new Error(`${query}: HTTP ${response.status} ${await response.text()}`);
  return response.json();
}

/** Points per measurement and field: `{ "cpu.idle": n, … }`. */
async function counts(httpUrl: string, database: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const { name } of MEASUREMENTS) {
    const body = (await influxQuery(httpUrl, `SELECT count(*) FROM "${name}"`, database)) as {
      results: Array<{ series?: Array<{ columns: string[]; values: number[][] }> }>;
    };
    const series = body.results[0]?.series?.[0];
    series?.columns.forEach((column, index) => {
      if (column !== 'time') out[`${name}.${column.replace(/^count_/, '')}`] = series.values[0]![index]!;
    });
  }
  return out;
}

function total(count: Record<string, number>): number {
  // Every measurement has a field present in every point: its count is the measurement's points.
  return ['cpu.procs', 'mem.used', 'disk.read_bytes', 'net.rx', 'app.requests'].reduce(
    (sum, key) => sum + (count[key] ?? 0),
    0,
  );
}

await rm(work, { recursive: true, force: true });
await mkdir(work, { recursive: true });
const server = await startInfluxd();
try {
  const file = join(work, 'metrics.lp.gz');
  console.error(`generating ${points} points in ${file} …`);
  await pipeline(
    Readable.from(lineProtocol('imp_influx', true)),
    createGzip({ level: 6 }),
    createWriteStream(file),
  );
  // The same points for the merge peer, into a database that exists already.
  const mergeFile = join(work, 'merge.lp.gz');
  if (wanted('merge')) {
    await pipeline(
      Readable.from(lineProtocol('merge_influx', false)),
      createGzip({ level: 6 }),
      createWriteStream(mergeFile),
    );
  }
  const importScript = join(work, 'bk-import.mjs');
  await writeFile(
    importScript,
    `import { createReadStream } from 'node:fs';
const { importLineProtocol } = await import(${JSON.stringify(pathToFileURL(influxDist).href)});
const result = await importLineProtocol(createReadStream(${JSON.stringify(file)}), {
  httpUrl: ${JSON.stringify(server.httpUrl)}, database: process.argv[2], createDatabase: true, precision: 'ns',
});
if (result.lines !== ${points}) throw new Error('imported ' + result.lines + ' lines');
`,
  );
  const component = (extra: Record<string, unknown>) => ({
    kind: 'influx',
    name: 'influx',
    host: server.host,
    rpcPort: server.rpcPort,
    httpUrl: server.httpUrl,
    database: 'imp_influx',
    ...extra,
  });
  const configFile = async (name: string, extra: Record<string, unknown> = {}) => {
    const path = join(work, `${name}.config.json`);
    await writeFile(path, JSON.stringify({ components: [component(extra)] }));
    return path;
  };
  const backupConfig = await configFile('backup');
  const restoreConfig = await configFile('restore', { restore: { newDatabase: 'rest_bk' } });
  const mergeConfig = await configFile('merge', { restore: { newDatabase: 'merge_bk', intoExisting: true } });

  const rows: Array<{ label: string; peer?: string; result: Measurement }> = [];
  const run = async (label: string, command: string, peer?: string) => {
    console.error(`running: ${label}`);
    rows.push({ label, ...(peer ? { peer } : {}), result: await measure(command) });
  };
  let expected: Record<string, number> | undefined;
  const check = async (database: string) => {
    let count = await counts(server.httpUrl, database);
    // A restored shard's index is rebuilt after the upload ends: give the server a moment.
    for (
      let waited = 0;
      expected && JSON.stringify(count) !== JSON.stringify(expected) && waited < 30;
      waited += 1
    ) {
      await new Promise((done) => setTimeout(done, 1000));
      count = await counts(server.httpUrl, database);
    }
    expected ??= count;
    console.error(`points in ${database}: ${total(count)}`);
    if (total(count) !== points || JSON.stringify(count) !== JSON.stringify(expected)) {
      throw new Error(`${database} holds ${JSON.stringify(count)}, expected ${JSON.stringify(expected)}`);
    }
  };

  const importPeer = 'influx -import -compressed (peer)';
  await run(
    importPeer,
    `influx -host 127.0.0.1 -port ${server.httpPort} -import -path ${file} -compressed -precision ns > /dev/null`,
  );
  await check('imp_influx');
  if (wanted('import')) {
    await run('bk importLineProtocol', `node ${importScript} imp_bk`, importPeer);
    await check('imp_bk');
  }

  // Untimed: the first backup flushes the cache into TSM files; neither timed run should pay for it.
  await measure(
    `influxd backup -portable -database imp_influx -host ${server.rpcAddress} ${work}/warm-up > /dev/null 2>&1`,
  );
  const backupPeer = 'influxd backup -portable (peer)';
  await run(
    backupPeer,
    `influxd backup -portable -database imp_influx -host ${server.rpcAddress} ${work}/peer-backup > /dev/null 2>&1`,
  );
  await run(
    'bk backup (influx component, file://)',
    `node ${bk} backup --quiet --config ${backupConfig} --target file://${work}/bk-backup`,
    backupPeer,
  );

  if (wanted('restore')) {
    const restorePeer = 'influxd restore -portable -newdb (peer)';
    await run(
      restorePeer,
      `influxd restore -portable -host ${server.rpcAddress} -db imp_influx -newdb rest_influx ${work}/peer-backup > /dev/null 2>&1`,
    );
    await check('rest_influx');
    await run(
      'bk restore (new database)',
      `node ${bk} restore --quiet --config ${restoreConfig} --target file://${work}/bk-backup`,
      restorePeer,
    );
    await check('rest_bk');
    await influxQuery(server.httpUrl, 'DROP DATABASE rest_influx');
    await influxQuery(server.httpUrl, 'DROP DATABASE rest_bk');
  }

  if (wanted('merge')) {
    // Both targets exist and hold a point of their own, which a merge keeps.
    for (const database of ['merge_influx', 'merge_bk']) {
      await influxQuery(server.httpUrl, `CREATE DATABASE ${database}`);
      const response = await fetch(`${server.httpUrl}/write?db=${database}`, {
        method: 'POST',
        body: 'marker value=1 1700000000000000000',
      });
      if (response.status !== 204) throw new Error(`marker write: ${response.status}`);
    }
    const mergePeer = 'influx -import into an existing database (peer)';
    await run(
      mergePeer,
      `influx -host 127.0.0.1 -port ${server.httpPort} -import -path ${mergeFile} -compressed -precision ns > /dev/null`,
    );
    await check('merge_influx');
    await run(
      'bk restore --conflict overwrite (merge into existing)',
      `node ${bk} restore --quiet --conflict overwrite --config ${mergeConfig} --target file://${work}/bk-backup`,
      mergePeer,
    );
    await check('merge_bk');
  }

  const du = (dir: string) =>
    Number(spawnSync('du', ['-sb', dir], { encoding: 'utf8' }).stdout.split('\t')[0]) / 2 ** 20;
  const sizes = new Map([
    ['gzipped line protocol', du(file)],
    [backupPeer, du(`${work}/peer-backup`)],
    ['bk backup (influx component, file://)', du(`${work}/bk-backup`)],
  ]);
  const byLabel = new Map(rows.map((row) => [row.label, row.result]));
  const lines = [
    `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}; influxd and the clients share the cores. Data: ${points.toLocaleString('en-US')} points (${MEASUREMENTS.length} measurements, ${SERIES.toLocaleString('en-US')} series, 4 fields each of mixed types, ${DAYS} one-day shards), one gzipped line-protocol file.`,
    '',
    '| command | seconds | points/s | CPU s (client) | peak RSS MiB (client) | speed vs peer | CPU vs peer |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...rows.map(({ label, peer, result }) => {
      const peerResult = peer ? byLabel.get(peer) : undefined;
      const ratio = peerResult ? `${(peerResult.seconds / result.seconds).toFixed(2)}×` : '';
      const cpu = peerResult ? `${(result.cpuSeconds / peerResult.cpuSeconds).toFixed(2)}×` : '';
      return `| ${label} | ${result.seconds.toFixed(1)} | ${Math.round(points / result.seconds).toLocaleString('en-US')} | ${result.cpuSeconds.toFixed(1)} | ${result.peakRssMiB.toFixed(0)} | ${ratio} | ${cpu} |`;
    }),
  ];
  lines.push('', ...[...sizes].map(([what, mib]) => `- ${what}: ${mib.toFixed(1)} MiB`));
  console.log(lines.join('\n'));
} finally {
  await server.stop();
  await rm(work, { recursive: true, force: true });
}
