import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import {
  type BackupContext,
  type Component,
  ComponentError,
  type ComponentInfo,
  ConfigError,
  ConflictError,
  checkComponentConfig,
  checkComponentName,
  checkNestedConfig,
  type Entry,
  isRecord,
  type OperationContext,
  type RestoreContext,
  type RestoreReport,
  safeEntryPath,
  throwIfAborted,
  UnsafePathError,
} from '@bk/core';
import { SECRET_FILES } from '@bk/files';
import picomatch from 'picomatch';
import type { SFTPWrapper, Stats } from 'ssh2';
import { SshSession, type SshTarget } from './ssh-session.ts';

/** A command run on the host whose standard output is stored as `commands/<entry>`. */
export interface SshCommand {
  /** The entry's name under `commands/` (`haproxy-check.txt`, `app.dump`). */
  entry: string;
  /** The command line, run by the user's login shell on the host. */
  command: string;
}

/**
 * Options of {@link SshComponent}.
 *
 * @example
 * const options: SshComponentOptions = {
 *   host: '10.0.0.10',
 *   username: 'backup',
 *   privateKeyPath: '/etc/bk/id_ed25519',
 *   paths: ['/etc/haproxy'],
 *   commands: [{ entry: 'haproxy-check.txt', command: 'haproxy -c -f /etc/haproxy/haproxy.cfg' }],
 * };
 */
export interface SshComponentOptions extends SshTarget {
  /** Component name. Default `ssh`. */
  name?: string;
  /** Absolute paths on the host: files, links and directories (walked); those missing are listed, not fatal. */
  paths?: string[];
  /** Commands whose output is backed up (a failing command fails the backup). */
  commands?: SshCommand[];
  restore?: {
    /** Absolute directory on the host the files are restored under at their path; default `/` (in place). */
    root?: string;
  };
}

const CONFIG_FIELDS = [
  'kind',
  'name',
  'host',
  'port',
  'username',
  'privateKeyPath',
  'passphrase',
  'knownHostsPath',
  'acceptNewHostKey',
  'connectTimeoutMs',
  'paths',
  'commands',
  'restore',
];

function sftpCall<T>(run: (done: (error: Error | undefined | null, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) =>
    run((error, value) => (error ? reject(error) : resolve(value as T))),
  );
}

function isMissing(error: unknown): boolean {
  return (error as { code?: number }).code === 2;
}

