import { createHmac } from 'node:crypto';
import { appendFile, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ComponentError, ConfigError, throwIfAborted } from '@bk/core';
import { Client, type ClientChannel, type SFTPWrapper } from 'ssh2';

/** How to reach a host over SSH. */
export interface SshTarget {
  host: string;
  /** Default 22. */
  port?: number;
  /** Default: the user running bk. */
  username?: string;
  /** The private key file (OpenSSH or PEM). Default: `~/.ssh/id_ed25519`, then `~/.ssh/id_rsa`. */
  privateKeyPath?: string;
  /** Passphrase of an encrypted key; never logged. */
  passphrase?: string;
  /** The known_hosts file the host key is checked against. Default `~/.ssh/known_hosts`. */
  knownHostsPath?: string;
  /**
   * Accept a host whose key is not in known_hosts yet and add it there (OpenSSH's
   * `StrictHostKeyChecking accept-new`). A host listed with another key is refused whatever this says.
   */
  acceptNewHostKey?: boolean;
  /** How long connecting and authenticating may take, in ms; default 20 000. */
  connectTimeoutMs?: number;
}

/** `host` for port 22, `[host]:port` otherwise: how known_hosts names a host. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

interface KnownKey {
  type: string;
  key: Buffer;
}

function matches(pattern: string, name: string): boolean {
  if (pattern.startsWith('|1|')) {
    const [, , salt, hash] = pattern.split('|');
    if (salt === undefined || hash === undefined) return false;
    return createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === hash;
  }
  return pattern === name;
}

/** The keys known_hosts lists for `name` (markers such as `@revoked` are not honoured: such lines are skipped). */
export function knownKeys(text: string, name: string): KnownKey[] {
  const keys: KnownKey[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith('@')) continue;
    const [hosts, type, key] = line.split(/\s+/);
    if (hosts === undefined || type === undefined || key === undefined) continue;
    if (hosts.split(',').some((pattern) => matches(pattern, name))) {
      keys.push({ type, key: Buffer.from(key, 'base64') });
    }
  }
  return keys;
}

/** The key type inside an SSH public key blob (`ssh-ed25519`, `ecdsa-sha2-nistp256`, …). */
function blobType(blob: Buffer): string {
  const length = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + length).toString('latin1');
}

async function defaultKey(): Promise<string> {
  for (const name of ['id_ed25519', 'id_ecdsa', 'id_rsa']) {
    const path = join(homedir(), '.ssh', name);
    try {
      await readFile(path);
      return path;
    } catch {}
  }
  return join(homedir(), '.ssh', 'id_ed25519');
}

/**
 * One SSH connection, authenticated with a key and with the host key checked against
 * known_hosts, with an SFTP channel opened on demand. Close it with {@link SshSession.close}.
 */
export class SshSession {
  readonly where: string;
  readonly #client: Client;
  #sftp: Promise<SFTPWrapper> | undefined;

  private constructor(client: Client, where: string) {
    this.#client = client;
    this.where = where;
  }

  /**
   * Connects and authenticates.
   *
   * @throws {ConfigError} when the key file cannot be read.
   * @throws {ComponentError} naming the host: unknown host key (not accepted), a host key that
   *   differs from known_hosts, a refused key, an unreachable host (retryable).
   */
  static async open(target: SshTarget, component: string, signal: AbortSignal): Promise<SshSession> {
    throwIfAborted(signal);
    const port = target.port ?? 22;
    const username = target.username ?? (process.env.USER || 'root');
    const where = `${username}@${knownHostsName(target.host, port)}`;
    const keyPath = target.privateKeyPath ?? (await defaultKey());
    let privateKey: Buffer;
    try {
      privateKey = await readFile(keyPath);
    } catch (error) {
      throw new ConfigError(
        `${component}: cannot read the SSH key "${keyPath}" for ${where}: ${(error as Error).message}. Set the key file (ansible_ssh_private_key_file, or --ssh-key).`,
        { cause: error },
      );
    }
    const knownHostsPath = target.knownHostsPath ?? join(homedir(), '.ssh', 'known_hosts');
    const knownText = await readFile(knownHostsPath, 'utf8').catch(() => '');
    const name = knownHostsName(target.host, port);
    const known = knownKeys(knownText, name);
    let refusal: string | undefined;
    let accepted: Buffer | undefined;
    const client = new Client();
    const session = new SshSession(client, where);
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        client.end();
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      client.once('ready', () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
      client.once('error', (error: Error & { level?: string }) => {
        signal.removeEventListener('abort', onAbort);
        if (refusal !== undefined) {
          reject(new ComponentError(component, refusal));
        } else if (error.level === 'client-authentication') {
          reject(
            new ComponentError(
              component,
              `${where} refused the SSH key "${keyPath}". Add its public key to the user's authorized_keys on ${target.host}, or give the right key.`,
              { cause: error },
            ),
          );
        } else {
          reject(
            new ComponentError(
              component,
              `cannot connect to ${where} over SSH: ${error.message}. Check that the host is up and sshd listens on port ${port}.`,
              { cause: error, retryable: true },
            ),
          );
        }
      });
      client.connect({
        host: target.host,
        port,
        username,
        privateKey,
        ...(target.passphrase === undefined ? {} : { passphrase: target.passphrase }),
        readyTimeout: target.connectTimeoutMs ?? 20_000,
        hostVerifier: (key: Buffer) => {
          const type = blobType(key);
          if (known.some((entry) => entry.key.equals(key))) return true;
          if (known.some((entry) => entry.type === type)) {
            refusal = `the host key of ${name} (${type}) differs from the one in ${knownHostsPath}: refusing to connect (the host may have been reinstalled, or someone is in between). Check it, then replace its line in known_hosts.`;
            return false;
          }
          if (!target.acceptNewHostKey) {
            refusal = `the host key of ${name} (${type}) is not in ${knownHostsPath}: refusing to connect. Check the key and add it (ssh-keyscan -p ${port} ${target.host} >> ${knownHostsPath}), or accept new host keys explicitly (--accept-new-host-keys).`;
            return false;
          }
          accepted = key;
          return true;
        },
      });
    });
    if (accepted !== undefined) {
      await appendFile(knownHostsPath, `${name} ${blobType(accepted)} ${accepted.toString('base64')}\n`, {
        mode: 0o600,
      });
    }
    return session;
  }

  /** The SFTP channel (opened once). */
  sftp(): Promise<SFTPWrapper> {
    this.#sftp ??= new Promise((resolve, reject) => {
      this.#client.sftp((error, sftp) => (error ? reject(error) : resolve(sftp)));
    });
    return this.#sftp;
  }

  /** Runs a command; its stdout is the channel, stderr and the exit status come through it. */
  exec(command: string): Promise<ClientChannel> {
    return new Promise((resolve, reject) => {
      this.#client.exec(command, (error, channel) => (error ? reject(error) : resolve(channel)));
    });
  }

  close(): void {
    this.#client.end();
  }
}
