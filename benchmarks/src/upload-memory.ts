/**
 * Peak memory of a 1 GiB upload through each cloud adapter against its local server (S3 on
 * Swift's s3api, Swift, Azure Blob on Azurite), beside `aws s3 cp` of the same file to the same
 * server. Checks the documented ceiling: growth over the warmed-up process ≤ concurrency × part
 * size + 64 MiB. The file is generated before any timing.
 *
 *   node src/upload-memory.ts [--size-mib 1024]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startAzurite, startSwift } from '@bk/test-servers';
import { measure } from './measure.ts';

const { values } = parseArgs({ options: { 'size-mib': { type: 'string', default: '1024' } } });
const sizeMiB = Number(values['size-mib']);
const MiB = 2 ** 20;
const work = await mkdtemp(join(tmpdir(), 'bk-upload-bench-'));
const file = join(work, 'data.bin');
console.error(`generating ${sizeMiB} MiB of random bytes …`);
const handle = await open(file, 'w');
for (let index = 0; index < sizeMiB; index += 1) await handle.write(randomBytes(MiB));
await handle.close();
spawnSync('sync');

const swift = await startSwift();
const azurite = await startAzurite();
const partSize = 8 * MiB;
const concurrency = 4;
const child = resolve(import.meta.dirname, 'upload-child.ts');
const rows: string[] = [];
try {
  const s3 = swift.s3;
  execFileSync('/usr/bin/aws', ['--endpoint-url', s3.endpoint, 's3', 'mb', 's3://bench'], {
    env: {
      ...process.env,
      AWS_ACCESS_KEY_ID: s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
      AWS_DEFAULT_REGION: s3.region,
    },
  });
  const runs: Array<{ label: string; adapter: string; options: Record<string, unknown> }> = [
    {
      label: 'bk S3Storage → Swift s3api',
      adapter: 's3',
      options: {
        bucket: 'bench',
        endpoint: s3.endpoint,
        region: s3.region,
        forcePathStyle: true,
        credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
        partSize,
        concurrency,
      },
    },
    {
      label: 'bk SwiftStorage → Swift (SLO)',
      adapter: 'swift',
      options: {
        container: 'bench',
        auth: { kind: 'v1', authUrl: swift.authUrl, user: swift.user, key: swift.key },
        segmentSize: partSize,
        concurrency,
      },
    },
    {
      label: 'bk AzureStorage → Azurite',
      adapter: 'azure',
      options: {
        container: 'bench',
        connectionString: azurite.connectionString,
        blockSize: partSize,
        concurrency,
        createContainer: true,
      },
    },
  ];
  rows.push(
    '| upload of the same file | seconds | MB/s | peak RSS MiB | growth over warmed-up process MiB | ceiling: concurrency × part + 64 MiB | holds |',
  );
  rows.push('|---|---:|---:|---:|---:|---:|---|');
  const ceiling = (concurrency * partSize) / MiB + 64;
  for (const run of runs) {
    console.error(`running: ${run.label}`);
    const output = execFileSync(
      process.execPath,
      [
        child,
        JSON.stringify({ adapter: run.adapter, options: run.options, file, key: `bench-${run.adapter}` }),
      ],
      {
        encoding: 'utf8',
        maxBuffer: 1024 * 1024,
      },
    );
    const result = JSON.parse(output.trim().split('\n').at(-1)!) as {
      baselineMiB: number;
      peakMiB: number;
      seconds: number;
    };
    const growth = result.peakMiB - result.baselineMiB;
    rows.push(
      `| ${run.label} | ${result.seconds.toFixed(1)} | ${((sizeMiB * 1.048576) / result.seconds).toFixed(0)} | ${result.peakMiB.toFixed(0)} | ${growth.toFixed(0)} | ${ceiling.toFixed(0)} | ${growth <= ceiling ? 'yes' : 'NO'} |`,
    );
  }
  console.error('running: aws s3 cp');
  const peer = await measure(
    `/usr/bin/aws --endpoint-url ${s3.endpoint} s3 cp ${file} s3://bench/peer.bin --only-show-errors`,
    {
      ...process.env,
      AWS_ACCESS_KEY_ID: s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
      AWS_DEFAULT_REGION: s3.region,
    },
  );
  rows.push(
    `| aws s3 cp (aws-cli 2, 8 MiB parts, 10 in flight) → Swift s3api | ${peer.seconds.toFixed(1)} | ${((sizeMiB * 1.048576) / peer.seconds).toFixed(0)} | ${peer.peakRssMiB.toFixed(0)} | | | |`,
  );
} finally {
  await swift.stop();
  await azurite.stop();
  await rm(work, { recursive: true, force: true });
}
console.log(
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}. ${sizeMiB} MiB of random bytes; part size 8 MiB, 4 parts in flight; client and server share the 2 cores.\n`,
);
console.log(rows.join('\n'));
