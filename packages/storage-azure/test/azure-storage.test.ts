import { createHash, randomBytes } from 'node:crypto';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  BlobServiceClient,
  type ContainerClient,
  RestError,
  StorageRetryPolicyType,
} from '@azure/storage-blob';
import { BkError, type ByteStream } from '@bk/core';
import { type AzuriteServer, startAzurite } from '@bk/test-servers';
import { storageContract } from '@bk/test-suite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blockSizeAt } from '../src/azure-storage.ts';
import { AzureStorage, storageFromUrl } from '../src/index.ts';

const KIB = 1024;
const MIB = 1024 * KIB;
const fastRetry = {
  retryPolicyType: StorageRetryPolicyType.EXPONENTIAL,
  maxTries: 3,
  retryDelayInMs: 10,
  maxRetryDelayInMs: 50,
};

let azurite: AzuriteServer;
let service: BlobServiceClient;
let containerCount = 0;

beforeAll(async () => {
  azurite = await startAzurite();
  service = BlobServiceClient.fromConnectionString(azurite.connectionString, { retryOptions: fastRetry });
});

afterAll(async () => {
  await azurite?.stop();
});

async function freshContainer(): Promise<ContainerClient> {
  containerCount += 1;
  const container = service.getContainerClient(
    `c${process.pid}-${containerCount}-${randomBytes(3).toString('hex')}`,
  );
  await container.create();
  return container;
}

async function readAll(stream: ByteStream): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Buffer equality without vitest's element-by-element diff, which takes seconds per MiB. */
function expectBytes(actual: Buffer, expected: Buffer): void {
  expect(actual.byteLength).toBe(expected.byteLength);
  expect(actual.equals(expected)).toBe(true);
}

async function code(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    if (BkError.isInstance(error)) return error.code;
    throw error;
  }
}

/** `count` random blocks of `size` bytes, yielded in uneven chunks. */
function randomBody(
  count: number,
  size: number,
  onBlock?: (index: number) => void,
): { body: ByteStream; bytes: Buffer } {
  const bytes = randomBytes(count * size);
  async function* body(): ByteStream {
    for (let index = 0; index < count; index += 1) {
      onBlock?.(index);
      const block = bytes.subarray(index * size, (index + 1) * size);
      yield block.subarray(0, 1000);
      yield block.subarray(1000);
    }
  }
  return { body: body(), bytes };
}

/**
 * What a failed put may have left at `name`: committed blobs in the container (uncommitted ones
 * too, where the server lists them), and the blob's uncommitted blocks (`'absent'`: no blob).
 */
async function leftovers(container: ContainerClient, name: string) {
  const listed: string[] = [];
  for await (const item of container.listBlobsFlat({ includeUncommitedBlobs: true })) listed.push(item.name);
  let uncommitted: number | 'absent';
  try {
    uncommitted =
      (await container.getBlockBlobClient(name).getBlockList('uncommitted')).uncommittedBlocks?.length ?? 0;
  } catch (error) {
    if ((error as RestError).statusCode !== 404) throw error;
    uncommitted = 'absent';
  }
  return { listed, uncommitted, exists: await container.getBlobClient(name).exists() };
}

/** A container client whose `n`th `stageBlock` (counted over all its blobs) runs `onCall` first. */
function interceptStage(
  container: ContainerClient,
  onCall: (call: number) => void | Promise<void>,
): { client: ContainerClient; calls: () => number } {
  let calls = 0;
  const getBlockBlobClient = container.getBlockBlobClient.bind(container);
  container.getBlockBlobClient = (name: string) => {
    const blob = getBlockBlobClient(name);
    const stageBlock = blob.stageBlock.bind(blob);
    blob.stageBlock = async (...args) => {
      calls += 1;
      await onCall(calls);
      return stageBlock(...args);
    };
    return blob;
  };
  return { client: container, calls: () => calls };
}

describe('AzureStorage meets the storage contract (Azurite)', () => {
  const factory =
    (extra: { blockSize?: number; concurrency?: number } = {}) =>
    async () => {
      const container = await freshContainer();
      return {
        storage: new AzureStorage({ container: container.containerName, client: service, ...extra }),
        cleanup: async () => {
          await container.delete();
        },
      };
    };
  describe('default blocks (8 MiB: the 8 MiB object is one Put Blob)', () => {
    storageContract(it, factory());
  });
  describe('256 KiB blocks (every large body is staged in blocks)', () => {
    storageContract(it, factory({ blockSize: 256 * KIB, concurrency: 3 }));
  });
});

