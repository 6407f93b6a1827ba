import { randomBytes } from 'node:crypto';
import { createReadStream, type Stats } from 'node:fs';
import {
  chmod,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  realpath,
  rename,
  rm,
  rmdir,
  stat,
  utimes,
} from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import {
  type BackupContext,
  BkError,
  type ByteStream,
  type CommandResult,
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
  runCommand,
  safeEntryPath,
  throwIfAborted,
  UnsafePathError,
} from '@bk/core';
import { adminStateCommand, parseInfo, parseServersState, runtimeCommand } from './runtime-api.ts';

/** Where and how a restore writes (see the README's "Restore semantics"). */
export interface HaproxyRestoreOptions {
  /**
   * Absolute directory the configuration files are restored under, each at its path relative to
   * `configRoot` (`/etc/haproxy/maps/a.map` → `<configDir>/maps/a.map`). Created if missing.
   */
  configDir?: string;
  /**
   * Restore the configuration files to their original paths (under `configRoot`). Off by
   * default: without `configDir` or `inPlace: true`, a restore refuses to write config files.
   */
  inPlace?: boolean;
  /**
   * Absolute path to write the server state to: the path the config's `server-state-file`
   * names, so that a (re)start with `load-server-state-from-file global` applies it. Without it
   * the state is not written (a `warning` progress event says so).
   */
  stateFile?: string;
  /** Also apply the state to a running HAProxy through its runtime API (weight, addr, admin state). */
  applyLive?: boolean;
  /** The runtime API socket `applyLive` talks to; default the component's `socket`. */
  socket?: string;
  /**
   * Run `haproxy -c` on the restored configuration before anything is published. Default: when
   * the `haproxy` binary is found; `true` makes a missing binary an error, `false` skips it.
   */
  check?: boolean;
}

/** Options of a {@link HaproxyComponent}. */
export interface HaproxyOptions {
  /** Component name, unique within one backup. Default `haproxy`. */
  name?: string;
  /** Absolute path of the main configuration file. Default `/etc/haproxy/haproxy.cfg`. */
  configFile?: string;
  /** Extra absolute files or directories (maps, certificates, error files, Lua), inside `configRoot`. */
  configFiles?: string[];
  /** Absolute directory entry paths are relative to. Default: the main config file's directory. */
  configRoot?: string;
  /**
   * The runtime API socket (`stats socket … level admin`, or `operator` for backup only). Without
   * it only the configuration files are backed up.
   */
  socket?: string;
  /** The haproxy binary used for `haproxy -c` and `-v`. Default `haproxy` (on `PATH`). */
  haproxyBin?: string;
  /** Timeout of one runtime API command, in ms. Default 10 000. */
  timeoutMs?: number;
  restore?: HaproxyRestoreOptions;
}

const CONFIG_FIELDS = [
  'kind',
  'name',
  'configFile',
  'configFiles',
  'configRoot',
  'socket',
  'haproxyBin',
  'timeoutMs',
  'restore',
];
const RESTORE_FIELDS = ['configDir', 'inPlace', 'stateFile', 'applyLive', 'socket', 'check'];

/** Entry paths: every config file under `config/`, the runtime state as `server-state`. */
const CONFIG_PREFIX = 'config/';
const STATE_ENTRY = 'server-state';
/** At most this much of `haproxy -c` output goes into an error message. */
const CHECK_OUTPUT_LIMIT = 4_000;

const NOT_CAPTURED = [
  'live traffic state: connections, sessions, stick tables, counters and health-check history',
  'runtime-only changes other than server state: map/ACL entries added with "add map"/"add acl", "set var", dynamic servers added with "add server" (their state line is kept, the server is not)',
  'files the configuration references but that are not listed in configFile/configFiles (e.g. certificates elsewhere)',
  'file owners and groups (restored files belong to the user running the restore); modes and mtimes are kept',
  'symbolic links are followed: a linked file is stored and restored as a regular file',
];

function absolute(value: unknown, field: string, where: string): string {
  if (typeof value !== 'string' || value === '' || value.includes('\0') || !isAbsolute(value)) {
    throw new ConfigError(`${where}: "${field}" must be an absolute path, got ${JSON.stringify(value)}.`);
  }
  return resolve(value);
}

