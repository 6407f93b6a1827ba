import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import {
  type BackupContext,
  type ByteStream,
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
  throwIfAborted,
} from '@bk/core';
import type { Client as PgClient, QueryResultRow } from 'pg';

const run = promisify(execFile);

/**
 * `pg`'s Client, loaded without `pg`'s index: the index requires `pg-pool`, which resolves to
 * its ESM build (and breaks) when Node runs with `--conditions=import`, as under vitest.
 */
const Client = createRequire(import.meta.url)('pg/lib/client.js') as typeof PgClient;

/**
 * Options of a {@link PostgresComponent}.
 *
 * @example
 * const options: PostgresOptions = {
 *   host: '127.0.0.1',
 *   port: 5432,
 *   user: 'postgres',
 *   password: process.env.PGPASSWORD,
 *   databases: ['shop'],
 *   restore: { renames: { shop: 'shop_restored' } },
 * };
 */
export interface PostgresOptions {
  /** The component's name, unique within one backup; default `postgres`. */
  name?: string;
  host: string;
  port: number;
  /** A superuser (globals and every database must be readable). */
  user: string;
  /** Passed to the client tools as `PGPASSWORD`; never logged or recorded. */
  password?: string;
  /** Databases to back up; default every database that is not a template and allows connections. */
  databases?: string[];
  /** Directory of `pg_dump`, `pg_restore`, `pg_dumpall`, `psql`; default the highest `/usr/lib/postgresql/<major>/bin`, else `PATH`. */
  pgBin?: string;
  /** `renames`: restore database `a` as `b` (`{ a: 'b' }`). */
  restore?: { renames?: Record<string, string> };
}

const CONFIG_FIELDS = ['kind', 'name', 'host', 'port', 'user', 'password', 'databases', 'pgBin', 'restore'];
const RESTORE_FIELDS = ['renames'];

const NOT_CAPTURED = [
  'WAL and point-in-time recovery: each database is a logical pg_dump snapshot, consistent per database but not across databases',
  'server configuration files (postgresql.conf, pg_hba.conf, pg_ident.conf) and the cluster’s data directory layout',
  'database-level settings and grants (ALTER DATABASE … SET, GRANT … ON DATABASE); the owner is restored when the role exists',
  'large objects are captured, but their ownership is only kept when the owning role exists at restore time',
];

/** The prefix of every database dump entry. */
export const DATABASE_PREFIX = 'databases/';
/** The entry holding `pg_dumpall --globals-only`. */
export const GLOBALS_ENTRY = 'globals.sql';

/** Most stderr kept from a client tool for an error message. */
const STDERR_LIMIT = 64 * 1024;

function checkDatabaseName(value: unknown, field: string, where: string): string {
  if (typeof value !== 'string' || value === '' || value.includes('\0') || Buffer.byteLength(value) > 63) {
    throw new ConfigError(
      `${where}: "${field}" must be a database name (1–63 bytes, no NUL), got ${JSON.stringify(value)}.`,
    );
  }
  return value;
}

/** A libpq connection string naming only the database, so a name holding `=` is not read as one. */
function conninfo(database: string): string {
  return `dbname='${database.replace(/[\\']/g, '\\$&')}'`;
}

/** A quoted SQL identifier. */
function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** The highest `/usr/lib/postgresql/<major>/bin` holding `pg_dump`, or `''` (use `PATH`). */
export function defaultPgBin(): string {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return '';
  const majors = readdirSync(root)
    .filter((name) => /^\d+$/.test(name) && existsSync(join(root, name, 'bin', 'pg_dump')))
    .sort((a, b) => Number(b) - Number(a));
  return majors.length > 0 ? join(root, majors[0]!, 'bin') : '';
}

/** The major version from `15.18 (Debian …)` or `pg_dump (PostgreSQL) 15.18`, or `9` from `9.6.24`… as 9.6 → 9. */
export function majorVersion(text: string): number | undefined {
  const match = /(\d+)(?:\.(\d+))?/.exec(text);
  return match ? Number(match[1]) : undefined;
}

