import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, MemoryStorage, openStorage } from '../src/index.ts';

describe('openStorage', () => {
  it('returns a Storage as it is', async () => {
    const storage = new MemoryStorage();
    expect(await openStorage(storage)).toBe(storage);
  });

  it('loads the storage package of the scheme through the given import, with the environment', async () => {
    const calls: Array<{ name: string; url?: string; env?: NodeJS.ProcessEnv }> = [];
    const storage = new MemoryStorage();
    const env = { S3_REGION: 'eu-west-1' };
    const opened = await openStorage('s3://backups/influx', {
      env,
      importPackage: async (name) => {
        calls.push({ name });
        return {
          storageFromUrl: (url: URL, given: NodeJS.ProcessEnv) => {
            calls.push({ name, url: url.href, env: given });
            return storage;
          },
        };
      },
    });
    expect(opened).toBe(storage);
    expect(calls).toEqual([
      { name: '@bk/storage-s3' },
      { name: '@bk/storage-s3', url: 's3://backups/influx', env },
    ]);
  });

  it('opens a plain directory path as file:', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'bk-open-storage-'));
    try {
      const seen: string[] = [];
      await openStorage(directory, {
        importPackage: async (name) => ({
          storageFromUrl: (url: URL) => {
            seen.push(`${name} ${url.href}`);
            return new MemoryStorage();
          },
        }),
      });
      expect(seen).toEqual([`@bk/storage-fs file://${directory}`]);
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });

  it('names the package to install, and refuses unknown schemes', async () => {
    const missing = Object.assign(new Error("Cannot find package '@bk/storage-gcs' imported from x"), {
      code: 'ERR_MODULE_NOT_FOUND',
    });
    await expect(
      openStorage('gs://bucket', {
        importPackage: async () => {
          throw missing;
        },
      }),
    ).rejects.toThrow(/needs @bk\/storage-gcs, which is not installed/);
    await expect(openStorage('ftp://host/x')).rejects.toBeInstanceOf(ConfigError);
    await expect(openStorage('ftp://host/x')).rejects.toThrow(/"ftp:".*s3:/);
  });
});
