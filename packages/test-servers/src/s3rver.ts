import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { freePort, startProcess } from './process.ts';

/** A running s3rver and the S3 settings that reach it. */
export interface S3rverServer {
  /** `http://127.0.0.1:<port>`; use path-style addressing. */
  endpoint: string;
  region: 'us-east-1';
  accessKeyId: 'S3RVER';
  secretAccessKey: 'S3RVER';
  /** The temp directory that holds the buckets (removed by `stop`). */
  dir: string;
  /** Stops the server and removes its directory. */
  stop(): Promise<void>;
}

/** The absolute path of s3rver's command line script, from its package.json `bin`. */
function s3rverBin(): string {
  const require = createRequire(import.meta.url);
  const manifestPath = require.resolve('s3rver/package.json');
  const manifest = require(manifestPath) as { bin: string | Record<string, string> };
  const bin = typeof manifest.bin === 'string' ? manifest.bin : manifest.bin.s3rver;
  if (bin === undefined) throw new Error('The s3rver package declares no "s3rver" bin.');
  return join(dirname(manifestPath), bin);
}

/**
 * Starts a private s3rver 3.7 (an S3 API in one Node process) on a free loopback port, with its
 * own temp directory, and resolves once `GET /` answers 200.
 *
 * Its limits, which tests must allow for: SigV4 signatures are not verified, abort-multipart
 * and list-parts answer 405 and list-multipart-uploads 501, multipart ETags are a plain MD5,
 * and `If-None-Match` is not honoured. `NODE_OPTIONS=--openssl-legacy-provider` is set because
 * its continuation tokens use DES, which OpenSSL 3 disables (paged listings fail with 500
 * without it).
 *
 * @example
 * const server = await startS3rver();
 * const client = new S3Client({ endpoint: server.endpoint, region: server.region, forcePathStyle: true,
 *   credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey } });
 * await server.stop();
 */
export async function startS3rver(): Promise<S3rverServer> {
  const dir = await mkdtemp(join(tmpdir(), 'bk-s3rver-'));
  const bin = s3rverBin();
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const nodeOptions = [process.env.NODE_OPTIONS, '--openssl-legacy-provider'].filter(Boolean).join(' ');
  let server: Awaited<ReturnType<typeof startProcess>>;
  try {
    server = await startProcess({
      command: process.execPath,
      args: [bin, '-d', join(dir, 'data'), '-a', '127.0.0.1', '-p', String(port), '--silent'],
      logFile: join(dir, 's3rver.log'),
      env: { ...process.env, NODE_OPTIONS: nodeOptions },
      ready: async () => (await fetch(`${endpoint}/`, { signal: AbortSignal.timeout(1_000) })).status === 200,
    });
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    endpoint,
    region: 'us-east-1',
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    dir,
    async stop() {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
