import {
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BkError, type ByteStream } from '@bk/core';
import { storageContract } from '@bk/test-suite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsStorage, fsStorageFromUrl } from '../src/index.ts';

const text = (value: string) => new TextEncoder().encode(value);

async function readAll(stream: ByteStream): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks).toString();
}

/** Every path under `directory`, relative and `/`-separated, directories with a trailing `/`. */
async function tree(directory: string): Promise<string[]> {
  const entries = await readdir(directory, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .map((entry) => {
      const path = join(entry.parentPath, entry.name).slice(directory.length + 1);
      return entry.isDirectory() ? `${path}/` : path;
    })
    .sort();
}

async function code(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    if (BkError.isInstance(error)) return error.code;
    throw error;
  }
}

describe('FsStorage meets the storage contract', () => {
  storageContract(it, async () => {
    const directory = await mkdtemp(join(tmpdir(), 'bk-fs-contract-'));
    return {
      storage: new FsStorage({ root: join(directory, 'root') }),
      cleanup: () => rm(directory, { recursive: true, force: true }),
    };
  });
});

describe('FsStorage', () => {
  let directory: string;
  let root: string;
  let outside: string;
  let storage: FsStorage;

  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'bk-fs-'));
    root = join(directory, 'root');
    outside = join(directory, 'outside');
    await mkdir(outside);
    storage = new FsStorage({ root });
  });

  afterEach(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('describes itself as a file URL, creates the root on the first put and stores plain files', async () => {
    expect(storage.description).toBe(pathToFileURL(root).href);
    expect(new FsStorage('relative/dir').root).toBe(join(process.cwd(), 'relative/dir'));
    expect(await storage.stat('a')).toBeUndefined();
    expect(await code(storage.get('a'))).toBe('BK_NOT_FOUND');
    await storage.delete('a');
    for await (const object of storage.list('')) throw new Error(`unexpected ${object.key}`);
    await expect(stat(root)).rejects.toThrow();

    const info = await storage.put('nightly/hello.txt', text('hello'));
    expect(info).toMatchObject({ key: 'nightly/hello.txt', size: 5 });
    expect(info.lastModified).toBeInstanceOf(Date);
    expect(await readFile(join(root, 'nightly/hello.txt'), 'utf8')).toBe('hello');
    expect((await stat(join(root, 'nightly/hello.txt'))).mode & 0o777).toBe(0o644);
    expect(await tree(root)).toEqual(['.bk-tmp/', 'nightly/', 'nightly/hello.txt']);
  });

  it('refuses keys that could escape the root, and writes nothing outside it', async () => {
    await storage.put('inside', text('x'));
    const invalid = [
      '../x',
      '/abs',
      'a/../../x',
      '',
      'a//b',
      'a/',
      './a',
      'a/./b',
      'a\\b',
      'a\0b',
      '.bk-tmp/x',
      '.bk-tmp',
    ];
    for (const key of invalid) {
      expect(await code(storage.put(key, text('escape'))), key).toBe('BK_CONFIG');
      expect(await code(storage.get(key)), key).toBe('BK_CONFIG');
      expect(await code(storage.stat(key)), key).toBe('BK_CONFIG');
      expect(await code(storage.delete(key)), key).toBe('BK_CONFIG');
    }
    expect(await tree(directory)).toEqual(['outside/', 'root/', 'root/.bk-tmp/', 'root/inside']);
  });

  it('refuses to follow a symbolic link that leads outside the root', async () => {
    await storage.put('real/kept', text('kept'));
    await writeFile(join(outside, 'secret'), 'secret');
    await symlink(outside, join(root, 'escape'));
    await symlink(join(outside, 'secret'), join(root, 'secret-link'));

    for (const key of ['escape/secret', 'escape/new', 'escape/new/deeper/x']) {
      expect(await code(storage.put(key, text('planted'))), key).toBe('BK_CONFIG');
      expect(await code(storage.put(key, text('planted'), { ifNoneMatch: true })), key).toBe('BK_CONFIG');
      expect(await code(storage.get(key)), key).toBe('BK_CONFIG');
      expect(await code(storage.stat(key)), key).toBe('BK_CONFIG');
      expect(await code(storage.delete(key)), key).toBe('BK_CONFIG');
    }
    expect(await code(storage.get('secret-link'))).toBe('BK_CONFIG');
    expect(await code(storage.stat('secret-link'))).toBe('BK_CONFIG');
    expect(await code(storage.put('secret-link', text('planted'), { ifNoneMatch: true }))).toBe('BK_CONFIG');

    expect(await tree(outside)).toEqual(['secret']);
    expect(await readFile(join(outside, 'secret'), 'utf8')).toBe('secret');
    const listed: string[] = [];
    for await (const object of storage.list('')) listed.push(object.key);
    expect(listed).toEqual(['real/kept']);
  });

  it('follows a symbolic link that stays inside the root', async () => {
    await storage.put('real/one', text('one'));
    await symlink(join(root, 'real'), join(root, 'alias'));
    expect(await readAll(await storage.get('alias/one'))).toBe('one');
    await storage.put('alias/two', text('two'));
    expect(await readFile(join(root, 'real/two'), 'utf8')).toBe('two');
  });

  it('accepts a root that is itself a symbolic link', async () => {
    const real = join(directory, 'real-root');
    await mkdir(real);
    await symlink(real, join(directory, 'linked-root'));
    const linked = new FsStorage(join(directory, 'linked-root'));
    await linked.put('a/b', text('b'));
    expect(await readAll(await linked.get('a/b'))).toBe('b');
    expect(await readFile(join(real, 'a/b'), 'utf8')).toBe('b');
  });

  it('an aborted put leaves neither the object nor a temp file, even while the body stalls', async () => {
    const controller = new AbortController();
    const body = (async function* () {
      yield new Uint8Array(64 * 1024);
      setTimeout(() => controller.abort(), 10);
      await new Promise(() => {});
    })();
    expect(await code(storage.put('dir/aborted', body, { signal: controller.signal }))).toBe('BK_ABORTED');
    expect(await tree(root)).toEqual(['.bk-tmp/']);

    const reason = new AbortController();
    const custom = new BkError('BK_COMPONENT', 'stopped by the operator');
    const chunks = (async function* () {
      yield text('a');
      reason.abort(custom);
      yield text('b');
    })();
    await expect(storage.put('dir/aborted', chunks, { signal: reason.signal })).rejects.toBe(custom);
    expect(await tree(root)).toEqual(['.bk-tmp/']);
  });

  it('a body that throws mid-stream leaves nothing and rethrows the error unchanged', async () => {
    const failure = new Error('source broke');
    const body = (async function* () {
      yield new Uint8Array(3 * 1024 * 1024);
      throw failure;
    })();
    await expect(storage.put('deep/dir/broken', body)).rejects.toBe(failure);
    expect(await tree(root)).toEqual(['.bk-tmp/']);
    await storage.put('deep/dir/kept', text('kept'));
    const again = (async function* () {
      yield text('partial');
      throw failure;
    })();
    await expect(storage.put('deep/dir/kept', again, { ifNoneMatch: false })).rejects.toBe(failure);
    expect(await readAll(await storage.get('deep/dir/kept'))).toBe('kept');
    expect(await tree(root)).toEqual(['.bk-tmp/', 'deep/', 'deep/dir/', 'deep/dir/kept']);
  });

  it('concurrent create-if-absent puts of one key: exactly one wins, no temp file is left', async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, index) =>
        storage.put(
          'lock',
          (async function* () {
            await new Promise((resolve) => setTimeout(resolve, Math.random() * 5));
            yield text(`writer ${index}`);
          })(),
          { ifNoneMatch: true },
        ),
      ),
    );
    const winners = results.filter((result) => result.status === 'fulfilled');
    expect(winners).toHaveLength(1);
    for (const result of results)
      if (result.status === 'rejected')
        expect(BkError.isInstance(result.reason) && result.reason.code).toBe('BK_ALREADY_EXISTS');
    expect(await readAll(await storage.get('lock'))).toMatch(/^writer \d+$/);
    expect(await tree(root)).toEqual(['.bk-tmp/', 'lock']);
  });

  it('refuses create-if-absent before reading the body when the key exists', async () => {
    await storage.put('taken', text('old'));
    let read = false;
    const body = (async function* () {
      read = true;
      yield text('new');
    })();
    expect(await code(storage.put('taken', body, { ifNoneMatch: true }))).toBe('BK_ALREADY_EXISTS');
    expect(read).toBe(false);
  });

  it('serves ranged reads in chunks of at most 1 MiB', async () => {
    const bytes = Buffer.alloc(3 * 1024 * 1024 + 5, 7);
    bytes.write('start', 0);
    bytes.write('end', bytes.byteLength - 3);
    await storage.put('big', bytes);
    const sizes: number[] = [];
    for await (const chunk of await storage.get('big')) sizes.push(chunk.byteLength);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(1024 * 1024);
    expect(sizes.reduce((sum, size) => sum + size, 0)).toBe(bytes.byteLength);
    expect(await readAll(await storage.get('big', { range: { start: 0, end: 5 } }))).toBe('start');
    expect(await readAll(await storage.get('big', { range: { start: bytes.byteLength - 3 } }))).toBe('end');
    expect(await readAll(await storage.get('big', { range: { start: bytes.byteLength + 10 } }))).toBe('');
    expect(await readAll(await storage.get('big', { range: { start: 9, end: 3 } }))).toBe('');
    expect(await code(storage.get('big', { range: { start: -1 } }))).toBe('BK_CONFIG');
    expect(await code(storage.get('big', { range: { start: 0.5 } }))).toBe('BK_CONFIG');
  });

  it('get rejects at once for a missing key, and a read ends with the abort reason', async () => {
    await storage.put('dir/file', new Uint8Array(4 * 1024 * 1024));
    expect(await code(storage.get('dir/missing'))).toBe('BK_NOT_FOUND');
    expect(await code(storage.get('dir/file/deeper'))).toBe('BK_NOT_FOUND');
    expect(await code(storage.get('dir'))).toBe('BK_NOT_FOUND');
    expect(await storage.stat('dir')).toBeUndefined();
    const controller = new AbortController();
    const stream = await storage.get('dir/file', { signal: controller.signal });
    const read = (async () => {
      for await (const _chunk of stream) controller.abort();
    })();
    expect(await code(read)).toBe('BK_ABORTED');
    const early = new AbortController();
    const unread = await storage.get('dir/file', { signal: early.signal });
    early.abort();
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(await code(readAll(unread))).toBe('BK_ABORTED');
    expect(await code(storage.get('dir/file', { signal: controller.signal }))).toBe('BK_ABORTED');
  });

  it('reports a key that collides with a directory as a storage error and leaves nothing behind', async () => {
    await storage.put('a/b', text('b'));
    await storage.put('c', text('c'));
    expect(await code(storage.put('a', text('a')))).toBe('BK_STORAGE');
    expect(await code(storage.put('c/d', text('d')))).toBe('BK_STORAGE');
    expect(await code(storage.put('c/d/e', text('e'), { ifNoneMatch: true }))).toBe('BK_STORAGE');
    await storage.delete('a');
    expect(await tree(root)).toEqual(['.bk-tmp/', 'a/', 'a/b', 'c']);
  });

  it('delete removes the directories it empties, never the root', async () => {
    await storage.put('x/y/z', text('z'));
    await storage.put('x/kept', text('kept'));
    await storage.delete('x/y/z');
    expect(await tree(root)).toEqual(['.bk-tmp/', 'x/', 'x/kept']);
    await storage.delete('x/kept');
    expect(await tree(root)).toEqual(['.bk-tmp/']);
    expect((await lstat(root)).isDirectory()).toBe(true);
  });

  it('list walks only the directories that can match and skips the temp directory', async () => {
    for (const key of ['nightly/backup_1.tar.gz', 'nightly/backup_1.lock', 'weekly/backup_2.tar.gz', 'top'])
      await storage.put(key, text(key));
    await writeFile(join(root, '.bk-tmp', 'orphan.tmp'), 'orphan');
    const keys = async (prefix: string) => {
      const found: string[] = [];
      for await (const object of storage.list(prefix)) found.push(object.key);
      return found.sort();
    };
    expect(await keys('')).toEqual([
      'nightly/backup_1.lock',
      'nightly/backup_1.tar.gz',
      'top',
      'weekly/backup_2.tar.gz',
    ]);
    expect(await keys('nightly/backup_1.t')).toEqual(['nightly/backup_1.tar.gz']);
    expect(await keys('n')).toEqual(['nightly/backup_1.lock', 'nightly/backup_1.tar.gz']);
    expect(await keys('.bk-tmp')).toEqual([]);
    const aborted = storage.list('', { signal: AbortSignal.abort() })[Symbol.asyncIterator]();
    expect(await code(aborted.next())).toBe('BK_ABORTED');
  });

  it('cleanupTemp deletes stale temp files only', async () => {
    expect(await storage.cleanupTemp()).toBe(0);
    await storage.put('object', text('x'));
    const temp = join(root, '.bk-tmp');
    await writeFile(join(temp, 'stale.tmp'), 'stale');
    await writeFile(join(temp, 'fresh.tmp'), 'fresh');
    const old = new Date(Date.now() - 2 * 3_600_000);
    await utimes(join(temp, 'stale.tmp'), old, old);
    expect(await storage.cleanupTemp()).toBe(1);
    expect(await tree(temp)).toEqual(['fresh.tmp']);
    expect(await storage.cleanupTemp(0)).toBe(1);
    expect(await tree(root)).toEqual(['.bk-tmp/', 'object']);
  });

  it('works with fsync turned off', async () => {
    const fast = new FsStorage({ root, fsync: false });
    await fast.put('a/b/c', text('c'), { ifNoneMatch: true });
    expect(await readAll(await fast.get('a/b/c'))).toBe('c');
  });
});

describe('fsStorageFromUrl', () => {
  it('accepts file:///absolute/path', () => {
    const storage = fsStorageFromUrl('file:///var/backups/bk');
    expect(storage.root).toBe('/var/backups/bk');
    expect(storage.description).toBe('file:///var/backups/bk');
    expect(fsStorageFromUrl('file://localhost/var/backups').root).toBe('/var/backups');
    expect(fsStorageFromUrl(new URL('file:///var/with%20space')).root).toBe('/var/with space');
  });

  it('refuses anything else with a ConfigError', () => {
    for (const url of [
      '/var/backups',
      'var/backups',
      's3://bucket/prefix',
      'file:relative',
      'file://host/share',
      'file:///x?fsync=0',
      'file:///x#y',
      'not a url',
    ])
      expect(() => fsStorageFromUrl(url), url).toThrow(expect.objectContaining({ code: 'BK_CONFIG' }));
  });
});