function inside(path: string, root: string): string | undefined {
  const rel = relative(root, path);
  if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) return undefined;
  return rel.split(sep).join('/');
}

/** A TLS bundle as HAProxy's `crt` loads it: certificate and private key in one file. */
const KEY_FILE = /\.(pem|key)$/;
const KEY_SECRET = { kind: 'private-key', what: 'TLS private keys (crt bundles, *.pem and *.key)' } as const;
/** `user … password|insecure-password …` in a userlist, or `stats auth user:password`. */
const PASSWORD_LINE = /^\s*(user\s+\S+\s+(password|insecure-password)\s|stats\s+auth\s)/m;

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

async function exists(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw error;
  }
}

/** Writes a body to `path` (created exclusively), returning the bytes written. */
async function writeBody(body: ByteStream | undefined, path: string, signal: AbortSignal): Promise<number> {
  const handle = await open(path, 'wx', 0o600);
  let bytes = 0;
  try {
    for await (const chunk of body ?? []) {
      throwIfAborted(signal);
      await handle.write(chunk);
      bytes += chunk.byteLength;
    }
  } finally {
    await handle.close();
  }
  return bytes;
}

async function* once(data: Uint8Array): AsyncGenerator<Uint8Array> {
  yield data;
}

async function collectText(body: ByteStream | undefined): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of body ?? []) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks).toString('utf8');
}

/** A staged config file waiting to be published. */
interface Staged {
  path: string;
  staged: string;
  target: string;
  mode: number | undefined;
  mtime: Date | undefined;
}

/**
 * Backs up HAProxy: the configuration files (the main config plus listed files and directories:
 * maps, certificates, error files), and the servers' runtime state read through the runtime API
 * (`show servers state`). Restore checks the configuration with `haproxy -c` before anything is
 * published, writes the state to the `server-state-file` path so that a (re)start with
 * `load-server-state-from-file global` applies it, and can apply the state live.
 *
 * @example
 * import { backup } from '@bk/core';
 * import { haproxy } from '@bk/haproxy';
 * await backup({ storage, components: [haproxy({ socket: '/run/haproxy/admin.sock', configFiles: ['/etc/haproxy/maps'] })] });
 */
export class HaproxyComponent implements Component {
  readonly kind = 'haproxy';
  readonly name: string;
  readonly configFile: string;
  readonly configRoot: string;
  readonly configFiles: readonly string[];
  readonly socket: string | undefined;
  readonly haproxyBin: string;
  readonly timeoutMs: number;
  readonly restoreOptions: Readonly<HaproxyRestoreOptions>;

  /** Validates the options; touches no file. @throws {ConfigError} naming the invalid option. */
  constructor(options: HaproxyOptions = {}) {
    if (!isRecord(options)) throw new ConfigError('haproxy component: the options must be an object.');
    const name = options.name ?? 'haproxy';
    if (typeof name !== 'string') throw new ConfigError('haproxy component: "name" must be a string.');
    checkComponentName(name);
    const where = `haproxy component "${name}"`;
    this.name = name;
    this.configFile = absolute(options.configFile ?? '/etc/haproxy/haproxy.cfg', 'configFile', where);
    this.configRoot =
      options.configRoot === undefined
        ? dirname(this.configFile)
        : absolute(options.configRoot, 'configRoot', where);
    if (options.configFiles !== undefined && !Array.isArray(options.configFiles)) {
      throw new ConfigError(`${where}: "configFiles" must be an array of absolute paths.`);
    }
    this.configFiles = (options.configFiles ?? []).map((path, index) =>
      absolute(path, `configFiles[${index}]`, where),
    );
    for (const [field, path] of [
      ['configFile', this.configFile],
      ...this.configFiles.map((file) => ['configFiles', file] as const),
    ] as const) {
      if (inside(path, this.configRoot) === undefined) {
        throw new ConfigError(
          `${where}: "${field}" entry "${path}" lies outside configRoot "${this.configRoot}".`,
        );
      }
    }
    this.socket = options.socket === undefined ? undefined : absolute(options.socket, 'socket', where);
    if (
      options.haproxyBin !== undefined &&
      (typeof options.haproxyBin !== 'string' || options.haproxyBin === '')
    ) {
      throw new ConfigError(`${where}: "haproxyBin" must be a non-empty string.`);
    }
    this.haproxyBin = options.haproxyBin ?? 'haproxy';
    const timeoutMs: unknown = options.timeoutMs ?? 10_000;
    if (typeof timeoutMs !== 'number' || !Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) {
      throw new ConfigError(`${where}: "timeoutMs" must be a positive integer.`);
    }
    this.timeoutMs = timeoutMs;
    const restore = options.restore ?? {};
    if (!isRecord(restore)) throw new ConfigError(`${where}: "restore" must be an object.`);
    for (const field of ['inPlace', 'applyLive', 'check'] as const) {
      if (restore[field] !== undefined && typeof restore[field] !== 'boolean') {
        throw new ConfigError(`${where}: "restore.${field}" must be true or false.`);
      }
    }
    this.restoreOptions = {
      ...restore,
      ...(restore.configDir === undefined
        ? {}
        : { configDir: absolute(restore.configDir, 'restore.configDir', where) }),
      ...(restore.stateFile === undefined
        ? {}
        : { stateFile: absolute(restore.stateFile, 'restore.stateFile', where) }),
      ...(restore.socket === undefined ? {} : { socket: absolute(restore.socket, 'restore.socket', where) }),
    };
    if (this.restoreOptions.configDir !== undefined && this.restoreOptions.inPlace === true) {
      throw new ConfigError(`${where}: set either "restore.configDir" or "restore.inPlace", not both.`);
    }
  }

