import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { BkError, type CommandResult, ComponentError, ConfigError, throwIfAborted } from '@bk/core';
import { Etcd3, type IOptions } from 'etcd3';
import { verifySnapshot } from './snapshot.ts';

/** What {@link dropLeases} did. */
export interface DroppedLeases {
  /** Leases revoked. */
  leases: number;
  /** Keys detached from them (kept, with their values, under no lease). */
  keys: number;
}

/** Options of {@link dropLeases}. */
export interface DropLeasesOptions {
  /** Runs `etcdutl`/`etcdctl` (the caller's runner, with the v3 API selected). */
  run: (args: string[]) => Promise<CommandResult>;
  /** A dir that does not exist yet; the scratch member lives there and it is removed afterwards. */
  scratchDir: string;
  /** The component's name, for errors. */
  component: string;
  /** The component's `auth`: the snapshot brings its users and whether auth is on. */
  auth?: IOptions['auth'];
  signal: AbortSignal;
}

/** Keys detached per transaction (etcd's default `--max-txn-ops` is 128). */
const KEYS_PER_TXN = 100;
const SCRATCH_NAME = 'bk-leases';

/** A port in 20000–31999 that 127.0.0.1 can bind now (ports ≥ 32768 are the kernel's ephemeral range). */
async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const bound = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (bound) return port;
  }
  throw new Error('no free loopback port found in 20000–31999');
}

/** The `revision` of `snapshot status -w json` output (other lines, such as logs, skipped). */
function revisionOf(output: string): number | undefined {
  for (const line of output.split('\n')) {
    try {
      const value = JSON.parse(line) as { revision?: unknown; totalKey?: unknown };
      if (typeof value.revision === 'number' && 'totalKey' in value) return value.revision;
    } catch {
      // not the status line
    }
  }
  return undefined;
}

async function healthy(endpoint: string): Promise<boolean> {
  try {
    const response = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1_000) });
    const body = (await response.json().catch(() => ({}))) as { health?: unknown };
    return response.status === 200 && String(body.health) === 'true';
  } catch {
    return false;
  }
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/**
 * Rewrites an etcd snapshot so that no key keeps a lease: the snapshot is restored into a
 * scratch single-member data dir, a private `etcd` is started on it (loopback, random ports
 * below 32768), every key attached to a lease is put again with its own value and no lease,
 * every lease is revoked (with no keys left on it, a revoke deletes nothing), and a new snapshot
 * is taken from that member into `output`. `etcdutl`/`etcdctl snapshot restore` have no option
 * for this. The rewrite costs one revision per {@link KEYS_PER_TXN} leased keys.
 *
 * A lease whose TTL ran out in the scratch member before its keys were detached (the member
 * restarts every lease's timer when it starts, so only TTLs of about a second are at risk) makes
 * this fail rather than lose the keys.
 *
 * @throws {ConfigError} when no `etcd` binary is on the PATH.
 * @throws {ComponentError} when the scratch member does not start, or a lease expired first.
 */
