import { randomBytes } from 'node:crypto';
import { storageContract } from '@bk/test-suite';
import { describe, it } from 'vitest';
import { GcsStorage } from '../src/index.ts';

// Runs only when BK_TEST_GCS_BUCKET names a bucket that Application Default Credentials
// (GOOGLE_APPLICATION_CREDENTIALS or `gcloud auth application-default login`) may write to.
// Everything goes under a random `bk-test-…/` prefix and is deleted after each test.
const bucket = process.env.BK_TEST_GCS_BUCKET;

describe.skipIf(!bucket)('GcsStorage meets the storage contract (real GCS)', () => {
  storageContract(
    it,
    async () => {
      const storage = new GcsStorage({
        bucket: bucket as string,
        prefix: `bk-test-${randomBytes(6).toString('hex')}`,
        chunkSize: 8 * 1024 * 1024,
      });
      const cleanup = async () => {
        for await (const object of storage.list('')) await storage.delete(object.key);
      };
      return { storage, cleanup };
    },
    // Three 8 MiB chunks and a short last one: the chunked resumable path on the real service.
    { largeObjectBytes: 26 * 1024 * 1024, timeout: 300_000 },
  );
});
