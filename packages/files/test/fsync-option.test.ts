import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backup, ConfigError, MemoryStorage, restore } from '@bk/core';
import { afterEach, expect, it } from 'vitest';
import { files, fromConfig } from '../src/index.ts';

let directory: string;
afterEach(() => rm(directory, { recursive: true, force: true }));

it('restores with fsync on, and validates the option', async () => {
  directory = await mkdtemp(join(tmpdir(), 'bk-fsync-'));
  await writeFile(join(directory, 'a.cfg'), 'a\n');
  const storage = new MemoryStorage();
  const component = files({
    root: directory,
    paths: ['a.cfg'],
    restoreTo: join(directory, 'out'),
    fsync: true,
  });
  const { name } = await backup({ storage, components: [component] });
  await restore({ storage, name, restorers: [component] });
  expect(await readFile(join(directory, 'out', 'a.cfg'), 'utf8')).toBe('a\n');
  expect(fromConfig({ paths: ['/etc/hosts'], fsync: true }).fsync).toBe(true);
  expect(() => fromConfig({ paths: ['/etc/hosts'], fsync: 'yes' })).toThrow(ConfigError);
});
