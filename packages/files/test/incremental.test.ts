import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  backup,
  MemoryStorage,
  manifestEntries,
  planIncremental,
  restore,
  type SidecarManifest,
} from '@bk/core';
import { afterAll, describe, expect, it } from 'vitest';
import { files } from '../src/files-component.ts';
import { removeTree, snapshotTree, writeSampleTree } from './tree.ts';

const run = promisify(execFile);
const temporary: string[] = [];
async function tempDir(label: string): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), `bk-files-incr-${label}-`));
  temporary.push(directory);
  return directory;
}
afterAll(async () => {
  for (const directory of temporary) await removeTree(directory);
});

let minute = 0;
async function incremental(storage: MemoryStorage, root: string) {
  const plan = await planIncremental({ storage, components: [files({ name: 'tree', root, paths: ['.'] })] });
  minute += 1;
  return backup({
    storage,
    components: plan.components,
    ...(plan.parent ? { parent: plan.parent, incrementalComponents: plan.incrementalComponents } : {}),
    now: () => new Date(Date.UTC(2026, 0, 1, 0, minute)),
  });
}

async function entriesOf(storage: MemoryStorage, manifest: SidecarManifest) {
  const records = [];
  for await (const { record } of manifestEntries(storage, manifest)) records.push(record);
  return records;
}

describe('incremental files backups on real trees', () => {
  it('stores only what changed, records deletions, and the chain restores exactly the last state', async () => {
    const root = await tempDir('source');
    await writeSampleTree(root);
    const bulk = join(root, 'bulk');
    await mkdir(bulk);
    // 100 files of 64 KiB: 1 % changed below is one of them.
    for (let index = 0; index < 100; index += 1)
      await writeFile(join(bulk, `f${index}.bin`), randomBytes(64 * 1024));
    const storage = new MemoryStorage();
    const full = await incremental(storage, root);
    expect(full.manifest.parent).toBeNull();

    // Change one bulk file, add, delete a file and a directory, chmod one, replace one by a link.
    await writeFile(join(bulk, 'f7.bin'), randomBytes(64 * 1024 + 1));
    await writeFile(join(root, 'conf/added.txt'), 'new\n');
    await rm(join(root, 'emoji-🎉.txt'));
    await rm(join(root, 'conf/nested'), { recursive: true });
    await chmod(join(root, 'conf/haproxy.cfg'), 0o600);
    await rm(join(root, 'conf/empty.txt'));
    await symlink('haproxy.cfg', join(root, 'conf/empty.txt'));
    const second = await incremental(storage, root);
    expect(second.manifest.parent).toBe(full.name);
    expect(second.manifest.components[0]!.incremental).toBe(true);
    const records = await entriesOf(storage, second.manifest);
    const refs = records.filter((record) => record.ref !== undefined);
    expect(refs.length).toBeGreaterThan(100);
    expect(refs.every((record) => record.ref === full.name)).toBe(true);
    expect(records.filter((record) => record.deleted).map((record) => record.path)).toEqual([
      'conf/nested',
      'emoji-🎉.txt',
    ]);
    const stored = records.filter((record) => record.type === 'file' && !record.ref && !record.deleted);
    expect(stored.map((record) => record.path).sort()).toEqual([
      'bulk/f7.bin',
      'conf/added.txt',
      'conf/haproxy.cfg',
    ]);
    // The second backup of a tree with 1 % changed stores far less than the first.
    expect(second.size).toBeLessThan(full.size * 0.05);

    // A file rewritten with a new inode but the same size and mtime is stored again.
    const before = await stat(join(bulk, 'f9.bin'));
    await rm(join(bulk, 'f9.bin'));
    await writeFile(join(bulk, 'f9.bin'), randomBytes(64 * 1024));
    await utimes(join(bulk, 'f9.bin'), before.atime, before.mtime);
    await rm(join(root, 'conf/added.txt'));
    await mkdir(join(root, 'conf/nested'));
    await writeFile(join(root, 'conf/nested/back.txt'), 'back\n');
    const third = await incremental(storage, root);
    const thirdRecords = await entriesOf(storage, third.manifest);
    expect(thirdRecords.find((record) => record.path === 'bulk/f9.bin')?.ref).toBeUndefined();
    // References point at the backup that holds the body, not at the parent that referenced it.
    expect(thirdRecords.find((record) => record.path === 'bulk/f0.bin')?.ref).toBe(full.name);
    expect(thirdRecords.find((record) => record.path === 'bulk/f7.bin')?.ref).toBe(second.name);

    const target = await tempDir('target');
    const restorer = files({ name: 'tree', root: target, paths: ['.'] });
    const result = await restore({ storage, name: 'latest', restorers: [restorer], chain: true });
    expect(result.chain?.map((link) => link.name)).toEqual([full.name, second.name, third.name]);
    expect(await snapshotTree(target)).toEqual(await snapshotTree(root));
    await run('diff', ['-r', '--no-dereference', root, target]);

    // One link alone brings only what it stored.
    const one = await tempDir('one');
    await restore({
      storage,
      name: second.name,
      restorers: [files({ name: 'tree', root: one, paths: ['.'] })],
      conflict: 'overwrite',
    });
    const alone = (await snapshotTree(one)).filter((item) => item.type === 'file').map((item) => item.path);
    expect(alone.sort()).toEqual(['bulk/f7.bin', 'conf/added.txt', 'conf/haproxy.cfg']);
  }, 120_000);

  it('removes deleted paths only with overwrite, and never through a link', async () => {
    const root = await tempDir('links');
    await mkdir(join(root, 'keep'));
    await writeFile(join(root, 'keep/a.txt'), 'a');
    await writeFile(join(root, 'gone.txt'), 'g');
    const storage = new MemoryStorage();
    const first = await incremental(storage, root);
    await rm(join(root, 'gone.txt'));
    await rm(join(root, 'keep'), { recursive: true });
    const second = await incremental(storage, root);
    const target = await tempDir('links-target');
    const restorer = files({ name: 'tree', root: target, paths: ['.'] });
    await restore({ storage, name: first.name, restorers: [restorer] });
    // The directory that is gone is now a link to a directory outside the target.
    const outside = await tempDir('outside');
    await writeFile(join(outside, 'a.txt'), 'not the backup');
    await rm(join(target, 'keep'), { recursive: true });
    await symlink(outside, join(target, 'keep'));
    const skipped = await restore({ storage, name: second.name, restorers: [restorer], conflict: 'skip' });
    expect(skipped.components.tree).toMatchObject({ skipped: 2, details: { deleted: 2, removed: 0 } });
    expect((await snapshotTree(target)).map((item) => item.path)).toEqual(['gone.txt', 'keep']);
    const removed = await restore({
      storage,
      name: second.name,
      restorers: [restorer],
      conflict: 'overwrite',
    });
    expect(removed.components.tree).toMatchObject({ details: { deleted: 2, removed: 2 } });
    expect(await snapshotTree(target)).toEqual([]);
    expect((await snapshotTree(outside)).map((item) => item.path)).toEqual(['a.txt']);
  }, 60_000);
});