  /** The runtime API's `show info` (version, node) when a socket is set, else `haproxy -v`. */
  async describe(context: OperationContext): Promise<ComponentInfo> {
    throwIfAborted(context.signal);
    const details: Record<string, unknown> = {
      configRoot: this.configRoot,
      mainConfig: inside(this.configFile, this.configRoot),
      configFiles: this.configFiles.map((file) => inside(file, this.configRoot)),
      serverState: this.socket !== undefined,
    };
    let version: string | undefined;
    if (this.socket) {
      const info = parseInfo(await this.#command(this.socket, 'show info', context.signal));
      if (!info.Version) {
        throw new ComponentError(this.name, `"show info" on "${this.socket}" did not answer with a version.`);
      }
      version = info.Version;
      details.socket = this.socket;
      for (const [field, key] of [
        ['releaseDate', 'Release_date'],
        ['node', 'node'],
        ['threads', 'Nbthread'],
      ] as const) {
        if (info[key] !== undefined) details[field] = info[key];
      }
    } else {
      const result = await runCommand(this.haproxyBin, ['-v'], { signal: context.signal }).catch(
        () => undefined,
      );
      version = /version\s+(\S+)/i.exec(result?.output ?? '')?.[1];
    }
    const configText = await readFile(this.configFile, 'utf8').catch(() => '');
    const configEntry = inside(this.configFile, this.configRoot);
    return {
      ...(version === undefined ? {} : { version }),
      capabilities: {
        incremental: false,
        pointInTime: false,
        consistentSnapshot: false,
        restoreIntoExisting: true,
        selectiveRestore: false,
      },
      secrets: {
        captured:
          PASSWORD_LINE.test(configText) && configEntry !== undefined
            ? [
                {
                  kind: 'password-hash',
                  what: 'userlist passwords (hashed or insecure-password in clear) and stats auth credentials',
                  paths: [`${CONFIG_PREFIX}${configEntry}`],
                },
              ]
            : [],
        notCaptured: [
          {
            kind: 'private-key',
            what: 'TLS keys the configuration loads from outside configFile/configFiles',
          },
        ],
      },
      notCaptured: this.socket
        ? [...NOT_CAPTURED]
        : ['server runtime state (no "socket" configured)', ...NOT_CAPTURED],
      details,
    };
  }

  async #command(socket: string, line: string, signal: AbortSignal): Promise<string> {
    return runtimeCommand(this.name, socket, line, { timeoutMs: this.timeoutMs, signal });
  }