describe('AzureStorage uploads', () => {
  it('stages blocks of fixed-length ids, commits them, and stores the whole-body MD5', async () => {
    const container = await freshContainer();
    const storage = new AzureStorage({
      container: container.containerName,
      client: container,
      blockSize: 256 * KIB,
      prefix: 'p/q',
    });
    const { body, bytes } = randomBody(5, 100 * KIB);
    const info = await storage.put('multi.bin', body);
    expect(info.size).toBe(bytes.byteLength);
    const blob = container.getBlockBlobClient('p/q/multi.bin');
    const { committedBlocks = [] } = await blob.getBlockList('committed');
    expect(committedBlocks.map((block) => block.size)).toEqual([256 * KIB, 244 * KIB]);
    expect(new Set(committedBlocks.map((block) => block.name.length)).size).toBe(1);
    const properties = await blob.getProperties();
    expect(Buffer.from(properties.contentMD5!).toString('hex')).toBe(
      createHash('md5').update(bytes).digest('hex'),
    );
    expect(info.etag).toBe(properties.etag);
    expectBytes(await readAll(await storage.get('multi.bin')), bytes);
    expect(storage.description).toBe(`az://${container.containerName}/p/q`);
    await container.delete();
  });

  it('the Nth stageBlock failing rejects the put and leaves no blob and no staged blocks', async () => {
    const container = await freshContainer();
    const { client, calls } = interceptStage(container, (call) => {
      if (call === 4) throw new RestError('injected failure', { statusCode: 500, code: 'InternalError' });
    });
    const storage = new AzureStorage({
      container: container.containerName,
      client,
      blockSize: 128 * KIB,
      concurrency: 2,
    });
    const { body } = randomBody(12, 128 * KIB);
    const error = await storage.put('fails.bin', body).catch((caught: unknown) => caught);
    expect(BkError.isInstance(error) && error.code).toBe('BK_STORAGE');
    expect((error as BkError).retryable).toBe(true);
    expect(calls()).toBeGreaterThanOrEqual(4);
    expect(calls()).toBeLessThan(12);
    expect(await storage.stat('fails.bin')).toBeUndefined();
    expect(await leftovers(container, 'fails.bin')).toEqual({
      listed: [],
      uncommitted: 'absent',
      exists: false,
    });
    await container.delete();
  });

  it('a failing overwrite keeps the previous object whole (its staged blocks wait for Azure)', async () => {
    const container = await freshContainer();
    let failAt = Number.POSITIVE_INFINITY;
    const { client, calls } = interceptStage(container, (call) => {
      if (call === failAt) throw new RestError('injected failure', { statusCode: 400, code: 'InvalidInput' });
    });
    const storage = new AzureStorage({ container: container.containerName, client, blockSize: 128 * KIB });
    const previous = randomBody(3, 128 * KIB);
    await storage.put('kept.bin', previous.body);
    failAt = calls() + 3;
    const error = await storage
      .put('kept.bin', randomBody(6, 128 * KIB).body)
      .catch((caught: unknown) => caught);
    expect(BkError.isInstance(error) && error.code).toBe('BK_STORAGE');
    expect((error as BkError).retryable).toBe(false);
    expectBytes(await readAll(await storage.get('kept.bin')), previous.bytes);
    expect((await leftovers(container, 'kept.bin')).listed).toEqual(['kept.bin']);
    await container.delete();
  });

  it('an abort while blocks are in flight rejects with BK_ABORTED, lets them drain, and leaves nothing', async () => {
    const container = await freshContainer();
    const controller = new AbortController();
    const { client } = interceptStage(container, (call) => {
      // Abort while other blocks' requests are on their way.
      if (call === 5) setImmediate(() => controller.abort());
    });
    const storage = new AzureStorage({
      container: container.containerName,
      client,
      blockSize: 256 * KIB,
      concurrency: 4,
    });
    const { body } = randomBody(40, 256 * KIB);
    expect(await code(storage.put('aborted.bin', body, { signal: controller.signal }))).toBe('BK_ABORTED');
    expect(await leftovers(container, 'aborted.bin')).toEqual({
      listed: [],
      uncommitted: 'absent',
      exists: false,
    });
    await container.delete();
  });

  it('a body that throws between blocks leaves nothing and its error is rethrown unchanged', async () => {
    const container = await freshContainer();
    const storage = new AzureStorage({
      container: container.containerName,
      client: container,
      blockSize: 64 * KIB,
    });
    const failure = new Error('source broke');
    const body = (async function* () {
      for (let index = 0; index < 6; index += 1) yield randomBytes(64 * KIB);
      throw failure;
    })();
    await expect(storage.put('broken.bin', body)).rejects.toBe(failure);
    expect(await leftovers(container, 'broken.bin')).toEqual({
      listed: [],
      uncommitted: 'absent',
      exists: false,
    });
    await container.delete();
  });

  it('concurrent multi-block create-if-absent: exactly one wins, the others get BK_ALREADY_EXISTS', async () => {
    const container = await freshContainer();
    const storage = new AzureStorage({
      container: container.containerName,
      client: container,
      blockSize: 128 * KIB,
    });
    const bodies = Array.from({ length: 6 }, () => randomBody(4, 128 * KIB));
    const results = await Promise.allSettled(
      bodies.map(({ body }) => storage.put('race.bin', body, { ifNoneMatch: true })),
    );
    const winners = results.flatMap((result, index) => (result.status === 'fulfilled' ? [index] : []));
    expect(winners).toHaveLength(1);
    for (const result of results)
      if (result.status === 'rejected')
        expect(BkError.isInstance(result.reason) && result.reason.code).toBe('BK_ALREADY_EXISTS');
    expectBytes(await readAll(await storage.get('race.bin')), bodies[winners[0]!]!.bytes);
    expect((await leftovers(container, 'race.bin')).listed).toEqual(['race.bin']);
    await container.delete();
  });

  it('sends the blob MD5 with a single Put Blob and checks it on a full get', async () => {
    const container = await freshContainer();
    const storage = new AzureStorage({ container: container.containerName, client: container });
    const bytes = randomBytes(10_000);
    await storage.put('small.bin', bytes, { contentType: 'application/x-test' });
    const blob = container.getBlobClient('small.bin');
    const properties = await blob.getProperties();
    expect(properties.contentType).toBe('application/x-test');
    expect(Buffer.from(properties.contentMD5!)).toEqual(createHash('md5').update(bytes).digest());
    // Corrupt the stored MD5: a full read must fail loudly at its end, a ranged one cannot check.
    await blob.setHTTPHeaders({ blobContentMD5: Buffer.alloc(16), blobContentType: 'application/x-test' });
    expect(await code(readAll(await storage.get('small.bin')))).toBe('BK_INTEGRITY');
    expectBytes(await readAll(await storage.get('small.bin', { range: { start: 10 } })), bytes.subarray(10));
    await container.delete();
  });

  it('maps a missing container to BK_CONFIG, or creates it with createContainer', async () => {
    const name = `missing-${randomBytes(4).toString('hex')}`;
    const storage = new AzureStorage({ container: name, client: service });
    expect(await code(storage.put('a', randomBytes(10)))).toBe('BK_CONFIG');
    expect(await code(storage.stat('a'))).toBe('BK_CONFIG');
    const creating = new AzureStorage({ container: name, client: service, createContainer: true });
    await creating.put('a', randomBytes(10));
    expect((await creating.stat('a'))?.size).toBe(10);
    await service.getContainerClient(name).delete();
  });

  it('grows blocks so 50,000 of them hold at least 5 TiB', () => {
    expect(blockSizeAt(8 * MIB, 0)).toBe(8 * MIB);
    expect(blockSizeAt(8 * MIB, 4_999)).toBe(8 * MIB);
    expect(blockSizeAt(8 * MIB, 5_000)).toBe(16 * MIB);
    expect(blockSizeAt(8 * MIB, 49_999)).toBe(4000 * MIB);
    let total = 0;
    for (let index = 0; index < 50_000; index += 1) total += blockSizeAt(8 * MIB, index);
    expect(total).toBeGreaterThanOrEqual(5 * 1024 ** 4);
    let smallest = 0;
    for (let index = 0; index < 50_000; index += 1) smallest += blockSizeAt(MIB, index);
    expect(smallest).toBeGreaterThanOrEqual(5 * 1024 ** 4);
  });
});

