import { type Component, ConfigError, MemoryStorage } from '@bk/core';
import { describe, expect, it } from 'vitest';
import { ComponentRegistry, createComponentRegistry } from '../src/component-registry.ts';
import { createStorageRegistry, StorageRegistry } from '../src/storage-registry.ts';

describe('StorageRegistry', () => {
  it('asks to install the package of a known scheme, without printing credentials', async () => {
    const registry = createStorageRegistry();
    expect(registry.schemes()).toEqual(['file', 's3', 'az', 'gs', 'swift']);
    for (const [url, name] of [
      ['s3://KEY:SECRET@bucket/x?token=abc', '@bk/storage-s3'],
      ['az://container/x', '@bk/storage-azure'],
      ['gs://bucket/x', '@bk/storage-gcs'],
      ['swift://container/x', '@bk/storage-swift'],
    ] as const) {
      const error = await registry.open(new URL(url)).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toContain(`install ${name}`);
      expect((error as Error).message).not.toMatch(/SECRET|token/);
    }
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