  /** The files to back up, as `[absolute, path relative to configRoot]`, sorted and each once. */
  async #listFiles(context: BackupContext): Promise<[string, string][]> {
    const found = new Map<string, string>();
    const visit = async (path: string, configured: string, top: boolean): Promise<void> => {
      throwIfAborted(context.signal);
      let stats: Stats;
      try {
        stats = await stat(path);
      } catch (error) {
        if (top && (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR')) {
          throw new ConfigError(`haproxy component "${this.name}": "${configured}" does not exist.`, {
            cause: error,
          });
        }
        if (errorCode(error) === 'ENOENT') {
          context.progress({
            type: 'warning',
            component: this.name,
            message: `skipped "${path}": broken link`,
          });
          return;
        }
        throw new ComponentError(this.name, `cannot read "${path}": ${(error as Error).message}`, {
          cause: error,
        });
      }
      if (stats.isDirectory()) {
        const names = (await readdir(path)).sort();
        for (const name of names) await visit(join(path, name), configured, false);
      } else if (stats.isFile()) {
        const rel = inside(path, this.configRoot);
        if (rel !== undefined) found.set(rel, path);
      } else {
        context.progress({
          type: 'warning',
          component: this.name,
          message: `skipped "${path}": not a regular file`,
        });
      }
    };
    for (const path of [this.configFile, ...this.configFiles]) await visit(path, path, true);
    return [...found.entries()]
      .sort(([left], [right]) => (left < right ? -1 : 1))
      .map(([rel, path]) => [path, rel]);
  }

  /** `config/<path>` for every configuration file, then `server-state` when a socket is set. */
  async *backup(context: BackupContext): AsyncIterable<Entry> {
    throwIfAborted(context.signal);
    for (const [path, rel] of await this.#listFiles(context)) {
      const stats = await stat(path);
      yield {
        path: `${CONFIG_PREFIX}${rel}`,
        type: 'file',
        ...(KEY_FILE.test(rel) ? { secret: KEY_SECRET } : {}),
        size: stats.size,
        mode: stats.mode & 0o7777,
        mtime: stats.mtime,
        body: createReadStream(path, { signal: context.signal }) as AsyncIterable<Uint8Array>,
      };
    }
    if (this.socket) {
      const state = await this.#command(this.socket, 'show servers state', context.signal);
      if (!parseServersState(state)) {
        throw new ComponentError(
          this.name,
          `"show servers state" answered something else than a version-1 state: ${JSON.stringify(state.slice(0, 200))}`,
        );
      }
      const body = Buffer.from(state);
      yield { path: STATE_ENTRY, type: 'file', size: body.length, mode: 0o600, body: once(body) };
    }
  }

