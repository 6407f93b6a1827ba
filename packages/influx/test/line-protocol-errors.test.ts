import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AbortedError, collect, fromBytes, IntegrityError } from '@bk/core';
import { type InfluxdServer, startInfluxd } from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportLineProtocol, InfluxQueryError, importLineProtocol } from '../src/line-protocol/index.ts';

type Handler = (url: URL, request: IncomingMessage, response: ServerResponse) => void;

let influxd: InfluxdServer;
let fake: Server;
let fakeUrl: string;
let handler: Handler = (_url, _request, response) => response.end();

const FIELD_KEYS = JSON.stringify({
  results: [
    {
      statement_id: 0,
      series: [{ name: 'm', columns: ['fieldKey', 'fieldType'], values: [['v', 'float']] }],
    },
  ],
});

function chunk(values: unknown[][], partial: boolean): string {
  const series = {
    name: 'm',
    tags: { host: 'a' },
    columns: ['time', 'v'],
    values,
    ...(partial ? { partial } : {}),
  };
  return `${JSON.stringify({ results: [{ statement_id: 0, series: [series], ...(partial ? { partial } : {}) }] })}\n`;
}

/** Answers SHOW FIELD KEYS, and SELECT with the given documents. */
function selectAnswers(documents: string[]): Handler {
  return (url, _request, response) => {
    const query = url.searchParams.get('q') ?? '';
    response.writeHead(200, { 'content-type': 'application/json' });
    if (query.startsWith('SHOW FIELD KEYS')) return response.end(FIELD_KEYS);
    for (const document of documents) response.write(document);
    response.end();
  };
}

beforeAll(async () => {
  influxd = await startInfluxd();
  fake = createServer((request, response) =>
    handler(new URL(request.url ?? '/', 'http://x'), request, response),
  );
  await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
  fakeUrl = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await influxd?.stop();
  await new Promise((resolve) => fake?.close(resolve));
});

const exportFake = () =>
  collect(
    exportLineProtocol({ httpUrl: fakeUrl, database: 'd', retentionPolicy: 'autogen', measurements: ['m'] }),
  );

describe('exportLineProtocol failure detection', () => {
  it('reads a chunked response across documents', async () => {
    handler = selectAnswers([chunk([[1, 1.5]], true), chunk([[2, 2.5]], false)]);
    const text = new TextDecoder().decode(await exportFake());
    expect(text).toContain('m,host=a v=1.5 1\nm,host=a v=2.5 2\n');
  });

  it('fails with IntegrityError when the response ends while still "partial"', async () => {
    handler = selectAnswers([chunk([[1, 1.5]], true), chunk([[2, 2.5]], true)]);
    const failure = await exportFake().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(IntegrityError);
    expect((failure as Error).message).toMatch(/partial.*truncated/);
  });

  it('fails with InfluxQueryError on an error document, even after good chunks', async () => {
    const error = `${JSON.stringify({ results: [{ statement_id: 0, error: 'query interrupted' }] })}\n`;
    handler = selectAnswers([chunk([[1, 1.5]], true), error]);
    const failure = await exportFake().catch((caught: unknown) => caught);
    expect(failure).toBeInstanceOf(InfluxQueryError);
    expect((failure as InfluxQueryError).message).toContain('query interrupted');
    expect((failure as InfluxQueryError).code).toBe('BK_COMPONENT');
  });

  it('fails with InfluxQueryError on a top-level error and on an HTTP error status', async () => {
    handler = selectAnswers([`${JSON.stringify({ error: 'error parsing query' })}\n`]);
    await expect(exportFake()).rejects.toThrow(/error parsing query/);
    handler = (_url, _request, response) => {
      response.writeHead(500, { 'content-type': 'application/json' });
      response.end('{"error":"boom"}');
    };
    const failure = (await exportFake().catch((caught: unknown) => caught)) as InfluxQueryError;
    expect(failure).toBeInstanceOf(InfluxQueryError);
    expect(failure.status).toBe(500);
    expect(failure.retryable).toBe(true);
  });

  it('fails on a database the real server does not have', async () => {
    const failure = await collect(exportLineProtocol({ httpUrl: influxd.httpUrl, database: 'nosuch' })).catch(
      (caught: unknown) => caught,
    );
    expect(failure).toBeInstanceOf(InfluxQueryError);
    expect((failure as Error).message).toContain('database not found');
  });

  it('rejects an aborted signal before any request', async () => {
    const signal = AbortSignal.abort();
    await expect(
      collect(exportLineProtocol({ httpUrl: fakeUrl, database: 'd', signal })),
    ).rejects.toBeInstanceOf(AbortedError);
  });
});

describe('importLineProtocol failures and retries', () => {
  const input = '# DML\n# CONTEXT-DATABASE: d\nm v=1 1\nm v=2 2\n';

  it('retries 5xx with backoff, then succeeds', async () => {
    let calls = 0;
    handler = (_url, request, response) => {
      request.resume();
      calls += 1;
      response.writeHead(calls <= 2 ? 503 : 204);
      response.end();
    };
    const result = await importLineProtocol(fromBytes(input), { httpUrl: fakeUrl, retries: 3 });
    expect(result).toEqual({ lines: 2, batches: 1, statements: 0 });
    expect(calls).toBe(3);
  });

  it('gives up after `retries` and never retries a 4xx', async () => {
    let calls = 0;
    handler = (_url, request, response) => {
      request.resume();
      calls += 1;
      response.writeHead(503);
      response.end('{"error":"overloaded"}');
    };
    const exhausted = (await importLineProtocol(fromBytes(input), { httpUrl: fakeUrl, retries: 1 }).catch(
      (caught: unknown) => caught,
    )) as InfluxQueryError;
    expect(exhausted).toBeInstanceOf(InfluxQueryError);
    expect(exhausted.retryable).toBe(true);
    expect(calls).toBe(2);

    const bad = await importLineProtocol(fromBytes('m v=1 1\nnot line protocol\n'), {
      httpUrl: influxd.httpUrl,
      database: 'imported',
      createDatabase: true,
      retries: 5,
    }).catch((caught: unknown) => caught);
    expect(bad).toBeInstanceOf(InfluxQueryError);
    expect((bad as InfluxQueryError).status).toBe(400);
    expect((bad as InfluxQueryError).retryable).toBe(false);
  });

  it('fails on a missing database unless asked to create it, and without any database', async () => {
    const missing = await importLineProtocol(fromBytes('m v=1 1\n'), {
      httpUrl: influxd.httpUrl,
      database: 'absent',
    }).catch((caught: unknown) => caught);
    expect((missing as InfluxQueryError).status).toBe(404);
    await expect(importLineProtocol(fromBytes('m v=1 1\n'), { httpUrl: influxd.httpUrl })).rejects.toThrow(
      /no database/,
    );
  });
});
