import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, inNewTempDir, startProcess } from './process.ts';

/** A private InfluxDB 1.x server (Debian `influxd`) started by {@link startInfluxd}. */
export interface InfluxdServer {
  /** `http://127.0.0.1:PORT` of the HTTP API (`/ping`, `/write`, `/query`). */
  httpUrl: string;
  /** `127.0.0.1:PORT` of the RPC (snapshotter) port that `influxd backup/restore -portable` use. */
  rpcAddress: string;
  host: '127.0.0.1';
  httpPort: number;
  rpcPort: number;
  /** The temp dir holding the config, meta/data/wal dirs and `influxd.log`. */
  dir: string;
  /** Stops the server by PID and removes `dir`. */
  stop(): Promise<void>;
}

function config(dir: string, httpPort: number, rpcPort: number): string {
  // Debian's 1.6.7 only knows `reporting-enabled`; unknown keys are silently ignored.
  return `reporting-enabled = false
bind-address = "127.0.0.1:${rpcPort}"
[meta]
  dir = "${dir}/meta"
[data]
  dir = "${dir}/data"
  wal-dir = "${dir}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:${httpPort}"
  log-enabled = false
[logging]
  level = "warn"
  suppress-logo = true
`;
}

async function ping(httpUrl: string): Promise<boolean> {
  const response = await fetch(`${httpUrl}/ping`, { signal: AbortSignal.timeout(1_000) });
  await response.body?.cancel();
  return response.status === 204;
}

/**
 * Starts a private `influxd run` on loopback: HTTP and RPC on two free ports below 32768, all
 * state in a temp dir, reporting and the `_internal` store off. Ready once `GET /ping` is 204.
 * Retries with new ports when the server fails to start (a port taken in between).
 */
export async function startInfluxd(): Promise<InfluxdServer> {
  return inNewTempDir('bk-influxd-', async (dir) => {
    const httpPort = await freePort();
    let rpcPort = await freePort();
    while (rpcPort === httpPort) rpcPort = await freePort();
    const configFile = join(dir, 'influxdb.conf');
    await writeFile(configFile, config(dir, httpPort, rpcPort));
    const httpUrl = `http://127.0.0.1:${httpPort}`;
    const server = await startProcess({
      command: 'influxd',
      args: ['run', '-config', configFile],
      logFile: join(dir, 'influxd.log'),
      cwd: dir,
      ready: () => ping(httpUrl),
    });
    return {
      httpUrl,
      rpcAddress: `127.0.0.1:${rpcPort}`,
      host: '127.0.0.1',
      httpPort,
      rpcPort,
      dir,
      stop: async () => {
        await server.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  });
}
