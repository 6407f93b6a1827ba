import { randomFillSync } from 'node:crypto';
import { open, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ListedBackup } from '../src/commands/list-command.ts';
import { assertBuilt, removeTempDirs, runBkJson, sleep, startBk, tempDir, waitFor } from './bk-process.ts';

const BIG_FILE_BYTES = 300 * 1024 * 1024;
let bigData: string;

/** Writes incompressible bytes a few MiB at a time, so the test itself stays small in memory. */
async function writeRandomFile(path: string, size: number): Promise<void> {
  const chunk = Buffer.alloc(4 * 1024 * 1024);
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

async function objectsIn(directory: string): Promise<string[]> {
  return (await readdir(directory, { recursive: true, withFileTypes: true }))
    .filter((entry) => !entry.isDirectory())
    .map((entry) => join(entry.parentPath, entry.name).slice(directory.length + 1));
}

/** Starts a backup of the big file and waits until it holds its name's lock, i.e. is under way. */
async function startBigBackup(target: string) {
  const started = Date.now();
  const run = startBk(['backup', '--target', `file://${target}`, '--path', bigData, '--level', '1']);
  await waitFor(
    async () => (await objectsIn(target)).some((key) => key.endsWith('.lock')),
    10_000,
    'the lock',
  );
  await sleep(Math.max(0, 500 - (Date.now() - started)));
  return run;
}

beforeAll(async () => {
  assertBuilt();
  bigData = await tempDir('big');
  await writeRandomFile(join(bigData, 'random.bin'), BIG_FILE_BYTES);
}, 60_000);

afterAll(removeTempDirs);

describe('interrupted backups (end to end)', () => {
  it('leaves no backup after SIGKILL, and the next backup succeeds', async () => {
    const target = await tempDir('killed');
    const run = await startBigBackup(target);
    run.child.kill('SIGKILL');
    const killed = await run.done;
    expect(killed.signal, `the backup ended before it was killed: ${killed.stderr}`).toBe('SIGKILL');
    expect(
      (await runBkJson<{ backups: ListedBackup[] }>(['ls', '--target', `file://${target}`])).json.backups,
    ).toEqual([]);

    const small = await tempDir('small');
    await writeFile(join(small, 'file.txt'), 'after the crash');
    const next = await runBkJson<{ name: string }>([
      'backup',
      '--target',
      `file://${target}`,
      '--path',
      small,
    ]);
    expect(next.code, next.stderr).toBe(0);
    const listed = await runBkJson<{ backups: ListedBackup[] }>(['ls', '--target', `file://${target}`]);
    expect(listed.json.backups.map((item) => item.name)).toEqual([next.json.name]);
  });

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`exits 130 on ${signal} and cleans up the target`, async () => {
      const target = await tempDir(signal.toLowerCase());
      const run = await startBigBackup(target);
      run.child.kill(signal);
      const interrupted = await run.done;
      expect(interrupted.code, interrupted.stderr).toBe(130);
      expect(interrupted.stderr).toMatch(new RegExp(`^bk: Interrupted by ${signal}`));
      expect(
        (await runBkJson<{ backups: ListedBackup[] }>(['ls', '--target', `file://${target}`])).json.backups,
      ).toEqual([]);
      const left = await objectsIn(target);
      expect(left.filter((key) => key.endsWith('.lock') || key.endsWith('.tar.gz'))).toEqual([]);
    });
  }
});
