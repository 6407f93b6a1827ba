import { execFile } from 'node:child_process';
import { randomBytes, randomFillSync } from 'node:crypto';
import { open, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type S3rverServer, type SwiftServer, startS3rver, startSwift } from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, type BkRun, removeTempDirs, sha256, sleep, startBk, tempDir } from './bk-process.ts';

/**
 * Kills the real `bk` at random moments of backups and restores, then checks that a rerun of the
 * restore and `bk prune --leftover-age 0s` leave nothing behind: no temp file, lock, open
 * multipart upload or orphaned segment, on every store these tests can start.
 */

const MIB = 1024 * 1024;
const DATA_BYTES = 24 * MIB;
/** Killed backups and killed restores per store: a handful, so CI stays quick. */
const KILLED_BACKUPS = 3;
const KILLED_RESTORES = 2;

let data: string;
let dataSha256: string;
let s3rver: S3rverServer | undefined;
let swift: SwiftServer | undefined;

interface PruneJson {
  dryRun: boolean;
  kept: string[];
  deleted: string[];
  orphans: string[];
  incomplete: Array<{ kind: string; location: string; key?: string; size?: number }>;
  notes: string[];
}

interface Store {
  url: string;
  env: Record<string, string>;
}

async function writeRandomFile(path: string, size: number): Promise<void> {
  const chunk = Buffer.alloc(4 * MIB);
  const handle = await open(path, 'w');
  try {
    for (let written = 0; written < size; written += chunk.byteLength) {
      randomFillSync(chunk);
      await handle.write(chunk, 0, Math.min(chunk.byteLength, size - written));
    }
  } finally {
    await handle.close();
  }
}

async function run(args: string[], store: Store): Promise<BkRun> {
  return startBk(args, { env: store.env }).done;
}

async function runJson<T>(args: string[], store: Store): Promise<T> {
  const result = await run(['--json', ...args], store);
  expect(result.code, `bk ${args.join(' ')}: ${result.stderr}`).toBe(0);
  return JSON.parse(result.stdout) as T;
}

/** Starts `bk`, waits a random moment within `[from, to)` ms, and kills it with SIGKILL. */
async function killAtRandom(args: string[], store: Store, from: number, to: number): Promise<boolean> {
  const started = startBk(args, { env: store.env });
  await sleep(from + Math.random() * (to - from));
  started.child.kill('SIGKILL');
  const ended = await started.done;
  return ended.signal === 'SIGKILL';
}

/**
 * Kills `times` runs at random moments of `[from, to)`; when none was still going (under load the
 * timed run can be much faster or slower than these), tries again earlier until one is.
 */
async function killSome(
  args: string[],
  store: Store,
  [from, to]: [number, number],
  times: number,
): Promise<number> {
  let killed = 0;
  for (let index = 0; index < times; index += 1) if (await killAtRandom(args, store, from, to)) killed += 1;
  for (let attempt = 1; killed === 0 && attempt <= 5; attempt += 1)
    if (await killAtRandom(args, store, 0, Math.max(50, to / 2 ** attempt))) killed += 1;
  return killed;
}

/** The objects a kept backup consists of, sorted: its entry index, sidecar and archive. */
function keptObjects(prefix: string, name: string): string[] {
  return [`${prefix}${name}.entries.ndjson.gz`, `${prefix}${name}.manifest.json`, `${prefix}${name}.tar.gz`];
}

async function filesUnder(directory: string): Promise<string[]> {
  return (await readdir(directory, { recursive: true, withFileTypes: true }))
    .filter((entry) => !entry.isDirectory())
    .map((entry) => join(entry.parentPath, entry.name).slice(directory.length + 1))
    .sort();
}

/**
 * One complete backup, backups and restores killed at random moments, a rerun of the restore,
 * then prune past its age limit: returns prune's report after checking what every store must
 * show (no restore temp file, the data restored whole, nothing left for a second prune).
 */
