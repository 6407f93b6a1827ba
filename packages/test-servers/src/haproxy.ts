import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { type ServerProcess, startProcess } from './process.ts';

/** A private HAProxy (Debian `haproxy` 2.6) started by {@link startHaproxy}. */
export interface HaproxyServer {
  /** The configuration file the server runs. */
  configFile: string;
  /** `<dir>/admin.sock`: the runtime API (stats socket, level admin). */
  socketPath: string;
  /** `<dir>/server-state`: the file `load-server-state-from-file global` reads at start. */
  stateFile: string;
  /** The working directory; relative paths in the config resolve from here. */
  dir: string;
  pid: number;
  /** Sends one runtime API command and returns the answer (the server closes after one). */
  command(line: string): Promise<string>;
  /** Stops the server by PID; removes `dir` unless it was given. */
  stop(): Promise<void>;
}

/** Options of {@link startHaproxy}; all optional. */
export interface StartHaproxyOptions {
  /** Configuration text, written to `<dir>/haproxy.cfg`. Default: {@link DEFAULT_HAPROXY_CONFIG}. */
  config?: string;
  /** An existing config file to run instead of `config` (e.g. a restored one). */
  configFile?: string;
  /** Extra files written under `dir` before the start: `{ 'maps/hosts.map': '…' }`. */
  files?: Record<string, string | Uint8Array>;
  /** Working directory (kept on stop); default a new temp dir (removed on stop). */
  dir?: string;
}

/**
 * The default config: a runtime socket and a server-state file relative to the working dir (the
 * socket needs `unix@` to be relative), and two backends whose servers are never connected to
 * (no frontend, no health checks), so the server state only changes through the runtime API.
 */
export const DEFAULT_HAPROXY_CONFIG = `global
    stats socket unix@admin.sock mode 600 level admin
    stats timeout 30s
    server-state-file server-state
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    load-server-state-from-file global
backend be_app
    server app1 127.0.0.1:21081 weight 10
    server app2 127.0.0.1:21082 weight 10
backend be_other
    server other1 127.0.0.1:21083
`;

/** One runtime API command over the unix socket, with a timeout. */
export function haproxyCommand(socketPath: string, line: string, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    let answer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`HAProxy did not answer "${line}" within ${timeoutMs} ms.`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (data: string) => {
      answer += data;
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('end', () => {
      clearTimeout(timer);
      resolve(answer);
    });
    socket.write(`${line}\n`);
  });
}

/**
 * Starts `haproxy -db -f <config>` in the foreground with `dir` as working directory. Ready once
 * `show info` on `<dir>/admin.sock` answers with a `Pid:` line. Accepts the config text or
 * options; the config must put its stats socket at `unix@admin.sock` (or `<dir>/admin.sock`).
 */
export async function startHaproxy(
  configOrOptions: string | StartHaproxyOptions = {},
): Promise<HaproxyServer> {
  const options = typeof configOrOptions === 'string' ? { config: configOrOptions } : configOrOptions;
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'bk-haproxy-')));
  try {
    await mkdir(dir, { recursive: true });
    for (const [path, content] of Object.entries(options.files ?? {})) {
      await mkdir(dirname(join(dir, path)), { recursive: true });
      await writeFile(join(dir, path), content);
    }
    const configFile = options.configFile ?? join(dir, 'haproxy.cfg');
    if (options.configFile === undefined)
      await writeFile(configFile, options.config ?? DEFAULT_HAPROXY_CONFIG);
    const socketPath = join(dir, 'admin.sock');
    const server: ServerProcess = await startProcess({
      command: 'haproxy',
      args: ['-db', '-f', configFile],
      logFile: join(dir, 'haproxy.log'),
      cwd: dir,
      ready: async () => (await haproxyCommand(socketPath, 'show info', 1_000)).includes('Pid:'),
    });
    return {
      configFile,
      socketPath,
      stateFile: join(dir, 'server-state'),
      dir,
      pid: server.pid,
      command: (line) => haproxyCommand(socketPath, line),
      stop: async () => {
        await server.stop();
        if (ownDir) await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    if (ownDir) await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