export async function dropLeases(
  snapshotFile: string,
  output: string,
  options: DropLeasesOptions,
): Promise<DroppedLeases> {
  const { component, signal } = options;
  const fail = (message: string, cause?: unknown) =>
    new ComponentError(component, `dropping leases: ${message}`, cause === undefined ? {} : { cause });
  const status = await options.run(['snapshot', 'status', snapshotFile, '-w', 'json']);
  const snapshotRevision = status.code === 0 ? revisionOf(status.output) : undefined;
  if (snapshotRevision === undefined) throw fail(`snapshot status failed: ${status.output.trim()}`);

  let child: ChildProcess | undefined;
  let client: Etcd3 | undefined;
  try {
    const clientPort = await freePort();
    let peerPort = await freePort();
    while (peerPort === clientPort) peerPort = await freePort();
    const endpoint = `http://127.0.0.1:${clientPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const restored = await options.run([
      'snapshot',
      'restore',
      snapshotFile,
      '--data-dir',
      options.scratchDir,
      '--name',
      SCRATCH_NAME,
      '--initial-cluster',
      `${SCRATCH_NAME}=${peerUrl}`,
      '--initial-advertise-peer-urls',
      peerUrl,
    ]);
    if (restored.code !== 0)
      throw fail(`snapshot restore into a scratch dir failed: ${restored.output.trim()}`);
    let log = '';
    child = spawn(
      'etcd',
      [
        '--name',
        SCRATCH_NAME,
        '--data-dir',
        options.scratchDir,
        '--listen-client-urls',
        endpoint,
        '--advertise-client-urls',
        endpoint,
        '--listen-peer-urls',
        peerUrl,
        '--initial-advertise-peer-urls',
        peerUrl,
        '--initial-cluster',
        `${SCRATCH_NAME}=${peerUrl}`,
        '--log-level',
        'warn',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const started = child;
    started.stderr?.on('data', (chunk: Buffer) => {
      if (log.length < 4096) log += chunk.toString();
    });
    const spawnError = new Promise<Error>((resolve) => started.once('error', resolve));
    const deadline = Date.now() + 30_000;
    for (;;) {
      throwIfAborted(signal);
      const error = await Promise.race([
        spawnError,
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 100)),
      ]);
      if (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
          throw new ConfigError(
            `etcd component "${component}": "restore.leases": "drop" runs a scratch etcd on the restored data, but no "etcd" binary is on the PATH.`,
          );
        }
        throw fail(`cannot start etcd: ${error.message}`, error);
      }
      if (started.exitCode !== null || started.signalCode !== null) {
        throw fail(`the scratch etcd exited (${started.exitCode ?? started.signalCode}): ${log.trim()}`);
      }
      if (await healthy(endpoint)) break;
      if (Date.now() > deadline) throw fail(`the scratch etcd was not healthy within 30 s: ${log.trim()}`);
    }

    client = new Etcd3({ hosts: [endpoint], ...(options.auth ? { auth: options.auth } : {}) });
    const { leases, header } = await client.leaseClient.leaseLeases();
    if (Number(header.revision) !== snapshotRevision) {
      throw fail(
        `the store moved from revision ${snapshotRevision} to ${header.revision} before the leases could be detached (a lease's TTL ran out in the scratch member); nothing was restored.`,
      );
    }
    let keys = 0;
    for (const { ID } of leases) {
      throwIfAborted(signal);
      const attached = (await client.leaseClient.leaseTimeToLive({ ID, keys: true })).keys ?? [];
      for (let index = 0; index < attached.length; index += KEYS_PER_TXN) {
        const batch = attached.slice(index, index + KEYS_PER_TXN);
        try {
          // ignore_value keeps each key's value; no lease field detaches it from its lease.
          await client.kv.txn({
            success: batch.map((key) => ({ request_put: { key, ignore_value: true } })),
          });
        } catch (error) {
          throw fail(
            `lease ${ID} expired in the scratch member before its keys were detached (${(error as Error).message}); nothing was restored.`,
            error,
          );
        }
        keys += batch.length;
      }
      await client.leaseClient.leaseRevoke({ ID });
    }
    const left = (await client.leaseClient.leaseLeases()).leases.length;
    if (left > 0) throw fail(`${left} leases are left after revoking every lease; nothing was restored.`);

    const stream = (await client.maintenance.snapshot()) as unknown as AsyncIterable<{ blob: Buffer }>;
    async function* blobs(): AsyncGenerator<Uint8Array> {
      for await (const response of stream) if (response.blob.length > 0) yield response.blob;
    }
    await pipeline(verifySnapshot(blobs()), createWriteStream(output, { mode: 0o600 }), { signal });
    return { leases: leases.length, keys };
  } catch (error) {
    if (BkError.isInstance(error) || signal.aborted) throw error;
    throw fail(`${(error as Error).message}; nothing was restored.`, error);
  } finally {
    client?.close();
    if (child) await stop(child);
    await rm(options.scratchDir, { recursive: true, force: true });
  }
}