async function killAndPrune(store: Store): Promise<PruneJson> {
  const backupArgs = ['backup', '--target', store.url, '--path', data, '--level', '1'];
  // Timed once: `ls` for start-up (node, config, the first request), a whole backup and restore,
  // so the kills land anywhere between the first request and the last.
  let started = Date.now();
  await runJson(['ls', '--target', store.url], store);
  const startupMs = Date.now() - started;
  const window = (wholeMs: number): [number, number] => [startupMs, Math.max(startupMs + 50, wholeMs * 0.98)];
  started = Date.now();
  await runJson(backupArgs, store);
  const backupMs = Date.now() - started;
  let killed = await killSome(backupArgs, store, window(backupMs), KILLED_BACKUPS);
  const restoreTo = await tempDir('leftovers-restore');
  const restoreArgs = [
    'restore',
    'latest',
    '--target',
    store.url,
    '--to',
    restoreTo,
    '--conflict',
    'overwrite',
  ];
  started = Date.now();
  await runJson(
    ['restore', 'latest', '--target', store.url, '--to', await tempDir('leftovers-timed')],
    store,
  );
  const restoreMs = Date.now() - started;
  killed += await killSome(restoreArgs, store, window(restoreMs), KILLED_RESTORES);
  expect(killed, 'no run was still going when it was killed').toBeGreaterThan(0);

  await runJson(restoreArgs, store);
  const restored = await filesUnder(restoreTo);
  expect(restored.filter((path) => path.includes('.bk-restore-'))).toEqual([]);
  expect(sha256(await readFile(join(restoreTo, data, 'big.bin')))).toBe(dataSha256);

  const pruneArgs = ['prune', '--target', store.url, '--keep-last', '1', '--leftover-age', '0s'];
  const dry = await runJson<PruneJson>([...pruneArgs, '--dry-run'], store);
  const pruned = await runJson<PruneJson>(pruneArgs, store);
  expect(pruned.kept).toHaveLength(1);
  for (const item of dry.incomplete)
    expect(pruned.incomplete.map((removed) => removed.location)).toContain(item.location);
  const again = await runJson<PruneJson>([...pruneArgs, '--dry-run'], store);
  expect(again).toMatchObject({ deleted: [], orphans: [], incomplete: [] });
  const listed = await runJson<{ backups: Array<{ name: string }> }>(['ls', '--target', store.url], store);
  expect(listed.backups.map((backup) => backup.name)).toEqual(pruned.kept);
  return pruned;
}

/** Runs `aws s3api <args>` against an S3 endpoint (aws-cli, not bk) and parses its JSON answer. */
function awsS3api(
  endpoint: string,
  keys: { accessKeyId: string; secretAccessKey: string },
  args: string[],
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    execFile(
      '/usr/bin/aws',
      ['--endpoint-url', endpoint, '--region', 'us-east-1', '--output', 'json', 's3api', ...args],
      {
        env: {
          ...process.env,
          AWS_ACCESS_KEY_ID: keys.accessKeyId,
          AWS_SECRET_ACCESS_KEY: keys.secretAccessKey,
        },
      },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`aws s3api ${args.join(' ')}: ${stderr}`));
        else resolve(stdout.trim() === '' ? {} : (JSON.parse(stdout) as Record<string, unknown>));
      },
    );
  });
}

async function rawKeys(
  endpoint: string,
  keys: { accessKeyId: string; secretAccessKey: string },
  bucket: string,
): Promise<string[]> {
  const page = await awsS3api(endpoint, keys, ['list-objects-v2', '--bucket', bucket]);
  return ((page.Contents ?? []) as Array<{ Key: string }>).map((object) => object.Key).sort();
}

beforeAll(async () => {
  assertBuilt();
  data = await tempDir('leftovers-data');
  await writeRandomFile(join(data, 'big.bin'), DATA_BYTES);
  await writeFile(join(data, 'small.txt'), 'small\n');
  dataSha256 = sha256(await readFile(join(data, 'big.bin')));
  [s3rver, swift] = await Promise.all([startS3rver(), startSwift()]);
}, 180_000);

