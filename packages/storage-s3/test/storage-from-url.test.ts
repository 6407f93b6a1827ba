import { describe, expect, it } from 'vitest';
import { MAX_PART_BYTES, MAX_PARTS, partSize, S3Storage, storageFromUrl } from '../src/index.ts';

const MIB = 1024 * 1024;

describe('storageFromUrl', () => {
  it('takes the bucket, prefix and parameters from the URL', () => {
    const storage = storageFromUrl(
      new URL(
        's3://backups/nightly/db?endpoint=http%3A%2F%2F127.0.0.1%3A9000&partSize=16777216&conditionalCreate=check',
      ),
      {},
    );
    expect(storage.bucket).toBe('backups');
    expect(storage.prefix).toBe('nightly/db/');
    expect(storage.description).toBe('s3://backups/nightly/db/');
    expect(storage.capabilities.conditionalCreate).toBe(false);
  });

  it('uses the S3_* variables, and us-east-1 for an endpoint without a region', async () => {
    const storage = storageFromUrl(new URL('s3://backups'), {
      S3_REGION_ENDPOINT: 'http://127.0.0.1:9000',
      S3_ACCESS_KEY: 'key',
      S3_SECRET_KEY: 'secret',
    });
    expect(await storage.client.config.region()).toBe('us-east-1');
    expect(await storage.client.config.credentials()).toMatchObject({
      accessKeyId: 'key',
      secretAccessKey: 'secret',
    });
    expect(storage.client.config.forcePathStyle).toBe(true);
    expect(storage.description).not.toContain('secret');
  });

  it.each([
    ['s3://key:secret@backups/x', 'must not carry credentials'],
    ['s3:///x', 'needs a bucket'],
    ['s3://backups/x?colour=blue', 'Unknown s3:// target parameter "colour"'],
    ['s3://backups/x?partSize=1024', 'partSize must be an integer from'],
    ['s3://backups/x?forcePathStyle=maybe', 'must be true or false'],
    ['s3://backups/x?conditionalCreate=always', 'conditionalCreate must be'],
    ['s3://backups/a//b', 'Invalid storage key'],
  ])('refuses %s', (url, message) => {
    expect(() => storageFromUrl(new URL(url), {})).toThrow(message);
  });

  it('refuses half a key pair', () => {
    expect(() => storageFromUrl(new URL('s3://backups'), { S3_ACCESS_KEY: 'key' })).toThrow('Set both');
  });
});

describe('part sizes', () => {
  it('double every 1,000 parts, so 10,000 parts of 8 MiB cover more than 5 TiB', () => {
    expect(partSize(1, 8 * MIB)).toBe(8 * MIB);
    expect(partSize(1_000, 8 * MIB)).toBe(8 * MIB);
    expect(partSize(1_001, 8 * MIB)).toBe(16 * MIB);
    expect(partSize(MAX_PARTS, 8 * MIB)).toBe(4096 * MIB);
    let total = 0;
    for (let part = 1; part <= MAX_PARTS; part += 1) total += partSize(part, 8 * MIB);
    expect(total).toBe(8_000 * 1_023 * MIB);
    expect(total).toBeGreaterThan(5 * 1024 * 1024 * MIB);
    expect(partSize(MAX_PARTS, 64 * MIB)).toBe(MAX_PART_BYTES);
    let smallest = 0;
    for (let part = 1; part <= MAX_PARTS; part += 1) smallest += partSize(part, 5 * MIB);
    expect(smallest).toBeGreaterThan(5 * 1024 * 1024 * MIB);
    expect(partSize(1_001, 5 * MIB)).toBe(12 * MIB);
    let defaults = 0;
    for (let part = 1; part <= MAX_PARTS; part += 1) defaults += partSize(part, 6 * MIB);
    expect(defaults).toBeGreaterThan(5 * 1024 * 1024 * MIB);
  });

  it('refuses part sizes S3 does not accept', () => {
    expect(() => new S3Storage({ bucket: 'b', partSize: 4 * MIB })).toThrow('partSize');
    expect(() => new S3Storage({ bucket: 'b', concurrency: 0 })).toThrow('concurrency');
  });
});
