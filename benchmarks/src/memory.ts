/**
 * Peak memory and speed of `bk backup` / `bk verify` / `bk restore` on a generated directory
 * (default 2 GiB), side by side with `tar | gzip` and, when installed, `tar | pigz` and
 * `tar | zstd`, on the same data in one run. Data is generated before any timing starts.
 *
 *   node src/memory.ts [--size-mib 2048] [--dir /tmp/bk-bench]
 */
import { spawnSync } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { generateTree } from './generate.ts';
import { type Measurement, measure } from './measure.ts';

const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '2048' },
    dir: { type: 'string', default: join(tmpdir(), 'bk-bench') },
  },
});
const sizeMiB = Number(values['size-mib']);
const work = resolve(values.dir!);
const bk = resolve(import.meta.dirname, '../../packages/cli/dist/bin.js');
const has = (tool: string) => spawnSync('bash', ['-c', `command -v ${tool}`]).status === 0;

await rm(work, { recursive: true, force: true });
const data = join(work, 'data');
console.error(`generating ${sizeMiB} MiB in ${data} …`);
await generateTree(data, sizeMiB);
spawnSync('sync');

const rows: Array<{ label: string; peer?: string; result: Measurement }> = [];
/** Runs and records a command; `peer` names the row its speed is compared with. */
const run = async (label: string, command: string, peer?: string) => {
  console.error(`running: ${label}`);
  rows.push({ label, ...(peer ? { peer } : {}), result: await measure(command) });
};

await mkdir(join(work, 'peers'), { recursive: true });
const gzipPeer = 'tar │ gzip -6 > file';
await run(gzipPeer, `tar -cf - -C ${data} . | gzip -6 > ${work}/peers/data.tar.gz`);
if (has('pigz')) {
  await run(
    'tar │ pigz -p2 -6 > file',
    `tar -cf - -C ${data} . | pigz -p2 -6 > ${work}/peers/data-pigz.tar.gz`,
  );
}
if (has('zstd')) {
  await run(
    'tar │ zstd -3 -T2 > file',
    `tar -cf - -C ${data} . | zstd -q -3 -T2 > ${work}/peers/data.tar.zst`,
  );
}
const target = `file://${work}/bk`;
await run('bk backup (file://)', `node ${bk} backup --quiet --path ${data} --target ${target}`, gzipPeer);
await run('gzip -t (verify peer)', `gzip -t ${work}/peers/data.tar.gz`);
await run('bk verify', `node ${bk} verify latest --quiet --target ${target}`, 'gzip -t (verify peer)');
await run(
  'tar -xzf (restore peer)',
  `mkdir -p ${work}/peer-restore && tar -xzf ${work}/peers/data.tar.gz -C ${work}/peer-restore`,
);
await run(
  'bk restore',
  `node ${bk} restore latest --quiet --target ${target} --to ${work}/restored`,
  'tar -xzf (restore peer)',
);

const byLabel = new Map(rows.map((row) => [row.label, row.result]));
const lines = [
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}. Data: ${sizeMiB} MiB (¾ line protocol, ¼ random, 2,000 small files).`,
  '',
  '| command | seconds | MB/s of input | CPU s | peak RSS MiB | speed vs peer |',
  '|---|---:|---:|---:|---:|---:|',
  ...rows.map(({ label, peer, result }) => {
    const peerResult = peer ? byLabel.get(peer) : undefined;
    const ratio = peerResult ? `${(peerResult.seconds / result.seconds).toFixed(2)}× ${peer}` : '';
    return `| ${label} | ${result.seconds.toFixed(1)} | ${((sizeMiB * 1.048576) / result.seconds).toFixed(0)} | ${result.cpuSeconds.toFixed(1)} | ${result.peakRssMiB.toFixed(0)} | ${ratio} |`;
  }),
];
console.log(lines.join('\n'));
const peak = Math.max(
  ...rows.filter((row) => row.label.startsWith('bk ')).map((row) => row.result.peakRssMiB),
);
console.log(`\nbk peak RSS: ${peak.toFixed(0)} MiB (ceiling 150 MiB: ${peak <= 150 ? 'holds' : 'EXCEEDED'})`);
await rm(work, { recursive: true, force: true });
if (peak > 150) process.exitCode = 1;
