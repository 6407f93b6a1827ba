import { startSilentServer } from '@bk/test-servers';
import { describe, expect, it } from 'vitest';
import { S3Storage, storageFromUrl } from '../src/index.ts';

const credentials = { accessKeyId: 'key', secretAccessKey: 'secret' };

async function failure(promise: Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const started = Date.now();
  const error = await promise.then(
    () => new Error('expected a failure'),
    (caught: unknown) => caught,
  );
  return { error, ms: Date.now() - started };
}

describe('request timeouts', () => {
  it('fails a request to an endpoint that never answers, naming the endpoint', async () => {
    const silent = await startSilentServer();
    try {
      const storage = new S3Storage({
        bucket: 'b',
        endpoint: silent.endpoint,
        region: 'us-east-1',
        credentials,
        requestTimeout: 300,
        maxAttempts: 2,
      });
      for (const call of [
        () => storage.stat('a'),
        () => storage.get('a'),
        () => storage.put('a', new Uint8Array(10)),
        async () => {
          for await (const _object of storage.list('')) break;
        },
      ]) {
        const { error, ms } = await failure(call());
        expect(error).toMatchObject({ code: 'BK_STORAGE', retryable: true });
        expect((error as Error).message).toContain(silent.endpoint);
        expect((error as Error).message).toContain('sent nothing for 300 ms');
        expect(ms).toBeLessThan(10_000);
      }
      expect(silent.connections).toBeGreaterThanOrEqual(8);
    } finally {
      await silent.stop();
    }
  }, 60_000);

  it('fails a download whose stream stalls mid-way', async () => {
    const stalling = await startSilentServer({
      send: 'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: application/octet-stream\r\n\r\n0123456789',
    });
    try {
      const storage = new S3Storage({
        bucket: 'b',
        endpoint: stalling.endpoint,
        region: 'us-east-1',
        credentials,
        requestTimeout: 300,
        maxAttempts: 1,
      });
      const stream = await storage.get('a');
      const received: Uint8Array[] = [];
      const { error } = await failure(
        (async () => {
          for await (const chunk of stream) received.push(chunk);
        })(),
      );
      expect(error).toMatchObject({ code: 'BK_STORAGE', retryable: true });
      expect((error as Error).message).toMatch(/stalled: http:\/\/127\.0\.0\.1:\d+ sent nothing for 300 ms/);
      expect(Buffer.concat(received).toString()).toBe('0123456789');
    } finally {
      await stalling.stop();
    }
  }, 30_000);

  it('takes requestTimeout from the target URL, 60 s by default', () => {
    expect(() => storageFromUrl(new URL('s3://b/p?requestTimeout=abc'))).toThrow('requestTimeout');
    const storage = storageFromUrl(new URL('s3://b/p?requestTimeout=1500&endpoint=http://127.0.0.1:9'));
    expect((storage as unknown as { requestTimeout: number }).requestTimeout).toBe(1500);
    expect((new S3Storage({ bucket: 'b' }) as unknown as { requestTimeout: number }).requestTimeout).toBe(
      60_000,
    );
  });
});
