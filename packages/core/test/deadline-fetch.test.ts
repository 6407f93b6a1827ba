import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchWithDeadline, ProgressDeadline, StorageError } from '../src/index.ts';

let server: Server;
let base: string;

beforeAll(async () => {
  // /trickle: 10 chunks 100 ms apart; /stall: 10 bytes, then nothing; /echo: counts the upload.
  server = createServer(async (request, response) => {
    if (request.url === '/trickle') {
      response.writeHead(200, { 'Content-Length': '10' });
      for (let index = 0; index < 10; index += 1) {
        response.write('x');
        await sleep(100);
      }
      response.end();
    } else if (request.url === '/stall') {
      response.writeHead(200, { 'Content-Length': '1000' });
      response.write('0123456789');
    } else {
      let bytes = 0;
      for await (const chunk of request) bytes += (chunk as Buffer).byteLength;
      response.end(String(bytes));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe('fetchWithDeadline', () => {
  const fetcher = fetchWithDeadline(fetch, { idleMs: 250 });

  it('lets a response that keeps moving take longer than the deadline', async () => {
    const started = Date.now();
    expect(await (await fetcher(`${base}/trickle`)).text()).toBe('xxxxxxxxxx');
    expect(Date.now() - started).toBeGreaterThan(500);
  });

  it('does not count the time a consumer holds a chunk', async () => {
    const response = await fetcher(`${base}/stall`);
    const reader = response.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('0123456789');
    await sleep(400);
    // Only now does the read wait on the server, which sends nothing more.
    await expect(reader.read()).rejects.toThrow(`${base} sent nothing for 250 ms (requestTimeout)`);
  });

  it('fails a stalled stream with a retryable StorageError naming the endpoint', async () => {
    const response = await fetcher(`${base}/stall`);
    const error = await response.text().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StorageError);
    expect(error).toMatchObject({ code: 'BK_STORAGE', retryable: true });
  });

  it('sends a streamed upload in slices, and the caller can still abort', async () => {
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new Uint8Array(3 * 1024 * 1024));
        controller.close();
      },
    });
    const response = await fetcher(`${base}/echo`, { method: 'PUT', body, duplex: 'half' } as RequestInit);
    expect(await response.text()).toBe(String(3 * 1024 * 1024));
    const controller = new AbortController();
    const pending = fetcher(`${base}/stall`, { signal: controller.signal }).then((r) => r.text());
    controller.abort(new Error('caller stopped'));
    await expect(pending).rejects.toThrow('caller stopped');
  });
});

describe('ProgressDeadline', () => {
  it('fires only after idleMs without a touch, never while paused', async () => {
    const deadline = new ProgressDeadline(150, undefined, (message) => new StorageError(message), 'http://x');
    for (let index = 0; index < 4; index += 1) {
      await sleep(80);
      deadline.touch();
    }
    expect(deadline.expired).toBe(false);
    deadline.pause();
    await sleep(250);
    expect(deadline.expired).toBe(false);
    deadline.touch();
    await sleep(250);
    expect(deadline.expired).toBe(true);
    expect(deadline.signal.reason).toBe(deadline.error);
    deadline.done();
  });
});
