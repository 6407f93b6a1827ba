import { startSilentServer } from '@bk/test-servers';
import { describe, expect, it } from 'vitest';
import { SwiftStorage, storageFromUrl } from '../src/index.ts';

async function failure(promise: Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const started = Date.now();
  const error = await promise.then(
    () => new Error('expected a failure'),
    (caught: unknown) => caught,
  );
  return { error, ms: Date.now() - started };
}

describe('request timeouts', () => {
  it('fails requests to an endpoint that never answers (login included), naming the endpoint', async () => {
    const silent = await startSilentServer();
    try {
      const storages = [
        new SwiftStorage({
          container: 'c',
          auth: { kind: 'token', storageUrl: `${silent.endpoint}/v1/AUTH_test`, token: 't' },
          requestTimeout: 300,
          retries: 1,
        }),
        new SwiftStorage({
          container: 'c',
          auth: { kind: 'v1', authUrl: `${silent.endpoint}/auth/v1.0`, user: 'u', key: 'k' },
          requestTimeout: 300,
          retries: 1,
        }),
      ];
      for (const storage of storages) {
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
          expect((error as Error).message).toContain(`${silent.endpoint} sent nothing for 300 ms`);
          expect(ms).toBeLessThan(10_000);
        }
      }
    } finally {
      await silent.stop();
    }
  }, 60_000);

  it('fails a download whose stream stalls mid-way', async () => {
    const stalling = await startSilentServer({
      send: 'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nEtag: "0123456789abcdef0123456789abcdef"\r\n\r\n0123456789',
    });
    try {
      const storage = new SwiftStorage({
        container: 'c',
        auth: { kind: 'token', storageUrl: `${stalling.endpoint}/v1/AUTH_test`, token: 't' },
        requestTimeout: 300,
      });
      const received: Uint8Array[] = [];
      const { error } = await failure(
        (async () => {
          for await (const chunk of await storage.get('a')) received.push(chunk);
        })(),
      );
      expect(error).toMatchObject({ code: 'BK_STORAGE', retryable: true });
      expect((error as Error).message).toMatch(/sent nothing for 300 ms.*\(after 10 bytes\)/);
      expect(Buffer.concat(received).toString()).toBe('0123456789');
    } finally {
      await stalling.stop();
    }
  }, 30_000);

  it('takes requestTimeout from the target URL', () => {
    const env = { OS_STORAGE_URL: 'http://127.0.0.1:9/v1/AUTH_x', OS_AUTH_TOKEN: 't' };
    expect(() => storageFromUrl(new URL('swift://c/p?requestTimeout=soon'), env)).toThrow('requestTimeout');
    expect(storageFromUrl(new URL('swift://c/p?requestTimeout=1500'), env)).toBeInstanceOf(SwiftStorage);
  });
});