async function lstatOrUndefined(sftp: SFTPWrapper, path: string): Promise<Stats | undefined> {
  try {
    return await sftpCall<Stats>((done) => sftp.lstat(path, done));
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
}

const SECRET_MATCHERS = SECRET_FILES.map(({ kind, what, globs }) => ({
  kind,
  what,
  matches: picomatch(globs, { dot: true }),
}));

/** The secret a file holds by its name (a private key, a kubeconfig, …), as `@bk/files` judges it. */
function secretOf(path: string): Entry['secret'] {
  const found = SECRET_MATCHERS.find((item) => item.matches(path.replace(/^\/+/, '')));
  return found ? { kind: found.kind, what: found.what } : undefined;
}

/** A remote file's bytes; returns only once its handle is closed, so closing the session loses nothing. */
async function* readRemote(sftp: SFTPWrapper, path: string): AsyncGenerator<Uint8Array> {
  const stream = sftp.createReadStream(path, { autoClose: true });
  const closed = new Promise<void>((resolve) => stream.once('close', () => resolve()));
  try {
    for await (const chunk of stream) yield chunk as Uint8Array;
  } finally {
    // A late error of the close request has nobody to tell; the bytes were all read or abandoned.
    stream.on('error', () => {});
    stream.destroy();
    await closed;
  }
}

/**
 * Files and command output of another host, over SSH: files, links and directories read over
 * SFTP and streamed into the backup (`files/<path on the host>`), commands run on the host with
 * their standard output streamed in (`commands/<entry>`). Restore writes the files back over
 * SFTP under `restore.root` (default `/`, in place) with the safety rules of local restore: no
 * entry outside the root, nothing written through a link, each file written to a temp name and
 * renamed over the target, the conflict policy for what exists.
 *
 * @example
 * import { backup } from '@bk/core';
 * import { ssh } from '@bk/ssh';
 * await backup({ storage, components: [ssh({ name: 'haproxy', host: 'lb1', paths: ['/etc/haproxy'] })] });
 */
export class SshComponent implements Component {
  readonly kind = 'ssh';
  readonly name: string;
  readonly paths: readonly string[];
  readonly commands: readonly SshCommand[];
  readonly restoreRoot: string;
  readonly #target: SshTarget;
  #missing: string[] | undefined;

  /** Validates the options; connects to nothing. @throws {ConfigError} naming the invalid option. */
  constructor(options: SshComponentOptions) {
    if (!isRecord(options as unknown)) throw new ConfigError('ssh component: the options must be an object.');
    const name = options.name ?? 'ssh';
    checkComponentName(name);
    const where = `ssh component "${name}"`;
    if (typeof options.host !== 'string' || options.host === '') {
      throw new ConfigError(`${where}: "host" must be a host name or address.`);
    }
    if (
      options.port !== undefined &&
      (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535)
    ) {
      throw new ConfigError(`${where}: "port" must be a port number.`);
    }
    const absolute = (value: unknown, field: string) => {
      if (typeof value !== 'string' || !value.startsWith('/') || value.includes('\0')) {
        throw new ConfigError(
          `${where}: "${field}" must be an absolute path on the host, got ${JSON.stringify(value)}.`,
        );
      }
      return posix.normalize(value);
    };
    this.paths = (options.paths ?? []).map((path, index) => absolute(path, `paths[${index}]`));
    this.commands = (options.commands ?? []).map((command, index) => {
      if (!isRecord(command) || typeof command.command !== 'string' || typeof command.entry !== 'string') {
        throw new ConfigError(`${where}: "commands[${index}]" must be { "entry": "name", "command": "…" }.`);
      }
      safeEntryPath(command.entry);
      return { entry: command.entry, command: command.command };
    });
    if (this.paths.length === 0 && this.commands.length === 0) {
      throw new ConfigError(`${where}: give "paths" to read or "commands" to run on ${options.host}.`);
    }
    const restore = checkNestedConfig(options.restore, 'restore', ['root'], where) ?? {};
    this.restoreRoot = restore.root === undefined ? '/' : absolute(restore.root, 'restore.root');
    this.name = name;
    const { name: _name, paths: _paths, commands: _commands, restore: _restore, ...target } = options;
    this.#target = target;
  }

  async #session(signal: AbortSignal): Promise<SshSession> {
    return SshSession.open(this.#target, `ssh component "${this.name}"`, signal);
  }

  /** Connects (checking the host key and the login), and lists which paths exist. */
  async describe(context: OperationContext): Promise<ComponentInfo> {
    const session = await this.#session(context.signal);
    try {
      const sftp = await session.sftp();
      const missing: string[] = [];
      for (const path of this.paths) if (!(await lstatOrUndefined(sftp, path))) missing.push(path);
      this.#missing = missing;
      return {
        capabilities: {
          incremental: false,
          pointInTime: false,
          consistentSnapshot: false,
          restoreIntoExisting: true,
          selectiveRestore: false,
        },
        notCaptured: [
          'file owners and groups (restored files belong to the SSH user)',
          ...missing.map((path) => `${path}: not present on ${this.#target.host}`),
        ],
        details: {
          host: this.#target.host,
          port: this.#target.port ?? 22,
          user: session.where.split('@')[0],
          paths: this.paths.filter((path) => !missing.includes(path)),
          missingPaths: missing,
          commands: this.commands.map((command) => ({ entry: command.entry, command: command.command })),
        },
      };
    } finally {
      session.close();
    }
  }

  /** `files/<path>` for each file, link and directory under `paths`, then `commands/<entry>` per command. */
  async *backup(context: BackupContext): AsyncIterable<Entry> {
    const session = await this.#session(context.signal);
    try {
      const sftp = await session.sftp();
      const missing = this.#missing;
      this.#missing = undefined;
      for (const path of this.paths) {
        if (missing?.includes(path)) continue;
        yield* this.#walk(sftp, path, context.signal);
      }
      for (const command of this.commands) {
        throwIfAborted(context.signal);
        yield {
          path: `commands/${command.entry}`,
          type: 'file',
          mode: 0o600,
          body: this.#run(session, command),
        };
      }
    } finally {
      session.close();
    }
  }

  async *#walk(sftp: SFTPWrapper, path: string, signal: AbortSignal): AsyncGenerator<Entry> {
    throwIfAborted(signal);
    const stats = await lstatOrUndefined(sftp, path);
    if (!stats) return;
    const entryPath = `files${path}`;
    const common = { mode: stats.mode & 0o7777, mtime: new Date(stats.mtime * 1000) };
    if (stats.isSymbolicLink()) {
      const linkTarget = await sftpCall<string>((done) => sftp.readlink(path, done));
      yield { path: entryPath, type: 'symlink', linkTarget, ...common };
    } else if (stats.isDirectory()) {
      if (path !== '/') yield { path: entryPath, type: 'directory', ...common };
      const list = await sftpCall<{ filename: string }[]>((done) => sftp.readdir(path, done));
      for (const name of list.map((item) => item.filename).sort()) {
        yield* this.#walk(sftp, posix.join(path, name), signal);
      }
    } else if (stats.isFile()) {
      yield {
        path: entryPath,
        type: 'file',
        size: stats.size,
        ...common,
        body: readRemote(sftp, path),
        ...(secretOf(path) === undefined ? {} : { secret: secretOf(path) }),
      };
    }
  }

  /** The command's stdout; throws after it when the command exits non-zero (with the end of stderr). */
  async *#run(session: SshSession, command: SshCommand): AsyncGenerator<Uint8Array> {
    const channel = await session.exec(command.command);
    let stderr = '';
    channel.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString('utf8')).slice(-2000);
    });
    const exit = new Promise<number | null>((resolve) =>
      channel.once('exit', (code: number | null) => resolve(code)),
    );
    for await (const chunk of channel) yield chunk as Uint8Array;
    const code = await exit;
    if (code !== 0) {
      throw new ComponentError(
        this.name,
        `"${command.command}" on ${session.where} exited with ${code}: ${stderr.trim() || '(no stderr)'}`,
      );
    }
  }

  /**
   * Writes `files/…` back under `restore.root` on the host over SFTP; `commands/…` output is not
   * written back (it is a record, listed as skipped).
   *
   * @throws {UnsafePathError} for an entry outside the root or a link on the way to it.
   * @throws {ConflictError} under `fail` for a path that exists (the files before it are written).
   */
  async restore(entries: AsyncIterable<Entry>, context: RestoreContext): Promise<RestoreReport> {
    const session = await this.#session(context.signal);
    let written = 0;
    let bytes = 0;
    let skipped = 0;
    const skippedPaths: string[] = [];
    try {
      const sftp = await session.sftp();
      const checkedDirs = new Set<string>();
      /** Every directory from the root down to `dir` exists and none is a link (created when missing). */
      const ensureDir = async (dir: string): Promise<void> => {
        if (checkedDirs.has(dir)) return;
        if (dir === this.restoreRoot) {
          // The root itself is the operator's choice: made with its parents when missing.
          const missing: string[] = [];
          for (let at = dir; at !== '/' && !(await lstatOrUndefined(sftp, at)); at = posix.dirname(at))
            missing.unshift(at);
          for (const path of missing) await sftpCall((done) => sftp.mkdir(path, { mode: 0o755 }, done));
          checkedDirs.add(dir);
          return;
        }
        await ensureDir(posix.dirname(dir));
        const stats = await lstatOrUndefined(sftp, dir);
        if (stats?.isSymbolicLink())
          throw new UnsafePathError(
            dir,
            `it is a link on ${session.where}; nothing is written through links`,
          );
        if (stats && !stats.isDirectory())
          throw new UnsafePathError(dir, `it is not a directory on ${session.where}`);
        if (!stats) await sftpCall((done) => sftp.mkdir(dir, { mode: 0o755 }, done));
        checkedDirs.add(dir);
      };
      for await (const entry of entries) {
        throwIfAborted(context.signal);
        const drain = async () => {
          for await (const _ of entry.body ?? []) {
            // Read through so that the archive checks its size and sha256.
          }
        };
        if (!entry.path.startsWith('files/')) {
          await drain();
          skipped += 1;
          skippedPaths.push(entry.path);
          continue;
        }
        const relative = safeEntryPath(entry.path.slice('files/'.length));
        const target = posix.join(this.restoreRoot, relative);
        await ensureDir(posix.dirname(target));
        const existing = await lstatOrUndefined(sftp, target);
        const type = entry.type ?? 'file';
        if (type === 'directory') {
          if (existing?.isSymbolicLink())
            throw new UnsafePathError(target, `it is a link on ${session.where}`);
          if (!existing) await sftpCall((done) => sftp.mkdir(target, { mode: entry.mode ?? 0o755 }, done));
          else if (entry.mode !== undefined) await sftpCall((done) => sftp.chmod(target, entry.mode!, done));
          checkedDirs.add(target);
          written += 1;
          continue;
        }
        if (existing) {
          if (context.conflict === 'fail') {
            throw new ConflictError(
              target,
              `${target} exists on ${session.where} and the conflict policy is "fail"; restore with "skip" or "overwrite".`,
            );
          }
          if (context.conflict === 'skip') {
            await drain();
            skipped += 1;
            continue;
          }
          if (existing.isDirectory())
            throw new ConflictError(
              target,
              `${target} is a directory on ${session.where}; a ${type} cannot replace it.`,
            );
        }
        if (type === 'symlink') {
          if (existing) await sftpCall((done) => sftp.unlink(target, done));
          await sftpCall((done) => sftp.symlink(entry.linkTarget ?? '', target, done));
          written += 1;
          continue;
        }
        // A temp name beside the target, renamed over it: a reader never sees half a file, and a
        // link at the target is replaced, never written through.
        const temp = posix.join(
          posix.dirname(target),
          `.${posix.basename(target)}.bk-${randomBytes(4).toString('hex')}`,
        );
        try {
          const stream = sftp.createWriteStream(temp, { flags: 'wx', mode: entry.mode ?? 0o644 });
          const finished = new Promise<void>((resolve, reject) => {
            stream.once('close', () => resolve());
            stream.once('error', reject);
          });
          for await (const chunk of entry.body ?? []) {
            bytes += chunk.byteLength;
            if (!stream.write(chunk)) await new Promise((resolve) => stream.once('drain', resolve));
          }
          stream.end();
          await finished;
          if (entry.mode !== undefined) await sftpCall((done) => sftp.chmod(temp, entry.mode!, done));
          if (entry.mtime) await sftpCall((done) => sftp.utimes(temp, entry.mtime!, entry.mtime!, done));
          await sftpCall((done) => sftp.ext_openssh_rename(temp, target, done));
        } catch (error) {
          await sftpCall((done) => sftp.unlink(temp, done)).catch(() => {});
          throw error;
        }
        written += 1;
      }
    } finally {
      session.close();
    }
    return {
      entries: written,
      bytes,
      skipped,
      details: { host: this.#target.host, root: this.restoreRoot, notRestored: skippedPaths },
    };
  }
}

/** Same as `new SshComponent(options)`. */
export function ssh(options: SshComponentOptions): SshComponent {
  return new SshComponent(options);
}

/**
 * Builds the component from the CLI's JSON config (`{ "kind": "ssh", "host": "lb1", "paths": ["/etc/haproxy"] }`).
 *
 * @throws {ConfigError} naming an unknown or invalid field.
 */
export function fromConfig(config: Record<string, unknown>): SshComponent {
  const where = checkComponentConfig(config, 'ssh', CONFIG_FIELDS);
  checkNestedConfig(config.restore, 'restore', ['root'], where);
  const { kind: _kind, ...options } = config;
  return new SshComponent(options as unknown as SshComponentOptions);
}
