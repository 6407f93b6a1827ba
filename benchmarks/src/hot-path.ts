/**
 * The hot path, end to end and stage by stage: backup of a directory to S3, restore from S3 and
 * the compression stage alone, bk beside the peer tools, on the same generated data and the same
 * local S3 server (Swift with s3api), in one run. Prints a Markdown table with ratios and an
 * acceptance block, and writes both plus the raw results (JSON) to `<dir>/results/`.
 *
 *   node src/hot-path.ts [--sizes 256,1024,8192] [--kinds lp,random,tree] [--dir /var/tmp/bk-bench]
 *                        [--quick] [--keep] [--no-build] [--all-rows] [--estimate]
 *
 * Encrypted rows (bk backup --recipient, bk restore --identity, and tar│pigz│age│aws and its
 * restore as peers) sit beside the unencrypted ones; their ratio to those is what encryption costs.
 *
 * Default plan: line protocol at 256 MiB; line protocol, random bytes and a mixed tree at 1 GiB
 * (every row); the mixed tree at 8 GiB for the memory rows only (bk backup and restore, the
 * pigz pipeline and the restore peer). `--sizes` / `--kinds` run their cross product instead
 * (sizes ≥ 4096 MiB get only the memory rows unless `--all-rows`); `--quick` shrinks the default
 * plan to 64 MiB (and 128 MiB for the memory-only cell). All data is generated before the first
 * timed command (`--estimate` prints the plan and its expected duration and exits); every input is read once just before each timed command (the page cache cannot
 * be dropped here), and the share of it resident in the cache is recorded. Compression-stage rows,
 * runs of a few seconds, are medians of runs taken in turn (see compressionRounds); every other
 * row is one run.
 */
import { execFileSync, type SpawnOptions, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { cpus, totalmem } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, type SwiftServer, startSwift } from '@bk/test-servers';
import { DATA_KINDS, type DataKind, generateData, treeSize } from './hot-path-data.ts';
import { measureTree, type TreeMeasurement } from './measure.ts';

const MiB = 2 ** 20;
const repoRoot = resolve(import.meta.dirname, '../..');
const bk = join(repoRoot, 'packages/cli/dist/bin.js');
/**
 * The compression-stage child, built to JavaScript (`pnpm --filter @bk/benchmarks build`) as bk
 * itself ships: run from its TypeScript source, Node's type stripping adds ~0.05 s of start-up
 * to every run, 2 % of a 256 MiB one.
 */
const compressChildSource = resolve(import.meta.dirname, 'hot-path-compress.ts');
const compressChild = resolve(import.meta.dirname, '../dist/hot-path-compress.js');
/**
 * Runs of each compression-stage row; the table shows the median (see timedMedian). Runs on
 * 256 MiB or less last 1–8 s, where one slow moment of the machine moves a run by 10 %: five.
 */
function compressionRounds(sizeMiB: number): number {
  return sizeMiB <= 256 ? 5 : 3;
}
const AWS = '/usr/bin/aws';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string' },
    kinds: { type: 'string' },
    dir: { type: 'string', default: '/var/tmp/bk-bench' },
    quick: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'no-build': { type: 'boolean', default: false },
    'all-rows': { type: 'boolean', default: false },
    estimate: { type: 'boolean', default: false },
  },
});
const scratch = resolve(values.dir!);

// ---------------------------------------------------------------------------------------------
// The plan

interface Cell {
  id: string;
  kind: DataKind;
  sizeMiB: number;
  /** Only the memory rows: bk backup + restore, the pigz pipeline and the restore peer. */
  memoryOnly: boolean;
  data: string;
  tar: string;
  inputBytes: number;
  files: number;
  tarBytes: number;
}

const KIND_NAMES: Record<DataKind, string> = {
  lp: 'InfluxDB line protocol (256 MiB .lp files)',
  random: 'random bytes (64 MiB files)',
  tree: 'mixed tree (¾ line protocol in 64 MiB files, ¼ random in 32 MiB files, 2,000 small files)',
};

function planCells(): Array<Pick<Cell, 'kind' | 'sizeMiB' | 'memoryOnly'>> {
  const kinds = values.kinds
    ? values.kinds.split(',').map((kind) => {
        if (!DATA_KINDS.includes(kind as DataKind))
          throw new Error(`unknown kind "${kind}" (lp, random, tree)`);
        return kind as DataKind;
      })
    : undefined;
  if (values.sizes) {
    const sizes = values.sizes.split(',').map((size) => {
      const mib = Number(size);
      if (!Number.isInteger(mib) || mib < 16) throw new Error(`--sizes takes MiB ≥ 16; got "${size}"`);
      return mib;
    });
    return sizes.flatMap((sizeMiB) =>
      (kinds ?? DATA_KINDS).map((kind) => ({
        kind,
        sizeMiB,
        memoryOnly: sizeMiB >= 4096 && !values['all-rows'],
      })),
    );
  }
  const [small, full, large] = values.quick ? [64, 64, 128] : [256, 1024, 8192];
  const cells = [
    { kind: 'lp' as const, sizeMiB: small, memoryOnly: false },
    ...(small === full ? [] : [{ kind: 'lp' as const, sizeMiB: full, memoryOnly: false }]),
    { kind: 'random' as const, sizeMiB: full, memoryOnly: false },
    { kind: 'tree' as const, sizeMiB: full, memoryOnly: false },
    { kind: 'tree' as const, sizeMiB: large, memoryOnly: !values['all-rows'] },
  ];
  return cells.filter((cell) => !kinds || kinds.includes(cell.kind));
}

