import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { backup, restore } from '../src/index.ts';

let workspace: string;
afterEach(() => rm(workspace, { recursive: true, force: true }));

it("backs up and restores in one call each: import { backup, restore } from '@bk/files'", async () => {
  workspace = await mkdtemp(join(tmpdir(), 'bk-files-embed-'));
  const source = join(workspace, 'etc');
  await mkdir(source);
  await writeFile(join(source, 'haproxy.cfg'), 'global\n');
  const target = join(workspace, 'backups');
  const made = await backup(`file://${target}`, { name: 'haproxy', root: source, paths: ['haproxy.cfg'] });
  // A newer backup of another component: latest for "haproxy" is still the one above.
  await backup(target, { name: 'other', root: source, paths: ['haproxy.cfg'] });
  const restored = await restore(target, {
    name: 'haproxy',
    root: source,
    paths: ['haproxy.cfg'],
    restoreTo: join(workspace, 'restored'),
  });
  expect(restored.name).toBe(made.name);
  expect(await readFile(join(workspace, 'restored', 'haproxy.cfg'), 'utf8')).toBe('global\n');
  await expect(backup('ftp://example.org/x', { paths: ['/etc'] })).rejects.toThrow(/"ftp:"/);
});
