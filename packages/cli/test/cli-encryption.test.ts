import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type SwiftServer, startSwift } from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, describeTree, removeTempDirs, runBk, runBkJson, tempDir } from './bk-process.ts';

const MARKER = 'plaintext-marker-7d2e91';
let data: string;
let keys: string;
let recipient: string;
let wrongKey: string;
let swift: SwiftServer | undefined;

function run(command: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { env: { ...process.env, ...env }, maxBuffer: 1 << 26 },
      (error, stdout, stderr) =>
        error ? reject(new Error(`${command} ${args.join(' ')}: ${stderr}`)) : resolve(stdout),
    );
  });
}

beforeAll(async () => {
  assertBuilt();
  data = await tempDir('crypt-data');
  await mkdir(join(data, `dir-${MARKER}`, 'deep'), { recursive: true });
  await writeFile(join(data, `dir-${MARKER}`, 'deep', `${MARKER}.txt`), `${MARKER}\n`.repeat(5000));
  await writeFile(join(data, 'random.bin'), randomBytes(3 * 1024 * 1024 + 17));
  await writeFile(join(data, 'empty'), '');
  await symlink(`dir-${MARKER}/deep/${MARKER}.txt`, join(data, 'link'));
  keys = await tempDir('crypt-keys');
  const made = await runBkJson<{ recipient: string; file: string }>(['keygen', '-o', join(keys, 'key.txt')]);
  expect(made.code).toBe(0);
  recipient = made.json.recipient;
  expect((await run('age-keygen', ['-y', join(keys, 'key.txt')])).trim()).toBe(recipient);
  wrongKey = join(keys, 'wrong.txt');
  expect((await runBk(['keygen', '-o', wrongKey])).code).toBe(0);
  expect((await runBk(['keygen', '-o', wrongKey])).code).toBe(2);
  swift = await startSwift();
}, 180_000);

afterAll(async () => {
  await swift?.stop();
  await removeTempDirs();
});

interface Store {
  url: string;
  env: Record<string, string>;
  /** Every stored object's bytes. */
  objects(): Promise<Map<string, Buffer>>;
}

async function fsStore(): Promise<Store> {
  const root = await tempDir('crypt-fs');
  return {
    url: `file://${root}`,
    env: {},
    async objects() {
      const found = new Map<string, Buffer>();
      for (const name of await readdir(root, { recursive: true })) {
        const bytes = await readFile(join(root, name)).catch(() => undefined);
        if (bytes) found.set(name, bytes);
      }
      return found;
    },
  };
}

async function swiftS3Store(): Promise<Store> {
  const { s3 } = swift!;
  const env = {
    AWS_ACCESS_KEY_ID: s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    AWS_DEFAULT_REGION: s3.region,
  };
  const aws = (args: string[]) =>
    run('aws', ['--endpoint-url', s3.endpoint, '--output', 'json', ...args], env);
  const bucket = `crypt-${randomBytes(4).toString('hex')}`;
  await aws(['s3api', 'create-bucket', '--bucket', bucket]);
  const out = await tempDir('crypt-s3-raw');
  return {
    url: `s3://${bucket}/nightly?endpoint=${encodeURIComponent(s3.endpoint)}`,
    env: { S3_ACCESS_KEY: s3.accessKeyId, S3_SECRET_KEY: s3.secretAccessKey, S3_REGION: s3.region },
    async objects() {
      const listed = JSON.parse(await aws(['s3api', 'list-objects-v2', '--bucket', bucket])) as {
        Contents?: Array<{ Key: string }>;
      };
      const found = new Map<string, Buffer>();
      for (const [index, { Key }] of (listed.Contents ?? []).entries()) {
        const file = join(out, String(index));
        await aws(['s3api', 'get-object', '--bucket', bucket, '--key', Key, file]);
        found.set(Key, await readFile(file));
      }
      return found;
    },
  };
}

