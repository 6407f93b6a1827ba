import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** The unwrapped scripts of the Debian package (the `/usr/sbin` wrappers `su rabbitmq`). */
const RABBITMQ_BIN = '/usr/lib/rabbitmq/bin';

/** A private RabbitMQ node (Debian `rabbitmq-server` 3.10) started by {@link startRabbitmq}. */
export interface RabbitmqServer {
  /** `http://127.0.0.1:PORT`, the management API (plugin `rabbitmq_management`). */
  managementUrl: string;
  /** The AMQP 0-9-1 listener on 127.0.0.1. */
  amqpPort: number;
  /** The default user; loopback-only, tagged `administrator`. */
  user: 'guest';
  password: 'guest';
  /** The Erlang node name, e.g. `bk-1a2b3c4d@localhost`. */
  nodeName: string;
  /** The temp dir holding `home/`, `mnesia/`, `log/`, the config files and `server.log`. */
  dir: string;
  /** SIGTERM to the `rabbitmq-server` script (graceful), then to the private epmd; removes `dir`. */
  stop(): Promise<void>;
}

/** A random port in 20000–32000 that binds on 127.0.0.1 now, not one of `taken`. */
async function pickPort(taken: Set<number>): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (taken.has(port)) continue;
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) {
      taken.add(port);
      return port;
    }
  }
  throw new Error('No free port found in 20000–32000.');
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once('exit', () => resolve()));
}

/** SIGTERM to the PID; SIGKILL to its process group after `graceMs`; resolves once it has exited. */
async function terminate(child: ChildProcess, graceMs: number): Promise<void> {
  const done = exited(child);
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  try {
    process.kill(child.pid, 'SIGTERM');
  } catch {}
  const stopped = await Promise.race([
    done.then(() => true),
    sleep(graceMs, undefined, { ref: false }).then(() => false),
  ]);
  if (!stopped) {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {}
    await done;
  }
}

/** Speaks epmd's protocol: NAMES_REQ, answered with epmd's own port (4 bytes, big-endian). */
function epmdAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let received = Buffer.alloc(0);
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => finish(false));
    socket.once('error', () => finish(false));
    socket.once('connect', () => socket.write(Buffer.from([0, 1, 110])));
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length >= 4) finish(received.readUInt32BE(0) === port);
    });
    socket.once('end', () => finish(false));
  });
}

