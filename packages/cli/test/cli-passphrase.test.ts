import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, describeTree, removeTempDirs, runBk, tempDir } from './bk-process.ts';

const MARKER = 'plaintext-marker-5b1c07';
const PASSPHRASE = 'passphrase-marker-9f3a61 with spaces';
let data: string;
let keys: string;
let store: string;

/**
 * Runs the stock `age` with its passphrase prompt answered: age reads a passphrase only from a
 * terminal, so it runs under `script`, which gives it one, and the line is typed into it.
 */
async function ageOnTerminal(args: string[], lines: string[]): Promise<void> {
  const child = spawn('script', ['-qec', ['age', ...args].join(' '), '/dev/null'], {
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  for (const line of lines) {
    child.stdin.write(`${line}\n`);
    await new Promise((resolve) => setTimeout(resolve, 700));
  }
  const code = await exited;
  child.stdin.destroy();
  if (code !== 0) throw new Error(`age ${args.join(' ')} exited with ${code}: ${stderr}`);
}

async function storedObjects(): Promise<Map<string, Buffer>> {
  const found = new Map<string, Buffer>();
  for (const name of await readdir(store, { recursive: true })) {
    const bytes = await readFile(join(store, name)).catch(() => undefined);
    if (bytes) found.set(name, bytes);
  }
  return found;
}

beforeAll(async () => {
  assertBuilt();
  data = await tempDir('pass-data');
  await mkdir(join(data, `dir-${MARKER}`), { recursive: true });
  await writeFile(join(data, `dir-${MARKER}`, `${MARKER}.txt`), `${MARKER}\n`.repeat(2000));
  await writeFile(join(data, 'random.bin'), randomBytes(1024 * 1024 + 5));
  keys = await tempDir('pass-keys');
  await writeFile(join(keys, 'pass.txt'), `${PASSPHRASE}\n`);
  await writeFile(join(keys, 'wrong.txt'), 'not-the-passphrase\n');
  await writeFile(join(keys, 'empty.txt'), '\n');
  store = await tempDir('pass-store');
});

afterAll(removeTempDirs);

describe('a passphrase-encrypted backup', () => {
  it('refuses a passphrase with recipients, and an empty passphrase, before storing anything', async () => {
    const target = ['--target', `file://${join(store, 'refused')}`];
    const recipient = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p';
    const both = await runBk([
      'backup',
      ...target,
      '--path',
      data,
      '--recipient',
      recipient,
      '--passphrase-file',
      join(keys, 'pass.txt'),
    ]);
    expect(both.code, both.stderr).toBe(2);
    expect(both.stderr).toContain('not both');
    const fromEnv = await runBk(['backup', ...target, '--path', data, '--recipient', recipient], {
      env: { BK_AGE_PASSPHRASE: PASSPHRASE },
    });
    expect(fromEnv.code, fromEnv.stderr).toBe(2);
    expect(fromEnv.stderr).toContain('BK_AGE_PASSPHRASE');
    const empty = await runBk([
      'backup',
      ...target,
      '--path',
      data,
      '--passphrase-file',
      join(keys, 'empty.txt'),
    ]);
    expect(empty.code, empty.stderr).toBe(2);
    for (const run of [both, fromEnv, empty]) expect(run.stdout + run.stderr).not.toContain(PASSPHRASE);
    await expect(readdir(join(store, 'refused'))).rejects.toThrow();
  });

  it('hides names and bytes, opens with age -d and the passphrase, restores with it only', async () => {
    const target = ['--target', `file://${store}`];
    const backedUp = await runBk([
      '--json',
      'backup',
      ...target,
      '--path',
      data,
      '--passphrase-file',
      join(keys, 'pass.txt'),
    ]);
    expect(backedUp.code, backedUp.stderr).toBe(0);
    const result = JSON.parse(backedUp.stdout) as { name: string; key: string; encrypted: boolean };
    expect(result.key.endsWith('.tar.gz.age')).toBe(true);
    expect(result.encrypted).toBe(true);
    expect(backedUp.stdout + backedUp.stderr).not.toContain(PASSPHRASE);

    const objects = await storedObjects();
    for (const [key, bytes] of objects) {
      expect(bytes.includes(MARKER), key).toBe(false);
      expect(bytes.includes('random.bin'), key).toBe(false);
      expect(bytes.includes(PASSPHRASE), key).toBe(false);
    }
    // The sidecar's clear summary records a passphrase and no recipient.
    const sidecar = [...objects].find(([key]) => key.endsWith('.json'))![1];
    expect(JSON.parse(sidecar.toString()).encryption).toEqual({
      format: 'age',
      recipients: [],
      passphrase: true,
    });
    const index = [...objects].find(([key]) => key.includes('.entries') && key.endsWith('.age'));
    expect(index?.[1].subarray(0, 40).toString('latin1')).toMatch(/^age-encryption.org\/v1\n-> scrypt /);

    // The stock age opens the archive with the passphrase (typed on a terminal).
    const archive = [...objects].find(([key]) => key.endsWith('.tar.gz.age'))![1];
    expect(archive.subarray(0, 40).toString('latin1')).toMatch(/^age-encryption.org\/v1\n-> scrypt /);
    const raw = await tempDir('pass-raw');
    await writeFile(join(raw, 'archive.age'), archive);
    await ageOnTerminal(['-d', '-o', join(raw, 'archive.tar.gz'), join(raw, 'archive.age')], [PASSPHRASE]);
    await mkdir(join(raw, 'out'));
    const untarred = await runTar(['-xzf', join(raw, 'archive.tar.gz'), '-C', join(raw, 'out')]);
    expect(untarred).toBe(0);
    expect(await describeTree(join(raw, 'out', 'files', data.slice(1)))).toEqual(await describeTree(data));

    // Without the passphrase inspect shows the clear summary; a wrong one refuses with exit 7.
    const summary = await runBk(['inspect', ...target]);
    expect(summary.code, summary.stderr).toBe(0);
    expect(summary.stdout).toContain('encrypted   age, with a passphrase');
    expect(summary.stdout).toContain('--passphrase-file');
    const to = join(await tempDir('pass-restore'), 'to');
    for (const how of [[], ['--passphrase-file', join(keys, 'wrong.txt')]]) {
      const refused = await runBk(['restore', 'latest', ...target, '--to', to, ...how]);
      expect(refused.code, refused.stderr).toBe(7);
      expect(refused.stderr).toContain('passphrase');
      expect(refused.stdout + refused.stderr).not.toContain('not-the-passphrase');
      await expect(readdir(to)).rejects.toThrow();
    }
    const wrongVerify = await runBk(['verify', ...target], { env: { BK_AGE_PASSPHRASE: 'nope-nope' } });
    expect(wrongVerify.code, wrongVerify.stderr).toBe(7);

    const restored = await runBk([
      'restore',
      'latest',
      ...target,
      '--to',
      to,
      '--passphrase-file',
      join(keys, 'pass.txt'),
    ]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(await describeTree(join(to, data))).toEqual(await describeTree(data));
    const env = { env: { BK_AGE_PASSPHRASE: PASSPHRASE } };
    const verified = await runBk(['verify', ...target], env);
    expect(verified.code, verified.stderr).toBe(0);
    const full = await runBk(['inspect', ...target, '--entries'], env);
    expect(full.code, full.stderr).toBe(0);
    expect(full.stdout).toContain(MARKER);
    const out = await tempDir('pass-extract');
    const extracted = await runBk(['extract', 'latest', ...target, '--to', out], env);
    expect(extracted.code, extracted.stderr).toBe(0);
    expect(await describeTree(join(out, 'files', data.slice(1)))).toEqual(await describeTree(data));
    for (const run of [restored, verified, full, extracted])
      expect(run.stdout + run.stderr).not.toContain(PASSPHRASE);
  }, 180_000);
});

function runTar(args: string[]): Promise<number | null> {
  return new Promise((resolve) => spawn('tar', args, { stdio: 'ignore' }).on('exit', resolve));
}
