import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSwift } from '@bk/test-servers';
import { expect, it } from 'vitest';
import { storageFromUrl } from '../src/index.ts';
import { MIB, openUploads, rawKeys } from './helpers.ts';
import { defineS3Suite, type SuiteContext } from './s3-suite.ts';

const BK = fileURLToPath(new URL('../../cli/dist/bin.js', import.meta.url));

function runBk(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BK, ...args], {
    env: { ...process.env, BK_DEBUG: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function cliTests(context: () => SuiteContext): void {
  it('bk backup --target s3://… and bk restore round-trip through the built CLI', async (test) => {
    if (!existsSync(BK)) {
      test.skip(`${BK} is missing: run pnpm build first`);
      return;
    }
    const { server, client, bucket } = context();
    const work = await mkdtemp(join(tmpdir(), 'bk-s3-cli-'));
    try {
      const source = join(work, 'source');
      await mkdir(join(source, 'sub'), { recursive: true });
      const big = randomBytes(12 * MIB);
      await writeFile(join(source, 'small.txt'), 'hello from bk\n');
      await writeFile(join(source, 'sub', 'big.bin'), big);
      const target = `s3://${bucket}/cli/nightly?endpoint=${encodeURIComponent(server.endpoint)}&partSize=${5 * MIB}`;
      const env = {
        S3_ACCESS_KEY: server.accessKeyId,
        S3_SECRET_KEY: server.secretAccessKey,
        S3_REGION: server.region,
      };
      const backup = await runBk(['--json', 'backup', '--target', target, '--path', source], env);
      expect(backup.code, backup.stderr).toBe(0);
      expect(backup.stdout + backup.stderr).not.toContain(server.secretAccessKey);
      const made = JSON.parse(backup.stdout) as { name: string; key: string };
      // Swift's s3api ignores If-None-Match: the run takes a name no other run can pick.
      expect(made.name).toMatch(/^backup_\d{8}_\d{6}_1\d{15}$/);
      const keys = await rawKeys(client, bucket, 'cli/nightly/');
      expect(keys).toEqual([
        `cli/nightly/${made.name}.entries.ndjson.gz`,
        `cli/nightly/${made.name}.manifest.json`,
        `cli/nightly/${made.name}.tar.gz`,
      ]);
      expect(await openUploads(client, bucket, 'cli/')).toEqual([]);

      const listed = await runBk(['--json', 'ls', '--target', target], env);
      expect(listed.code, listed.stderr).toBe(0);
      expect(listed.stdout).toContain(made.name);

      const restoreTo = join(work, 'restored');
      const restored = await runBk(
        ['--json', 'restore', 'latest', '--target', target, '--to', restoreTo],
        env,
      );
      expect(restored.code, restored.stderr).toBe(0);
      expect(await readFile(join(restoreTo, source, 'small.txt'), 'utf8')).toBe('hello from bk\n');
      expect((await readFile(join(restoreTo, source, 'sub', 'big.bin'))).equals(big)).toBe(true);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }, 180_000);

  it('storageFromUrl reads S3_* variables and opens a working storage', async () => {
    const { server, bucket } = context();
    const storage = storageFromUrl(new URL(`s3://${bucket}/from-url`), {
      S3_REGION_ENDPOINT: server.endpoint,
      S3_ACCESS_KEY: server.accessKeyId,
      S3_SECRET_KEY: server.secretAccessKey,
    });
    expect(storage.description).toBe(`s3://${bucket}/from-url/`);
    await storage.put('a.txt', new TextEncoder().encode('a'));
    expect((await storage.stat('a.txt'))?.size).toBe(1);
    const wrong = storageFromUrl(new URL(`s3://${bucket}/from-url`), {
      S3_REGION_ENDPOINT: server.endpoint,
      S3_ACCESS_KEY: server.accessKeyId,
      S3_SECRET_KEY: 'not-the-secret',
    });
    const error = await wrong.stat('a.txt').catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'BK_STORAGE' });
    expect(String((error as Error).message)).not.toContain('not-the-secret');
  });

  it("If-None-Match forced on: Swift s3api refuses conditional PUTs with 501 (why 'auto' probes)", async () => {
    const { storage } = context();
    const forced = storage({ conditionalCreate: 'if-none-match' });
    await expect(forced.put('x', new TextEncoder().encode('x'), { ifNoneMatch: true })).rejects.toMatchObject(
      {
        code: 'BK_STORAGE',
      },
    );
  });
}

// Swift 2.30 + s3api: real signatures, real multipart with abort and list; conditional PUTs 501.
defineS3Suite({
  name: 'Swift s3api',
  start: async () => {
    const swift = await startSwift();
    return { ...swift.s3, stop: swift.stop };
  },
  listsUploads: true,
  conditionalCreate: false,
  largeBytes: Number(process.env.BK_S3_LARGE_MIB ?? 1024) * MIB,
  extra: cliTests,
});
