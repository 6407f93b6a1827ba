/**
 * Speed and memory of bk's InfluxDB 1.x paths side by side with InfluxDB's own tools, on the same
 * generated data in one run, against one private `influxd` (started with `startInfluxd()`):
 *
 * - import of one gzipped line-protocol file into a fresh database: `influx -import -compressed`
 *   vs bk's `importLineProtocol` (a tiny script run with node);
 * - portable backup of that database: `influxd backup -portable` vs `bk backup` with an influx
 *   component, to a local directory.
 *
 * The file is generated before any timing starts. Only the client processes are measured: the
 * server's work (parsing writes, serving shards) is not in their CPU or RSS.
 *
 *   node src/influx.ts [--points 3000000] [--dir /tmp/bk-bench-influx]
 */
import { spawnSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { createGzip } from 'node:zlib';
import { startInfluxd } from '@bk/test-servers';
import { type Measurement, measure } from './measure.ts';

const { values } = parseArgs({
  options: {
    points: { type: 'string', default: '3000000' },
    dir: { type: 'string', default: join(tmpdir(), 'bk-bench-influx') },
  },
});
const points = Number(values.points);
const work = resolve(values.dir!);
const root = resolve(import.meta.dirname, '../..');
const bk = join(root, 'packages/cli/dist/bin.js');
const influxDist = join(root, 'packages/influx/dist/index.js');

/** `points` lines of `cpu` (100 hosts × 4 regions, 4 fields), one point per host per second. */
async function* lineProtocol(database: string): AsyncIterable<string> {
  yield `# DDL\nCREATE DATABASE ${database}\n# DML\n# CONTEXT-DATABASE: ${database}\n`;
  const start = BigInt(Date.parse('2026-11-01T00:00:00Z')) * 1_000_000n;
  let batch: string[] = [];
  for (let index = 0; index < points; index += 1) {
    const host = index % 100;
    const time = start + BigInt(Math.floor(index / 100)) * 1_000_000_000n + BigInt(host);
    batch.push(
      `cpu,host=host${host},region=r${host % 4} usage=${((index * 7919) % 10000) / 100},count=${index}i,idle=${(index % 97) / 3},ok=${index % 2 === 0} ${time}`,
    );
    if (batch.length === 10_000) {
      yield `${batch.join('\n')}\n`;
      batch = [];
    }
  }
  if (batch.length > 0) yield `${batch.join('\n')}\n`;
}

async function count(httpUrl: string, database: string): Promise<number> {
  const url = `${httpUrl}/query?db=${database}&q=${encodeURIComponent('SELECT count(count) FROM cpu')}`;
  const body = (await (await fetch(url)).json()) as {
    results: Array<{ series?: Array<{ values: number[][] }> }>;
  };
  return body.results[0]?.series?.[0]?.values[0]?.[1] ?? 0;
}

await rm(work, { recursive: true, force: true });
await mkdir(work, { recursive: true });
const server = await startInfluxd();
try {
  const file = join(work, 'cpu.lp.gz');
  console.error(`generating ${points} points in ${file} …`);
  await pipeline(lineProtocol('imp_influx'), createGzip({ level: 6 }), createWriteStream(file));
  const importScript = join(work, 'bk-import.mjs');
  await writeFile(
    importScript,
    `import { createReadStream } from 'node:fs';
const { importLineProtocol } = await import(${JSON.stringify(pathToFileURL(influxDist).href)});
const result = await importLineProtocol(createReadStream(${JSON.stringify(file)}), {
  httpUrl: ${JSON.stringify(server.httpUrl)}, database: 'imp_bk', createDatabase: true, precision: 'ns',
});
if (result.lines !== ${points}) throw new Error('imported ' + result.lines + ' lines');
`,
  );
  const config = join(work, 'bk.config.json');
  await writeFile(
    config,
    JSON.stringify({
      components: [
        {
          kind: 'influx',
          host: server.host,
          rpcPort: server.rpcPort,
          httpUrl: server.httpUrl,
          database: 'imp_influx',
        },
      ],
    }),
  );

  const rows: Array<{ label: string; peer?: string; result: Measurement }> = [];
  const run = async (label: string, command: string, peer?: string) => {
    console.error(`running: ${label}`);
    rows.push({ label, ...(peer ? { peer } : {}), result: await measure(command) });
  };

  const importPeer = 'influx -import -compressed (peer)';
  await run(
    importPeer,
    `influx -host 127.0.0.1 -port ${server.httpPort} -import -path ${file} -compressed -precision ns > /dev/null`,
  );
  await run('bk importLineProtocol', `node ${importScript}`, importPeer);
  const [peerCount, bkCount] = await Promise.all([
    count(server.httpUrl, 'imp_influx'),
    count(server.httpUrl, 'imp_bk'),
  ]);
  console.error(`points in imp_influx: ${peerCount}, in imp_bk: ${bkCount}`);
  if (peerCount !== points || bkCount !== points) throw new Error('an import lost points');

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
    `node ${bk} backup --quiet --config ${config} --target file://${work}/bk-backup`,
    backupPeer,
  );

  const du = (dir: string) =>
    Number(spawnSync('du', ['-sb', dir], { encoding: 'utf8' }).stdout.split('\t')[0]) / 2 ** 20;
  const sizes = new Map([
    ['gzipped line protocol', du(file)],
    [backupPeer, du(`${work}/peer-backup`)],
    ['bk backup (influx component, file://)', du(`${work}/bk-backup`)],
  ]);
  const byLabel = new Map(rows.map((row) => [row.label, row.result]));
  const lines = [
    `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}; influxd and the clients share the cores. Data: ${points.toLocaleString('en-US')} points (one measurement, 100 series, 4 fields), one gzipped line-protocol file.`,
    '',
    '| command | seconds | points/s | CPU s (client) | peak RSS MiB (client) | speed vs peer |',
    '|---|---:|---:|---:|---:|---:|',
    ...rows.map(({ label, peer, result }) => {
      const peerResult = peer ? byLabel.get(peer) : undefined;
      const ratio = peerResult ? `${(peerResult.seconds / result.seconds).toFixed(2)}× ${peer}` : '';
      return `| ${label} | ${result.seconds.toFixed(1)} | ${Math.round(points / result.seconds).toLocaleString('en-US')} | ${result.cpuSeconds.toFixed(1)} | ${result.peakRssMiB.toFixed(0)} | ${ratio} |`;
    }),
  ];
  lines.push('', ...[...sizes].map(([what, mib]) => `- ${what}: ${mib.toFixed(1)} MiB`));
  console.log(lines.join('\n'));
} finally {
  await server.stop();
  await rm(work, { recursive: true, force: true });
}