  /**
   * Stages the configuration files next to their destination, checks them with `haproxy -c`,
   * applies the conflict policy to every destination, then publishes them by `rename`, writes
   * the server state to `restore.stateFile` and, with `applyLive`, to the running HAProxy.
   *
   * @throws {ConfigError} when no config target is set, or `haproxy -c` rejects the configuration
   *   (nothing is published then).
   * @throws {ConflictError} under `fail` when a destination exists (nothing is published then).
   */
  async restore(entries: AsyncIterable<Entry>, context: RestoreContext): Promise<RestoreReport> {
    const options = this.restoreOptions;
    const where = `haproxy component "${this.name}"`;
    const targetDir = options.configDir ?? (options.inPlace ? this.configRoot : undefined);
    let created: string | undefined;
    let staging: string | undefined;
    const staged: Staged[] = [];
    let state: string | undefined;
    let entryCount = 0;
    let bytes = 0;
    let skipped = 0;
    try {
      for await (const entry of entries) {
        throwIfAborted(context.signal);
        entryCount += 1;
        if (entry.path === STATE_ENTRY) {
          state = await collectText(entry.body);
          bytes += Buffer.byteLength(state);
          continue;
        }
        if (!entry.path.startsWith(CONFIG_PREFIX) || (entry.type ?? 'file') !== 'file') {
          for await (const _ of entry.body ?? []) {
            // Not ours: read through so the archive's checks still run.
          }
          context.progress({
            type: 'warning',
            component: this.name,
            message: `ignored entry "${entry.path}"`,
          });
          entryCount -= 1;
          continue;
        }
        const rel = safeEntryPath(entry.path.slice(CONFIG_PREFIX.length));
        if (targetDir === undefined) {
          throw new ConfigError(
            `${where}: restoring configuration files needs "restore.configDir" (a directory to restore under) or "restore.inPlace": true (overwrite the original paths under ${this.configRoot}).`,
          );
        }
        if (staging === undefined) {
          if (!(await exists(targetDir))) created = targetDir;
          await mkdir(targetDir, { recursive: true });
          staging = join(targetDir, `.bk-haproxy-${randomBytes(6).toString('hex')}`);
          await mkdir(staging, { mode: 0o700 });
        }
        const file = join(staging, rel);
        await mkdir(dirname(file), { recursive: true, mode: 0o700 });
        bytes += await writeBody(entry.body, file, context.signal);
        staged.push({
          path: rel,
          staged: file,
          target: join(targetDir, rel),
          mode: entry.mode,
          mtime: entry.mtime,
        });
      }

      const details: Record<string, unknown> = { configDir: targetDir, files: staged.length };
      if (state !== undefined && options.stateFile) await this.#stateConflict(options.stateFile, context);
      if (staging !== undefined && targetDir !== undefined) {
        details.checked = await this.#check(staging, staged, context);
        await this.#publish(staged, targetDir, context, (count) => {
          skipped += count;
        });
      }
      if (state !== undefined) {
        if (options.stateFile) {
          const written = await this.#writeState(state, options.stateFile, context);
          if (written) details.stateFile = options.stateFile;
          else skipped += 1;
        } else {
          details.stateFile = null;
          context.progress({
            type: 'warning',
            component: this.name,
            message:
              'the server state was not written: set "restore.stateFile" to the config\'s server-state-file path',
          });
        }
        if (options.applyLive) {
          if (context.conflict === 'skip') details.live = 'skipped (conflict policy "skip")';
          else details.live = await this.#applyLive(state, context);
        }
      }
      return { entries: entryCount, bytes, skipped, details };
    } finally {
      if (staging !== undefined) await rm(staging, { recursive: true, force: true });
      if (created !== undefined) await rmdir(created).catch(() => {});
    }
  }

  /** `haproxy -c -f <staged main config>` from the staged config's directory. */
  async #check(staging: string, staged: Staged[], context: RestoreContext): Promise<boolean> {
    if (this.restoreOptions.check === false) return false;
    const recorded = context.component.info.details?.mainConfig;
    const main = typeof recorded === 'string' ? recorded : inside(this.configFile, this.configRoot);
    const candidate = staged.find((file) => file.path === main);
    if (!candidate) {
      throw new ComponentError(this.name, `the backup holds no main configuration file "${main}".`);
    }
    let result: CommandResult;
    try {
      result = await runCommand(this.haproxyBin, ['-c', '-f', candidate.staged], {
        cwd: dirname(candidate.staged),
        signal: context.signal,
      });
    } catch (error) {
      if (errorCode(error) === 'ENOENT' && this.restoreOptions.check !== true) {
        context.progress({
          type: 'warning',
          component: this.name,
          message: `"${this.haproxyBin}" not found: the configuration was restored without "haproxy -c"`,
        });
        return false;
      }
      if (BkError.isInstance(error)) throw error;
      throw new ConfigError(
        `haproxy component "${this.name}": cannot run "${this.haproxyBin} -c": ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    if (result.code !== 0) {
      const alerts = result.output
        .split('\n')
        .filter((line) => line.includes('[ALERT]'))
        .map((line) => line.replaceAll(staging, '<restored>').slice(0, 300))
        .join('\n')
        .slice(0, CHECK_OUTPUT_LIMIT);
      throw new ConfigError(
        `haproxy component "${this.name}": "haproxy -c" rejected the restored configuration ${main}; nothing was restored.\n${alerts}`,
      );
    }
    return true;
  }

  /** Applies the conflict policy to every destination first, then renames the staged files into place. */
  async #publish(
    staged: Staged[],
    targetDir: string,
    context: RestoreContext,
    onSkipped: (count: number) => void,
  ): Promise<void> {
    const base = await realpath(targetDir);
    const publish: Staged[] = [];
    for (const file of staged) {
      const existing = await exists(file.target);
      if (existing?.isDirectory())
        throw new ConflictError(
          file.target,
          `"${file.target}" is a directory; bk does not replace a directory with a file.`,
        );
      if (existing && context.conflict === 'fail') throw new ConflictError(file.target);
      if (existing && context.conflict === 'skip') {
        onSkipped(1);
        continue;
      }
      publish.push(file);
    }
    for (const file of publish) {
      throwIfAborted(context.signal);
      const parent = dirname(file.target);
      await mkdir(parent, { recursive: true });
      const resolved = await realpath(parent);
      if (inside(resolved, base) === undefined && resolved !== base) {
        throw new UnsafePathError(file.path, `its directory resolves to "${resolved}", outside "${base}"`);
      }
      if (file.mode !== undefined) await chmod(file.staged, file.mode & 0o7777);
      if (file.mtime !== undefined) await utimes(file.staged, file.mtime, file.mtime);
      await rename(file.staged, file.target);
    }
  }

  /** Whether the state file exists (throws under `fail`, and for a directory under any policy). */
  async #stateConflict(path: string, context: RestoreContext): Promise<boolean> {
    const existing = await exists(path);
    if (existing?.isDirectory())
      throw new ConflictError(path, `"${path}" is a directory, not a server-state file.`);
    if (existing && context.conflict === 'fail') throw new ConflictError(path);
    return existing !== undefined;
  }

  /** Writes the state to a temp name beside `path`, then renames it; false when skipped. */
  async #writeState(state: string, path: string, context: RestoreContext): Promise<boolean> {
    if ((await this.#stateConflict(path, context)) && context.conflict === 'skip') return false;
    await mkdir(dirname(path), { recursive: true });
    const temp = join(dirname(path), `.${randomBytes(6).toString('hex')}.bk-state`);
    try {
      await writeBody(once(Buffer.from(state)), temp, context.signal);
      await rename(temp, path);
    } finally {
      await rm(temp, { force: true });
    }
    return true;
  }

  /** `set server <be>/<srv> addr|weight|state` for every server line of the state. */
  async #applyLive(state: string, context: RestoreContext): Promise<Record<string, unknown>> {
    const socket = this.restoreOptions.socket ?? this.socket;
    if (!socket) {
      throw new ConfigError(
        `haproxy component "${this.name}": "restore.applyLive" needs "restore.socket" or "socket".`,
      );
    }
    const parsed = parseServersState(state);
    if (!parsed)
      throw new ComponentError(
        this.name,
        'the backed-up server state is not a version-1 "show servers state".',
      );
    const missing: string[] = [];
    let applied = 0;
    for (const row of parsed.rows) {
      const server = `${row.be_name}/${row.srv_name}`;
      const commands: string[] = [];
      if (row.srv_addr && row.srv_addr !== '-' && /^\d+$/.test(row.srv_port ?? '') && row.srv_port !== '0') {
        commands.push(`set server ${server} addr ${row.srv_addr} port ${row.srv_port}`);
      }
      if (/^\d+$/.test(row.srv_uweight ?? ''))
        commands.push(`set server ${server} weight ${row.srv_uweight}`);
      commands.push(`set server ${server} state ${adminStateCommand(Number(row.srv_admin_state ?? 0))}`);
      let found = true;
      for (const command of commands) {
        const answer = (await this.#command(socket, command, context.signal)).trim();
        if (answer === '' || /changed from|no need to change/i.test(answer)) continue;
        if (/no such (server|backend)/i.test(answer)) {
          found = false;
          break;
        }
        throw new ComponentError(this.name, `"${command}" failed: ${answer.slice(0, 300)}`);
      }
      if (found) applied += 1;
      else missing.push(server);
    }
    if (missing.length > 0) {
      context.progress({
        type: 'warning',
        component: this.name,
        message: `servers not in the running HAProxy, state not applied: ${missing.join(', ')}`,
      });
    }
    return { socket, applied, missing };
  }
}

/** Same as `new HaproxyComponent(options)`. */
export function haproxy(options: HaproxyOptions = {}): HaproxyComponent {
  return new HaproxyComponent(options);
}

/**
 * Builds the component from the CLI's JSON config (`{ "kind": "haproxy", "socket": … }`).
 *
 * @throws {ConfigError} naming an unknown or invalid field.
 */
export function fromConfig(config: Record<string, unknown>): HaproxyComponent {
  const where = checkComponentConfig(config, 'haproxy', CONFIG_FIELDS);
  checkNestedConfig(config.restore, 'restore', RESTORE_FIELDS, where);
  if (config.configFiles !== undefined && !Array.isArray(config.configFiles)) {
    throw new ConfigError(`${where}: "configFiles" must be an array of absolute paths.`);
  }
  const { kind: _kind, ...options } = config;
  return new HaproxyComponent(options as HaproxyOptions);
}
