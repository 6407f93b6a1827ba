import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  appendFile,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rename,
  symlink,
  truncate,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { createServer } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AbortedError,
  BkError,
  backup,
  ComponentError,
  ConfigError,
  ConflictError,
  type ConflictPolicy,
  collect,
  type Entry,
  handOver,
  IntegrityError,
  type ManifestEntry,
  MemoryStorage,
  manifestEntries,
  type ProgressEvent,
  type RestoreContext,
  releaseHandedOver,
  restore,
  UnsafePathError,
} from '@bk/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FilesComponent, files, fromConfig } from '../src/index.ts';
import { removeTree, snapshotTree, writeSampleTree } from './tree.ts';

let sandbox: string;

beforeEach(async () => {
  sandbox = await mkdtemp(join(tmpdir(), 'bk-files-'));
});

afterEach(async () => {
  await removeTree(sandbox);
});

function backupContext(events: ProgressEvent[] = [], signal = new AbortController().signal) {
  return { signal, progress: (event: ProgressEvent) => events.push(event), backupName: 'test' };
}

function restoreContext(conflict: ConflictPolicy = 'fail', events: ProgressEvent[] = []): RestoreContext {
  return {
    signal: new AbortController().signal,
    progress: (event) => events.push(event),
    backupName: 'test',
    component: { name: 'files', kind: 'files', info: {} },
    conflict,
  };
}

async function collectEntries(component: FilesComponent, events: ProgressEvent[] = []): Promise<Entry[]> {
  const entries: Entry[] = [];
  for await (const entry of component.backup(backupContext(events))) {
    if (entry.body)
      for await (const _ of entry.body) {
        // Drained: the walk is what is under test.
      }
    entries.push(entry);
  }
  return entries;
}

async function paths(component: FilesComponent): Promise<string[]> {
  return (await collectEntries(component)).map((entry) => entry.path);
}

async function* entriesOf(entries: Entry[]): AsyncIterable<Entry> {
  yield* entries;
}

function text(value: string): AsyncIterable<Uint8Array> {
  return (async function* () {
    yield new TextEncoder().encode(value);
  })();
}

async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to throw');
}

/** Everything under `directory` (recursively, links not followed) except what lies under `skip`. */
async function listing(directory: string, skip: string): Promise<string[]> {
  const found: string[] = [];
  async function walk(current: string): Promise<void> {
    for (const entry of (await readdir(current, { withFileTypes: true })).sort((a, b) =>
      a.name < b.name ? -1 : 1,
    )) {
      const absolute = join(current, entry.name);
      if (absolute === skip) continue;
      const stats = await lstat(absolute);
      found.push(`${absolute} ${stats.mode.toString(8)} ${stats.size} ${stats.mtimeMs}`);
      if (entry.isDirectory()) await walk(absolute);
    }
  }
  await walk(directory);
  return found;
}

