import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, inNewTempDir, startProcess } from './process.ts';

/** A private single-member etcd (Debian `etcd` 3.4) started by {@link startEtcd}. */
export interface EtcdServer {
  /** `http://127.0.0.1:PORT`, the client URL (gRPC and the JSON gateway). */
  endpoint: string;
  /** `http://127.0.0.1:PORT`, the peer URL. */
  peerUrl: string;
  /** The member name (`--name`). */
  name: string;
  /** The data directory. */
  dataDir: string;
  /** The temp dir holding `etcd.log` (and the data dir unless one was given). */
  dir: string;
  /** Stops the server by PID and removes `dir` (a given `dataDir` outside it is kept). */
  stop(): Promise<void>;
}

/** Options of {@link startEtcd}; all optional. */
export interface StartEtcdOptions {
  /** An existing data dir (e.g. one made by `snapshot restore`); default: a new one in the temp dir. */
  dataDir?: string;
  /** Member name; must match the one a restored data dir was made with. Default `t1`. */
  name?: string;
  /** Peer port; must match the peer URL a restored data dir was made with. Default: a free one. */
  peerPort?: number;
}

async function healthy(endpoint: string): Promise<boolean> {
  const response = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1_000) });
  const body = (await response.json().catch(() => ({}))) as { health?: unknown };
  return response.status === 200 && String(body.health) === 'true';
}

/**
 * Starts a private `etcd` on loopback: client and peer URLs on two free ports below 32768, fast
 * heartbeat (10 ms) and election (100 ms) timeouts, state in a temp dir. Ready once `GET /health`
 * says `{"health":"true"}`. Retries with new ports when the server fails to start.
 */
export async function startEtcd(options: StartEtcdOptions = {}): Promise<EtcdServer> {
  const name = options.name ?? 't1';
  return inNewTempDir('bk-etcd-', async (dir) => {
    const dataDir = options.dataDir ?? join(dir, 'data');
    const clientPort = await freePort();
    let peerPort = options.peerPort ?? (await freePort());
    while (peerPort === clientPort) peerPort = await freePort();
    const endpoint = `http://127.0.0.1:${clientPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const server = await startProcess({
      command: 'etcd',
      args: [
        '--name',
        name,
        '--data-dir',
        dataDir,
        '--listen-client-urls',
        endpoint,
        '--advertise-client-urls',
        endpoint,
        '--listen-peer-urls',
        peerUrl,
        '--initial-advertise-peer-urls',
        peerUrl,
        '--initial-cluster',
        `${name}=${peerUrl}`,
        '--initial-cluster-state',
        'new',
        '--initial-cluster-token',
        `tok-${Math.random().toString(36).slice(2)}`,
        '--heartbeat-interval=10',
        '--election-timeout=100',
        '--logger',
        'zap',
        '--log-outputs',
        'stderr',
        '--log-level',
        'warn',
      ],
      logFile: join(dir, 'etcd.log'),
      cwd: dir,
      ready: () => healthy(endpoint),
    });
    return {
      endpoint,
      peerUrl,
      name,
      dataDir,
      dir,
      stop: async () => {
        await server.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  });
}
