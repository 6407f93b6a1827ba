import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import {
  CreateBucketCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import type { ByteStream } from '@bk/core';

/** What both test servers give: an S3 endpoint and its keys. */
export interface S3Endpoint {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export const MIB = 1024 * 1024;

export function clientFor(server: S3Endpoint): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

export async function createBucket(client: S3Client): Promise<string> {
  const bucket = `bk-test-${randomBytes(4).toString('hex')}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  return bucket;
}

/** Every key in the bucket under `prefix`, straight from the server. */
export async function rawKeys(client: S3Client, bucket: string, prefix = ''): Promise<string[]> {
  const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  return (page.Contents ?? []).map((object) => object.Key!).sort();
}

/** Open multipart uploads under `prefix` (servers that implement ListMultipartUploads only). */
export async function openUploads(client: S3Client, bucket: string, prefix = ''): Promise<string[]> {
  const page = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
  return (page.Uploads ?? []).map((upload) => `${upload.Key} ${upload.UploadId}`);
}

/**
 * Makes the `count`-th call of `commandName` (counted from 1) fail with `error()`. Added at the
 * `initialize` step, before the retry middleware, so the SDK does not retry it; pass
 * `afterRetry` to add it below the retries instead (a retryable error is then retried).
 */
export function failNth(
  client: S3Client,
  commandName: string,
  count: number | ((call: number) => boolean),
  error: () => Error,
  afterRetry = false,
): { calls: () => number } {
  let calls = 0;
  const fails = typeof count === 'number' ? (call: number) => call === count : count;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === commandName) {
        calls += 1;
        if (fails(calls)) throw error();
      }
      return next(args);
    },
    afterRetry
      ? { step: 'finalizeRequest', priority: 'low', name: `fail-${commandName}` }
      : { step: 'initialize', name: `fail-${commandName}` },
  );
  return { calls: () => calls };
}

/**
 * `total` random bytes in 1 MiB chunks, made on the fly (never held whole) and hashed as they
 * are produced.
 */
export function randomBody(total: number, chunkBytes = MIB): { body: ByteStream; sha256: () => string } {
  const hash = createHash('sha256');
  async function* body(): ByteStream {
    for (let produced = 0; produced < total; ) {
      const chunk = randomFillSync(Buffer.allocUnsafe(Math.min(chunkBytes, total - produced)));
      hash.update(chunk);
      produced += chunk.byteLength;
      yield chunk;
    }
  }
  return { body: body(), sha256: () => hash.digest('hex') };
}

export async function sha256Of(stream: ByteStream): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk);
    size += chunk.byteLength;
  }
  return { sha256: hash.digest('hex'), size };
}

/** Runs `/usr/bin/aws --endpoint-url … args`, feeding `stdin` and hashing stdout. */
export function runAws(
  server: S3Endpoint,
  args: string[],
  stdin?: ByteStream,
): Promise<{ code: number | null; stdoutSha256: string; stdoutBytes: number; stderr: string }> {
  const { AWS_PROFILE: _profile, AWS_SESSION_TOKEN: _token, ...env } = process.env;
  const child = spawn('/usr/bin/aws', ['--endpoint-url', server.endpoint, ...args], {
    env: {
      ...env,
      AWS_ACCESS_KEY_ID: server.accessKeyId,
      AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
      AWS_DEFAULT_REGION: server.region,
      AWS_REGION: server.region,
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const hash = createHash('sha256');
  let stdoutBytes = 0;
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    stdoutBytes += chunk.byteLength;
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const feeding = (async () => {
    if (stdin) {
      for await (const chunk of stdin)
        if (!child.stdin.write(chunk)) await new Promise((resolve) => child.stdin.once('drain', resolve));
    }
    child.stdin.end();
  })();
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      feeding.then(() => resolve({ code, stdoutSha256: hash.digest('hex'), stdoutBytes, stderr }), reject);
    });
  });
}