describe('FilesComponent backup and restore', () => {
  it('round-trips a tree with contents, modes and mtimes through MemoryStorage', async () => {
    const source = join(sandbox, 'source');
    const target = join(sandbox, 'target');
    await mkdir(source);
    await writeSampleTree(source);
    const storage = new MemoryStorage();
    const component = files({ root: source, paths: ['.'], restoreTo: target });
    const result = await backup({ storage, components: [component] });
    const restored = await restore({ storage, name: result.name, restorers: [component] });
    const expected = await snapshotTree(source);
    expect(await snapshotTree(target)).toEqual(expected);
    expect(expected.find((item) => item.path === 'secret.key')?.mode).toBe(0o600);
    expect(expected.find((item) => item.path === 'big.bin')?.size).toBe(3 * 1024 * 1024);
    expect(await readlink(join(target, 'conf/link-to-cfg'))).toBe('haproxy.cfg');
    expect(restored.components.files).toEqual({
      entries: expected.length,
      bytes: expect.any(Number),
      skipped: 0,
    });
    const manifestPaths: string[] = [];
    for await (const { record } of manifestEntries(storage, result.manifest)) manifestPaths.push(record.path);
    expect(manifestPaths.indexOf('conf')).toBeLessThan(manifestPaths.indexOf('conf/haproxy.cfg'));
  });

  it('yields directories before their contents, in the same order every time', async () => {
    await writeSampleTree(sandbox);
    const component = files({ root: sandbox, paths: [sandbox] });
    const first = await paths(component);
    expect(first).toEqual(await paths(component));
    expect(first).toEqual([
      'big.bin',
      'conf',
      'conf/empty.txt',
      'conf/haproxy.cfg',
      'conf/link-to-cfg',
      'conf/nested',
      'conf/nested/deeper',
      'conf/nested/deeper/leaf.txt',
      'conf/nested/notes.txt',
      'emoji-🎉.txt',
      'latest',
      'naïve café',
      'naïve café/日本語.txt',
      'readonly',
      'readonly/inside.txt',
      'secret.key',
    ]);
    const entries = await collectEntries(component);
    expect(entries.find((entry) => entry.path === 'latest')).toMatchObject({
      type: 'symlink',
      linkTarget: 'conf/nested',
    });
    expect(entries.find((entry) => entry.path === 'conf/nested')).toMatchObject({
      type: 'directory',
      mode: 0o750,
    });
  });

  it('applies include and exclude globs to root-relative paths', async () => {
    await writeSampleTree(sandbox);
    expect(await paths(files({ root: sandbox, paths: ['.'], include: ['**/*.cfg'] }))).toEqual([
      'conf',
      'conf/haproxy.cfg',
    ]);
    expect(
      await paths(files({ root: sandbox, paths: ['conf'], include: ['conf/**'], exclude: ['**/*.txt'] })),
    ).toEqual(['conf', 'conf/haproxy.cfg', 'conf/link-to-cfg', 'conf/nested', 'conf/nested/deeper']);
    expect(await paths(files({ root: sandbox, paths: ['conf'], exclude: ['conf/nested'] }))).toEqual([
      'conf',
      'conf/empty.txt',
      'conf/haproxy.cfg',
      'conf/link-to-cfg',
    ]);
  });

  it('reads overlapping paths once', async () => {
    await writeSampleTree(sandbox);
    const component = files({
      root: sandbox,
      paths: [
        'conf/nested',
        'conf',
        join(sandbox, 'conf/haproxy.cfg'),
        'secret.key',
        'conf',
        'conf/nested/deeper',
      ],
    });
    expect(await paths(component)).toEqual([
      'conf',
      'conf/empty.txt',
      'conf/haproxy.cfg',
      'conf/link-to-cfg',
      'conf/nested',
      'conf/nested/deeper',
      'conf/nested/deeper/leaf.txt',
      'conf/nested/notes.txt',
      'secret.key',
    ]);
    const storage = new MemoryStorage();
    await backup({ storage, components: [component] });
  });

  it('fails with a ConfigError naming a configured path that does not exist', async () => {
    const component = files({ root: sandbox, paths: ['missing.cfg'] });
    const error = await caught(collectEntries(component));
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toContain('missing.cfg');
    const storage = new MemoryStorage();
    expect(await caught(backup({ storage, components: [component] }))).toBeInstanceOf(ConfigError);
  });

  it('skips sockets with a warning event', async () => {
    await writeFile(join(sandbox, 'plain.txt'), 'x');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(join(sandbox, 'control.sock'), resolve));
    try {
      const events: ProgressEvent[] = [];
      const entries = await collectEntries(files({ root: sandbox, paths: ['.'] }), events);
      expect(entries.map((entry) => entry.path)).toEqual(['plain.txt']);
      expect(events).toContainEqual(
        expect.objectContaining({
          type: 'warning',
          component: 'files',
          message: expect.stringContaining('socket'),
        }),
      );
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('fails the backup when a file changes while it is read', async () => {
    await writeFile(join(sandbox, 'growing.log'), 'first line\n');
    const component = files({ root: sandbox, paths: ['growing.log'] });
    const iterator = component.backup(backupContext())[Symbol.asyncIterator]();
    const { value: entry } = await iterator.next();
    await appendFile(join(sandbox, 'growing.log'), 'second line\n');
    const error = await caught(
      (async () => {
        for await (const _ of (entry as Entry).body!) {
          // Reading is what fails.
        }
      })(),
    );
    expect(error).toBeInstanceOf(ComponentError);
    expect((error as Error).message).toContain('growing.log');
  });

  it.each([
    ['a small file (read at once)', 11],
    ['a large file (read in chunks)', 3 * 1024 * 1024 + 7],
  ])('fails the backup when %s shrinks, grows or is replaced after it was listed', async (_, size) => {
    const path = join(sandbox, 'changing.bin');
    const attempt = async (change: () => Promise<void>, expected: RegExp) => {
      await writeFile(path, Buffer.alloc(size, 0x61));
      const iterator = files({ root: sandbox, paths: ['changing.bin'] })
        .backup(backupContext())
        [Symbol.asyncIterator]();
      const { value: entry } = await iterator.next();
      await change();
      const error = await caught(collect((entry as Entry).body!, 8 * 1024 * 1024));
      expect(error).toBeInstanceOf(ComponentError);
      expect((error as Error).message).toMatch(expected);
    };
    await attempt(() => truncate(path, size - 1), /shrank/);
    await attempt(() => appendFile(path, 'more'), /grew/);
    await attempt(async () => {
      await writeFile(`${path}.new`, Buffer.alloc(size, 0x62));
      await rename(`${path}.new`, path);
    }, /replaced/);
  });

  it('stops when the signal is aborted', async () => {
    await writeSampleTree(sandbox);
    const controller = new AbortController();
    controller.abort();
    const component = files({ root: sandbox, paths: ['.'] });
    const error = await caught(
      (async () => {
        for await (const _ of component.backup(backupContext([], controller.signal))) {
          // Never reached.
        }
      })(),
    );
    expect(error).toBeInstanceOf(AbortedError);
  });

  it('reports what it does not capture', async () => {
    const info = await files({ paths: ['/etc/hostname'] }).describe(backupContext());
    expect(info.capabilities).toEqual({
      selectiveRestore: false,
      restoreIntoExisting: true,
      incremental: true,
    });
    expect(info.notCaptured?.join('\n')).toMatch(/owners[\s\S]*ACLs[\s\S]*hard links[\s\S]*sockets/);
    expect(info.details).toMatchObject({ root: '/', paths: ['etc/hostname'] });
  });
});

describe('FilesComponent conflict policies', () => {
  async function prepare(): Promise<{
    storage: MemoryStorage;
    name: string;
    source: string;
    target: string;
  }> {
    const source = join(sandbox, 'source');
    const target = join(sandbox, 'target');
    await mkdir(source);
    await writeSampleTree(source);
    await mkdir(join(target, 'conf'), { recursive: true });
    await writeFile(join(target, 'conf/haproxy.cfg'), 'LOCAL EDIT\n');
    const storage = new MemoryStorage();
    const result = await backup({ storage, components: [files({ root: source, paths: ['.'] })] });
    return { storage, name: result.name, source, target };
  }

  it('fail: throws ConflictError and leaves the existing file untouched', async () => {
    const { storage, name, source, target } = await prepare();
    const component = files({ root: source, paths: ['.'], restoreTo: target });
    const error = await caught(restore({ storage, name, restorers: [component], conflict: 'fail' }));
    expect(error).toBeInstanceOf(ConflictError);
    expect((error as ConflictError).path).toBe('conf/haproxy.cfg');
    expect(await readFile(join(target, 'conf/haproxy.cfg'), 'utf8')).toBe('LOCAL EDIT\n');
    expect((await readdir(join(target, 'conf'))).filter((name) => name.includes('.bk-'))).toEqual([]);
  });

  it('skip: keeps the existing file and restores the rest', async () => {
    const { storage, name, source, target } = await prepare();
    const component = files({ root: source, paths: ['.'], restoreTo: target });
    const result = await restore({ storage, name, restorers: [component], conflict: 'skip' });
    expect(result.components.files!.skipped).toBe(1);
    expect(await readFile(join(target, 'conf/haproxy.cfg'), 'utf8')).toBe('LOCAL EDIT\n');
    expect(await readFile(join(target, 'conf/nested/notes.txt'), 'utf8')).toBe('notes\n');
    const restored = await snapshotTree(target);
    expect(restored.find((item) => item.path === 'big.bin')).toEqual(
      (await snapshotTree(source)).find((item) => item.path === 'big.bin'),
    );
  });

  it('removes the temporary files a killed restore left, and nothing that is not one', async () => {
    const { storage, name, source, target } = await prepare();
    const host = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);
    // A process that has exited: its temporary files can never be published.
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
      encoding: 'utf8',
    });
    const deadPid = Number(dead.stdout);
    const dayAndAHalfAgo = new Date(Date.now() - 36 * 3600_000);
    const stale = [
      `conf/.haproxy.cfg.bk-restore-${host}-${deadPid}-0123456789abcdef.tmp`,
      `.big.bin.bk-restore-${host}-${deadPid}-fedcba9876543210.tmp`,
      'conf/.x.bk-restore-00000000-1-00112233445566aa.tmp',
    ];
    const kept = [
      // Another host's, recent: its restore may still run.
      'conf/.y.bk-restore-00000000-1-00112233445566bb.tmp',
      // A running process's (this one's).
      `conf/.z.bk-restore-${host}-${process.pid}-00112233445566cc.tmp`,
      // Look-alikes that bk never writes.
      'conf/.notes.bk-restore.txt',
      `conf/haproxy.cfg.bk-restore-${host}-${deadPid}-0123456789abcdef.tmp`,
    ];
    for (const path of [...stale, ...kept]) await writeFile(join(target, path), 'partial');
    await utimes(join(target, stale[2]!), dayAndAHalfAgo, dayAndAHalfAgo);
    await restore({
      storage,
      name,
      restorers: [files({ root: source, paths: ['.'], restoreTo: target })],
      conflict: 'skip',
    });
    for (const path of stale) await expect(lstat(join(target, path)), path).rejects.toThrow(/ENOENT/);
    for (const path of kept) expect(await readFile(join(target, path), 'utf8'), path).toBe('partial');
    expect(await readFile(join(target, 'conf/haproxy.cfg'), 'utf8')).toBe('LOCAL EDIT\n');
  });

  it('overwrite: replaces the existing file', async () => {
    const { storage, name, source, target } = await prepare();
    const component = files({ root: source, paths: ['.'], restoreTo: target });
    await restore({ storage, name, restorers: [component], conflict: 'overwrite' });
    expect(await snapshotTree(target)).toEqual(await snapshotTree(source));
  });

  it('overwrite: refuses to replace a directory that is not empty with a file', async () => {
    const { storage, name, source, target } = await prepare();
    await mkdir(join(target, 'secret.key'));
    await writeFile(join(target, 'secret.key/kept'), 'kept\n');
    const component = files({ root: source, paths: ['.'], restoreTo: target });
    const error = await caught(restore({ storage, name, restorers: [component], conflict: 'overwrite' }));
    expect(error).toBeInstanceOf(ConflictError);
    expect((await lstat(join(target, 'secret.key'))).isDirectory()).toBe(true);
  });

  it('overwrite: replaces a link with a file without following it', async () => {
    const outside = join(sandbox, 'outside.txt');
    await writeFile(outside, 'outside\n');
    const target = join(sandbox, 'target');
    await mkdir(target);
    await symlink(outside, join(target, 'app.cfg'));
    const component = files({ root: target, paths: ['.'] });
    await component.restore(
      entriesOf([{ path: 'app.cfg', type: 'file', size: 4, mode: 0o644, body: text('new\n') }]),
      restoreContext('overwrite'),
    );
    expect(await readFile(outside, 'utf8')).toBe('outside\n');
    expect((await lstat(join(target, 'app.cfg'))).isFile()).toBe(true);
    expect(await readFile(join(target, 'app.cfg'), 'utf8')).toBe('new\n');
  });
});