/** `GET /api/health/checks/port-listener/<amqp>` as guest: 200 once the AMQP listener is up. */
async function listening(managementUrl: string, amqpPort: number): Promise<boolean> {
  try {
    const response = await fetch(`${managementUrl}/api/health/checks/port-listener/${amqpPort}`, {
      headers: { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}` },
      signal: AbortSignal.timeout(2_000),
    });
    await response.arrayBuffer();
    return response.status === 200;
  } catch {
    return false;
  }
}

/** Polls `probe` until it is true, the child exits (→ false) or the deadline passes (→ throws). */
async function readyOrExited(
  what: string,
  child: ChildProcess,
  probe: () => Promise<boolean>,
  timeoutMs: number,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    if (await probe()) return true;
    await sleep(200);
  }
  throw new Error(`${what} was not ready after ${timeoutMs} ms.`);
}

/** The node's own logs (`log/<node>.log`) and the script's output, for error messages. */
async function logsOf(dir: string): Promise<string> {
  const texts: string[] = [];
  for (const file of [join(dir, 'server.log'), ...(await listLogs(join(dir, 'log')))]) {
    texts.push(await readFile(file, 'utf8').catch(() => ''));
  }
  return texts.join('\n');
}

async function listLogs(logDir: string): Promise<string[]> {
  try {
    return (await readdir(logDir)).filter((name) => name.endsWith('.log')).map((name) => join(logDir, name));
  } catch {
    return [];
  }
}

/**
 * Starts a private RabbitMQ node as the reference recipe does: the unwrapped scripts in
 * `/usr/lib/rabbitmq/bin`, a private `HOME` (own Erlang cookie), its own foreground `epmd` on a
 * private port (started and stopped by PID), the distribution bound to loopback
 * (`inet_dist_use_interface`), AMQP and management on 127.0.0.1, every port in 20000–32000 (so
 * never the CLI tools' 35672–35682). Ready once `/api/health/checks/port-listener/<amqp>` says
 * 200; a node takes 5–10 s to start, so callers should allow ≥ 120 s. Retries with new ports when
 * the node fails to boot (e.g. `eaddrinuse`).
 */
export async function startRabbitmq(options: { timeoutMs?: number } = {}): Promise<RabbitmqServer> {
  const failures: string[] = [];
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const dir = await mkdtemp(join(tmpdir(), 'bk-rabbitmq-'));
    const taken = new Set<number>();
    const amqpPort = await pickPort(taken);
    const managementPort = await pickPort(taken);
    const distPort = await pickPort(taken);
    const epmdPort = await pickPort(taken);
    const nodeName = `bk-${randomBytes(4).toString('hex')}@localhost`;
    const managementUrl = `http://127.0.0.1:${managementPort}`;
    await mkdir(join(dir, 'home'));
    await writeFile(join(dir, 'enabled_plugins'), '[rabbitmq_management].\n');
    await writeFile(join(dir, 'rabbitmq-env.conf'), '');
    await writeFile(
      join(dir, 'rabbitmq.conf'),
      [
        `listeners.tcp.1 = 127.0.0.1:${amqpPort}`,
        `management.tcp.port = ${managementPort}`,
        'management.tcp.ip = 127.0.0.1',
        'log.console = false',
        '',
      ].join('\n'),
    );
    const env: NodeJS.ProcessEnv = {};
    for (const [key, value] of Object.entries(process.env)) {
      if (!key.startsWith('RABBITMQ_') && !key.startsWith('ERL_')) env[key] = value;
    }
    Object.assign(env, {
      HOME: join(dir, 'home'),
      RABBITMQ_NODENAME: nodeName,
      RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
      RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
      RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
      RABBITMQ_LOG_BASE: join(dir, 'log'),
      RABBITMQ_DIST_PORT: String(distPort),
      ERL_EPMD_PORT: String(epmdPort),
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    });

    const epmdLog = openSync(join(dir, 'epmd.log'), 'a');
    const epmd = spawn('epmd', ['-port', String(epmdPort), '-address', '127.0.0.1'], {
      cwd: dir,
      env,
      detached: true,
      stdio: ['ignore', epmdLog, epmdLog],
    });
    closeSync(epmdLog);
    epmd.on('error', () => {});
    let server: ChildProcess | undefined;
    const stopAll = async () => {
      if (server) await terminate(server, 30_000);
      await terminate(epmd, 5_000);
    };
    try {
      if (!(await readyOrExited('epmd', epmd, () => epmdAnswers(epmdPort), 10_000))) {
        throw new Error(
          `epmd exited early: ${await readFile(join(dir, 'epmd.log'), 'utf8').catch(() => '')}`,
        );
      }
      const log = openSync(join(dir, 'server.log'), 'a');
      server = spawn(join(RABBITMQ_BIN, 'rabbitmq-server'), [], {
        cwd: dir,
        env,
        detached: true,
        stdio: ['ignore', log, log],
      });
      closeSync(log);
      server.on('error', () => {});
      const ready = await readyOrExited(
        `rabbitmq-server (dir: ${dir})`,
        server,
        () => listening(managementUrl, amqpPort),
        options.timeoutMs ?? 90_000,
      );
      if (!ready) {
        const logs = await logsOf(dir);
        const reason = /eaddrinuse/i.test(logs) ? 'eaddrinuse' : 'exited before it was ready';
        throw new Error(`rabbitmq-server ${reason}: ${logs.slice(-2_000)}`);
      }
    } catch (error) {
      failures.push((error as Error).message);
      await stopAll();
      await rm(dir, { recursive: true, force: true });
      continue;
    }
    let stopped: Promise<void> | undefined;
    return {
      managementUrl,
      amqpPort,
      user: 'guest',
      password: 'guest',
      nodeName,
      dir,
      stop: () => {
        stopped ??= (async () => {
          await stopAll();
          await rm(dir, { recursive: true, force: true });
        })();
        return stopped;
      },
    };
  }
  throw new Error(`RabbitMQ did not start after 3 attempts:\n${failures.join('\n---\n')}`);
}
