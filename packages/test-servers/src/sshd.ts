import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, inNewTempDir, type ServerProcess, startProcess } from './process.ts';

const run = promisify(execFile);

/** A private OpenSSH server the suite started (Debian's `openssh-server`). */
export interface SshdServer extends ServerProcess {
  host: '127.0.0.1';
  port: number;
  /** The user to log in as: the one running the tests (sshd runs as that user too). */
  username: string;
  /** The temp dir holding the config, keys and `root/` (when no other root was given). */
  dir: string;
  /** The client's private key (OpenSSH format, no passphrase) and its path; authorized. */
  privateKey: string;
  privateKeyPath: string;
  /** A known_hosts file holding this server's host key as `[127.0.0.1]:port`. */
  knownHostsPath: string;
  /** The host key's line for a known_hosts file. */
  knownHostsLine: string;
  /** A key pair that is NOT authorized (for the "wrong key" case). */
  strangerKeyPath: string;
}

async function keyPair(path: string, comment: string): Promise<void> {
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path]);
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('data', (chunk) => {
      socket.destroy();
      resolve(chunk.toString('latin1').startsWith('SSH-2.0-'));
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Starts `/usr/sbin/sshd -D` on 127.0.0.1 at a free port below 32768 with its own config in a
 * temp dir: a fresh ed25519 host key, one authorized client key, public-key authentication
 * only, the SFTP subsystem (`internal-sftp`), `StrictModes no` (the temp dir is not root's),
 * its own PID file. Stopped by PID; `stop()` removes the dir.
 */
export async function startSshd(options: { sshd?: string } = {}): Promise<SshdServer> {
  const sshd = options.sshd ?? '/usr/sbin/sshd';
  // sshd checks that its privilege separation directory exists, even when it runs unprivileged.
  if (process.getuid?.() === 0) await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  return inNewTempDir('bk-sshd-', async (dir) => {
    const port = await freePort();
    await keyPair(join(dir, 'host_ed25519'), 'bk-test-host');
    await keyPair(join(dir, 'client_ed25519'), 'bk-test-client');
    await keyPair(join(dir, 'stranger_ed25519'), 'bk-test-stranger');
    await writeFile(join(dir, 'authorized_keys'), await readFile(join(dir, 'client_ed25519.pub')), {
      mode: 0o600,
    });
    const config = [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${join(dir, 'host_ed25519')}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'UsePAM no',
      'StrictModes no',
      'LogLevel VERBOSE',
      'Subsystem sftp internal-sftp',
      '',
    ].join('\n');
    await writeFile(join(dir, 'sshd_config'), config);
    const hostPublic = (await readFile(join(dir, 'host_ed25519.pub'), 'utf8')).trim().split(/\s+/);
    const knownHostsLine = `[127.0.0.1]:${port} ${hostPublic[0]} ${hostPublic[1]}`;
    await writeFile(join(dir, 'known_hosts'), `${knownHostsLine}\n`);
    const server = await startProcess({
      command: sshd,
      args: ['-D', '-e', '-f', join(dir, 'sshd_config')],
      logFile: join(dir, 'sshd.log'),
      ready: () => listening(port),
      timeoutMs: 15_000,
    });
    return {
      ...server,
      host: '127.0.0.1',
      port,
      username: userInfo().username,
      dir,
      privateKey: await readFile(join(dir, 'client_ed25519'), 'utf8'),
      privateKeyPath: join(dir, 'client_ed25519'),
      knownHostsPath: join(dir, 'known_hosts'),
      knownHostsLine,
      strangerKeyPath: join(dir, 'stranger_ed25519'),
      stop: async (graceMs?: number) => {
        await server.stop(graceMs);
        await rm(dir, { recursive: true, force: true });
      },
    };
  });
}