describe('FilesComponent restores symbolic links as links', () => {
  /** Absolute (an /etc/localtime look-alike), relative, dangling, to a directory, and leaving the tree. */
  async function writeLinkTree(root: string): Promise<void> {
    await mkdir(join(root, 'etc/ssl/certs'), { recursive: true });
    await mkdir(join(root, 'data'), { recursive: true });
    await writeFile(join(root, 'etc/hostname'), 'host\n');
    await writeFile(join(root, 'etc/ssl/certs/ca.pem'), 'CA\n');
    await symlink('/usr/share/zoneinfo/UTC', join(root, 'etc/localtime'));
    await symlink('hostname', join(root, 'etc/hostname-link'));
    await symlink('../missing/nowhere', join(root, 'etc/dangling'));
    await symlink('ssl/certs', join(root, 'etc/certs'));
    await symlink('/etc', join(root, 'data/etc-dir'));
    await symlink('../../../../outside', join(root, 'data/escape'));
    await symlink('/nonexistent/absolute', join(root, 'data/absolute-dangling'));
  }

  async function backedUp(): Promise<{ storage: MemoryStorage; name: string; source: string }> {
    const source = join(sandbox, 'source');
    await writeLinkTree(source);
    const storage = new MemoryStorage();
    const events: ProgressEvent[] = [];
    const result = await backup({
      storage,
      components: [files({ root: source, paths: ['.'] })],
      onProgress: (event) => events.push(event),
    });
    // Nothing in this tree is refused, so the backup warns about nothing.
    expect(events.filter((event) => event.type === 'warning')).toEqual([]);
    return { storage, name: result.name, source };
  }

  for (const policy of ['fail', 'skip', 'overwrite'] as const) {
    it(`restores absolute, relative, dangling and directory links exactly into an empty target (conflict ${policy})`, async () => {
      const { storage, name, source } = await backedUp();
      const target = join(sandbox, 'target');
      const component = files({ root: source, paths: ['.'], restoreTo: target });
      await restore({ storage, name, restorers: [component], conflict: policy });
      expect(await snapshotTree(target)).toEqual(await snapshotTree(source));
      expect(await readlink(join(target, 'etc/localtime'))).toBe('/usr/share/zoneinfo/UTC');
    });
  }

  it('overwrite: replaces files and links in the way, and merges into directories and links to them', async () => {
    const { storage, name, source } = await backedUp();
    const target = join(sandbox, 'target');
    const outside = join(sandbox, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'sentinel.txt'), 'sentinel\n');
    await mkdir(join(target, 'etc/ssl/certs'), { recursive: true });
    await mkdir(join(target, 'data'), { recursive: true });
    await writeFile(join(target, 'etc/localtime'), 'a file where the link was\n');
    await symlink(outside, join(target, 'etc/hostname-link'));
    await symlink(join(outside, 'sentinel.txt'), join(target, 'etc/dangling'));
    await symlink(outside, join(target, 'etc/certs'));
    await symlink('/somewhere/else', join(target, 'data/etc-dir'));
    await symlink(outside, join(target, 'data/escape'));
    await writeFile(join(target, 'etc/hostname'), 'old\n');
    const component = files({ root: source, paths: ['.'], restoreTo: target });
    await restore({ storage, name, restorers: [component], conflict: 'overwrite' });
    expect(await snapshotTree(target)).toEqual(await snapshotTree(source));
    expect(await readdir(outside)).toEqual(['sentinel.txt']);
    expect(await readFile(join(outside, 'sentinel.txt'), 'utf8')).toBe('sentinel\n');
  });

  it('overwrite: replaces an empty directory with a link and a link or file with a directory, following none', async () => {
    const { storage, name, source } = await backedUp();
    const target = join(sandbox, 'target');
    const outside = join(sandbox, 'outside');
    await mkdir(join(outside, 'ssl'), { recursive: true });
    await mkdir(join(target, 'etc/localtime'), { recursive: true });
    await mkdir(join(target, 'data/escape'), { recursive: true });
    // The backup has directories etc/ssl and etc/ssl/certs: a link and a file are in their way.
    await symlink(join(outside, 'ssl'), join(target, 'etc/ssl'));
    await writeFile(join(target, 'data/etc-dir'), 'file in the way of a link\n');
    const component = files({ root: source, paths: ['.'], restoreTo: target });
    await restore({ storage, name, restorers: [component], conflict: 'overwrite' });
    expect(await snapshotTree(target)).toEqual(await snapshotTree(source));
    expect(await readdir(join(outside, 'ssl'))).toEqual([]);
  });

  it('overwrite: a directory that is not empty where a link is restored is a ConflictError naming it', async () => {
    const { storage, name, source } = await backedUp();
    const target = join(sandbox, 'target');
    await mkdir(join(target, 'etc/localtime'), { recursive: true });
    await writeFile(join(target, 'etc/localtime/kept'), 'kept\n');
    const component = files({ root: source, paths: ['.'], restoreTo: target });
    const error = await caught(restore({ storage, name, restorers: [component], conflict: 'overwrite' }));
    expect(error).toBeInstanceOf(ConflictError);
    expect((error as Error).message).toContain('"etc/localtime" is a directory that is not empty');
    expect(await readFile(join(target, 'etc/localtime/kept'), 'utf8')).toBe('kept\n');
  });

  it('skip: keeps what is in the way and restores the other links', async () => {
    const { storage, name, source } = await backedUp();
    const target = join(sandbox, 'target');
    await mkdir(join(target, 'etc'), { recursive: true });
    await symlink('/usr/share/zoneinfo/Europe/Paris', join(target, 'etc/localtime'));
    const component = files({ root: source, paths: ['.'], restoreTo: target });
    const result = await restore({ storage, name, restorers: [component], conflict: 'skip' });
    expect(result.components.files!.skipped).toBe(1);
    expect(await readlink(join(target, 'etc/localtime'))).toBe('/usr/share/zoneinfo/Europe/Paris');
    expect(await readlink(join(target, 'data/escape'))).toBe('../../../../outside');
  });

  it('fail: a link in the way stops the restore with a ConflictError naming it', async () => {
    const { storage, name, source } = await backedUp();
    const target = join(sandbox, 'target');
    await mkdir(join(target, 'etc'), { recursive: true });
    await symlink('/usr/share/zoneinfo/Europe/Paris', join(target, 'etc/localtime'));
    const component = files({ root: source, paths: ['.'], restoreTo: target });
    const error = await caught(restore({ storage, name, restorers: [component], conflict: 'fail' }));
    expect(error).toBeInstanceOf(ConflictError);
    expect((error as ConflictError).path).toBe('etc/localtime');
  });

  it('waits for a file still being written before restoring an entry under it, and names the file', async () => {
    const target = join(sandbox, 'target');
    const component = files({ root: target, paths: ['.'] });
    for (const policy of ['fail', 'skip', 'overwrite'] as const) {
      await removeTree(target);
      const error = await caught(
        component.restore(
          entriesOf([
            { path: 'f', type: 'file', size: 3, mode: 0o644, body: text('abc') },
            { path: 'f/g', type: 'file', size: 3, mode: 0o644, body: text('def') },
          ]),
          restoreContext(policy),
        ),
      );
      expect(error).toBeInstanceOf(UnsafePathError);
      expect((error as Error).message).toContain('"f" in the restore target is a file');
      expect(await readFile(join(target, 'f'), 'utf8')).toBe('abc');
    }
  });
});