type RowId =
  | 'gzip-pipe'
  | 'pigz-pipe'
  | 'restic'
  | 'bk-gzip'
  | 'bk-zstd'
  | 'age-pipe'
  | 'bk-gzip-age'
  | 'restore-peer'
  | 'bk-restore'
  | 'restore-age-peer'
  | 'bk-restore-age'
  | 'c-bk-gzip'
  | 'c-pigz'
  | 'c-node'
  | 'c-gzip'
  | 'c-bk-zstd'
  | 'c-zstd';

const ROWS: Record<RowId, { stage: 'backup' | 'restore' | 'compress'; label: string; short: string }> = {
  'gzip-pipe': { stage: 'backup', label: 'tar │ gzip -6 │ aws s3 cp -', short: 'gzip pipeline' },
  'pigz-pipe': { stage: 'backup', label: 'tar │ pigz -p2 -6 │ aws s3 cp -', short: 'pigz pipeline' },
  restic: { stage: 'backup', label: 'restic backup (s3: via TLS proxy)', short: 'restic' },
  'bk-gzip': { stage: 'backup', label: 'bk backup (gzip 6, default workers)', short: 'bk backup' },
  'bk-zstd': { stage: 'backup', label: 'bk backup --compression zstd', short: 'bk backup zstd' },
  'age-pipe': {
    stage: 'backup',
    label: 'tar │ pigz -p2 -6 │ age -r │ aws s3 cp -',
    short: 'pigz│age pipeline',
  },
  'bk-gzip-age': { stage: 'backup', label: 'bk backup --recipient (age)', short: 'bk backup age' },
  'restore-peer': { stage: 'restore', label: 'aws s3 cp - │ pigz -d │ tar x', short: 'aws│pigz -d│tar x' },
  'bk-restore': { stage: 'restore', label: 'bk restore', short: 'bk restore' },
  'restore-age-peer': {
    stage: 'restore',
    label: 'aws s3 cp - │ age -d │ pigz -d │ tar x',
    short: 'aws│age -d│pigz -d│tar x',
  },
  'bk-restore-age': { stage: 'restore', label: 'bk restore --identity (age)', short: 'bk restore age' },
  'c-bk-gzip': { stage: 'compress', label: 'bk compress() gzip 6, default workers', short: 'bk compress' },
  'c-pigz': { stage: 'compress', label: 'pigz -p2 -6', short: 'pigz -p2 -6' },
  'c-node': {
    stage: 'compress',
    label: 'Node zlib, one thread (compress workers: 0)',
    short: 'Node zlib 1 thread',
  },
  'c-gzip': { stage: 'compress', label: 'gzip -6', short: 'gzip -6' },
  'c-bk-zstd': {
    stage: 'compress',
    label: 'bk compress() zstd 3, default workers',
    short: 'bk compress zstd',
  },
  'c-zstd': { stage: 'compress', label: 'zstd -3 -T2', short: 'zstd -3 -T2' },
};
/** The rows each bk row is compared with (speed ratio = peer seconds / bk seconds). */
const PEERS: Partial<Record<RowId, RowId[]>> = {
  'bk-gzip': ['gzip-pipe', 'pigz-pipe', 'restic'],
  'bk-zstd': ['pigz-pipe', 'restic'],
  'bk-restore': ['restore-peer'],
  // Against the unencrypted bk row: the ratio is what encryption costs.
  'bk-gzip-age': ['bk-gzip', 'age-pipe'],
  'bk-restore-age': ['bk-restore', 'restore-age-peer'],
  'c-bk-gzip': ['c-node', 'c-pigz', 'c-gzip'],
  'c-bk-zstd': ['c-zstd'],
};
const MEMORY_ROWS: RowId[] = ['pigz-pipe', 'bk-gzip', 'restore-peer', 'bk-restore'];
const ALL_ROWS = Object.keys(ROWS) as RowId[];

// Expected MB/s of input on an idle 2-core machine (client and Swift sharing the cores), for the
// estimate printed at the start; verification (download, gzip -t, tar -t) counts as a row.
const EXPECTED_MBPS: Record<RowId | 'verify', number> = {
  'gzip-pipe': 45,
  'pigz-pipe': 75,
  restic: 60,
  'bk-gzip': 80,
  'bk-zstd': 100,
  verify: 90,
  'restore-peer': 120,
  'bk-restore': 100,
  'age-pipe': 70,
  'bk-gzip-age': 75,
  'restore-age-peer': 110,
  'bk-restore-age': 90,
  'c-bk-gzip': 85,
  'c-pigz': 85,
  'c-node': 50,
  'c-gzip': 45,
  'c-bk-zstd': 350,
  'c-zstd': 350,
};
const GENERATE_MBPS: Record<DataKind, number> = { lp: 120, random: 400, tree: 150 };
const ROW_OVERHEAD_S = 4;

function rowsOf(cell: Pick<Cell, 'memoryOnly'>): RowId[] {
  return cell.memoryOnly ? MEMORY_ROWS : ALL_ROWS;
}

