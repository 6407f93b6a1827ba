import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, removeTempDirs, runBk, runBkJson, tempDir } from './bk-process.ts';

let data: string;

beforeAll(async () => {
  assertBuilt();
  data = await tempDir('secrets-data');
  await mkdir(join(data, 'tls'), { recursive: true });
  await writeFile(join(data, 'app.conf'), 'listen 8080\n');
  await writeFile(join(data, 'tls', 'server.key'), '-----BEGIN PRIVATE KEY-----\n');
  await writeFile(join(data, 'tls', 'server.crt'), '-----BEGIN CERTIFICATE-----\n');
  await writeFile(join(data, 'tokens.txt'), 'not a secret by name\n');
});

afterAll(removeTempDirs);

interface BackedUp {
  name: string;
  unencryptedSecrets: boolean;
  components: Array<{ name: string; secrets?: { captured: Array<{ what: string; paths: string[] }> } }>;
}

describe('secrets accounting in bk', () => {
  it('records secret files, warns when they are stored unencrypted, and inspect lists them', async () => {
    const store = await tempDir('secrets-store');
    const target = ['--target', `file://${store}`];
    const made = await runBkJson<BackedUp>(['backup', ...target, '--path', data]);
    expect(made.code, made.stderr).toBe(0);
    expect(made.json.unencryptedSecrets).toBe(true);
    expect(made.json.components[0]?.secrets?.captured).toEqual([
      {
        kind: 'private-key',
        what: 'private keys and keystores (by file name)',
        paths: [`${data.slice(1)}/tls/server.key`],
      },
    ]);
    // Text mode warns on stderr and names the component and the secret.
    const warned = await runBk(['backup', ...target, '--path', data]);
    expect(warned.code, warned.stderr).toBe(0);
    expect(warned.stderr).toMatch(
      /bk: warning: files: stored unencrypted although it holds secrets: private keys and keystores \(by file name\) \(\S+tls\/server\.key\)/,
    );
    const listed = await runBkJson<{
      backups: Array<{ name: string; encrypted: boolean; unencryptedSecrets?: string[] }>;
    }>(['ls', ...target]);
    expect(listed.json.backups.map((item) => [item.encrypted, item.unencryptedSecrets])).toEqual([
      [false, ['files']],
      [false, ['files']],
    ]);
    expect((await runBk(['ls', ...target])).stdout).toContain(`${made.json.name}  `);
    expect((await runBk(['ls', ...target])).stdout).toContain('UNENCRYPTED secrets of files');
    const inspected = await runBk(['inspect', made.json.name, ...target]);
    expect(inspected.code, inspected.stderr).toBe(0);
    expect(inspected.stdout).toContain('secrets     held by files: stored UNENCRYPTED');
    expect(inspected.stdout).toMatch(
      /secret \(stored unencrypted\): private keys and keystores \(by file name\) \(\S+server\.key\)/,
    );
  });

  it('--require-encryption refuses with exit code 8 and stores nothing; encrypted it passes', async () => {
    const store = await tempDir('secrets-refused');
    const target = ['--target', `file://${store}`];
    const refused = await runBk(['backup', ...target, '--path', data, '--require-encryption']);
    expect(refused.code, refused.stderr).toBe(8);
    expect(refused.stderr).toContain('Refusing to store secrets unencrypted: "files"');
    expect(refused.stderr).toContain('tls/server.key');
    // Only the fs store's (empty) temp directory remains: no object, no lock.
    const left = await readdir(store, { recursive: true, withFileTypes: true });
    expect(left.filter((entry) => !entry.isDirectory()).map((entry) => entry.name)).toEqual([]);
    const keys = await tempDir('secrets-keys');
    const made = await runBkJson<{ recipient: string }>(['keygen', '-o', join(keys, 'key.txt')]);
    const encrypted = await runBkJson<BackedUp>([
      'backup',
      ...target,
      '--path',
      data,
      '--require-encryption',
      '--recipient',
      made.json.recipient,
    ]);
    expect(encrypted.code, encrypted.stderr).toBe(0);
    expect(encrypted.json.unencryptedSecrets).toBe(false);
    const listed = await runBkJson<{ backups: Array<{ encrypted: boolean; unencryptedSecrets?: string[] }> }>(
      ['ls', ...target],
    );
    expect(listed.json.backups).toMatchObject([{ encrypted: true }]);
    expect(listed.json.backups[0]?.unencryptedSecrets).toBeUndefined();
    expect((await runBk(['ls', ...target])).stdout).toMatch(/ {2}encrypted\n$/);
  });

  it('takes encryption.required from the config, and backs up what holds no secret', async () => {
    const project = await tempDir('secrets-project');
    await writeFile(
      join(project, 'bk.config.json'),
      JSON.stringify({
        target: 'backups',
        encryption: { required: true },
        components: [
          { kind: 'files', name: 'plain', root: data, paths: ['app.conf'] },
          { kind: 'files', name: 'tls', root: data, paths: ['tls'] },
        ],
      }),
    );
    expect((await runBk(['backup'], { cwd: project })).code).toBe(8);
    const plain = await runBkJson<BackedUp>(['backup', '--only', 'plain'], { cwd: project });
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.json.unencryptedSecrets).toBe(false);
  });
});
