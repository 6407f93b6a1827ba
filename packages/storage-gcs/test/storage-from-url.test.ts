import { BkError } from '@bk/core';
import { describe, expect, it } from 'vitest';
import { GcsStorage, storageFromUrl } from '../src/index.ts';

function code(run: () => unknown): string | undefined {
  try {
    run();
    return undefined;
  } catch (error) {
    if (BkError.isInstance(error)) return error.code;
    throw error;
  }
}

describe('storageFromUrl', () => {
  it('reads bucket, prefix and options', () => {
    const storage = storageFromUrl(
      new URL('gs://acme-backups/nightly/db?chunkSize=32MiB&resumable=true&checksum=crc32c'),
    );
    expect(storage).toBeInstanceOf(GcsStorage);
    expect(storage.description).toBe('gs://acme-backups/nightly/db/');
    expect(storage.bucketName).toBe('acme-backups');
    expect(storage.prefix).toBe('nightly/db/');
    expect(storage.chunkSize).toBe(32 * 1024 * 1024);
    expect(storageFromUrl(new URL('gs://acme-backups')).description).toBe('gs://acme-backups/');
    expect(storageFromUrl(new URL('gs://acme-backups/?chunkSize=262144')).chunkSize).toBe(262_144);
  });

  it('refuses what it cannot honour with ConfigError, never echoing a password', () => {
    for (const target of [
      'gs://Bad_Bucket/x',
      'gs://acme-backups/x?chunkSize=1000',
      'gs://acme-backups/x?chunkSize=lots',
      'gs://acme-backups/x?resumable=maybe',
      'gs://acme-backups/x?checksum=sha1',
      'gs://acme-backups/x?region=eu',
      'gs://acme-backups/x#frag',
      'gs://acme-backups/a%2F..%2Fb',
      's3://acme-backups/x',
    ])
      expect(
        code(() => storageFromUrl(new URL(target))),
        target,
      ).toBe('BK_CONFIG');
    try {
      storageFromUrl(new URL('gs://user:hunter2@acme-backups/x'));
      expect.unreachable();
    } catch (error) {
      expect((error as Error).message).not.toContain('hunter2');
    }
  });

  it('checks constructor options', () => {
    expect(code(() => new GcsStorage({ bucket: 'acme-backups', chunkSize: 100 }))).toBe('BK_CONFIG');
    expect(code(() => new GcsStorage({ bucket: 'acme-backups', prefix: 'a//b' }))).toBe('BK_CONFIG');
    expect(new GcsStorage({ bucket: 'acme-backups', prefix: '/nightly/' }).prefix).toBe('nightly/');
  });
});
