import { MemoryStorage, type StorageCapabilities } from '@bk/core';
import { describe, expect, it } from 'vitest';
import { storageContract, type TestRegistrar } from '../src/storage-contract.ts';

describe('MemoryStorage meets the storage contract', () => {
  storageContract(it, async () => ({ storage: new MemoryStorage() }));
});

/** A memory storage that declares fewer capabilities than it has. */
class PlainStorage extends MemoryStorage {
  override readonly capabilities: StorageCapabilities = {
    atomicPublish: false,
    conditionalCreate: false,
    rangeRead: false,
    multipart: false,
  };
}

describe('storageContract', () => {
  it('registers every test once, minus the skipped ones, and cleans up after each', async () => {
    const registered: Array<{ name: string; fn: Parameters<TestRegistrar>[1]; timeout?: number }> = [];
    let cleanups = 0;
    const registrar: TestRegistrar = (name, fn, timeout) => registered.push({ name, fn, timeout });
    storageContract(
      registrar,
      async () => ({ storage: new PlainStorage(), cleanup: async () => void (cleanups += 1) }),
      { skip: ['stores an empty object'], timeout: 1234, largeObjectBytes: 1024 },
    );
    const names = registered.map((test) => test.name);
    expect(names).toHaveLength(15);
    expect(new Set(names).size).toBe(15);
    expect(names).not.toContain('stores an empty object');
    expect(registered.every((test) => test.timeout === 1234)).toBe(true);

    // A capability test asks the runner's context to skip; without one it returns and passes.
    const skips: Array<string | undefined> = [];
    for (const test of registered) await test.fn({ skip: (note) => void skips.push(note) });
    expect(skips).toEqual([
      'conditionalCreate is false',
      'conditionalCreate is false',
      'rangeRead is false',
      'the storage has no cleanupIncomplete',
      'the storage has no cleanupIncomplete',
    ]);
    for (const test of registered) await test.fn();
    expect(cleanups).toBe(30);
  });

  describe('skips the tests of capabilities a storage does not declare', () => {
    storageContract(it, async () => ({ storage: new PlainStorage() }), { largeObjectBytes: 1024 * 1024 });
  });
});
