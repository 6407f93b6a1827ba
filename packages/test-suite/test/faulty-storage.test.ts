import { randomBytes } from 'node:crypto';
import { BkError, backup, MemoryStorage, type ObjectInfo, type Source, type Storage } from '@bk/core';
import { describe, expect, it } from 'vitest';
import { type FaultPlan, FaultyStorage } from '../src/faulty-storage.ts';

/** One file of incompressible bytes, so the archive is far larger than the fault threshold. */
const source: Source = {
  kind: 'test',
  name: 'data',
  describe: async () => ({ version: '1' }),
  async *backup() {
    const data = randomBytes(256 * 1024);
    yield {
      path: 'hello.bin',
      size: data.byteLength,
      body: (async function* () {
        yield data;
      })(),
    };
  },
};

async function listAll(storage: Storage): Promise<ObjectInfo[]> {
  const objects: ObjectInfo[] = [];
  for await (const object of storage.list('')) objects.push(object);
  return objects;
}

async function backupWithFault(plan: FaultPlan) {
  const inner = new MemoryStorage();
  const storage = new FaultyStorage(inner, plan);
  const error = await backup({ storage, components: [source], prefix: 'nightly' }).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  return { inner, storage, error, left: await listAll(inner) };
}

describe('FaultyStorage', () => {
  it('passes calls through and records them', async () => {
    const storage = new FaultyStorage(new MemoryStorage(), { failOn: () => false });
    await storage.put('a/b', new TextEncoder().encode('ab'));
    expect((await storage.stat('a/b'))?.size).toBe(2);
    expect((await listAll(storage)).map((object) => object.key)).toEqual(['a/b']);
    await storage.delete('a/b');
    expect(storage.calls).toEqual([
      { method: 'put', key: 'a/b' },
      { method: 'stat', key: 'a/b' },
      { method: 'list', key: '' },
      { method: 'delete', key: 'a/b' },
    ]);
    expect(storage.capabilities).toEqual(new MemoryStorage().capabilities);
    expect(storage.description).toBe('faulty(memory://)');
  });

  it('fails the Nth call of a method with the planned error', async () => {
    const storage = new FaultyStorage(new MemoryStorage(), {
      failOn: (method, callNumber) => method === 'stat' && callNumber === 2,
      error: () => new Error('planned'),
    });
    await expect(storage.stat('x')).resolves.toBeUndefined();
    await expect(storage.stat('x')).rejects.toThrow('planned');
    await expect(storage.stat('x')).resolves.toBeUndefined();
  });

  it('fails with a StorageError by default, and a list on its first read', async () => {
    const storage = new FaultyStorage(new MemoryStorage(), { failOn: (method) => method === 'list' });
    const error = await listAll(storage).catch((caught: unknown) => caught);
    expect(BkError.isInstance(error) && error.code).toBe('BK_STORAGE');
  });

  it('makes a put body throw after failBodyAfterBytes, so nothing is stored', async () => {
    const inner = new MemoryStorage();
    let read = 0;
    const storage = new FaultyStorage(inner, {
      failOn: (method) => method === 'put',
      failBodyAfterBytes: 10,
    });
    const body = (async function* () {
      for (let index = 0; index < 4; index += 1) {
        read += 4;
        yield new Uint8Array(4);
      }
    })();
    await expect(storage.put('partial', body)).rejects.toThrow(/Injected fault/);
    expect(read).toBe(12);
    expect(await listAll(inner)).toEqual([]);
  });

  it('backup: an archive upload failing mid-body leaves no archive, sidecar or lock', async () => {
    const { storage, error, left } = await backupWithFault({
      failOn: (method, _callNumber, key) => method === 'put' && key.endsWith('.tar.gz'),
      failBodyAfterBytes: 16 * 1024,
    });
    expect(BkError.isInstance(error) && error.code).toBe('BK_STORAGE');
    expect(left).toEqual([]);
    const archivePut = storage.calls.find((call) => call.method === 'put' && call.key.endsWith('.tar.gz'));
    expect(archivePut?.key).toMatch(/^nightly\/backup_\d{8}_\d{6}\.tar\.gz$/);
    expect(storage.calls.some((call) => call.method === 'put' && call.key.endsWith('.manifest.json'))).toBe(
      false,
    );
    expect(storage.calls.some((call) => call.method === 'delete' && call.key.endsWith('.lock'))).toBe(true);
  });

  it('backup: a failing sidecar put removes the stored archive and the lock', async () => {
    const { storage, error, left } = await backupWithFault({
      failOn: (method, _callNumber, key) => method === 'put' && key.endsWith('.manifest.json'),
    });
    expect(BkError.isInstance(error) && error.code).toBe('BK_STORAGE');
    expect(left).toEqual([]);
    for (const suffix of ['.tar.gz', '.manifest.json', '.lock'])
      expect(left.some((object) => object.key.endsWith(suffix))).toBe(false);
    const puts = storage.calls
      .filter((call) => call.method === 'put')
      .map((call) => call.key.replace(/^.*\./, '.'));
    // The lock, the archive, the entry index written beside it, the sidecar.
    expect(puts).toEqual(['.lock', '.gz', '.gz', '.json']);
    expect(storage.calls.some((call) => call.method === 'delete' && call.key.endsWith('.tar.gz'))).toBe(true);
  });

  it('backup: a failing lock put stores nothing at all', async () => {
    const { storage, error, left } = await backupWithFault({
      failOn: (method, _callNumber, key) => method === 'put' && key.endsWith('.lock'),
    });
    expect(BkError.isInstance(error) && error.code).toBe('BK_STORAGE');
    expect(left).toEqual([]);
    expect(storage.calls.filter((call) => call.method === 'put')).toHaveLength(1);
  });
});
