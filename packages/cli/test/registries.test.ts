import { type Component, ConfigError, MemoryStorage } from '@bk/core';
import { describe, expect, it } from 'vitest';
import { ComponentRegistry, createComponentRegistry } from '../src/component-registry.ts';
import { importPlugin } from '../src/import-plugin.ts';
import { createStorageRegistry, StorageRegistry } from '../src/storage-registry.ts';

describe('StorageRegistry', () => {
  it('knows the storage schemes and never prints credentials from a target URL', async () => {
    const registry = createStorageRegistry();
    expect(registry.schemes()).toEqual(['file', 's3', 'az', 'gs', 'swift']);
    for (const url of [
      's3://AKID:hunter2pass@bucket/x?token=t0ps3cret',
      'swift://AKID:hunter2pass@container/x?token=t0ps3cret',
    ]) {
      const error = await registry.open(new URL(url)).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      if (error) expect((error as Error).message).not.toMatch(/hunter2pass|t0ps3cret/);
    }
  });

  it('asks to install a storage package that is missing', async () => {
    const error = await importPlugin('@bk/storage-not-installed', 'The target x://y').catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toContain('install @bk/storage-not-installed');
  });

  it('refuses unknown schemes and uses registered factories', async () => {
    const registry = new StorageRegistry();
    await expect(registry.open(new URL('ftp://host/x'))).rejects.toThrow(/"ftp:"/);
    const storage = new MemoryStorage();
    registry.register('mem:', () => storage);
    expect(await registry.open(new URL('mem://x'))).toBe(storage);
  });
});

describe('ComponentRegistry', () => {
  it('names the package to install for an unknown kind', async () => {
    const error = await createComponentRegistry()
      .create({ kind: 'nosuchkind', name: 'x' })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toContain('install @bk/nosuchkind');
  });

  it('passes the fields but not the kind to the factory', async () => {
    const seen: Array<Record<string, unknown>> = [];
    const registry = new ComponentRegistry().register('demo', (config) => {
      seen.push(config);
      return { kind: 'demo', name: String(config.name) } as unknown as Component;
    });
    const component = await registry.create({ kind: 'demo', name: 'one', extra: 1 });
    expect(component.name).toBe('one');
    expect(seen).toEqual([{ name: 'one', extra: 1 }]);
    await expect(registry.create({ kind: '../x' })).rejects.toThrow(/not a component kind/);
  });
});