describe('FilesComponent refuses hostile entries', () => {
  const file = (path: string): Entry => ({ path, type: 'file', size: 3, mode: 0o644, body: text('bad') });
  const link = (path: string, linkTarget: string): Entry => ({ path, type: 'symlink', linkTarget });

  const cases: Array<{ name: string; entries: () => Entry[]; setup?: (target: string) => Promise<void> }> = [
    { name: '../x', entries: () => [file('../x')] },
    { name: '/abs/x', entries: () => [file('/abs/x')] },
    { name: 'a/../../x', entries: () => [file('a/../../x')] },
    { name: 'dir -> .. then dir/x', entries: () => [link('dir', '..'), file('dir/x')] },
    {
      name: 'dir -> /outside then dir/x',
      entries: () => [link('dir', join(sandbox, 'outside')), file('dir/x')],
    },
    {
      name: 'a/b/m -> ../.. then a/b/m/x',
      entries: () => [link('a/b/m', '../..'), file('a/b/m/x')],
    },
    {
      name: 'a file under a pre-existing link to outside',
      setup: (target) => symlink('../outside', join(target, 'escape')),
      entries: () => [file('escape/x')],
    },
    {
      name: 'a directory and a file under a pre-existing link to outside',
      setup: (target) => symlink('../outside', join(target, 'escape')),
      entries: () => [file('escape/deeper/x')],
    },
  ];

  for (const policy of ['fail', 'skip', 'overwrite'] as const) {
    for (const hostile of cases) {
      it(`${hostile.name} (conflict ${policy})`, async () => {
        const target = join(sandbox, 'target');
        const outside = join(sandbox, 'outside');
        await mkdir(target);
        await mkdir(outside);
        await writeFile(join(outside, 'sentinel.txt'), 'sentinel\n');
        await hostile.setup?.(target);
        const before = await listing(sandbox, target);
        const targetBefore = await listing(target, '');
        const component = files({ root: target, paths: ['.'] });
        const error = await caught(component.restore(entriesOf(hostile.entries()), restoreContext(policy)));
        expect(error).toBeInstanceOf(UnsafePathError);
        expect(BkError.isInstance(error) && error.code).toBe('BK_UNSAFE_PATH');
        expect(await listing(sandbox, target)).toEqual(before);
        // Only the links themselves may have been written, never anything through them.
        const written = (await listing(target, '')).filter((line) => !targetBefore.includes(line));
        expect(
          written.every(
            (line) => line.startsWith(join(target, 'a')) || line.startsWith(join(target, 'dir ')),
          ),
        ).toBe(true);
        await expect(lstat('/abs/x')).rejects.toThrow();
      });
    }
  }

  it('skip: skips everything under a directory that is something else in the target', async () => {
    const target = join(sandbox, 'target');
    await mkdir(target);
    await mkdir(join(sandbox, 'outside'));
    await symlink('../outside', join(target, 'escape'));
    const component = files({ root: target, paths: ['.'] });
    const report = await component.restore(
      entriesOf([{ path: 'escape', type: 'directory', mode: 0o755 }, file('escape/x')]),
      restoreContext('skip'),
    );
    expect(report).toEqual({ entries: 0, bytes: 0, skipped: 2 });
    expect(await readdir(join(sandbox, 'outside'))).toEqual([]);
  });

  it('leaves neither the file nor a temporary file when a body fails at its end', async () => {
    const target = join(sandbox, 'target');
    const component = files({ root: target, paths: ['.'] });
    const corrupt: Entry = {
      path: 'conf/app.cfg',
      type: 'file',
      size: 6,
      mode: 0o644,
      body: (async function* () {
        yield new TextEncoder().encode('hello\n');
        throw new IntegrityError('Entry "files/conf/app.cfg" is corrupt.', { entry: 'files/conf/app.cfg' });
      })(),
    };
    const error = await caught(
      component.restore(
        entriesOf([{ path: 'conf', type: 'directory', mode: 0o755 }, corrupt]),
        restoreContext(),
      ),
    );
    expect(error).toBeInstanceOf(IntegrityError);
    expect(await readdir(join(target, 'conf'))).toEqual([]);
  });

  it('writes small files straight into directories it created, honouring the policy on a repeated name', async () => {
    for (const policy of ['fail', 'skip', 'overwrite'] as const) {
      const target = join(sandbox, `repeat-${policy}`);
      const component = files({ root: target, paths: ['.'] });
      const error = await component
        .restore(
          entriesOf([
            { path: 'conf', type: 'directory', mode: 0o755 },
            { path: 'conf/a', type: 'file', size: 5, mode: 0o640, body: text('first') },
            { path: 'conf/a', type: 'file', size: 5, mode: 0o640, body: text('other') },
          ]),
          restoreContext(policy),
        )
        .then(
          () => undefined,
          (failure: unknown) => failure,
        );
      // Small files are written concurrently: either of the two may land first.
      if (policy === 'fail') expect(error).toBeInstanceOf(ConflictError);
      else expect(error).toBeUndefined();
      expect(['first', 'other']).toContain(await readFile(join(target, 'conf/a'), 'utf8'));
      expect((await lstat(join(target, 'conf/a'))).mode & 0o777).toBe(0o640);
      expect(await readdir(join(target, 'conf'))).toEqual(['a']);
    }
    const target = join(sandbox, 'short-in-new');
    const error = await caught(
      files({ root: target, paths: ['.'] }).restore(
        entriesOf([
          { path: 'conf', type: 'directory', mode: 0o755 },
          { path: 'conf/short', type: 'file', size: 10, body: text('abc') },
        ]),
        restoreContext(),
      ),
    );
    expect(error).toBeInstanceOf(IntegrityError);
    expect(await readdir(join(target, 'conf'))).toEqual([]);
  });

  it('gives tiny files written straight into new directories their exact mode and mtime', async () => {
    const target = join(sandbox, 'tiny-modes');
    const mtime = new Date('2024-02-03T04:05:06.000Z');
    const modes = [0o600, 0o644, 0o777, 0o2750, 0o400];
    const report = await files({ root: target, paths: ['.'] }).restore(
      entriesOf([
        { path: 'conf', type: 'directory', mode: 0o755 },
        ...modes.map(
          (mode): Entry => ({
            path: `conf/${mode.toString(8)}`,
            type: 'file',
            size: 0,
            mode,
            mtime,
            body: text(''),
          }),
        ),
        { path: 'conf/data', type: 'file', size: 5, mode: 0o640, mtime, body: text('hello') },
      ]),
      restoreContext(),
    );
    expect(report).toEqual({ entries: modes.length + 2, bytes: 5, skipped: 0 });
    for (const mode of modes) {
      const stats = await lstat(join(target, 'conf', mode.toString(8)));
      expect(stats.mode & 0o7777).toBe(mode);
      expect(stats.mtimeMs).toBe(mtime.getTime());
    }
    expect(await readFile(join(target, 'conf/data'), 'utf8')).toBe('hello');
    expect((await lstat(join(target, 'conf/data'))).mtimeMs).toBe(mtime.getTime());
  });

  it('hands over its full read buffers on backup and frees handed-over chunks once written on restore', async () => {
    const source = join(sandbox, 'source');
    await mkdir(source);
    const data = randomBytes(3 * 1024 * 1024 + 100);
    await writeFile(join(source, 'big.bin'), data);
    const read: Uint8Array[] = [];
    for await (const entry of files({ root: source, paths: ['big.bin'] }).backup(backupContext()))
      for await (const chunk of entry.body ?? []) read.push(Buffer.from(chunk), chunk);
    const copies = read.filter((_, index) => index % 2 === 0);
    const chunks = read.filter((_, index) => index % 2 === 1);
    expect(Buffer.concat(copies).equals(data)).toBe(true);
    // Every full read (all but the last, short one) is a buffer of its own, handed over.
    expect(chunks.slice(0, -1).every((chunk) => releaseHandedOver(chunk))).toBe(true);

    const handed = copies.map((copy) => {
      const own = Buffer.allocUnsafeSlow(copy.byteLength);
      own.set(copy);
      return handOver(own);
    });
    const target = join(sandbox, 'target');
    await files({ root: target, paths: ['.'] }).restore(
      entriesOf([
        {
          path: 'big.bin',
          type: 'file',
          size: data.byteLength,
          body: (async function* () {
            yield* handed;
          })(),
        },
      ]),
      restoreContext(),
    );
    expect((await readFile(join(target, 'big.bin'))).equals(data)).toBe(true);
    expect(handed.every((chunk) => chunk.byteLength === 0)).toBe(true);
  });

  it('refuses a body shorter than its size', async () => {
    const target = join(sandbox, 'target');
    const component = files({ root: target, paths: ['.'] });
    const error = await caught(
      component.restore(
        entriesOf([{ path: 'short', type: 'file', size: 10, body: text('abc') }]),
        restoreContext(),
      ),
    );
    expect(error).toBeInstanceOf(IntegrityError);
    expect(await readdir(target)).toEqual([]);
  });
});