afterAll(async () => {
  await Promise.all([s3rver?.stop(), swift?.stop()]);
  await removeTempDirs();
});

describe('leftovers of killed backups and restores (end to end)', () => {
  it('file://: prune removes temp files and locks', async () => {
    const root = await tempDir('leftovers-fs');
    const pruned = await killAndPrune({ url: `file://${root}`, env: {} });
    expect(await filesUnder(root)).toEqual(keptObjects('', pruned.kept[0]!));
  }, 300_000);

  it("s3:// on Swift's s3api: prune aborts the open multipart uploads", async () => {
    const { s3 } = swift!;
    const bucket = `leftovers-${randomBytes(4).toString('hex')}`;
    await awsS3api(s3.endpoint, s3, ['create-bucket', '--bucket', bucket]);
    const store: Store = {
      url: `s3://${bucket}/nightly?endpoint=${encodeURIComponent(s3.endpoint)}&partSize=${5 * MIB}`,
      env: { S3_ACCESS_KEY: s3.accessKeyId, S3_SECRET_KEY: s3.secretAccessKey, S3_REGION: s3.region },
    };
    const pruned = await killAndPrune(store);
    const uploads = await awsS3api(s3.endpoint, s3, ['list-multipart-uploads', '--bucket', bucket]);
    expect(uploads.Uploads ?? []).toEqual([]);
    expect(await rawKeys(s3.endpoint, s3, bucket)).toEqual(keptObjects('nightly/', pruned.kept[0]!));
  }, 300_000);

  it('s3:// on s3rver: prune removes locks and says why it cannot list uploads', async () => {
    const server = s3rver!;
    const bucket = `leftovers-${randomBytes(4).toString('hex')}`;
    await awsS3api(server.endpoint, server, ['create-bucket', '--bucket', bucket]);
    const store: Store = {
      url: `s3://${bucket}/nightly?endpoint=${encodeURIComponent(server.endpoint)}&partSize=${5 * MIB}`,
      env: {
        S3_ACCESS_KEY: server.accessKeyId,
        S3_SECRET_KEY: server.secretAccessKey,
        S3_REGION: server.region,
      },
    };
    const pruned = await killAndPrune(store);
    expect(pruned.notes.join('\n')).toMatch(/ListMultipartUploads/);
    expect(await rawKeys(server.endpoint, server, bucket)).toEqual(keptObjects('nightly/', pruned.kept[0]!));
  }, 300_000);

  it('swift://: prune deletes the segments no object refers to', async () => {
    const server = swift!;
    const container = `leftovers-${randomBytes(4).toString('hex')}`;
    const store: Store = {
      url: `swift://${container}/nightly?segmentSize=${4 * MIB}`,
      env: { SWIFT_AUTH_URL: server.authUrl, SWIFT_USER: server.user, SWIFT_KEY: server.key },
    };
    const pruned = await killAndPrune(store);
    const auth = await fetch(server.authUrl, {
      headers: { 'X-Auth-User': server.user, 'X-Auth-Key': server.key },
    });
    const token = auth.headers.get('x-auth-token')!;
    const swiftGet = (path: string, method = 'GET') =>
      fetch(`${server.storageUrl}${path}`, { method, headers: { 'X-Auth-Token': token } });
    const names = async (path: string) =>
      ((await (await swiftGet(`${path}?format=json`)).json()) as Array<{ name: string }>).map(
        (item) => item.name,
      );
    const archive = `nightly/${pruned.kept[0]}.tar.gz`;
    expect((await names(`/${container}`)).sort()).toEqual(keptObjects('nightly/', pruned.kept[0]!));
    const head = await swiftGet(`/${container}/${archive}`, 'HEAD');
    const upload = head.headers.get('x-object-meta-bk-upload');
    // The kept archive is a 24 MiB SLO of 4 MiB segments: its segments, and only those, remain.
    const segments = await names(`/${container}_segments`);
    expect(segments.length).toBeGreaterThan(0);
    expect(segments.filter((name) => !name.startsWith(`${archive}/${upload}/`))).toEqual([]);
  }, 300_000);
});