function entryPathOf(database: string): string {
  return `${DATABASE_PREFIX}${encodeURIComponent(database)}.dump`;
}

function databaseOf(path: string): string | undefined {
  if (!path.startsWith(DATABASE_PREFIX) || !path.endsWith('.dump')) return undefined;
  return decodeURIComponent(path.slice(DATABASE_PREFIX.length, -'.dump'.length));
}

interface DatabaseDetails {
  name: string;
  owner: string;
  encoding: string;
}

/**
 * Backs up PostgreSQL with its own client tools: `globals.sql` (`pg_dumpall --globals-only`:
 * roles, role memberships, tablespaces) and `databases/<db>.dump` (`pg_dump -Fc`) per database,
 * each streamed from the tool's stdout with unknown size (core stores it in 8 MiB chunks; no
 * temp files). Restore replays the globals with `psql` and feeds each dump to `pg_restore`
 * through stdin.
 *
 * @example
 * import { backup } from '@bk/core';
 * import { postgres } from '@bk/postgres';
 *
 * await backup({ storage, components: [postgres({ host: '127.0.0.1', port: 5432, user: 'postgres' })] });
 */
export class PostgresComponent implements Component {
  readonly kind = 'postgres' as const;
  readonly name: string;
  readonly options: Readonly<PostgresOptions>;
  readonly #bin: string;
  /** The databases `describe` found, used by the `backup` that follows it. */
  #databases: DatabaseDetails[] | undefined;

