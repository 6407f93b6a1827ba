import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../src/main.ts';

const run = promisify(execFile);
const created: string[] = [];
async function tempDir(label: string): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), `bk-cli-files-incr-${label}-`));
  created.push(directory);
  return directory;
}
afterAll(async () => {
  for (const directory of created) await rm(directory, { recursive: true, force: true });
});

/** Runs `bk --json …` in process. */
async function bk(cwd: string, ...argv: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await main(['--json', ...argv], {
    stdout: { write: (chunk: string) => (stdout += chunk) },
    stderr: { write: (chunk: string) => (stderr += chunk) },
    env: {},
    cwd,
  });
  return { code, json: JSON.parse(stdout) as Record<string, unknown>, stderr };
}

describe('bk backup --incremental --path on a real tree', () => {
  it('three incrementals with changes between restore with their chain to the last tree', async () => {
    const workspace = await tempDir('work');
    const tree = join(workspace, 'tree');
    await mkdir(join(tree, 'data/old'), { recursive: true });
    for (let index = 0; index < 50; index += 1)
      await writeFile(join(tree, 'data', `f${index}`), randomBytes(32 * 1024));
    await writeFile(join(tree, 'data/old/x.txt'), 'old');
    const target = pathToFileURL(join(workspace, 'store')).href;
    const made: Array<{ name: string; parent: string | null; size: number }> = [];
    const backupOnce = async () => {
      const result = await bk(workspace, 'backup', '--incremental', '--path', tree, '--target', target);
      expect(result.code, result.stderr).toBe(0);
      made.push(result.json as { name: string; parent: string | null; size: number });
      await new Promise((resolve) => setTimeout(resolve, 1100)); // one name per second
    };
    await backupOnce();
    await writeFile(join(tree, 'data/f3'), randomBytes(1000));
    await rm(join(tree, 'data/old'), { recursive: true });
    await backupOnce();
    await writeFile(join(tree, 'data/new.txt'), 'new');
    await rm(join(tree, 'data/f4'));
    await backupOnce();
    expect(made.map((item) => item.parent)).toEqual([null, made[0]!.name, made[1]!.name]);
    expect(made[1]!.size).toBeLessThan(made[0]!.size * 0.1);

    const to = join(workspace, 'restored');
    const restored = await bk(workspace, 'restore', made[2]!.name, '--to', to, '--target', target);
    expect(restored.code, restored.stderr).toBe(0);
    expect((restored.json.chain as { name: string }[]).map((link) => link.name)).toEqual(
      made.map((item) => item.name),
    );
    await run('diff', ['-r', tree, join(to, tree)]);
  }, 60_000);
});
