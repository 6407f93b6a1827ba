import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { CreateMultipartUploadCommand, type S3Client, UploadPartCommand } from '@aws-sdk/client-s3';
import {
  BkError,
  type ByteStream,
  backup,
  list,
  releaseWholeHandedOver,
  type Source,
  verify,
} from '@bk/core';
import { startHttpProxy } from '@bk/test-servers';
import { storageContract } from '@bk/test-suite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Storage, type S3StorageOptions } from '../src/index.ts';
import {
  clientFor,
  createBucket,
  failNth,
  MIB,
  openUploads,
  randomBody,
  rawKeys,
  runAws,
  type S3Endpoint,
  sha256Of,
} from './helpers.ts';

/** What differs between the servers the suite runs against. */
export interface S3SuiteOptions {
  name: string;
  start: () => Promise<S3Endpoint & { stop(): Promise<void> }>;
  /** Whether the server implements ListMultipartUploads (s3rver does not). */
  listsUploads: boolean;
  /** What the probe must find. */
  conditionalCreate: boolean;
  /** Size of the large streamed round trip. */
  largeBytes: number;
  /** More tests that need the server, registered inside the same `describe`. */
  extra?: (context: () => SuiteContext) => void;
}

export interface SuiteContext {
  server: S3Endpoint;
  client: S3Client;
  bucket: string;
  storage: (options?: Partial<S3StorageOptions> & { client?: S3Client }) => S3Storage;
}

const code = (expected: string) => (error: unknown) => {
  assert.ok(BkError.isInstance(error), `expected a BkError, got ${String(error)}`);
  assert.equal(error.code, expected, error.message);
  return true;
};

async function readAll(stream: ByteStream): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

