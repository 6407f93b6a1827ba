import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  collect,
  gzip,
  MANIFEST_FORMAT,
  type Manifest,
  type ManifestComponent,
  type ManifestEntry,
  packTar,
  type SidecarManifest,
  serializeManifest,
  sha256Hex,
  type TarRecordInput,
} from '@bk/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, removeTempDirs, runBk, runBkJson, tempDir } from './bk-process.ts';

const NAME = 'backup_20260101_000000';
const PAYLOAD = new TextEncoder().encode('escaped!\n');

interface HostileEntry {
  path: string;
  type: 'file' | 'symlink';
  linkTarget?: string;
  /** The tar record's name when it differs from what the manifest says. */
  tarName?: string;
}

/**
 * Writes a backup by hand whose sizes and sha256s are all correct, so that only the paths are
 * hostile: an archive `<component>/<path>` per entry, its manifest last, and the sidecar.
 */
async function writeHostileBackup(target: string, component: string, entries: HostileEntry[]): Promise<void> {
  const manifestEntries: ManifestEntry[] = entries.map((entry) =>
    entry.type === 'file'
      ? { path: entry.path, type: 'file', size: PAYLOAD.byteLength, sha256: sha256Hex(PAYLOAD), mode: 0o644 }
      : { path: entry.path, type: 'symlink', size: 0, linkTarget: entry.linkTarget! },
  );
  const manifestComponent: ManifestComponent = {
    name: component,
    kind: 'files',
    info: {},
    entries: manifestEntries,
    stats: { entries: entries.length, bytes: manifestEntries.reduce((sum, entry) => sum + entry.size, 0) },
  };
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    formatVersion: 1,
    name: NAME,
    createdAt: '2026-01-01T00:00:00.000Z',
    completedAt: '2026-01-01T00:00:01.000Z',
    bk: { version: '0.1.0' },
    compression: 'gzip',
    encryption: null,
    parent: null,
    labels: {},
    components: [manifestComponent],
  };
  const inner = serializeManifest(manifest);
  const records = (async function* (): AsyncIterable<TarRecordInput> {
    for (const entry of entries) {
      const name = entry.tarName ?? `${component}/${entry.path}`;
      if (entry.type === 'file') yield { name, type: 'file', size: PAYLOAD.byteLength, body: PAYLOAD };
      else yield { name, type: 'symlink', size: 0, linkTarget: entry.linkTarget! };
    }
    yield { name: 'manifest.json', type: 'file', size: inner.byteLength, body: inner };
  })();
  const archive = await collect(gzip(packTar(records)), 16 * 1024 * 1024);
  const key = `${NAME}.tar.gz`;
  const sidecar: SidecarManifest = {
    ...manifest,
    archive: { key, size: archive.byteLength, sha256: sha256Hex(archive) },
  };
  await writeFile(join(target, key), archive);
  await writeFile(join(target, `${NAME}.manifest.json`), serializeManifest(sidecar));
}

beforeAll(assertBuilt);
afterAll(removeTempDirs);

type Case = [title: string, build: (parent: string) => { component: string; entries: HostileEntry[] }];

const cases: Case[] = [
  ['an entry "../x"', () => ({ component: 'files', entries: [{ path: '../x', type: 'file' }] })],
  [
    'an absolute entry path',
    (parent) => ({ component: 'files', entries: [{ path: `${parent}/x`, type: 'file' }] }),
  ],
  [
    'a symlink escaping the target, then a file beneath it',
    () => ({
      component: 'files',
      entries: [
        { path: 'link', type: 'symlink', linkTarget: '..' },
        { path: 'link/x', type: 'file' },
      ],
    }),
  ],
  [
    'an absolute symlink, then a file beneath it',
    (parent) => ({
      component: 'files',
      entries: [
        { path: 'link', type: 'symlink', linkTarget: parent },
        { path: 'link/x', type: 'file' },
      ],
    }),
  ],
  [
    'a tar record "../x" under a harmless manifest path',
    () => ({ component: 'files', entries: [{ path: 'x', type: 'file', tarName: '../x' }] }),
  ],
  [
    'a tar record "../x" (component "..")',
    () => ({ component: '..', entries: [{ path: 'x', type: 'file' }] }),
  ],
  [
    'an absolute tar record (absolute component name)',
    (parent) => ({ component: parent, entries: [{ path: 'x', type: 'file' }] }),
  ],
];

