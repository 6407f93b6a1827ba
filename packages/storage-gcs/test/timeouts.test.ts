import { startSilentServer } from '@bk/test-servers';
import { describe, expect, it } from 'vitest';
import { GcsStorage } from '../src/index.ts';

function storageAt(endpoint: string, options: { resumable?: boolean } = {}): GcsStorage {
  return new GcsStorage({
    bucket: 'backups',
    apiEndpoint: endpoint,
    projectId: 'bk-test',
    requestTimeout: 300,
    chunkSize: 256 * 1024,
    ...options,
  });
}

async function failure(promise: Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const started = Date.now();
  const error = await promise.then(
    () => new Error('expected a failure'),
    (caught: unknown) => caught,
  );
  return { error, ms: Date.now() - started };
}

describe('request timeouts', () => {
  it('fails requests to an endpoint that never answers, naming the endpoint', async () => {
    const silent = await startSilentServer();
    try {
      const storage = storageAt(silent.endpoint);
      for (const call of [
        () => storage.stat('a'),
        () => storage.get('a'),
        () => storage.put('a', new Uint8Array(10)),
        () => storage.put('big', new Uint8Array(1024 * 1024)),
        () => storage.delete('a'),
        async () => {
          for await (const _object of storage.list('')) break;
        },
      ]) {
        const { error, ms } = await failure(call());
        expect(error).toMatchObject({ code: 'BK_STORAGE', retryable: true });
        expect((error as Error).message).toContain(`${silent.endpoint} sent nothing for 300 ms`);
        expect(ms).toBeLessThan(10_000);
      }
    } finally {
      await silent.stop();
    }
  }, 60_000);

  it('fails a download whose stream stalls mid-way', async () => {
    const stalling = await startSilentServer({
      send: 'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: application/octet-stream\r\n\r\n0123456789',
    });
    try {
      const { error } = await failure(
        (async () => {
          for await (const _chunk of await storageAt(stalling.endpoint).get('a', {
            range: { start: 0, end: 1000 },
          }));
        })(),
      );
      expect(error).toMatchObject({ code: 'BK_STORAGE', retryable: true });
      expect((error as Error).message).toMatch(/sent nothing for 300 ms/);
    } finally {
      await stalling.stop();
    }
  }, 30_000);
});