/** An HTTP proxy in front of Azurite that can break chosen requests. */
async function breakingProxy(
  target: string,
  breaks: (method: string, url: string) => 'reset' | '503' | 'corrupt' | undefined,
): Promise<{ endpoint: string; close: () => Promise<void> }> {
  const upstream = new URL(target);
  const server: Server = createServer((incoming, outgoing) => {
    const action = breaks(incoming.method ?? '', incoming.url ?? '');
    if (action === 'reset') {
      incoming.socket.destroy();
      return;
    }
    if (action === '503') {
      incoming.resume();
      incoming.on('end', () => {
        outgoing.writeHead(503, { 'x-ms-error-code': 'ServerBusy' }).end();
      });
      return;
    }
    const forward = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: incoming.method,
        path: incoming.url,
        headers: incoming.headers,
      },
      (answer) => {
        outgoing.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(outgoing);
      },
    );
    forward.on('error', () => outgoing.destroy());
    if (action !== 'corrupt') {
      incoming.pipe(forward);
      return;
    }
    const chunks: Buffer[] = [];
    incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
    incoming.on('end', () => {
      const body = Buffer.concat(chunks);
      body[body.byteLength >> 1] = (body[body.byteLength >> 1] ?? 0) ^ 0xff;
      forward.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}${upstream.pathname}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('AzureStorage through a failing network', () => {
  const isStage = (method: string, url: string) =>
    method === 'PUT' && url.includes('comp=block') && !url.includes('blocklist');

  for (const failure of ['reset', '503'] as const) {
    it(`retries a stageBlock that fails once with ${failure === 'reset' ? 'a connection reset' : '503 ServerBusy'}`, async () => {
      const container = await freshContainer();
      let stages = 0;
      const proxy = await breakingProxy(azurite.blobEndpoint, (method, url) =>
        isStage(method, url) && ++stages === 2 ? failure : undefined,
      );
      try {
        const storage = new AzureStorage({
          container: container.containerName,
          connectionString: azurite.connectionString.replace(azurite.blobEndpoint, proxy.endpoint),
          blockSize: 64 * KIB,
          retryOptions: fastRetry,
        });
        const { body, bytes } = randomBody(4, 64 * KIB);
        await storage.put('retried.bin', body);
        expect(stages).toBe(5);
        expectBytes(await readAll(await storage.get('retried.bin')), bytes);
      } finally {
        await proxy.close();
        await container.delete();
      }
    });
  }

  it('a block corrupted in transit is refused by its MD5, and the put leaves nothing', async () => {
    const container = await freshContainer();
    let stages = 0;
    const proxy = await breakingProxy(azurite.blobEndpoint, (method, url) =>
      isStage(method, url) && ++stages === 2 ? 'corrupt' : undefined,
    );
    try {
      const storage = new AzureStorage({
        container: container.containerName,
        connectionString: azurite.connectionString.replace(azurite.blobEndpoint, proxy.endpoint),
        blockSize: 64 * KIB,
        concurrency: 1,
        retryOptions: fastRetry,
      });
      const error = await storage
        .put('corrupt.bin', randomBody(4, 64 * KIB).body)
        .catch((caught: unknown) => caught);
      expect(BkError.isInstance(error) && error.code).toBe('BK_STORAGE');
      expect(String((error as Error).message)).toMatch(/MD5|md5/);
      expect(await leftovers(container, 'corrupt.bin')).toEqual({
        listed: [],
        uncommitted: 'absent',
        exists: false,
      });
    } finally {
      await proxy.close();
      await container.delete();
    }
  });
});

describe('storageFromUrl', () => {
  it('reads AZURE_STORAGE_CONNECTION_STRING', async () => {
    const container = await freshContainer();
    const storage = storageFromUrl(new URL(`az://${container.containerName}/nightly/db`), {
      AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
    });
    expect(storage.description).toBe(`az://${container.containerName}/nightly/db`);
    await storage.put('x.txt', new TextEncoder().encode('via url'));
    expect(await container.getBlobClient('nightly/db/x.txt').exists()).toBe(true);
    await container.delete();
  });

  it('reads AZURE_STORAGE_ACCOUNT, AZURE_STORAGE_KEY and AZURE_STORAGE_BLOB_ENDPOINT', async () => {
    const container = await freshContainer();
    const storage = storageFromUrl(new URL(`az://${container.containerName}`), {
      AZURE_STORAGE_ACCOUNT: azurite.accountName,
      AZURE_STORAGE_KEY: azurite.accountKey,
      AZURE_STORAGE_BLOB_ENDPOINT: azurite.blobEndpoint,
    });
    expect(storage.description).toBe(`az://${container.containerName}`);
    await storage.put('y.txt', new TextEncoder().encode('via key'));
    expect((await storage.stat('y.txt'))?.size).toBe(7);
    await container.delete();
  });

  it('names what is missing and never echoes a key', () => {
    expect(() => storageFromUrl(new URL('az://backups/x'), {})).toThrow(
      /AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY/,
    );
    expect(() => storageFromUrl(new URL('az://backups/x'), { AZURE_STORAGE_ACCOUNT: 'acct' })).toThrow(
      /missing: AZURE_STORAGE_KEY\)/,
    );
    const secret = 'c2VjcmV0LWtleS12YWx1ZQ==';
    for (const url of [
      'az://user:pass@backups/x',
      'az://backups/x?sig=abc',
      'az://Bad_Name/x',
      'az://backups:99/x',
    ]) {
      try {
        storageFromUrl(new URL(url), { AZURE_STORAGE_ACCOUNT: 'acct', AZURE_STORAGE_KEY: secret });
        expect.unreachable(url);
      } catch (error) {
        expect(BkError.isInstance(error) && error.code).toBe('BK_CONFIG');
        expect(String((error as Error).message)).not.toContain(secret);
        expect(String((error as Error).message)).not.toContain('pass');
      }
    }
    expect(() =>
      storageFromUrl(new URL('az://backups/x'), { AZURE_STORAGE_CONNECTION_STRING: 'nonsense' }),
    ).toThrow(BkError);
  });
});
