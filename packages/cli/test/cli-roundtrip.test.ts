import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import type { ManifestEntry, SidecarManifest } from '@bk/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ListedBackup } from '../src/commands/list-command.ts';
import {
  assertBuilt,
  describeTree,
  removeTempDirs,
  runBk,
  runBkJson,
  sha256,
  tempDir,
} from './bk-process.ts';

const run = promisify(execFile);

async function makeTree(root: string): Promise<void> {
  await mkdir(join(root, 'conf.d', 'nested'), { recursive: true });
  await mkdir(join(root, 'empty dir'));
  await writeFile(join(root, 'haproxy.cfg'), 'global\n  maxconn 4096\n'.repeat(200));
  await writeFile(join(root, 'conf.d', 'nested', 'random.bin'), randomBytes(300_000));
  await writeFile(join(root, 'conf.d', 'empty'), '');
  await writeFile(join(root, 'conf.d', 'ünïcode name.txt'), 'ü\n');
  await symlink('haproxy.cfg', join(root, 'current.cfg'));
}

/** Checks the archive with standard tools and returns what its manifest.json says. */
async function checkWithGnuTools(archive: string, extractTo: string): Promise<void> {
  await run('gzip', ['-t', archive]);
  await mkdir(extractTo, { recursive: true });
  await run('tar', ['-xzf', archive, '-C', extractTo]);
  const manifest = JSON.parse(await readFile(join(extractTo, 'manifest.json'), 'utf8')) as SidecarManifest;
  // The entries are listed in the entry index beside the archive: gzip NDJSON, each
  // component's entries after a {"component": name} line.
  const index = gunzipSync(await readFile(archive.replace(/\.tar\.gz$/, '.entries.ndjson.gz')))
    .toString('utf8')
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as ManifestEntry & { component?: string });
  expect(manifest.entryIndex?.entries).toBe(index.filter((line) => line.component === undefined).length);
  const listed = new Set<string>();
  let current = '';
  for (const entry of index) {
    if (entry.component !== undefined) {
      current = entry.component;
      continue;
    }
    const path = join(extractTo, current, entry.path);
    listed.add(`${current}/${entry.path}`);
    if (entry.type !== 'file') continue;
    const bytes = await readFile(path);
    expect(bytes.byteLength, path).toBe(entry.size);
    expect(sha256(bytes), path).toBe(entry.sha256);
  }
  const extracted = Object.entries(await describeTree(extractTo))
    .filter(
      ([path, kind]) =>
        kind.startsWith('sha256') && path !== 'manifest.json' && !path.startsWith('manifest.entries/'),
    )
    .map(([path]) => path);
  expect(extracted.length).toBeGreaterThan(0);
  // The archive holds the entry index too, in sections: the same lines, byte for byte.
  expect(await readFile(join(extractTo, 'manifest.entries', '000000.ndjson'), 'utf8')).toBe(
    gunzipSync(await readFile(archive.replace(/\.tar\.gz$/, '.entries.ndjson.gz'))).toString('utf8'),
  );
  for (const path of extracted) expect(listed.has(path), `${path} is in the manifest`).toBe(true);
}

beforeAll(assertBuilt);
afterAll(removeTempDirs);