export function defineS3Suite(options: S3SuiteOptions): void {
  describe(`S3Storage against ${options.name}`, () => {
    let server: (S3Endpoint & { stop(): Promise<void> }) | undefined;
    let context: SuiteContext;

    beforeAll(async () => {
      server = await options.start();
      const client = clientFor(server);
      const bucket = await createBucket(client);
      const started = server;
      context = {
        server: started,
        client,
        bucket,
        storage: (overrides = {}) =>
          new S3Storage({
            bucket,
            prefix: `t-${randomBytes(4).toString('hex')}`,
            client: overrides.client ?? clientFor(started),
            partSize: 5 * MIB,
            ...overrides,
          }),
      };
    }, 120_000);

    afterAll(async () => {
      await server?.stop();
    });

    describe('storage contract', () => {
      storageContract(
        it,
        async () => {
          const storage = context.storage();
          await storage.probeCapabilities();
          return { storage };
        },
        { largeObjectBytes: 12 * MIB + 3, timeout: 120_000 },
      );
    });

    it('probes conditional create support once and reports it', async () => {
      const storage = context.storage();
      expect(storage.capabilities.conditionalCreate).toBe(false);
      expect(storage.description).toBe(`s3://${context.bucket}/${storage.prefix}`);
      const capabilities = await storage.probeCapabilities();
      expect(capabilities).toEqual({
        atomicPublish: true,
        conditionalCreate: options.conditionalCreate,
        rangeRead: true,
        multipart: true,
      });
      // The probe object is gone again.
      expect(await rawKeys(context.client, context.bucket, storage.prefix)).toEqual([]);
    });

    it('create-if-absent falls back to a check that refuses an existing key (single and multipart)', async () => {
      const storage = context.storage({ conditionalCreate: 'check' });
      await storage.put('taken', new TextEncoder().encode('original'), { ifNoneMatch: true });
      await expect(
        storage.put('taken', new TextEncoder().encode('intruder'), { ifNoneMatch: true }),
      ).rejects.toSatisfy(code('BK_ALREADY_EXISTS'));
      await expect(storage.put('taken', randomBody(11 * MIB).body, { ifNoneMatch: true })).rejects.toSatisfy(
        code('BK_ALREADY_EXISTS'),
      );
      expect((await readAll(await storage.get('taken'))).toString()).toBe('original');
      if (options.listsUploads)
        expect(await openUploads(context.client, context.bucket, storage.prefix)).toEqual([]);
    });

    it('a failing UploadPart rejects the put, aborts the upload and leaves the old object whole', async () => {
      const client = clientFor(context.server);
      const fault = failNth(client, 'UploadPartCommand', 3, () => new Error('injected: part upload failed'));
      const storage = context.storage({ client, concurrency: 2 });
      await storage.put('victim.bin', new TextEncoder().encode('previous'));
      await expect(storage.put('victim.bin', randomBody(40 * MIB).body)).rejects.toSatisfy(
        code('BK_STORAGE'),
      );
      expect(fault.calls()).toBeGreaterThanOrEqual(3);
      expect((await readAll(await storage.get('victim.bin'))).toString()).toBe('previous');
      const fresh = clientFor(context.server);
      failNth(fresh, 'UploadPartCommand', 3, () => new Error('injected: part upload failed'));
      const freshStorage = context.storage({ client: fresh, concurrency: 2, prefix: storage.prefix });
      await expect(freshStorage.put('fresh.bin', randomBody(40 * MIB).body)).rejects.toSatisfy(
        code('BK_STORAGE'),
      );
      expect(await storage.stat('fresh.bin')).toBeUndefined();
      expect(await rawKeys(context.client, context.bucket, storage.prefix)).toEqual([
        `${storage.prefix}victim.bin`,
      ]);
      if (options.listsUploads)
        expect(await openUploads(context.client, context.bucket, storage.prefix)).toEqual([]);
    });

    it('a failed CompleteMultipartUpload stores nothing', async () => {
      const client = clientFor(context.server);
      failNth(client, 'CompleteMultipartUploadCommand', 1, () => new Error('injected: complete failed'));
      const storage = context.storage({ client });
      await expect(storage.put('never.bin', randomBody(12 * MIB).body)).rejects.toSatisfy(code('BK_STORAGE'));
      expect(await rawKeys(context.client, context.bucket, storage.prefix)).toEqual([]);
      if (options.listsUploads)
        expect(await openUploads(context.client, context.bucket, storage.prefix)).toEqual([]);
    });

    it('retries a part whose connection was reset', async () => {
      const client = clientFor(context.server);
      const fault = failNth(
        client,
        'UploadPartCommand',
        2,
        () => Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }),
        true,
      );
      const storage = context.storage({ client });
      const { body, sha256 } = randomBody(16 * MIB);
      const info = await storage.put('retried.bin', body);
      expect(info.size).toBe(16 * MIB);
      expect(fault.calls()).toBe(5); // 4 parts, one of them twice
      expect((await sha256Of(await storage.get('retried.bin'))).sha256).toBe(sha256());
    });

    it('an ETag that is not the MD5 of the part fails with BK_INTEGRITY and stores nothing', async () => {
      const client = clientFor(context.server);
      client.middlewareStack.add(
        (next, handlerContext) => async (args) => {
          const result = await next(args);
          if (handlerContext.commandName === 'UploadPartCommand')
            (result.output as { ETag?: string }).ETag = `"${'0'.repeat(32)}"`;
          return result;
        },
        { step: 'initialize', name: 'corrupt-etag' },
      );
      const storage = context.storage({ client });
      await expect(storage.put('corrupt.bin', randomBody(12 * MIB).body)).rejects.toSatisfy(
        code('BK_INTEGRITY'),
      );
      expect(await rawKeys(context.client, context.bucket, storage.prefix)).toEqual([]);
    });

    it('aborting mid-upload rejects with BK_ABORTED, aborts the upload and stores nothing', async () => {
      const storage = context.storage();
      const controller = new AbortController();
      const random = randomBody(64 * MIB);
      const body = (async function* () {
        let produced = 0;
        for await (const chunk of random.body) {
          produced += chunk.byteLength;
          if (produced === 17 * MIB) setTimeout(() => controller.abort(), 50);
          yield chunk;
        }
      })();
      await expect(storage.put('aborted.bin', body, { signal: controller.signal })).rejects.toSatisfy(
        code('BK_ABORTED'),
      );
      expect(await rawKeys(context.client, context.bucket, storage.prefix)).toEqual([]);
      if (options.listsUploads)
        expect(await openUploads(context.client, context.bucket, storage.prefix)).toEqual([]);
    });

    it('ranged reads across part boundaries of a multipart object', async () => {
      const storage = context.storage();
      const bytes = randomBytes(11 * MIB + 5);
      await storage.put(
        'parts.bin',
        (async function* () {
          for (let offset = 0; offset < bytes.byteLength; offset += MIB)
            yield bytes.subarray(offset, offset + MIB);
        })(),
      );
      const read = async (start: number, end?: number) =>
        readAll(await storage.get('parts.bin', { range: { start, end } }));
      expect((await read(5 * MIB - 3, 5 * MIB + 3)).equals(bytes.subarray(5 * MIB - 3, 5 * MIB + 3))).toBe(
        true,
      );
      expect((await read(10 * MIB)).equals(bytes.subarray(10 * MIB))).toBe(true);
      expect((await read(bytes.byteLength + 10)).byteLength).toBe(0);
      await expect(storage.get('missing', { range: { start: 5 } })).rejects.toSatisfy(code('BK_NOT_FOUND'));
    });

    it('hands over the socket reads it yields, so a reader frees each once copied', async () => {
      const storage = context.storage();
      const bytes = randomBytes(4 * MIB);
      await storage.put('handed.bin', bytes);
      const copies: Buffer[] = [];
      let freed = 0;
      for await (const chunk of await storage.get('handed.bin')) {
        copies.push(Buffer.from(chunk));
        if (releaseWholeHandedOver(chunk)) freed += 1;
      }
      expect(Buffer.concat(copies).equals(bytes)).toBe(true);
      expect(freed).toBeGreaterThan(0);
    });

    it('aborting a get ends its stream with BK_ABORTED', async () => {
      const storage = context.storage();
      await storage.put('read.bin', randomBody(12 * MIB).body);
      const controller = new AbortController();
      const stream = await storage.get('read.bin', { signal: controller.signal });
      await expect(
        (async () => {
          for await (const _chunk of stream) controller.abort();
        })(),
      ).rejects.toSatisfy(code('BK_ABORTED'));
    });

    it(`round-trips a ${options.largeBytes / MIB} MiB random stream byte for byte`, async () => {
      const storage = context.storage({ partSize: 8 * MIB });
      const { body, sha256 } = randomBody(options.largeBytes);
      let peakRss = 0;
      const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 100);
      const started = Date.now();
      try {
        const info = await storage.put('large.bin', body);
        expect(info.size).toBe(options.largeBytes);
      } finally {
        clearInterval(sampler);
      }
      const uploaded = Date.now();
      const read = await sha256Of(await storage.get('large.bin'));
      expect(read).toEqual({ sha256: sha256(), size: options.largeBytes });
      console.log(
        `${options.name}: ${options.largeBytes / MIB} MiB up ${uploaded - started} ms, down ${Date.now() - uploaded} ms, peak RSS during upload ${Math.round(peakRss / MIB)} MiB`,
      );
      await storage.delete('large.bin');
    }, 600_000);

    it('aws-cli reads what S3Storage wrote (multipart), and S3Storage reads what aws-cli wrote', async () => {
      const storage = context.storage();
      const written = randomBody(21 * MIB);
      await storage.put('from-bk.bin', written.body);
      const download = await runAws(context.server, [
        's3',
        'cp',
        `s3://${context.bucket}/${storage.prefix}from-bk.bin`,
        '-',
      ]);
      expect(download.stderr).toBe('');
      expect(download.code).toBe(0);
      expect({ sha256: download.stdoutSha256, size: download.stdoutBytes }).toEqual({
        sha256: written.sha256(),
        size: 21 * MIB,
      });
      const uploaded = randomBody(19 * MIB + 1);
      const upload = await runAws(
        context.server,
        ['s3', 'cp', '-', `s3://${context.bucket}/${storage.prefix}from-aws.bin`],
        uploaded.body,
      );
      expect(upload.code, upload.stderr).toBe(0);
      const info = await storage.stat('from-aws.bin');
      expect(info?.size).toBe(19 * MIB + 1);
      expect(await sha256Of(await storage.get('from-aws.bin'))).toEqual({
        sha256: uploaded.sha256(),
        size: 19 * MIB + 1,
      });
    }, 180_000);

    it(`${CONCURRENT_RUNS} concurrent backups through a ${LATENCY_MS} ms latency proxy each get their own backup, and every one verifies`, async () => {
      const proxy = await startHttpProxy({ upstream: context.server.endpoint, delayMs: LATENCY_MS });
      try {
        const prefix = `concurrent-${randomBytes(4).toString('hex')}`;
        // One storage and one client per run, as separate processes would have.
        const runStorage = () =>
          new S3Storage({
            bucket: context.bucket,
            prefix,
            client: clientFor({ ...context.server, endpoint: proxy.endpoint }),
          });
        const sameStart = new Date();
        const outcomes = await Promise.allSettled(
          Array.from({ length: CONCURRENT_RUNS }, (_, index) =>
            backup({
              storage: runStorage(),
              components: [oneFileSource(`run ${index}\n`.repeat(1000))],
              now: () => sameStart,
            }),
          ),
        );
        const succeeded = outcomes.flatMap((outcome) =>
          outcome.status === 'fulfilled' ? [outcome.value] : [],
        );
        const names = succeeded.map((result) => result.name);
        expect(new Set(names).size).toBe(names.length);
        const storage = context.storage({ prefix });
        const listed = (await list({ storage })).map((item) => item.name);
        for (const name of names) expect(listed).toContain(name);
        for (const result of succeeded) {
          const verified = await verify({ storage, name: result.name });
          expect(verified.manifest.archive.sha256).toBe(result.sha256);
        }
        // Failing is allowed (and reported); succeeding without a backup is not.
        expect(succeeded.length).toBe(CONCURRENT_RUNS);
      } finally {
        await proxy.stop();
      }
    }, 180_000);

    it('a lost CreateMultipartUpload answer leaves no orphan upload (retried, and when every answer is lost)', async (test) => {
      if (!options.listsUploads) {
        test.skip('the server has no ListMultipartUploads');
        return;
      }
      const isCreate = (request: { method: string; url: string }) =>
        request.method === 'POST' && /[?&]uploads(=|&|$)/.test(request.url);
      let dropped = 0;
      const proxy = await startHttpProxy({
        upstream: context.server.endpoint,
        dropResponse: (request) => isCreate(request) && dropped++ < 1,
      });
      try {
        const storage = context.storage({
          client: clientFor({ ...context.server, endpoint: proxy.endpoint }),
        });
        const body = randomBody(12 * MIB);
        await storage.put('lost-create.bin', body.body);
        expect(proxy.requests.filter(isCreate).length).toBe(2);
        expect(await sha256Of(await storage.get('lost-create.bin'))).toEqual({
          sha256: body.sha256(),
          size: 12 * MIB,
        });
        expect(await openUploads(context.client, context.bucket, storage.prefix)).toEqual([]);

        // Every answer lost: the put fails, and none of the uploads it started stays open.
        dropped = Number.NEGATIVE_INFINITY;
        const client = clientFor({ ...context.server, endpoint: proxy.endpoint });
        const failing = context.storage({ client, prefix: storage.prefix });
        await expect(failing.put('all-lost.bin', randomBody(12 * MIB).body)).rejects.toSatisfy(
          code('BK_STORAGE'),
        );
        expect(await failing.stat('all-lost.bin')).toBeUndefined();
        expect(await openUploads(context.client, context.bucket, storage.prefix)).toEqual([]);
      } finally {
        await proxy.stop();
      }
    }, 120_000);

    it('cleanupIncomplete aborts the uploads a killed put left open, past the age, and no other', async () => {
      const storage = context.storage();
      const { client, bucket } = context;
      // A killed put: an upload with one part, never completed nor aborted.
      const open = async (key: string) => {
        const created = await client.send(
          new CreateMultipartUploadCommand({ Bucket: bucket, Key: storage.prefix + key }),
        );
        await client.send(
          new UploadPartCommand({
            Bucket: bucket,
            Key: storage.prefix + key,
            UploadId: created.UploadId,
            PartNumber: 1,
            Body: randomBytes(5 * MIB),
          }),
        );
        return created.UploadId!;
      };
      const dead = await open('backup_20261101_000000.tar.gz');
      const other = await open('elsewhere/backup_20261101_000000.tar.gz');
      await storage.put('kept.txt', new TextEncoder().encode('kept'));
      if (!options.listsUploads) {
        const result = await storage.cleanupIncomplete({ olderThanMs: 0 });
        expect(result.removed.filter((item) => item.kind === 'multipart upload')).toEqual([]);
        expect(result.notes.join(' ')).toMatch(/ListMultipartUploads/);
        return;
      }
      expect((await storage.cleanupIncomplete({ olderThanMs: 3_600_000 })).removed).toEqual([]);
      // Swift rounds the times it reports up to the next second: let "now" pass them.
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      const listed = await storage.cleanupIncomplete({ olderThanMs: 0, prefix: 'backup_', dryRun: true });
      expect(listed.removed).toEqual([
        {
          kind: 'multipart upload',
          location: `s3://${bucket}/${storage.prefix}backup_20261101_000000.tar.gz (upload ${dead})`,
          key: 'backup_20261101_000000.tar.gz',
          size: 5 * MIB,
          lastModified: expect.any(Date),
        },
      ]);
      expect((await openUploads(client, bucket, storage.prefix)).length).toBe(2);
      await storage.cleanupIncomplete({ olderThanMs: 0, prefix: 'backup_' });
      expect(await openUploads(client, bucket, storage.prefix)).toEqual([
        `${storage.prefix}elsewhere/backup_20261101_000000.tar.gz ${other}`,
      ]);
      expect((await storage.cleanupIncomplete({ olderThanMs: 0 })).removed.map((item) => item.key)).toEqual([
        'elsewhere/backup_20261101_000000.tar.gz',
      ]);
      expect(await openUploads(client, bucket, storage.prefix)).toEqual([]);
      expect(await readAll(await storage.get('kept.txt'))).toEqual(Buffer.from('kept'));
    }, 120_000);

    options.extra?.(() => context);
  });
}

/** Backups run at once by the concurrency test; `BK_S3_CONCURRENT_RUNS` raises it (30 for the acceptance run). */
const CONCURRENT_RUNS = Number(process.env.BK_S3_CONCURRENT_RUNS ?? 8);
const LATENCY_MS = Number(process.env.BK_S3_LATENCY_MS ?? 300);

function oneFileSource(text: string): Source {
  const bytes = new TextEncoder().encode(text);
  return {
    kind: 'test',
    name: 'data',
    describe: async () => ({ version: '1' }),
    async *backup() {
      yield {
        path: 'file.txt',
        size: bytes.byteLength,
        body: (async function* () {
          yield bytes;
        })(),
      };
    },
  };
}
