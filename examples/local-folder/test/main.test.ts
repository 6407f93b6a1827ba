import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { backupAndRestore } from '../src/main.ts';

let workspace: string;
afterEach(() => rm(workspace, { recursive: true, force: true }));

it('backs up a directory into a local folder and restores it', async () => {
  workspace = await mkdtemp(join(tmpdir(), 'bk-example-'));
  const data = join(workspace, 'data');
  await mkdir(join(data, 'conf.d'), { recursive: true });
  await writeFile(join(data, 'conf.d', 'app.cfg'), 'listen 8080\n');
  const { written, restored } = await backupAndRestore(
    data,
    join(workspace, 'backups'),
    join(workspace, 'restored'),
  );
  expect(written.name).toMatch(/^backup_/);
  expect(restored.components.data?.entries).toBeGreaterThan(0);
  expect(await readFile(join(workspace, 'restored', 'conf.d', 'app.cfg'), 'utf8')).toBe('listen 8080\n');
});