function estimateSeconds(
  cells: Array<Pick<Cell, 'kind' | 'sizeMiB' | 'memoryOnly'>>,
  build: boolean,
): number {
  let seconds = 15 + (build ? 120 : 0);
  for (const cell of cells) {
    const mb = cell.sizeMiB * 1.048576;
    seconds += mb / GENERATE_MBPS[cell.kind] + (cell.memoryOnly ? 0 : mb / 600);
    const rows = rowsOf(cell);
    const verifications = rows.filter((row) => row === 'bk-gzip' || row === 'bk-zstd').length;
    for (const row of rows)
      seconds +=
        (mb / EXPECTED_MBPS[row] + ROW_OVERHEAD_S) *
        (row.startsWith('c-') ? compressionRounds(cell.sizeMiB) : 1);
    seconds += verifications * (mb / EXPECTED_MBPS.verify + ROW_OVERHEAD_S);
  }
  return seconds;
}

// ---------------------------------------------------------------------------------------------
// Helpers

const q = (text: string) => `'${text.replaceAll("'", `'\\''`)}'`;
const log = (message: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${message}`);

function sh(command: string, env: NodeJS.ProcessEnv = process.env): string {
  return execFileSync('bash', ['-c', `set -o pipefail\n${command}`], {
    env,
    encoding: 'utf8',
    maxBuffer: 64 * MiB,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Newest modification time of the files under `directory`, ms. */
function newest(directory: string): number {
  let latest = 0;
  for (const entry of readdirSync(directory, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) latest = Math.max(latest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return latest;
}

/** Whether a package the benchmark runs has sources newer than its build. */
function staleBuild(): string[] {
  const stale: string[] = [];
  for (const name of ['core', 'files', 'storage-fs', 'storage-s3', 'cli']) {
    const directory = join(repoRoot, 'packages', name);
    const built = join(directory, 'dist/index.js');
    if (!existsSync(built)) {
      stale.push(name);
      continue;
    }
    const sources = Math.max(
      newest(join(directory, 'src')),
      statSync(join(directory, 'package.json')).mtimeMs,
    );
    if (sources > statSync(built).mtimeMs) stale.push(name);
  }
  if (!existsSync(bk)) stale.push('cli (no dist/bin.js)');
  return stale;
}

function warm(path: string): void {
  // Read every byte once (into a pipe, so nothing can skip the read).
  sh(`find ${q(path)} -type f -print0 | xargs -0 -r cat | wc -c > /dev/null`);
}

/** Share of the regular files under `path` resident in the page cache, %. */
function cachedPercent(path: string): number {
  const output = sh(`find ${q(path)} -type f -print0 | xargs -0 -r fincore -b -n -r -o RES,SIZE`);
  let resident = 0;
  let size = 0;
  for (const line of output.trim().split('\n')) {
    const [res, total] = line.trim().split(/\s+/).map(Number);
    resident += res ?? 0;
    size += total ?? 0;
  }
  return size === 0 ? 100 : (100 * resident) / size;
}

interface Verification {
  cell: string;
  row: RowId;
  key: string;
  ok: boolean;
  checks: string;
  error?: string;
}

interface Result {
  cell: string;
  kind: DataKind;
  sizeMiB: number;
  row: RowId;
  stage: string;
  label: string;
  command: string;
  inputBytes: number;
  cachedPercent?: number;
  measurement?: TreeMeasurement;
  outputBytes?: number;
  notes: string[];
  error?: string;
}

// ---------------------------------------------------------------------------------------------
// Servers

interface Servers {
  swift: SwiftServer;
  endpoint: string;
  haproxy?: ReturnType<typeof spawn>;
  tlsPort?: number;
  cert?: string;
  pids: number[];
  env: NodeJS.ProcessEnv;
  resticNote?: string;
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolvePort) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolvePort(true);
      });
      socket.once('error', () => resolvePort(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port}`);
    await new Promise((wake) => setTimeout(wake, 100));
  }
}

async function startServers(): Promise<Servers> {
  const swift = await startSwift();
  const s3 = swift.s3;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    AWS_ACCESS_KEY_ID: s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    AWS_DEFAULT_REGION: s3.region,
    S3_ACCESS_KEY: s3.accessKeyId,
    S3_SECRET_KEY: s3.secretAccessKey,
    S3_REGION_ENDPOINT: s3.endpoint,
    S3_REGION: s3.region,
    RESTIC_PASSWORD: 'hot-path-bench',
    RESTIC_CACHE_DIR: join(scratch, 'restic-cache'),
  };
  sh(`${AWS} --endpoint-url ${s3.endpoint} s3 mb s3://bench`, env);
  const servers: Servers = { swift, endpoint: s3.endpoint, pids: [...swift.pids], env };
  // restic 0.14 (minio-go) signs PUTs over plain http with a streaming aws-chunked payload, which
  // Swift's s3api refuses; over https it sends UNSIGNED-PAYLOAD. So restic reaches the same Swift
  // through a local haproxy that terminates TLS.
  try {
    const tls = join(scratch, 'tls');
    await mkdir(tls, { recursive: true });
    sh(
      `openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout ${tls}/key.pem -out ${tls}/cert.pem && cat ${tls}/cert.pem ${tls}/key.pem > ${tls}/haproxy.pem`,
    );
    const port = await freePort();
    const swiftPort = new URL(s3.endpoint).port;
    await writeFile(
      join(tls, 'haproxy.cfg'),
      `global\n  maxconn 512\ndefaults\n  mode tcp\n  timeout connect 10s\n  timeout client 600s\n  timeout server 600s\nfrontend tls\n  bind 127.0.0.1:${port} ssl crt ${tls}/haproxy.pem\n  default_backend swift\nbackend swift\n  server swift 127.0.0.1:${swiftPort}\n`,
    );
    const options: SpawnOptions = { stdio: ['ignore', 'ignore', 'inherit'] };
    const haproxy = spawn('haproxy', ['-db', '-f', join(tls, 'haproxy.cfg')], options);
    await waitForPort(port, 10_000);
    servers.haproxy = haproxy;
    servers.tlsPort = port;
    servers.cert = join(tls, 'cert.pem');
    servers.pids.push(haproxy.pid!);
  } catch (error) {
    servers.resticNote = `no TLS proxy for restic: ${(error as Error).message}`;
  }
  return servers;
}

async function stopServers(servers: Servers | undefined): Promise<void> {
  if (!servers) return;
  if (servers.haproxy && servers.haproxy.exitCode === null) {
    const exited = new Promise((done) => servers.haproxy!.once('exit', done));
    servers.haproxy.kill('SIGTERM');
    await exited;
  }
  await servers.swift.stop();
}

// ---------------------------------------------------------------------------------------------
// Main

const started = Date.now();
const plan = planCells();
if (plan.length === 0) throw new Error('nothing to run: check --sizes / --kinds');
const stale = values['no-build'] ? [] : staleBuild();
const estimate = estimateSeconds(plan, stale.length > 0);
console.error(
  `hot-path benchmark: ${plan.map((cell) => `${cell.kind} ${cell.sizeMiB} MiB${cell.memoryOnly ? ' (memory rows)' : ''}`).join(', ')}`,
);
console.error(
  `estimated duration: ~${Math.ceil(estimate / 60)} min on an idle 2-core machine (longer when the CPU is shared)`,
);
if (values.estimate) process.exit(0);
{
  const needed = plan.reduce(
    (sum, cell) => sum + cell.sizeMiB * (cell.memoryOnly ? 1 : 2),
    Math.max(...plan.map((cell) => cell.sizeMiB)) * 2.5,
  );
  await mkdir(scratch, { recursive: true });
  const fs = await statfs(scratch);
  const free = (fs.bavail * fs.bsize) / MiB;
  if (free < needed)
    throw new Error(
      `${scratch} has ${Math.round(free)} MiB free; this plan needs about ${Math.round(needed)}`,
    );
}

if (stale.length > 0) {
  log(`building (stale: ${stale.join(', ')}) …`);
  execFileSync('pnpm', ['--filter', '@bk/cli...', '--filter', '@bk/storage-s3...', 'run', 'build'], {
    cwd: repoRoot,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

// The compression-stage child is the benchmark's own: built whenever its source is newer.
if (!existsSync(compressChild) || statSync(compressChildSource).mtimeMs > statSync(compressChild).mtimeMs) {
  log('building the compression-stage child …');
  execFileSync('pnpm', ['--filter', '@bk/benchmarks', 'run', 'build'], {
    cwd: repoRoot,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

// Clean leftovers of an earlier run; results/ is kept.
for (const entry of await readdir(scratch)) {
  if (entry !== 'results') await rm(join(scratch, entry), { recursive: true, force: true });
}

const results: Result[] = [];
const verifications: Verification[] = [];
const cells: Cell[] = [];
let servers: Servers | undefined;

const cleanUp = async () => {
  await stopServers(servers).catch((error) => log(`stopping the servers failed: ${error}`));
  servers = undefined;
  if (!values.keep) {
    for (const entry of await readdir(scratch).catch(() => [] as string[]))
      if (entry !== 'results') await rm(join(scratch, entry), { recursive: true, force: true });
  }
};
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    log(`${signal}: stopping the servers and removing scratch data …`);
    void cleanUp().finally(() => process.exit(130));
  });
}

try {
  // 1. All data, before any timing.
  for (const planned of plan) {
    const id = `${planned.kind}-${planned.sizeMiB}`;
    const data = join(scratch, 'data', id);
    if (cells.some((cell) => cell.id === id)) continue;
    log(`generating ${id} in ${data} …`);
    await generateData(planned.kind, data, planned.sizeMiB);
    const tar = join(scratch, 'tar', `${id}.tar`);
    let tarBytes = 0;
    if (!planned.memoryOnly) {
      await mkdir(dirname(tar), { recursive: true });
      sh(`tar -cf ${q(tar)} -C ${q(dirname(data))} ${q(basename(data))}`);
      tarBytes = statSync(tar).size;
    }
    const { files, bytes } = await treeSize(data);
    cells.push({ ...planned, id, data, tar, inputBytes: bytes, files, tarBytes });
  }
  spawnSync('sync');

  // 2. Servers.
  log('starting Swift (s3api) …');
  servers = await startServers();
  const { env, endpoint } = servers;
  const aws = `${AWS} --endpoint-url ${endpoint}`;
  // An age identity for the encrypted rows (bk's and the age pipelines).
  const ageKey = join(scratch, 'age-key.txt');
  sh(`rm -f ${q(ageKey)} && age-keygen -o ${q(ageKey)} 2>/dev/null`);
  const ageRecipient = sh(`age-keygen -y ${q(ageKey)}`).trim();

  const objects = (prefix: string): Array<{ key: string; size: number }> =>
    sh(`${aws} s3 ls --recursive s3://bench/${prefix}/ || true`, env)
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [, , size, ...key] = line.trim().split(/\s+/);
        return { key: key.join(' '), size: Number(size) };
      });
  const removePrefix = (prefix: string) =>
    sh(`${aws} s3 rm --recursive --only-show-errors s3://bench/${prefix}/`, env);

  const timed = async (
    cell: Cell,
    row: RowId,
    command: string,
    input: { path?: string; bytes: number },
    after?: (result: Result) => Promise<void> | void,
  ): Promise<Result> => {
    const result: Result = {
      cell: cell.id,
      kind: cell.kind,
      sizeMiB: cell.sizeMiB,
      row,
      stage: ROWS[row].stage,
      label: ROWS[row].label,
      command,
      inputBytes: input.bytes,
      notes: [],
    };
    results.push(result);
    try {
      spawnSync('sync');
      if (input.path) {
        warm(input.path);
        result.cachedPercent = cachedPercent(input.path);
      }
      log(`${cell.id}: ${ROWS[row].label} …`);
      result.measurement = await measureTree(command, { env, serverPids: servers!.pids });
      await after?.(result);
    } catch (error) {
      result.error = (error as Error).message;
      log(`${cell.id}: ${ROWS[row].label} failed: ${result.error}`);
    }
    return result;
  };

  /**
   * Measures `rows` `rounds` times, taking them in turn so that a slow moment of the machine
   * weighs on every row alike, and keeps each row's median run (peak RSS: the highest of its
   * runs). For the compression stage: runs of a few seconds, where scheduling noise of ±10 %
   * would otherwise decide a ratio.
   */
  const timedMedian = async (
    cell: Cell,
    rows: Array<[RowId, string]>,
    input: { path?: string; bytes: number },
    after: (result: Result) => Promise<void> | void,
    rounds: number,
  ): Promise<void> => {
    for (let round = 0; round < rounds; round += 1)
      for (const [row, command] of rows) await timed(cell, row, command, input, after);
    for (const [row] of rows) {
      const runs = results.filter((result) => result.cell === cell.id && result.row === row);
      for (const run of runs) results.splice(results.indexOf(run), 1);
      const failed = runs.find((run) => !run.measurement);
      if (failed) {
        results.push(failed);
        continue;
      }
      const sorted = [...runs].sort((a, b) => a.measurement!.seconds - b.measurement!.seconds);
      const kept = sorted[Math.floor(sorted.length / 2)]!;
      kept.measurement = {
        ...kept.measurement!,
        peakRssMiB: Math.max(...runs.map((run) => run.measurement!.peakRssMiB)),
      };
      kept.notes.push(
        `median of ${runs.length} runs (${runs.map((run) => run.measurement!.seconds.toFixed(2)).join(', ')} s)`,
      );
      results.push(kept);
    }
  };

  /** Downloads bk's archive and checks it with the standard tools. */
  const verifyArchive = (cell: Cell, row: RowId, prefix: string, result: Result) => {
    const zstd = row === 'bk-zstd';
    const sealed = row === 'bk-gzip-age';
    const suffix = zstd ? '.tar.zst' : sealed ? '.tar.gz.age' : '.tar.gz';
    const archive = objects(prefix).find(({ key }) => key.endsWith(suffix));
    if (!archive) throw new Error(`no archive under s3://bench/${prefix}/`);
    result.outputBytes = archive.size;
    const local = join(scratch, 'verify', basename(archive.key));
    const checks = zstd ? 'zstd -t, tar --zstd -tf' : sealed ? 'age -d │ tar -tz' : 'gzip -t, tar -tzf';
    const verification: Verification = { cell: cell.id, row, key: archive.key, ok: false, checks };
    verifications.push(verification);
    try {
      log(`${cell.id}: verifying ${archive.key} (${checks}) …`);
      sh(
        `mkdir -p ${q(dirname(local))} && ${aws} s3 cp --only-show-errors s3://bench/${archive.key} ${q(local)}`,
        env,
      );
      const listing = zstd
        ? sh(`zstd -q -t ${q(local)} && tar --zstd -tf ${q(local)} | wc -l`)
        : sealed
          ? sh(`age -d -i ${q(ageKey)} ${q(local)} | tar -tzf - | wc -l`)
          : sh(`gzip -t ${q(local)} && tar -tzf ${q(local)} | wc -l`);
      verification.ok = true;
      result.notes.push(
        `archive ${(archive.size / MiB).toFixed(1)} MiB, ${listing.trim()} tar entries: ${checks} ok`,
      );
    } catch (error) {
      verification.error = (error as Error).message.split('\n').slice(0, 3).join(' / ');
      result.notes.push(`archive check FAILED: ${verification.error}`);
    } finally {
      spawnSync('rm', ['-f', local]);
    }
  };

  const checkRestore = async (cell: Cell, directory: string, result: Result) => {
    const restored = await treeSize(directory);
    const same = restored.files === cell.files && restored.bytes === cell.inputBytes;
    result.notes.push(
      same
        ? `restored ${restored.files} files, ${restored.bytes} bytes: as generated`
        : `restored ${restored.files} files / ${restored.bytes} bytes, generated ${cell.files} / ${cell.inputBytes}: MISMATCH`,
    );
    if (!same) result.error = 'restored tree differs from the data';
  };

  // 3. The rows, cell by cell.
  for (const cell of cells) {
    const rows = new Set(rowsOf(cell));
    const data = { path: cell.data, bytes: cell.inputBytes };
    const tarInput = `tar -cf - -C ${q(dirname(cell.data))} ${q(basename(cell.data))}`;
    const prefix = `hot-path/${cell.id}`;

    // Backup to S3.
    if (rows.has('gzip-pipe')) {
      const key = `${prefix}/peer-gzip.tar.gz`;
      await timed(
        cell,
        'gzip-pipe',
        `${tarInput} | gzip -6 | ${aws} s3 cp --only-show-errors - s3://bench/${key}`,
        data,
        (result) => {
          result.outputBytes = objects(`${prefix}`).find((object) => object.key === key)?.size;
        },
      );
      sh(`${aws} s3 rm --only-show-errors s3://bench/${key} || true`, env);
    }
    if (rows.has('pigz-pipe')) {
      const key = `${prefix}/peer.tar.gz`; // kept for the restore peer
      await timed(
        cell,
        'pigz-pipe',
        `${tarInput} | pigz -p2 -6 | ${aws} s3 cp --only-show-errors - s3://bench/${key}`,
        data,
        (result) => {
          result.outputBytes = objects(`${prefix}`).find((object) => object.key === key)?.size;
        },
      );
    }
    if (rows.has('restic')) {
      const repoPrefix = `${prefix}/restic`;
      /** Records the restic row as not run, with why. */
      const resticNotRun = (command: string, error: string) =>
        results.push({
          cell: cell.id,
          kind: cell.kind,
          sizeMiB: cell.sizeMiB,
          row: 'restic',
          stage: 'backup',
          label: ROWS.restic.label,
          command,
          inputBytes: cell.inputBytes,
          notes: [],
          error,
        });
      if (servers.tlsPort === undefined) {
        resticNotRun('', servers.resticNote ?? 'no TLS proxy');
      } else {
        const restic = `restic -r s3:https://127.0.0.1:${servers.tlsPort}/bench/${repoPrefix} --cacert ${q(servers.cert!)}`;
        let initError: string | undefined;
        try {
          sh(`${restic} init`, env);
        } catch (error) {
          initError = `restic init failed: ${(error as Error & { stderr?: string }).stderr?.trim() ?? (error as Error).message}`;
        }
        if (initError) {
          resticNotRun(`${restic} init`, initError);
        } else {
          await timed(cell, 'restic', `${restic} backup --quiet ${q(cell.data)}`, data, (result) => {
            result.outputBytes = objects(repoPrefix).reduce((sum, object) => sum + object.size, 0);
            result.notes.push('repository v1 (restic 0.14: no compression), AES + dedup');
          });
        }
        removePrefix(repoPrefix);
        await rm(join(scratch, 'restic-cache'), { recursive: true, force: true });
      }
    }
    if (rows.has('bk-gzip')) {
      const target = `${prefix}/bk-gzip`; // kept for bk restore
      await timed(
        cell,
        'bk-gzip',
        `node ${q(bk)} backup --quiet --path ${q(cell.data)} --target s3://bench/${target}`,
        data,
        (result) => verifyArchive(cell, 'bk-gzip', target, result),
      );
    }
    if (rows.has('age-pipe')) {
      const key = `${prefix}/peer.tar.gz.age`; // kept for the age restore peer
      await timed(
        cell,
        'age-pipe',
        `${tarInput} | pigz -p2 -6 | age -r ${ageRecipient} | ${aws} s3 cp --only-show-errors - s3://bench/${key}`,
        data,
        (result) => {
          result.outputBytes = objects(`${prefix}`).find((object) => object.key === key)?.size;
        },
      );
    }
    if (rows.has('bk-gzip-age')) {
      const target = `${prefix}/bk-gzip-age`; // kept for bk restore --identity
      await timed(
        cell,
        'bk-gzip-age',
        `node ${q(bk)} backup --quiet --recipient ${ageRecipient} --path ${q(cell.data)} --target s3://bench/${target}`,
        data,
        (result) => verifyArchive(cell, 'bk-gzip-age', target, result),
      );
    }
    if (rows.has('bk-zstd')) {
      const target = `${prefix}/bk-zstd`;
      await timed(
        cell,
        'bk-zstd',
        `node ${q(bk)} backup --quiet --compression zstd --path ${q(cell.data)} --target s3://bench/${target}`,
        data,
        (result) => verifyArchive(cell, 'bk-zstd', target, result),
      );
      removePrefix(target);
    }

    // Restore from S3 into an empty directory.
    const restoreDir = join(scratch, 'restore', cell.id);
    if (rows.has('restore-peer')) {
      await mkdir(restoreDir, { recursive: true });
      await timed(
        cell,
        'restore-peer',
        `${aws} s3 cp --only-show-errors s3://bench/${prefix}/peer.tar.gz - | pigz -d | tar -xf - -C ${q(restoreDir)}`,
        { bytes: cell.inputBytes },
        (result) => checkRestore(cell, restoreDir, result),
      );
      await rm(restoreDir, { recursive: true, force: true });
    }
    if (rows.has('bk-restore')) {
      await mkdir(dirname(restoreDir), { recursive: true });
      await timed(
        cell,
        'bk-restore',
        `node ${q(bk)} restore latest --quiet --target s3://bench/${prefix}/bk-gzip --to ${q(restoreDir)}`,
        { bytes: cell.inputBytes },
        (result) => checkRestore(cell, restoreDir, result),
      );
      await rm(restoreDir, { recursive: true, force: true });
    }
    if (rows.has('restore-age-peer')) {
      await mkdir(restoreDir, { recursive: true });
      await timed(
        cell,
        'restore-age-peer',
        `${aws} s3 cp --only-show-errors s3://bench/${prefix}/peer.tar.gz.age - | age -d -i ${q(ageKey)} | pigz -d | tar -xf - -C ${q(restoreDir)}`,
        { bytes: cell.inputBytes },
        (result) => checkRestore(cell, restoreDir, result),
      );
      await rm(restoreDir, { recursive: true, force: true });
    }
    if (rows.has('bk-restore-age')) {
      await mkdir(dirname(restoreDir), { recursive: true });
      await timed(
        cell,
        'bk-restore-age',
        `node ${q(bk)} restore latest --quiet --identity ${q(ageKey)} --target s3://bench/${prefix}/bk-gzip-age --to ${q(restoreDir)}`,
        { bytes: cell.inputBytes },
        (result) => checkRestore(cell, restoreDir, result),
      );
      await rm(restoreDir, { recursive: true, force: true });
    }
    removePrefix(prefix);

    // The compression stage alone, on the tar stream of the data.
    if (!cell.memoryOnly) {
      const tar = { path: cell.tar, bytes: cell.tarBytes };
      const counted = join(scratch, 'compressed-bytes');
      const fromCount = async (result: Result) => {
        const text = (await readFile(counted, 'utf8')).trim();
        result.outputBytes = text.startsWith('{') ? JSON.parse(text).outputBytes : Number(text);
      };
      const child = (options: string) =>
        `node ${q(compressChild)} --file ${q(cell.tar)} ${options} > ${counted}`;
      await timedMedian(
        cell,
        [
          ['c-bk-gzip', child('--format gzip --level 6')],
          ['c-pigz', `pigz -p2 -6 -c < ${q(cell.tar)} | wc -c > ${counted}`],
          ['c-node', child('--format gzip --level 6 --workers 0')],
          ['c-gzip', `gzip -6 -c < ${q(cell.tar)} | wc -c > ${counted}`],
          ['c-bk-zstd', child('--format zstd --level 3')],
          ['c-zstd', `zstd -q -3 -T2 -c < ${q(cell.tar)} | wc -c > ${counted}`],
        ],
        tar,
        fromCount,
        compressionRounds(cell.sizeMiB),
      );
    }
    // This cell's data is no longer needed.
    if (!values.keep) {
      await rm(cell.data, { recursive: true, force: true });
      await rm(cell.tar, { force: true });
    }
  }
} finally {
  await cleanUp();
}

// ---------------------------------------------------------------------------------------------
// Report

const find = (cell: string, row: RowId) =>
  results.find((result) => result.cell === cell && result.row === row);
const ratio = (cell: string, row: RowId, peer: RowId): number | undefined => {
  const mine = find(cell, row)?.measurement;
  const theirs = find(cell, peer)?.measurement;
  return mine && theirs && !find(cell, row)?.error ? theirs.seconds / mine.seconds : undefined;
};

const mbps = (result: Result) =>
  result.measurement ? (result.inputBytes / 1e6 / result.measurement.seconds).toFixed(0) : '';
const table = [
  '| data | stage | command | seconds | MB/s of input | CPU s | server CPU s | peak RSS MiB | output MiB | speed vs peer |',
  '|---|---|---|---:|---:|---:|---:|---:|---:|---|',
  ...results.map((result) => {
    const m = result.measurement;
    const peers = (PEERS[result.row] ?? [])
      .map((peer) => {
        const value = ratio(result.cell, result.row, peer);
        return value === undefined ? undefined : `${value.toFixed(2)}× ${ROWS[peer].short}`;
      })
      .filter(Boolean)
      .join('; ');
    const cells = [
      `${result.kind} ${result.sizeMiB} MiB`,
      result.stage,
      result.label,
      m
        ? m.seconds.toFixed(1)
        : result.error
          ? `failed: ${result.error.replaceAll('|', '│').slice(0, 160)}`
          : '',
      mbps(result),
      m ? m.cpuSeconds.toFixed(1) : '',
      m ? m.serverCpuSeconds.toFixed(1) : '',
      m ? m.peakRssMiB.toFixed(0) : '',
      result.outputBytes === undefined ? '' : (result.outputBytes / MiB).toFixed(0),
      peers,
    ];
    return `| ${cells.join(' | ')} |`;
  }),
];

// Acceptance.
interface Check {
  name: string;
  ok: boolean;
  detail: string;
}
const checks: Check[] = [];
const ratioCheck = (name: string, row: RowId, peer: RowId, minimum: number) => {
  const relevant = cells.filter((cell) => rowsOf(cell).includes(row) && rowsOf(cell).includes(peer));
  const values = relevant.map((cell) => ({ cell: cell.id, value: ratio(cell.id, row, peer) }));
  checks.push({
    name: `${name} ≥ ${minimum.toFixed(1)}×`,
    ok: values.length > 0 && values.every(({ value }) => value !== undefined && value >= minimum),
    detail: values
      .map(({ cell, value }) => `${cell} ${value === undefined ? 'no result' : `${value.toFixed(2)}×`}`)
      .join(', '),
  });
};
ratioCheck('bk backup to S3 vs tar│gzip -6│aws', 'bk-gzip', 'gzip-pipe', 2.0);
ratioCheck('bk backup to S3 vs tar│pigz -p2 -6│aws', 'bk-gzip', 'pigz-pipe', 1.0);
ratioCheck('compression stage, level 6, vs single-thread Node zlib', 'c-bk-gzip', 'c-node', 1.8);
ratioCheck('compression stage, level 6, vs pigz -p2 -6', 'c-bk-gzip', 'c-pigz', 1.2);
ratioCheck('bk restore vs aws│pigz -d│tar x', 'bk-restore', 'restore-peer', 1.0);
// Encryption costs at most 10 % of the unencrypted run: plain seconds / encrypted seconds ≥ 1 / 1.1.
ratioCheck('bk backup encrypted vs unencrypted (≤ 10 % more)', 'bk-gzip-age', 'bk-gzip', 1 / 1.1);
ratioCheck('bk restore encrypted vs unencrypted (≤ 10 % more)', 'bk-restore-age', 'bk-restore', 1 / 1.1);
{
  const bkRows = results.filter((result) => ['bk-gzip', 'bk-zstd', 'bk-restore'].includes(result.row));
  const bySize = new Map<number, number>();
  for (const result of bkRows)
    if (result.measurement)
      bySize.set(result.sizeMiB, Math.max(bySize.get(result.sizeMiB) ?? 0, result.measurement.peakRssMiB));
  checks.push({
    name: 'bk backup / restore peak RSS ≤ 150 MiB',
    ok:
      bkRows.length > 0 &&
      bkRows.every((result) => result.measurement && result.measurement.peakRssMiB <= 150),
    detail: [...bySize]
      .sort(([a], [b]) => a - b)
      .map(([size, peak]) => `${size} MiB: max ${peak.toFixed(0)} MiB`)
      .join(', '),
  });
}
{
  const expected = results.filter((result) => result.row === 'bk-gzip' || result.row === 'bk-zstd').length;
  checks.push({
    name: 'every archive bk wrote passes gzip -t + tar -tzf (zstd: zstd -t + tar --zstd -tf)',
    ok: verifications.length === expected && expected > 0 && verifications.every((check) => check.ok),
    detail: `${verifications.filter((check) => check.ok).length} of ${expected} archives${verifications
      .filter((check) => !check.ok)
      .map((check) => `; ${check.cell} ${check.row}: ${check.error}`)
      .join('')}`,
  });
}

const minCached = Math.min(...results.map((result) => result.cachedPercent ?? 100));
const notesOfRows = results
  .filter((result) => result.notes.length > 0)
  .map((result) => `- ${result.kind} ${result.sizeMiB} MiB, ${result.label}: ${result.notes.join('; ')}`);
const elapsed = (Date.now() - started) / 1000;
const report = [
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}; ${new Date().toISOString()}; run took ${(elapsed / 60).toFixed(1)} min (estimate ${Math.ceil(estimate / 60)} min).`,
  `Data: ${cells.map((cell) => `${cell.id} = ${KIND_NAMES[cell.kind]}, ${(cell.inputBytes / MiB).toFixed(0)} MiB in ${cell.files} files`).join('; ')}.`,
  `Server: Swift 2.30 all-in-one with s3api (proxy 1 worker) on this machine, shared by every row; bk S3 defaults (6 MiB parts, 4 in flight), aws-cli 2 defaults (8 MiB parts, 10 in flight).`,
  '',
  ...table,
  '',
  'Notes:',
  `- Every input was read once just before its timed command (the page cache cannot be dropped here), so every command starts from a warm cache; lowest share resident in the cache at the start of a row (fincore): ${minCached.toFixed(0)} %.`,
  "- seconds: wall time; MB/s: input bytes (the data, or the tar file for the compression stage) / 10^6 / seconds; CPU s: user + system of the command's whole process tree (bash `times`); server CPU s: Swift (and haproxy) meanwhile; peak RSS: the sum of every process's VmHWM in the tree (for pipelines all stages, aws-cli ~100 MiB); output MiB: stored object / repository or compressed bytes. Speed ratio = peer seconds / bk seconds.",
  "- The compression-stage peers pipe into `wc -c` to count their output; bk's script counts in-process (no write).",
  `- Compression-stage rows (runs of a few seconds) are each the median of ${compressionRounds(256)} runs on 256 MiB or less, of ${compressionRounds(1024)} above, the rows taken in turn, with the highest peak RSS of the runs; every other row is one run.`,
  `- restic ${sh('restic version').split(' ')[1] ?? ''}: over plain http it cannot write to Swift's s3api (minio-go signs PUTs with streaming \`aws-chunked\` payloads: "Transfering payloads in multiple chunks using aws-chunked is not supported."), so it reaches the same Swift through a local haproxy terminating TLS (then minio-go sends UNSIGNED-PAYLOAD); TLS costs are in its CPU and the server CPU. \`restic init\` ran outside the timing.`,
  "- The pigz pipeline's object and bk's gzip backup stay in the bucket until the two restore rows have read them; every other object or repository is deleted right after its row.",
  ...notesOfRows,
  '',
  'Acceptance:',
  ...checks.map((check) => `- ${check.ok ? 'PASS' : 'FAIL'} ${check.name}: ${check.detail}`),
];
const text = report.join('\n');
console.log(text);

const stamp = new Date().toISOString().replaceAll(/[:.]/g, '-').slice(0, 19);
const resultsDir = join(scratch, 'results');
await mkdir(resultsDir, { recursive: true });
await writeFile(join(resultsDir, `hot-path-${stamp}.md`), `${text}\n`);
await writeFile(
  join(resultsDir, `hot-path-${stamp}.json`),
  `${JSON.stringify(
    {
      startedAt: new Date(started).toISOString(),
      elapsedSeconds: elapsed,
      estimateSeconds: estimate,
      machine: {
        cpus: cpus().length,
        model: cpus()[0]?.model,
        totalMemGiB: totalmem() / 2 ** 30,
        node: process.version,
      },
      bk: {
        bin: bk,
        version: JSON.parse(readFileSync(join(repoRoot, 'packages/cli/package.json'), 'utf8')).version,
      },
      cells,
      results,
      verifications,
      acceptance: checks,
    },
    null,
    2,
  )}\n`,
);
console.error(`\nwritten: ${join(resultsDir, `hot-path-${stamp}.md`)} and .json`);
if (checks.some((check) => !check.ok)) process.exitCode = 1;
