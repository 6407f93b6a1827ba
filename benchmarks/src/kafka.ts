/**
 * Speed and peak memory of `bk backup` and `bk restore` of one Kafka partition (default 1 GiB of
 * records) beside kcat on the same records: `kcat -C … | gzip` for the backup, `kcat -P` for the
 * restore. The brokers are test brokers (`@bk/test-servers`' Kafka double), each in its own
 * process; records are produced with kcat before any timing starts. Needs the built CLI
 * (`pnpm --filter @bk/cli... run build`) and kcat.
 *
 *   node src/kafka.ts [--size-mib 1024] [--dir /tmp/bk-bench-kafka]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type Measurement, measure } from './measure.ts';

const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' },
    dir: { type: 'string', default: join(tmpdir(), 'bk-bench-kafka') },
  },
});
const sizeMiB = Number(values['size-mib']);
const work = resolve(values.dir!);
const bk = resolve(import.meta.dirname, '../../packages/cli/dist/bin.js');
const brokers: ChildProcess[] = [];

async function startBroker(): Promise<string> {
  const child = spawn(process.execPath, [resolve(import.meta.dirname, 'kafka-broker.ts')], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  brokers.push(child);
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  return line.toString().trim();
}

await rm(work, { recursive: true, force: true });
await mkdir(join(work, 'peers'), { recursive: true });
const [source, peerTarget, bkTarget] = [await startBroker(), await startBroker(), await startBroker()];

// Records: a key and a JSON value of ~1 KiB, half of it random (so ~60 % compressible).
const records = join(work, 'records.txt');
console.error(`generating ${sizeMiB} MiB of records …`);
const out = createWriteStream(records);
let written = 0;
for (let index = 0; written < sizeMiB * 2 ** 20; index += 1) {
  const line = `order-${index}\t{"id":${index},"customer":"customer-${index % 5000}","status":"shipped","items":[{"sku":"sku-${index % 977}","quantity":${index % 7}}],"note":"${randomBytes(384).toString('base64')}","padding":"${'x'.repeat(400)}"}\n`;
  written += line.length;
  if (!out.write(line)) await once(out, 'drain');
}
out.end();
await once(out, 'finish');
const produce = (broker: string) =>
  `kcat -b ${broker} -P -t bench -p 0 -K '\t' -X queue.buffering.max.kbytes=65536 < ${records}`;
console.error('producing them to the source broker …');
await measure(produce(source));

const rows: Array<{ label: string; peer?: string; result: Measurement }> = [];
const run = async (label: string, command: string, peer?: string) => {
  console.error(`running: ${label}`);
  rows.push({ label, ...(peer ? { peer } : {}), result: await measure(command) });
};
await writeFile(
  join(work, 'source.json'),
  JSON.stringify({ components: [{ kind: 'kafka', brokers: [source] }] }),
);
await writeFile(
  join(work, 'target.json'),
  JSON.stringify({ components: [{ kind: 'kafka', brokers: [bkTarget] }] }),
);
const target = `file://${work}/bk`;
const backupPeer = 'kcat -C … │ gzip -6 > file';
await run(
  backupPeer,
  `kcat -b ${source} -C -t bench -p 0 -o beginning -e -q -f '%k\\t%s\\n' | gzip -6 > ${work}/peers/bench.gz`,
);
await run(
  'bk backup (file://)',
  `node ${bk} backup --quiet --config ${work}/source.json --target ${target}`,
  backupPeer,
);
const restorePeer = 'kcat -P < file';
await run(restorePeer, produce(peerTarget));
await run(
  'bk restore',
  `node ${bk} restore latest --quiet --config ${work}/target.json --target ${target}`,
  restorePeer,
);

for (const child of brokers) child.stdin!.end();
const byLabel = new Map(rows.map((row) => [row.label, row.result]));
const lines = [
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}. One partition of ${sizeMiB} MiB of records (key + ~1 KiB JSON value, half random), on Kafka test brokers in their own processes.`,
  '',
  '| command | seconds | MB/s of records | CPU s | peak RSS MiB | speed vs peer |',
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