describe.each([
  ['file://', fsStore],
  ["s3:// on Swift's s3api", swiftS3Store],
])('an encrypted backup on %s', (_title, makeStore) => {
  it('hides every name and byte, opens with age -d | tar -xz, restores with the key only', async () => {
    const store = await makeStore();
    const target = ['--target', store.url];
    const env = { env: store.env };
    const backedUp = await runBk(
      ['--json', 'backup', ...target, '--path', data, '--recipient', recipient],
      env,
    );
    expect(backedUp.code, backedUp.stderr).toBe(0);
    const result = JSON.parse(backedUp.stdout) as { name: string; key: string; encrypted: boolean };
    expect(result.key.endsWith('.tar.gz.age')).toBe(true);
    expect(result.encrypted).toBe(true);

    const objects = await store.objects();
    expect([...objects.keys()].some((key) => key.endsWith('.tar.gz.age'))).toBe(true);
    for (const [key, bytes] of objects) {
      expect(bytes.includes(MARKER), key).toBe(false);
      expect(bytes.includes('random.bin'), key).toBe(false);
      expect(bytes.includes(data.slice(1)), key).toBe(false);
    }

    // The stock tools: age -d | tar -xz.
    const archive = [...objects].find(([key]) => key.endsWith('.tar.gz.age'))![1];
    const raw = await tempDir('crypt-raw');
    await writeFile(join(raw, 'archive.age'), archive);
    await mkdir(join(raw, 'out'));
    await run('sh', [
      '-c',
      `age -d -i "${join(keys, 'key.txt')}" "${join(raw, 'archive.age')}" | tar -xz -C "${join(raw, 'out')}"`,
    ]);
    expect(await describeTree(join(raw, 'out', 'files', data.slice(1)))).toEqual(await describeTree(data));

    // Without a key: listed by name and marked encrypted; inspect shows the clear summary and
    // says the rest is sealed; with a wrong key inspect and restore refuse, naming the recipient.
    const listed = await runBk(['ls', ...target], env);
    expect(listed.stdout).toContain(result.name);
    expect(listed.stdout).toMatch(/ {2}encrypted/);
    const summary = await runBk(['inspect', ...target], env);
    expect(summary.code, summary.stderr).toBe(0);
    expect(summary.stdout).toContain(result.name);
    expect(summary.stdout).toContain(recipient);
    expect(summary.stdout).toContain('contents    encrypted:');
    expect(summary.stdout).not.toContain(MARKER);
    const summaryJson = JSON.parse((await runBk(['--json', 'inspect', ...target], env)).stdout);
    expect(summaryJson).toMatchObject({ name: result.name, sealed: true });
    expect(summaryJson.components).toBeUndefined();
    const wrongInspect = await runBk(['inspect', ...target, '--identity', wrongKey], env);
    expect(wrongInspect.code, wrongInspect.stderr).toBe(7);
    expect(wrongInspect.stderr).toContain(recipient);
    const full = await runBk(['inspect', ...target, '--entries', '--identity', join(keys, 'key.txt')], env);
    expect(full.code, full.stderr).toBe(0);
    expect(full.stdout).toContain('files  (files)');
    expect(full.stdout).toContain(MARKER);
    const to = join(await tempDir('crypt-restore'), 'to');
    for (const identity of [[], ['--identity', wrongKey]]) {
      const refused = await runBk(['restore', 'latest', ...target, '--to', to, ...identity], env);
      expect(refused.code, refused.stderr).toBe(7);
      expect(refused.stderr).toContain(recipient);
      await expect(readdir(to)).rejects.toThrow();
    }

    const restored = await runBk(
      ['restore', 'latest', ...target, '--to', to, '--identity', join(keys, 'key.txt')],
      env,
    );
    expect(restored.code, restored.stderr).toBe(0);
    expect(await describeTree(join(to, data))).toEqual(await describeTree(data));
    const verified = await runBk(['verify', ...target], {
      env: { ...store.env, BK_AGE_IDENTITY: join(keys, 'key.txt') },
    });
    expect(verified.code, verified.stderr).toBe(0);

    // rekey: the second key opens the backup afterwards, with bk and with the stock age.
    const wrongRecipient = (await run('age-keygen', ['-y', wrongKey])).trim();
    const rekeyed = await runBk(
      ['rekey', ...target, '--identity', join(keys, 'key.txt'), '--recipient', wrongRecipient],
      env,
    );
    expect(rekeyed.code, rekeyed.stderr).toBe(0);
    const again = await runBk(['verify', ...target, '--identity', wrongKey], env);
    expect(again.code, again.stderr).toBe(0);
    const rewrapped = [...(await store.objects())].find(([key]) => key.endsWith('.tar.gz.age'))![1];
    await writeFile(join(raw, 'rewrapped.age'), rewrapped);
    const listing = await run('sh', [
      '-c',
      `age -d -i "${wrongKey}" "${join(raw, 'rewrapped.age')}" | tar -tz`,
    ]);
    expect(listing).toContain(`${MARKER}.txt`);
  }, 300_000);
});