  /**
   * Validates the options; opens no connection.
   *
   * @throws {ConfigError} naming the invalid option.
   */
  constructor(options: PostgresOptions) {
    const where = 'postgres component';
    if (!isRecord(options)) throw new ConfigError(`${where}: the options must be an object.`);
    const name = options.name ?? 'postgres';
    if (typeof name !== 'string')
      throw new ConfigError(`${where}: "name" must be a string, got ${JSON.stringify(name)}.`);
    // The archive keeps a component's entries under `<name>/`: one safe path segment.
    checkComponentName(name);
    const context = `postgres component "${name}"`;
    if (typeof options.host !== 'string' || options.host === '') {
      throw new ConfigError(`${context}: "host" must be a non-empty string.`);
    }
    if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65_535) {
      throw new ConfigError(
        `${context}: "port" must be an integer 1–65535, got ${JSON.stringify(options.port)}.`,
      );
    }
    if (typeof options.user !== 'string' || options.user === '') {
      throw new ConfigError(`${context}: "user" must be a non-empty string.`);
    }
    if (options.password !== undefined && typeof options.password !== 'string') {
      throw new ConfigError(`${context}: "password" must be a string.`);
    }
    if (options.databases !== undefined) {
      if (!Array.isArray(options.databases) || options.databases.length === 0) {
        throw new ConfigError(`${context}: "databases" must be a non-empty array of database names.`);
      }
      for (const database of options.databases) checkDatabaseName(database, 'databases[]', context);
    }
    if (options.pgBin !== undefined && (typeof options.pgBin !== 'string' || options.pgBin === '')) {
      throw new ConfigError(`${context}: "pgBin" must be a directory path.`);
    }
    if (options.restore !== undefined) {
      checkNestedConfig(options.restore, 'restore', RESTORE_FIELDS, context);
      const renames = options.restore.renames;
      if (renames !== undefined) {
        if (!isRecord(renames)) throw new ConfigError(`${context}: "restore.renames" must be an object.`);
        for (const [from, to] of Object.entries(renames)) {
          checkDatabaseName(from, 'restore.renames key', context);
          checkDatabaseName(to, `restore.renames.${from}`, context);
        }
      }
    }
    this.name = name;
    this.options = { ...options, name };
    this.#bin = options.pgBin ?? defaultPgBin();
  }

  #tool(name: string): string {
    return this.#bin === '' ? name : join(this.#bin, name);
  }

  /** Environment of the client tools; the password travels only here. */
  #env(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PGHOST: this.options.host,
      PGPORT: String(this.options.port),
      PGUSER: this.options.user,
      PGCONNECT_TIMEOUT: '10',
    };
    delete env.PGDATABASE;
    // Without a password option the tools use PGPASSWORD or ~/.pgpass, as the pg client does.
    if (this.options.password !== undefined) env.PGPASSWORD = this.options.password;
    return env;
  }

  async #query<T extends QueryResultRow>(database: string, sql: string, values?: unknown[]): Promise<T[]> {
    const client = new Client({
      host: this.options.host,
      port: this.options.port,
      user: this.options.user,
      password: this.options.password,
      database,
      connectionTimeoutMillis: 10_000,
    });
    await client.connect();
    try {
      return (await client.query<T>(sql, values)).rows;
    } finally {
      await client.end().catch(() => {});
    }
  }

  async #listDatabases(): Promise<DatabaseDetails[]> {
    return this.#query<DatabaseDetails>(
      'postgres',
      `SELECT d.datname AS name, pg_get_userbyid(d.datdba) AS owner, pg_encoding_to_char(d.encoding) AS encoding
         FROM pg_database d WHERE NOT d.datistemplate AND d.datallowconn ORDER BY d.datname`,
    );
  }

  /**
   * Reads the server version (`SHOW server_version`), the client tools' version
   * (`pg_dump --version`) and the databases to back up.
   *
   * @throws {ConfigError} when `pg_dump` is older (major) than the server, or a configured database does not exist.
   */
  async describe(context: OperationContext): Promise<ComponentInfo> {
    throwIfAborted(context.signal);
    const where = `postgres component "${this.name}"`;
    let serverVersion: string;
    let all: DatabaseDetails[];
    try {
      const [row] = await this.#query<{ server_version: string }>('postgres', 'SHOW server_version');
      serverVersion = row!.server_version;
      all = await this.#listDatabases();
    } catch (error) {
      throw new ComponentError(this.name, `cannot query the server: ${(error as Error).message}`, {
        cause: error,
      });
    }
    let clientVersion: string;
    try {
      const { stdout } = await run(this.#tool('pg_dump'), ['--version'], { signal: context.signal });
      clientVersion = stdout.trim();
    } catch (error) {
      throw new ConfigError(`${where}: cannot run ${this.#tool('pg_dump')}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    const serverMajor = majorVersion(serverVersion);
    const clientMajor = majorVersion(clientVersion.replace(/^[^\d]*/, ''));
    if (serverMajor === undefined || clientMajor === undefined || clientMajor < serverMajor) {
      throw new ConfigError(
        `${where}: "${clientVersion}" cannot dump a PostgreSQL ${serverVersion} server; point "pgBin" at client tools of major version ${serverMajor} or newer.`,
      );
    }
    let databases = all;
    if (this.options.databases !== undefined) {
      const byName = new Map(all.map((database) => [database.name, database]));
      databases = this.options.databases.map((name) => {
        const found = byName.get(name);
        if (!found)
          throw new ConfigError(`${where}: database ${JSON.stringify(name)} does not exist on the server.`);
        return found;
      });
    }
    this.#databases = databases;
    return {
      version: serverVersion,
      capabilities: {
        incremental: false,
        pointInTime: false,
        consistentSnapshot: false,
        restoreIntoExisting: true,
        selectiveRestore: false,
      },
      notCaptured: [...NOT_CAPTURED],
      details: {
        format: 'pg_dumpall --globals-only + pg_dump -Fc per database',
        client: clientVersion,
        databases: databases.map((database) => ({ ...database, entry: entryPathOf(database.name) })),
      },
    };
  }

  /** `globals.sql`, then `databases/<db>.dump` per database, each streamed with unknown size. */
  async *backup(context: BackupContext): AsyncIterable<Entry> {
    let databases = this.#databases;
    this.#databases = undefined;
    if (!databases) {
      await this.describe(context);
      databases = this.#databases ?? [];
      this.#databases = undefined;
    }
    yield {
      path: GLOBALS_ENTRY,
      type: 'file',
      mode: 0o600,
      body: this.#stream(
        'pg_dumpall',
        ['--globals-only', '--no-password', '-d', conninfo('postgres')],
        context.signal,
      ),
    };
    for (const database of databases) {
      throwIfAborted(context.signal);
      yield {
        path: entryPathOf(database.name),
        type: 'file',
        mode: 0o600,
        body: this.#stream(
          'pg_dump',
          ['-Fc', '--no-password', '-d', conninfo(database.name)],
          context.signal,
        ),
      };
    }
  }

  /** A client tool's stdout; fails with its stderr on a non-zero exit; killed on abort or early return. */
  async *#stream(tool: string, args: string[], signal: AbortSignal): ByteStream {
    throwIfAborted(signal);
    const child = spawn(this.#tool(tool), args, { env: this.#env(), stdio: ['ignore', 'pipe', 'pipe'] });
    const stderr = collectStderr(child);
    const exit = exitOf(child);
    const onAbort = () => child.kill('SIGTERM');
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const chunk of child.stdout!) yield chunk as Uint8Array;
      const result = await exit;
      throwIfAborted(signal);
      const text = stderr();
      if (result.code !== 0 || /\berror:/i.test(text)) {
        throw new ComponentError(
          this.name,
          `${tool} ${args.filter((arg) => arg !== '--no-password').join(' ')} failed (${result.signal ?? `exit ${result.code}`}): ${text.trim()}`,
        );
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exit;
      }
    }
  }

  /**
   * Restores `globals.sql` with `psql` (errors such as `role "postgres" already exists` are
   * tolerated: existing roles keep existing and get the backup's attributes), then every
   * database into `restore.renames[db] ?? db`: created from `template0` with the original owner
   * (when that role exists) and filled by `pg_restore --exit-on-error` from the entry's body.
   * An existing target database: `fail` → `ConflictError` before anything changes; `skip` →
   * left alone; `overwrite` → dropped (`WITH (FORCE)`) and recreated.
   */
  async restore(entries: AsyncIterable<Entry>, context: RestoreContext): Promise<RestoreReport> {
    const recorded = (context.component.info.details?.databases ?? []) as Array<Partial<DatabaseDetails>>;
    const owners = new Map(recorded.map((database) => [database.name, database.owner]));
    const renames = this.options.restore?.renames ?? {};
    const target = (database: string) => renames[database] ?? database;
    const existing = new Set((await this.#listDatabases()).map((database) => database.name));
    if (context.conflict === 'fail') {
      for (const database of recorded) {
        if (typeof database.name === 'string' && existing.has(target(database.name))) {
          throw new ConflictError(
            target(database.name),
            `PostgreSQL database "${target(database.name)}" already exists and the conflict policy is "fail"; restore with "overwrite", "skip", or under another name ("restore.renames").`,
          );
        }
      }
    }
    let count = 0;
    let bytes = 0;
    let skipped = 0;
    const restored: string[] = [];
    const globalsErrors: string[] = [];
    for await (const entry of entries) {
      throwIfAborted(context.signal);
      if (entry.type !== undefined && entry.type !== 'file') continue;
      const body = counted(entry.body ?? emptyBody(), (n) => {
        bytes += n;
      });
      if (entry.path === GLOBALS_ENTRY) {
        const stderr = await this.#feed(
          'psql',
          ['-X', '-q', '--no-password', '-v', 'ON_ERROR_STOP=0', '-d', conninfo('postgres'), '-f', '-'],
          body,
          context.signal,
        );
        for (const line of stderr.split('\n')) {
          if (!/ERROR:/.test(line)) continue;
          if (/already exists/.test(line)) globalsErrors.push(line.trim());
          else throw new ComponentError(this.name, `restoring globals failed: ${stderr.trim()}`);
        }
        count += 1;
        continue;
      }
      const database = databaseOf(entry.path);
      if (database === undefined) continue;
      const name = target(database);
      if (existing.has(name)) {
        if (context.conflict === 'fail') {
          throw new ConflictError(
            name,
            `PostgreSQL database "${name}" already exists and the conflict policy is "fail".`,
          );
        }
        if (context.conflict === 'skip') {
          skipped += 1;
          continue;
        }
        await this.#admin(name, `DROP DATABASE ${ident(name)} WITH (FORCE)`);
      }
      const owner = owners.get(database);
      const ownerExists =
        typeof owner === 'string' &&
        (await this.#query('postgres', 'SELECT 1 FROM pg_roles WHERE rolname = $1', [owner])).length > 0;
      await this.#admin(
        name,
        `CREATE DATABASE ${ident(name)} TEMPLATE template0 ENCODING 'UTF8'${ownerExists ? ` OWNER ${ident(owner!)}` : ''}`,
      );
      existing.add(name);
      await this.#feed(
        'pg_restore',
        ['--no-password', '--exit-on-error', '-d', conninfo(name)],
        body,
        context.signal,
      );
      restored.push(name);
      count += 1;
    }
    return {
      entries: count,
      bytes,
      skipped,
      details: { databases: restored, toleratedGlobalsErrors: globalsErrors },
    };
  }

  /** Runs a statement on a maintenance database other than `name`. */
  async #admin(name: string, sql: string): Promise<void> {
    await this.#query(name === 'postgres' ? 'template1' : 'postgres', sql);
  }

  /** Feeds `body` to a client tool's stdin; resolves with its stderr, rejects on a non-zero exit. */
  async #feed(tool: string, args: string[], body: ByteStream, signal: AbortSignal): Promise<string> {
    throwIfAborted(signal);
    const child = spawn(this.#tool(tool), args, {
      env: this.#env(),
      stdio: ['pipe', 'ignore', 'pipe'],
      signal,
    });
    child.on('error', () => {});
    const stderr = collectStderr(child);
    const exit = exitOf(child);
    let writeError: unknown;
    await pipeline(Readable.from(body), child.stdin!).catch((error) => {
      writeError = error;
      child.stdin?.destroy();
    });
    const result = await exit;
    throwIfAborted(signal);
    if (result.code !== 0) {
      throw new ComponentError(
        this.name,
        `${tool} ${args.filter((arg) => arg !== '--no-password').join(' ')} failed (${result.signal ?? `exit ${result.code}`}): ${stderr().trim()}`,
      );
    }
    if (writeError) throw writeError;
    return stderr();
  }
}

function emptyBody(): ByteStream {
  return (async function* () {})();
}

async function* counted(body: ByteStream, add: (n: number) => void): ByteStream {
  for await (const chunk of body) {
    add(chunk.byteLength);
    yield chunk;
  }
}

function collectStderr(child: ChildProcess): () => string {
  let text = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    if (text.length < STDERR_LIMIT) text += chunk.slice(0, STDERR_LIMIT - text.length);
  });
  return () => text;
}

function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    child.once('close', (code, signal) => resolve({ code, signal }));
    child.once('error', () => resolve({ code: -1, signal: null }));
  });
}

/** Same as `new PostgresComponent(options)`. */
export function postgres(options: PostgresOptions): PostgresComponent {
  return new PostgresComponent(options);
}

/**
 * Builds the component from the CLI's JSON config (`{ "kind": "postgres", "host": …, "port": …, "user": … }`).
 *
 * @throws {ConfigError} naming an unknown or invalid field.
 */
export function fromConfig(config: Record<string, unknown>): PostgresComponent {
  checkComponentConfig(config, 'postgres', CONFIG_FIELDS);
  const { kind: _kind, ...options } = config;
  return new PostgresComponent(options as unknown as PostgresOptions);
}