describe('bk backup → ls → restore (end to end)', () => {
  it('backs up --path, lists it, restores byte-identically, and the archive opens with gzip and tar', async () => {
    const data = await tempDir('data');
    const target = await tempDir('target');
    const restoreTo = await tempDir('restore');
    await makeTree(data);
    const made = await runBk([
      'backup',
      '--target',
      `file://${target}`,
      '--path',
      data,
      '--label',
      'by=test',
    ]);
    expect(made.stderr).toMatch(/files: \d+ entries/);
    expect(made.code, made.stderr).toBe(0);
    const line = /^(backup_\d{8}_\d{6}) {2}\d+\.\d (?:KiB|MiB) {2}sha256 [0-9a-f]{64} {2}(\S+)\n$/.exec(
      made.stdout,
    );
    expect(line, made.stdout).not.toBeNull();
    const [, name, location] = line!;
    expect(location).toBe(`file://${target}/${name}.tar.gz`);

    const listed = await runBkJson<{ backups: ListedBackup[] }>(['ls', '--target', `file://${target}`]);
    expect(listed.json.backups.map((item) => item.name)).toEqual([name]);
    expect(listed.json.backups[0]!.size).toBe((await stat(join(target, `${name}.tar.gz`))).size);

    const restored = await runBk(['restore', 'latest', '--to', restoreTo, '--target', `file://${target}`]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(await describeTree(join(restoreTo, data))).toEqual(await describeTree(data));

    await checkWithGnuTools(join(target, `${name}.tar.gz`), await tempDir('extracted'));
  });

  it('backs up from ./bk.config.json with relative paths and restores with --to', async () => {
    const project = await tempDir('project');
    await makeTree(join(project, 'data'));
    await writeFile(
      join(project, 'bk.config.json'),
      JSON.stringify({
        target: 'backups',
        components: [{ kind: 'files', name: 'app', root: '.', paths: ['data'], exclude: ['**/*.bin'] }],
      }),
    );
    const made = await runBkJson<{ name: string; location: string; components: Array<{ name: string }> }>(
      ['backup', '--level', '9'],
      { cwd: project },
    );
    expect(made.code, made.stderr).toBe(0);
    expect(made.json.location).toBe(`file://${project}/backups/${made.json.name}.tar.gz`);
    expect(made.json.components.map((component) => component.name)).toEqual(['app']);
    const restored = await runBk(['restore', '--to', 'restored'], { cwd: project });
    expect(restored.code, restored.stderr).toBe(0);
    const expected = await describeTree(join(project, 'data'));
    delete expected[join('conf.d', 'nested', 'random.bin')];
    expect(await describeTree(join(project, 'restored', 'data'))).toEqual(expected);
    await checkWithGnuTools(join(project, 'backups', `${made.json.name}.tar.gz`), join(project, 'extracted'));
    // A second restore into the same place conflicts; skip leaves it alone.
    expect((await runBk(['restore', '--to', 'restored'], { cwd: project })).code).toBe(5);
    const skipped = await runBkJson<{ skipped: number }>(
      ['restore', '--to', 'restored', '--conflict', 'skip'],
      {
        cwd: project,
      },
    );
    expect(skipped.code, skipped.stderr).toBe(0);
    expect(skipped.json.skipped).toBeGreaterThan(0);
  });
});

describe('bk --json and exit codes (end to end)', () => {
  it('prints one JSON document for backup, ls, inspect, verify and prune', async () => {
    const data = await tempDir('json-data');
    const target = `file://${await tempDir('json-target')}`;
    await writeFile(join(data, 'a.txt'), 'alpha');
    const names: string[] = [];
    for (let index = 0; index < 3; index += 1) {
      const made = await runBkJson<{ name: string; sha256: string; size: number }>([
        'backup',
        '--target',
        target,
        '--path',
        data,
      ]);
      expect(made.code, made.stderr).toBe(0);
      expect(made.stderr).toBe('');
      names.push(made.json.name);
    }
    const listed = await runBkJson<{ backups: ListedBackup[] }>(['ls', '--target', target]);
    expect(listed.json.backups.map((item) => item.name)).toEqual(names);
    expect(listed.json.backups[0]).toEqual({
      name: names[0],
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/),
      size: expect.any(Number),
      key: `${names[0]}.tar.gz`,
      encrypted: false,
      unencryptedSecrets: expect.any(Array),
      parent: null,
    });
    const inspected = await runBkJson<SidecarManifest>(['inspect', names[1]!, '--target', target]);
    expect(inspected.json.name).toBe(names[1]);
    expect(inspected.json.components[0]!.stats.entries).toBeGreaterThan(0);
    expect(inspected.json.entryIndex?.key).toBe(`${names[1]}.entries.ndjson.gz`);
    const verified = await runBkJson<{ ok: boolean; entries: number }>(['verify', '--target', target]);
    expect(verified.json).toMatchObject({ ok: true });
    const pruned = await runBkJson<{ kept: string[]; deleted: string[] }>([
      'prune',
      '--keep-last',
      '2',
      '--target',
      target,
    ]);
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(pruned.json).toMatchObject({ kept: names.slice(1), deleted: names.slice(0, 1) });
    const after = await runBkJson<{ backups: ListedBackup[] }>(['ls', '--target', target]);
    expect(after.json.backups.map((item) => item.name)).toEqual(names.slice(1));
  });

  it('exits 2 for an unknown command or flag and 3 for a missing backup', async () => {
    const target = `file://${await tempDir('codes')}`;
    const command = await runBk(['frobnicate']);
    expect(command.code).toBe(2);
    expect(command.stderr).toMatch(/^bk: Unknown command 'frobnicate'/);
    const flag = await runBkJson<{ error: { code: string } }>(['ls', '--frobnicate', '--target', target]);
    expect(flag.code).toBe(2);
    expect(flag.json.error.code).toBe('BK_CONFIG');
    const missing = await runBkJson<{ error: { code: string; message: string } }>([
      'restore',
      'backup_20200101_000000',
      '--to',
      await tempDir('unused'),
      '--target',
      target,
    ]);
    expect(missing.code).toBe(3);
    expect(missing.json.error.code).toBe('BK_NOT_FOUND');
    expect(missing.stderr).not.toMatch(/\n\s+at /);
    expect((await runBk(['verify', '--target', target])).code).toBe(3);
  });
});