describe('fromConfig', () => {
  it('builds a component from a config entry', async () => {
    const component = fromConfig({
      kind: 'files',
      name: 'haproxy',
      root: sandbox,
      paths: ['conf'],
      include: ['**/*.cfg'],
      exclude: ['**/*.bak'],
      restoreTo: join(sandbox, 'restored'),
      followSymlinks: false,
    });
    expect(component).toBeInstanceOf(FilesComponent);
    expect(component.kind).toBe('files');
    expect(component.name).toBe('haproxy');
    expect(component.restoreTo).toBe(join(sandbox, 'restored'));
    expect(fromConfig({ paths: ['/etc/hosts'] }).name).toBe('files');
  });

  const invalid: Array<[string, Record<string, unknown>, string]> = [
    ['an unknown field', { paths: ['/etc'], pahts: ['/etc'] }, 'pahts'],
    ['missing paths', {}, 'paths'],
    ['empty paths', { paths: [] }, 'paths'],
    ['paths that are not strings', { paths: [1] }, 'paths'],
    ['another kind', { kind: 'influx', paths: ['/etc'] }, 'kind'],
    ['a relative root', { root: 'etc', paths: ['hosts'] }, 'root'],
    ['a relative restoreTo', { paths: ['/etc'], restoreTo: 'restored' }, 'restoreTo'],
    ['a path outside root', { root: '/srv/app', paths: ['/etc/passwd'] }, 'outside root'],
    ['include that is not a list', { paths: ['/etc'], include: '*.cfg' }, 'include'],
    ['exclude with a non-string', { paths: ['/etc'], exclude: [null] }, 'exclude'],
    ['followSymlinks true', { paths: ['/etc'], followSymlinks: true }, 'followSymlinks'],
    ['a name with a slash', { name: 'a/b', paths: ['/etc'] }, 'name'],
    ['a name that is not a string', { name: 3, paths: ['/etc'] }, 'name'],
  ];
  for (const [what, config, field] of invalid) {
    it(`rejects ${what} with a ConfigError naming ${field}`, () => {
      let error: unknown;
      try {
        fromConfig(config);
      } catch (thrown) {
        error = thrown;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toContain(field);
    });
  }
});

describe('FilesComponent keeps mtimes to the nanosecond', () => {
  const NS = 1_000_000_000n;
  /** A time of .9996 s and a few nanoseconds: rounding to the millisecond moves it to the next second. */
  const precise = 1_700_000_000n * NS + 999_600_123n;

  it('stores the mtime lstat gives and restores it to the microsecond, in the same second', async () => {
    const source = join(sandbox, 'source');
    await mkdir(join(source, 'dir'), { recursive: true });
    await writeFile(join(source, 'dir/file.txt'), 'data\n');
    await symlink('file.txt', join(source, 'dir/link'));
    // touch sets nanoseconds (Node's utimes stops at the microsecond).
    const stamp = `@${precise / NS}.${(precise % NS).toString().padStart(9, '0')}`;
    for (const path of ['dir/file.txt', 'dir/link', 'dir']) {
      execFileSync('touch', ['-h', '-d', stamp, join(source, path)]);
    }
    const original = await lstat(join(source, 'dir/file.txt'), { bigint: true });
    expect(original.mtimeNs).toBe(precise);
    const storage = new MemoryStorage();
    const { name, manifest } = await backup({ storage, components: [files({ root: source, paths: ['.'] })] });
    let recorded: ManifestEntry | undefined;
    for await (const { record } of manifestEntries(storage, manifest))
      if (record.path === 'dir/file.txt') recorded = record;
    expect(recorded?.mtime).toBe('2023-11-14T22:13:20.999600123Z');

    const target = join(sandbox, 'target');
    await restore({ storage, name, restorers: [files({ root: source, paths: ['.'], restoreTo: target })] });
    for (const path of ['dir/file.txt', 'dir/link', 'dir']) {
      const restored = await lstat(join(target, path), { bigint: true });
      expect(restored.mtimeNs / NS, path).toBe(precise / NS);
      // Node's utimes passes microseconds on: the restored time is the original's microsecond.
      expect(restored.mtimeNs, path).toBe(precise - (precise % 1000n));
    }

    // The tar header holds whole seconds, as GNU tar's default format: GNU tar restores those.
    const archive = await collect(await storage.get(`${name}.tar.gz`), 64 * 1024 * 1024);
    const extracted = join(sandbox, 'extracted');
    await mkdir(extracted);
    await writeFile(join(sandbox, 'archive.tar.gz'), archive);
    execFileSync('tar', ['-xzf', join(sandbox, 'archive.tar.gz'), '-C', extracted]);
    for (const path of ['dir/file.txt', 'dir/link', 'dir']) {
      const byTar = await lstat(join(extracted, 'files', path), { bigint: true });
      expect(byTar.mtimeNs, path).toBe(precise - (precise % NS));
    }
  });
});

describe('FilesComponent names what the file system refused', () => {
  it('a restore target that is a file: a ConfigError naming it', async () => {
    const file = join(sandbox, 'not-a-directory');
    await writeFile(file, 'x');
    for (const restoreTo of [file, join(file, 'below')]) {
      const component = files({ root: sandbox, paths: ['.'], restoreTo });
      const error = await caught(component.restore(entriesOf([]), restoreContext()));
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toContain(`the restore target "${restoreTo}" is`);
      expect((error as Error).message).toContain('not a directory');
    }
  });

  it('a name longer than the file system allows: a ComponentError naming the entry', async () => {
    const target = join(sandbox, 'target');
    const long = `dir/${'n'.repeat(300)}`;
    for (const entry of [
      { path: long, type: 'file' as const, size: 3, mode: 0o644, body: text('abc') },
      { path: `${long}/deeper`, type: 'directory' as const, mode: 0o755 },
      { path: long, type: 'symlink' as const, linkTarget: '/etc' },
    ]) {
      const error = await caught(
        files({ root: target, paths: ['.'] }).restore(entriesOf([entry]), restoreContext('overwrite')),
      );
      expect(error).toBeInstanceOf(ComponentError);
      expect((error as Error).message).toContain(entry.path.split('/deeper')[0]!);
      expect((error as Error).message).toContain('longer than the file system allows');
      expect((error as Error).message).toContain('(ENAMETOOLONG)');
    }
  });

  it('a full disk: a ComponentError naming the file, and no temporary file left', async (test) => {
    const mountPoint = join(sandbox, 'small');
    await mkdir(mountPoint);
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mountPoint]);
    if (mounted.status !== 0) {
      test.skip(`cannot mount a tmpfs here: ${mounted.stderr.toString().trim()}`);
      return;
    }
    try {
      const big = new Uint8Array(3 * 1024 * 1024).fill(1);
      for (const size of [big.byteLength, 1024 * 1024]) {
        const entries = [
          {
            path: 'a/fill.bin',
            type: 'file' as const,
            size: 1536 * 1024,
            mode: 0o644,
            body: fromList([big.subarray(0, 1536 * 1024)]),
          },
          {
            path: 'a/big.bin',
            type: 'file' as const,
            size,
            mode: 0o644,
            body: fromList([big.subarray(0, size)]),
          },
        ];
        const error = await caught(
          files({ root: mountPoint, paths: ['.'] }).restore(entriesOf(entries), restoreContext('overwrite')),
        );
        expect(error).toBeInstanceOf(ComponentError);
        expect((error as Error).message).toMatch(/a\/\.?(big|fill)\.bin/);
        expect((error as Error).message).toContain(
          'the file system is full; free space on it and run the restore again (ENOSPC)',
        );
        expect((await readdir(join(mountPoint, 'a'))).filter((name) => name.includes('.bk-'))).toEqual([]);
        await removeTree(join(mountPoint, 'a'));
      }
    } finally {
      spawnSync('umount', [mountPoint]);
    }
  });
});

async function* fromList(chunks: Uint8Array[]): AsyncIterable<Uint8Array> {
  yield* chunks;
}
