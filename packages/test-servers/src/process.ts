import { type ChildProcess, spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** A server the test suite started: its PID, its log, and how to stop it. */
export interface ServerProcess {
  pid: number;
  logFile: string;
  /** SIGTERM to the process group, then SIGKILL after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * A free TCP port on 127.0.0.1 below 32768 (and above 10000): picked at random and checked by
 * binding it. Another process may still take it before the server does; callers retry.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const port = 10_000 + Math.floor(Math.random() * (32_767 - 10_000));
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('No free port found below 32768.');
}

/**
 * Runs `start` in a new temp dir (`<tmpdir>/<prefix>XXXXXX`), up to three times: a server that
 * fails to start (most often because another process took its free port first) has its dir
 * removed and is started again in a new dir, with new ports. Throws the last failure.
 */
export async function inNewTempDir<T>(prefix: string, start: (dir: string) => Promise<T>): Promise<T> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    try {
      return await start(dir);
    } catch (error) {
      lastError = error;
      await rm(dir, { recursive: true, force: true });
    }
  }
  throw lastError;
}

/** Polls `probe` every `intervalMs` until it returns true, or throws after `timeoutMs`. */
export async function waitFor(
  what: string,
  probe: () => Promise<boolean>,
  timeoutMs = 30_000,
  intervalMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe().catch(() => false)) return;
    await sleep(intervalMs);
  }
  throw new Error(`${what} was not ready after ${timeoutMs} ms.`);
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once('exit', () => resolve()));
}

/**
 * Starts a server in its own process group (so forked workers are stopped with it), logging
 * stdout and stderr to `logFile`, and waits until `ready()` says it serves. A server that exits
 * before it is ready fails with its log's path.
 */
export async function startProcess(options: {
  command: string;
  args: string[];
  logFile: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  ready: () => Promise<boolean>;
  timeoutMs?: number;
}): Promise<ServerProcess> {
  const log = openSync(options.logFile, 'a');
  const child = spawn(options.command, options.args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    detached: true,
    stdio: ['ignore', log, log],
  });
  const done = exited(child);
  const pid = child.pid;
  if (pid === undefined) throw new Error(`Could not start ${options.command}; see ${options.logFile}.`);
  const stop = async (graceMs = 5_000) => {
    try {
      process.kill(-pid, 'SIGTERM');
    } catch {}
    const killed = await Promise.race([done.then(() => true), sleep(graceMs).then(() => false)]);
    if (!killed) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {}
      await done;
    }
  };
  const exitedEarly = done.then(() => {
    throw new Error(
      `${options.command} exited with ${child.exitCode ?? child.signalCode} before it was ready; see ${options.logFile}.`,
    );
  });
  exitedEarly.catch(() => {});
  try {
    await Promise.race([
      waitFor(`${options.command} (log: ${options.logFile})`, options.ready, options.timeoutMs ?? 30_000),
      exitedEarly,
    ]);
  } catch (error) {
    await stop(1_000);
    throw error;
  }
  return { pid, logFile: options.logFile, stop };
}

/**
 * Makes an in-process HTTP server (a test double) listen on 127.0.0.1 at a free port below
 * 32768, retrying when another process takes the port first. Returns the port.
 */
export async function listenOnFreePort(server: import('node:net').Server): Promise<number> {
  for (let attempt = 0; ; attempt += 1) {
    const port = await freePort();
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
      return port;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 10) throw error;
    }
  }
}
