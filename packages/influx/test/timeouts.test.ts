import { startSilentServer } from '@bk/test-servers';
import { describe, expect, it } from 'vitest';
import { queryInflux } from '../src/line-protocol/query-influx.ts';

describe('InfluxDB HTTP timeouts', () => {
  it('fails a query against a server that never answers, naming the server', async () => {
    const silent = await startSilentServer();
    try {
      const started = Date.now();
      const error = await (async () => {
        for await (const _series of queryInflux({
          httpUrl: silent.endpoint,
          query: 'SHOW DATABASES',
          requestTimeoutMs: 300,
        }));
      })().catch((caught: unknown) => caught);
      expect(error).toMatchObject({ code: 'BK_COMPONENT', retryable: true });
      expect((error as Error).message).toContain(`${silent.endpoint} sent nothing for 300 ms`);
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      await silent.stop();
    }
  });
});