describe('hostile archives (end to end)', () => {
  for (const [title, build] of cases) {
    it(`refuses ${title} and writes nothing outside --to`, async () => {
      const target = await tempDir('hostile-target');
      const parent = await tempDir('hostile-sentinel');
      const { component, entries } = build(parent);
      await writeHostileBackup(target, component, entries);
      const restored = await runBk([
        'restore',
        '--to',
        join(parent, 'restore'),
        '--target',
        `file://${target}`,
      ]);
      expect([2, 4, 5], `exit ${restored.code}: ${restored.stderr}`).toContain(restored.code);
      expect(restored.stderr).toMatch(/^bk: /);
      expect(restored.stderr).not.toMatch(/\n\s+at /);
      expect((await readdir(parent)).filter((name) => name !== 'restore')).toEqual([]);
      const inside = await readdir(join(parent, 'restore'), { recursive: true }).catch(() => []);
      expect(inside.filter((path) => path.endsWith('x'))).toEqual([]);
    });
  }
});

describe('clear messages and exit codes (end to end)', () => {
  async function restoreWith(target: string, to: string) {
    return runBk(['restore', '--to', to, '--target', `file://${target}`]);
  }

  it('names a file listed under another file, exit 4', async () => {
    const target = await tempDir('nested-target');
    await writeHostileBackup(target, 'files', [
      { path: 'f', type: 'file' },
      { path: 'f/g', type: 'file' },
    ]);
    const restored = await restoreWith(target, join(await tempDir('nested-to'), 'restore'));
    expect(restored.code, restored.stderr).toBe(4);
    expect(restored.stderr).toContain('"f/g" lies under "f", which is a file, not a directory');
  });

  it('restores an absolute link exactly and refuses nothing', async () => {
    const target = await tempDir('abs-link-target');
    await writeHostileBackup(target, 'files', [
      { path: 'etc/localtime', type: 'symlink', linkTarget: '/usr/share/zoneinfo/UTC' },
      { path: 'etc/hostname', type: 'file' },
    ]);
    const to = join(await tempDir('abs-link-to'), 'restore');
    const restored = await restoreWith(target, to);
    expect(restored.code, restored.stderr).toBe(0);
    expect(await readlink(join(to, 'etc/localtime'))).toBe('/usr/share/zoneinfo/UTC');
  });

  it('says --to is a file, exit 2', async () => {
    const target = await tempDir('to-file-target');
    await writeHostileBackup(target, 'files', [{ path: 'x', type: 'file' }]);
    const file = join(await tempDir('to-file'), 'a-file');
    await writeFile(file, 'x');
    const restored = await restoreWith(target, file);
    expect(restored.code, restored.stderr).toBe(2);
    expect(restored.stderr).toContain(`the restore target "${file}" is a file, not a directory`);
  });

  it("refuses an archive.key that is not this backup's archive, exit 4", async () => {
    const target = await tempDir('key-target');
    await writeHostileBackup(target, 'files', [{ path: 'x', type: 'file' }]);
    const sidecarPath = join(target, `${NAME}.manifest.json`);
    for (const key of ['../elsewhere.tar.gz', 'backup_20250101_000000.tar.gz']) {
      const sidecar = JSON.parse(await readFile(sidecarPath, 'utf8'));
      sidecar.archive.key = key;
      await writeFile(sidecarPath, JSON.stringify(sidecar));
      for (const command of [['verify'], ['restore', '--to', join(await tempDir('key-to'), 'r')]]) {
        const run = await runBk([...command, '--target', `file://${target}`]);
        expect(run.code, run.stderr).toBe(4);
        expect(run.stderr).toContain(`archive.key "${key}"`);
      }
    }
  });

  it('says a file: URL cannot carry a user or password, exit 2, printing neither', async () => {
    const run = await runBk(['ls', '--target', 'file://user:secret@localhost/var/backups']);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toContain('carries a user name or password, which a file: URL cannot hold');
    expect(run.stderr).not.toContain('secret');
  });
});

describe('restore onto a full disk (end to end)', () => {
  it('exits 1 with BK_COMPONENT naming the entry and ENOSPC, or skips when no tmpfs can be mounted', async (test) => {
    const data = await tempDir('full-data');
    await writeFile(join(data, 'big.bin'), randomBytes(3 * 1024 * 1024));
    const target = await tempDir('full-target');
    const made = await runBk(['backup', '--target', `file://${target}`, '--path', data]);
    expect(made.code, made.stderr).toBe(0);
    const small = await tempDir('full-disk');
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', small]);
    if (mounted.status !== 0) {
      test.skip(`cannot mount a tmpfs here: ${mounted.stderr.toString().trim()}`);
      return;
    }
    try {
      const restored = await runBkJson<{ error: { code: string; message: string } }>([
        'restore',
        '--to',
        small,
        '--target',
        `file://${target}`,
      ]);
      expect(restored.code).toBe(1);
      expect(restored.json.error.code).toBe('BK_COMPONENT');
      expect(restored.json.error.message).toContain('big.bin');
      expect(restored.json.error.message).toContain('the file system is full');
      expect(restored.json.error.message).toContain('ENOSPC');
    } finally {
      spawnSync('umount', [small]);
    }
  });
});
