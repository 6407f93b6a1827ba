import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, openSync, readdirSync } from 'node:fs';
import { chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { freePort, waitFor } from './process.ts';

const run = promisify(execFile);

/** A private PostgreSQL server (Debian `postgresql-15`) started by {@link startPostgres}. */
export interface PostgresServer {
  host: '127.0.0.1';
  port: number;
  /** The superuser; authentication is `trust` (no password needed) unless started with a `password`. */
  user: 'postgres';
  /** The superuser's password when started with one (authentication `scram-sha-256`). */
  password?: string;
  /** The temp dir holding `data/`, `sock/` and `server.log`. */
  dir: string;
  /** The directory of `postgres`, `pg_dump`, `psql` … used to start this server. */
  bin: string;
  /** Fast shutdown (SIGINT) by PID, SIGKILL after 10 s; then removes `dir`. */
  stop(): Promise<void>;
}

/** The highest `/usr/lib/postgresql/<major>/bin` that holds a `postgres` binary. */
export function postgresBinDir(): string {
  const root = '/usr/lib/postgresql';
  const majors = existsSync(root)
    ? readdirSync(root)
        .filter((name) => /^\d+$/.test(name) && existsSync(join(root, name, 'bin', 'postgres')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (majors.length === 0) throw new Error(`No PostgreSQL server binaries under ${root}/<major>/bin.`);
  return join(root, majors[0]!, 'bin');
}

/** Commands run as the `postgres` user: the server and initdb refuse root. `setpriv` execs in place. */
function asPostgres(command: string, args: string[]): [string, string[]] {
  if (process.getuid?.() !== 0) return [command, args];
  return ['setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', command, ...args]];
}

async function chownToPostgres(path: string): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const { stdout: uid } = await run('id', ['-u', 'postgres']);
  const { stdout: gid } = await run('id', ['-g', 'postgres']);
  await chown(path, Number(uid.trim()), Number(gid.trim()));
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once('exit', () => resolve()));
}

export interface StartPostgresOptions {
  /**
   * Require this password of the superuser (`scram-sha-256` on every connection) instead of
   * trusting every connection.
   */
  password?: string;
}

/**
 * Starts a private PostgreSQL server on 127.0.0.1 at a free port below 32768: `initdb -N`
 * (trust auth, or scram-sha-256 with `password`; UTF8, locale C.UTF-8) into a temp dir owned by
 * `postgres`, its own short socket dir, `fsync=off`. Ready once `pg_isready` answers. Retries
 * with a new port when the server fails to start.
 */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresServer> {
  const bin = postgresBinDir();
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const dir = await mkdtemp(join(tmpdir(), 'bk-pg-'));
    await chownToPostgres(dir);
    const data = join(dir, 'data');
    const sock = join(dir, 'sock');
    const logFile = join(dir, 'server.log');
    try {
      const auth = ['--auth=trust'];
      if (options.password !== undefined) {
        const passwordFile = join(dir, 'password');
        await writeFile(passwordFile, `${options.password}\n`, { mode: 0o600 });
        await chownToPostgres(passwordFile);
        auth.splice(0, 1, '--auth=scram-sha-256', `--pwfile=${passwordFile}`);
      }
      const [initCommand, initArgs] = asPostgres(join(bin, 'initdb'), [
        '-D',
        data,
        '-U',
        'postgres',
        ...auth,
        '-E',
        'UTF8',
        '--locale=C.UTF-8',
        '-N',
      ]);
      await run(initCommand, initArgs, { cwd: dir });
      await mkdir(sock);
      await chownToPostgres(sock);
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
    const port = await freePort();
    const log = openSync(logFile, 'a');
    const [command, args] = asPostgres(join(bin, 'postgres'), [
      '-D',
      data,
      '-p',
      String(port),
      '-k',
      sock,
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'fsync=off',
    ]);
    const child = spawn(command, args, { cwd: dir, detached: true, stdio: ['ignore', log, log] });
    const done = exited(child);
    const pid = child.pid;
    const stop = async () => {
      if (pid !== undefined) {
        try {
          process.kill(pid, 'SIGINT');
        } catch {}
        const stopped = await Promise.race([done.then(() => true), sleep(10_000).then(() => false)]);
        if (!stopped) {
          try {
            process.kill(-pid, 'SIGKILL');
          } catch {}
          await done;
        }
      }
      await rm(dir, { recursive: true, force: true });
    };
    const exitedEarly = done.then(() => {
      throw new Error(`postgres exited with ${child.exitCode ?? child.signalCode}; see ${logFile}.`);
    });
    exitedEarly.catch(() => {});
    try {
      await Promise.race([
        waitFor(
          `postgres (log: ${logFile})`,
          async () => {
            await run(
              join(bin, 'pg_isready'),
              ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-t', '2'],
              { timeout: 3_000 },
            );
            return true;
          },
          30_000,
        ),
        exitedEarly,
      ]);
    } catch (error) {
      lastError = error;
      await stop();
      continue;
    }
    return {
      host: '127.0.0.1',
      port,
      user: 'postgres',
      ...(options.password === undefined ? {} : { password: options.password }),
      dir,
      bin,
      stop,
    };
  }
  throw lastError;
}
