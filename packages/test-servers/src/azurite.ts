import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { freePort, startProcess } from './process.ts';

/** The well-known key of Azurite's development account (public, documented by Microsoft). */
const DEV_ACCOUNT_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

/** A running Azurite blob service and how to reach it. */
export interface AzuriteServer {
  /** `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;…;BlobEndpoint=…;` */
  connectionString: string;
  /** `http://127.0.0.1:<port>/devstoreaccount1` */
  blobEndpoint: string;
  accountName: 'devstoreaccount1';
  accountKey: string;
  /** The temp directory holding Azurite's data and its log (`azurite.log`). */
  dir: string;
  /** Stops the server by its PID and removes `dir`. */
  stop(): Promise<void>;
}

/** Resolves to true once anything answers HTTP on the port (Azurite answers 4xx to a bare GET). */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = request(
      { host: '127.0.0.1', port, path: '/devstoreaccount1?comp=list', timeout: 1_000 },
      (response) => {
        response.resume();
        resolve(true);
      },
    );
    probe.on('error', () => resolve(false));
    probe.on('timeout', () => {
      probe.destroy();
      resolve(false);
    });
    probe.end();
  });
}

/**
 * Starts a private Azurite blob service (the `azurite` npm package, 3.36) on 127.0.0.1 and a
 * free port below 32768, storing its data in a fresh temp directory. `--skipApiVersionCheck` is
 * always passed: the `@azure/storage-blob` SDK speaks a newer API version than Azurite knows,
 * and without the flag every request fails with `400 InvalidHeaderValue`.
 *
 * @example
 * const azurite = await startAzurite();
 * const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
 * // …
 * await azurite.stop();
 */
export async function startAzurite(): Promise<AzuriteServer> {
  const require = createRequire(import.meta.url);
  const packageJson = require.resolve('azurite/package.json');
  const bin = (require(packageJson) as { bin: Record<string, string> }).bin['azurite-blob'];
  if (bin === undefined) throw new Error(`azurite (${packageJson}) has no azurite-blob bin.`);
  const dir = await mkdtemp(join(tmpdir(), 'bk-azurite-'));
  let lastError: unknown;
  // Another process may take the port between freePort() and Azurite binding it: retry.
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const port = await freePort();
    try {
      const server = await startProcess({
        command: process.execPath,
        args: [
          join(dirname(packageJson), bin),
          '--blobHost',
          '127.0.0.1',
          '--blobPort',
          String(port),
          '--location',
          join(dir, 'data'),
          '--silent',
          '--disableTelemetry',
          '--skipApiVersionCheck',
        ],
        logFile: join(dir, 'azurite.log'),
        cwd: dir,
        ready: () => answers(port),
      });
      const blobEndpoint = `http://127.0.0.1:${port}/devstoreaccount1`;
      return {
        connectionString: `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${DEV_ACCOUNT_KEY};BlobEndpoint=${blobEndpoint};`,
        blobEndpoint,
        accountName: 'devstoreaccount1',
        accountKey: DEV_ACCOUNT_KEY,
        dir,
        async stop() {
          await server.stop();
          await rm(dir, { recursive: true, force: true });
        },
      };
    } catch (error) {
      lastError = error;
    }
  }
  // The directory stays: it holds the log the error points to.
  throw lastError;
}
