import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import {
  type BackupContext,
  BkError,
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
  type PreflightContext,
  type PreflightResult,
  type RestoreContext,
  type RestoreReport,
  refuseOlderTarget,
  throwIfAborted,
  UnsupportedError,
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
  /**
   * Backup: the databases to back up; default every database that is not a template and allows
   * connections. Restore: the databases of the backup to restore (names as backed up, before
   * `restore.renames`); default every database in the backup.
   */
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
  'database-level settings, grants and comments (ALTER DATABASE … SET, GRANT … ON DATABASE, COMMENT ON DATABASE); the owner is restored when the role exists, and a restored database gets a new OID',
  'the ICU collation version: databases are created with the target server’s ICU',
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

/** What the manifest records of each database (`details.databases[]`). */
interface DatabaseDetails {
  name: string;
  owner: string;
  encoding: string;
  /** `LC_COLLATE`; absent from manifests written before locales were recorded. */
  collate?: string;
  /** `LC_CTYPE`. */
  ctype?: string;
  /** `libc`, `icu` (PostgreSQL 15+) or `builtin` (17+). */
  localeProvider?: 'libc' | 'icu' | 'builtin';
  /** The ICU locale (`daticulocale`, `datlocale` from 17) or builtin locale; `null` with libc. */
  locale?: string | null;
  /** ICU tailoring rules (`daticurules`, PostgreSQL 16+). */
  icuRules?: string | null;
}

const PROVIDERS: Record<string, DatabaseDetails['localeProvider']> = { c: 'libc', i: 'icu', b: 'builtin' };

/** OIDs from here on belong to objects created after `initdb` (PostgreSQL's `FirstNormalObjectId`). */
const FIRST_NORMAL_OBJECT_ID = 16_384;

/** The start of every comment bk puts on the databases it creates while restoring. */
const MARKER = 'bk: ';

/** What the restore does with one database of the backup. */
interface DatabasePlan {
  /** The name in the backup. */
  source: string;
  /** The name on the target (after renames). */
  target: string;
  /** `create`: the target does not exist; `replace`: it does and is swapped out; `skip`: left alone. */
  action: 'create' | 'replace' | 'skip';
  /** Why an existing target is replaced although the conflict policy is not `overwrite`. */
  pristine?: boolean;
  recorded?: Partial<DatabaseDetails>;
}

/** What restore learns about the target server before it writes anything. */
interface TargetServer {
  /** `postgres`, or `template1` when the server has no `postgres` database. */
  maintenance: string;
  /** `server_version_num`, e.g. 150018. */
  version: number;
  existing: Set<string>;
}

/** A SQL string literal (standard_conforming_strings is on since PostgreSQL 9.1). */
function literal(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** The longest prefix of `text` that fits `bytes` UTF-8 bytes without splitting a character. */
function truncateBytes(text: string, bytes: number): string {
  let result = '';
  for (const character of text) {
    if (Buffer.byteLength(result + character) > bytes) break;
    result += character;
  }
  return result;
}

/** A fresh database name `bk_<role>_<8 hex>_<target, truncated to 63 bytes in all>`. */
function scratchName(role: 'restoring' | 'replaced', target: string): string {
  const prefix = `bk_${role}_${randomBytes(4).toString('hex')}_`;
  return prefix + truncateBytes(target, 63 - prefix.length);
}

function pgCode(error: unknown): string | undefined {
  for (let current = error; current; current = (current as Error).cause) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
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

  /**
   * A connected client on `database`.
   *
   * @throws {ComponentError} naming this component, the server and the database, with the
   *   driver's error (e.g. `password authentication failed`) as its cause.
   */
  async #connect(database: string): Promise<PgClient> {
    const client = new Client({
      host: this.options.host,
      port: this.options.port,
      user: this.options.user,
      password: this.options.password,
      database,
      connectionTimeoutMillis: 10_000,
    });
    // A server that goes away between queries must not crash the process.
    client.on('error', () => {});
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => {});
      throw this.#failure(`cannot connect to database "${database}"`, error);
    }
    return client;
  }

  #failure(doing: string, error: unknown): BkError {
    if (BkError.isInstance(error)) return error;
    return new ComponentError(
      this.name,
      `${doing} on PostgreSQL ${this.options.host}:${this.options.port} as "${this.options.user}": ${(error as Error).message}`,
      { cause: error },
    );
  }

  /** Runs one statement on `database` in a connection of its own. @throws {ComponentError} */
  async #query<T extends QueryResultRow>(database: string, sql: string, values?: unknown[]): Promise<T[]> {
    const client = await this.#connect(database);
    try {
      return (await client.query<T>(sql, values)).rows;
    } catch (error) {
      throw this.#failure(
        `${sql.trim().split(/\s+/).slice(0, 3).join(' ')} … failed in database "${database}"`,
        error,
      );
    } finally {
      await client.end().catch(() => {});
    }
  }

  async #listDatabases(database = 'postgres'): Promise<DatabaseDetails[]> {
    const rows = await this.#query<{
      name: string;
      owner: string;
      encoding: string;
      row: Record<string, unknown>;
    }>(
      database,
      `SELECT d.datname AS name, pg_get_userbyid(d.datdba) AS owner, pg_encoding_to_char(d.encoding) AS encoding,
              to_jsonb(d) AS row
         FROM pg_database d WHERE NOT d.datistemplate AND d.datallowconn ORDER BY d.datname`,
    );
    // to_jsonb reads whichever locale columns this server version has: datlocprovider and
    // daticulocale (15), daticurules (16), datlocale replacing daticulocale (17).
    return rows.map(({ name, owner, encoding, row }) => {
      const text = (key: string) => (typeof row[key] === 'string' ? (row[key] as string) : null);
      return {
        name,
        owner,
        encoding,
        collate: text('datcollate') ?? '',
        ctype: text('datctype') ?? '',
        localeProvider: PROVIDERS[text('datlocprovider') ?? 'c'] ?? 'libc',
        locale: text('datlocale') ?? text('daticulocale'),
        icuRules: text('daticurules'),
      };
    });
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
      throw this.#failure('cannot query the server', error);
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
      secrets: {
        captured: [
          {
            kind: 'password-hash',
            what: "every role's password (SCRAM-SHA-256 or MD5 hash) from pg_dumpall --globals-only",
            paths: [GLOBALS_ENTRY],
          },
          {
            kind: 'credentials',
            what: 'user mapping options of foreign servers (postgres_fdw passwords) and whatever the tables hold',
            paths: [`${DATABASE_PREFIX}*.dump`],
          },
        ],
        notCaptured: [
          {
            kind: 'private-key',
            what: "the server's TLS key (ssl_key_file) and pg_hba.conf: files outside the databases",
          },
        ],
      },
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
   * Compares the backup with the target before anything is written. `pg_restore` reads no dump
   * from a newer major `pg_dump` ("unsupported version in file header"): refused, and no force
   * helps — point `pgBin` at newer client tools. A dump of a newer major server than the target
   * may use what the target lacks: refused, forceable.
   */
  async preflight(context: PreflightContext): Promise<PreflightResult> {
    throwIfAborted(context.signal);
    let rows: Array<{ server_version: string }>;
    try {
      rows = await this.#query('postgres', 'SHOW server_version');
    } catch (error) {
      if (pgCode(error) !== '3D000') throw error;
      rows = await this.#query('template1', 'SHOW server_version');
    }
    const targetVersion = rows[0]?.server_version;
    const dumpedWith = context.component.info.details?.client;
    if (typeof dumpedWith === 'string') {
      let restoreTool: string;
      try {
        const { stdout } = await run(this.#tool('pg_restore'), ['--version'], { signal: context.signal });
        restoreTool = stdout.trim();
      } catch (error) {
        throw new ConfigError(
          `postgres component "${this.name}": cannot run ${this.#tool('pg_restore')}: ${(error as Error).message}`,
          { cause: error },
        );
      }
      const dumpMajor = majorVersion(dumpedWith.replace(/^[^\d]*/, ''));
      const toolMajor = majorVersion(restoreTool.replace(/^[^\d]*/, ''));
      if (dumpMajor !== undefined && toolMajor !== undefined && toolMajor < dumpMajor) {
        return {
          ...(targetVersion ? { targetVersion } : {}),
          refusal: {
            reason: `the dumps were written by "${dumpedWith}" and "${restoreTool}" cannot read them; point "pgBin" at PostgreSQL ${dumpMajor} client tools or newer`,
            forceable: false,
          },
        };
      }
    }
    const refusal = refuseOlderTarget('PostgreSQL', context.component.version, targetVersion, 'major');
    return { ...(targetVersion ? { targetVersion } : {}), ...(refusal ? { refusal } : {}) };
  }

  /**
   * Restores `globals.sql` with `psql` (errors such as `role "postgres" already exists` are
   * tolerated: existing roles keep existing and get the backup's attributes), then each
   * database of the backup (only those in `databases` when it is set) into
   * `restore.renames[db] ?? db`.
   *
   * A database is never restored in place: it is created under a scratch name
   * (`bk_restoring_…`, from `template0` with its recorded encoding, `LC_COLLATE`, `LC_CTYPE`,
   * locale provider and ICU locale, and its original owner when that role exists), filled by
   * `pg_restore --exit-on-error`, and only then swapped in, in one transaction: an existing
   * target is renamed aside (its sessions terminated) and the new database renamed into place;
   * the old one is dropped afterwards. A restore that fails or is killed part-way leaves every
   * database either as it was or fully restored. Statements run on `postgres`, or `template1`
   * when `postgres` itself is swapped or missing — never on a database being replaced.
   *
   * An existing target database: `fail` → `ConflictError` before anything changes; `skip` →
   * left alone (a `warning` names it); `overwrite` → replaced. A target `postgres` database that
   * holds nothing but what `initdb` put there (no object of its own) is no conflict: it is
   * replaced under every policy, so restoring into a fresh server works by default.
   *
   * @throws {ConfigError} when `databases` names a database the backup does not hold.
   * @throws {ConflictError} listing every existing target database, under `fail`.
   * @throws {UnsupportedError} when the target cannot create a database with its recorded
   *   encoding or locale (missing locale, no ICU, older server), before anything is written.
   * @throws {ComponentError} when the server or a client tool fails; the database being
   *   restored is left as it was.
   */
  async restore(entries: AsyncIterable<Entry>, context: RestoreContext): Promise<RestoreReport> {
    throwIfAborted(context.signal);
    const where = `postgres component "${this.name}"`;
    const recorded = (
      (context.component.info.details?.databases ?? []) as Array<Partial<DatabaseDetails>>
    ).filter((database) => typeof database.name === 'string');
    const byName = new Map(recorded.map((database) => [database.name!, database]));
    const selection = this.options.databases === undefined ? undefined : new Set(this.options.databases);
    for (const name of selection ?? []) {
      if (!byName.has(name)) {
        throw new ConfigError(
          `${where}: database ${JSON.stringify(name)} is not in backup ${context.backupName}, which holds ${[...byName.keys()].map((database) => JSON.stringify(database)).join(', ') || 'no databases'}; fix "databases".`,
        );
      }
    }
    const renames = this.options.restore?.renames ?? {};
    const server = await this.#inspectTarget(context);
    const plans = new Map<string, DatabasePlan>();
    for (const database of recorded) {
      if (selection && !selection.has(database.name!)) continue;
      plans.set(database.name!, await this.#plan(database.name!, renames, server, context, database));
    }
    const conflicts = [...plans.values()].filter(
      (plan) => plan.action === 'replace' && !plan.pristine && context.conflict === 'fail',
    );
    if (conflicts.length > 0) {
      const names = conflicts.map((plan) => `"${plan.target}"`).join(', ');
      throw new ConflictError(
        conflicts[0]!.target,
        `${where}: PostgreSQL database${conflicts.length > 1 ? 's' : ''} ${names} already exist${conflicts.length > 1 ? '' : 's'} on the target and the conflict policy is "fail"; nothing was restored. Restore with "overwrite" or "skip", under other names ("restore.renames"), or leave them out ("databases").`,
      );
    }
    await this.#checkLocales(
      [...plans.values()].filter((plan) => plan.action !== 'skip'),
      server,
      where,
    );
    const skippedNames = [...plans.values()]
      .filter((plan) => plan.action === 'skip')
      .map((plan) => plan.target);
    if (skippedNames.length > 0) {
      context.progress({
        type: 'warning',
        component: this.name,
        message: `conflict policy "skip": existing database${skippedNames.length > 1 ? 's' : ''} ${skippedNames.map((name) => `"${name}"`).join(', ')} left as ${skippedNames.length > 1 ? 'they are' : 'it is'}; ${skippedNames.length > 1 ? 'their' : 'its'} backed-up contents were not restored.`,
      });
    }
    let count = 0;
    let bytes = 0;
    let skipped = 0;
    const restored: string[] = [];
    const globalsErrors: string[] = [];
    const warnings: string[] = [];
    for await (const entry of entries) {
      throwIfAborted(context.signal);
      if (entry.type !== undefined && entry.type !== 'file') continue;
      if (entry.path === GLOBALS_ENTRY) {
        const body = counted(entry.body ?? emptyBody(), (n) => {
          bytes += n;
        });
        const stderr = await this.#feed(
          'psql',
          [
            '-X',
            '-q',
            '--no-password',
            '-v',
            'ON_ERROR_STOP=0',
            '-d',
            conninfo(server.maintenance),
            '-f',
            '-',
          ],
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
      if (selection && !selection.has(database)) continue;
      const plan = plans.get(database) ?? (await this.#plan(database, renames, server, context));
      if (plan.action === 'skip') {
        skipped += 1;
        continue;
      }
      if (plan.action === 'replace' && !plan.pristine && context.conflict === 'fail') {
        throw new ConflictError(
          plan.target,
          `${where}: PostgreSQL database "${plan.target}" already exists and the conflict policy is "fail".`,
        );
      }
      const body = counted(entry.body ?? emptyBody(), (n) => {
        bytes += n;
      });
      const warning = await this.#restoreDatabase(plan, body, server, context);
      if (warning) {
        warnings.push(warning);
        context.progress({ type: 'warning', component: this.name, message: warning });
      }
      server.existing.add(plan.target);
      restored.push(plan.target);
      count += 1;
    }
    return {
      entries: count,
      bytes,
      skipped,
      details: {
        databases: restored,
        skippedDatabases: skippedNames,
        toleratedGlobalsErrors: globalsErrors,
        ...(warnings.length > 0 ? { warnings } : {}),
      },
    };
  }

  /**
   * The maintenance database, the server version and the databases that exist; warns about
   * scratch databases left by an earlier restore that was killed.
   */
  async #inspectTarget(context: RestoreContext): Promise<TargetServer> {
    let maintenance = 'postgres';
    let rows: Array<{ version: string; names: string[]; leftovers: string[] | null }>;
    const sql = `SELECT current_setting('server_version_num') AS version,
                        array(SELECT datname::text FROM pg_database ORDER BY datname) AS names,
                        array(SELECT d.datname || ': ' || s.description FROM pg_database d
                                JOIN pg_shdescription s ON s.objoid = d.oid AND s.classoid = 'pg_database'::regclass
                               WHERE s.description LIKE $1 ORDER BY d.datname) AS leftovers`;
    try {
      rows = await this.#query(maintenance, sql, [`${MARKER}%`]);
    } catch (error) {
      // A server whose `postgres` database is gone can still be restored through template1.
      if (pgCode(error) !== '3D000') throw error;
      maintenance = 'template1';
      rows = await this.#query(maintenance, sql, [`${MARKER}%`]);
    }
    const [row] = rows;
    const leftovers = row?.leftovers ?? [];
    if (leftovers.length > 0) {
      context.progress({
        type: 'warning',
        component: this.name,
        message: `scratch databases left by an interrupted restore (drop them once no restore is running): ${leftovers.join('; ')}`,
      });
    }
    return { maintenance, version: Number(row?.version ?? 0), existing: new Set(row?.names ?? []) };
  }

  async #plan(
    source: string,
    renames: Record<string, string>,
    server: TargetServer,
    context: RestoreContext,
    recorded?: Partial<DatabaseDetails>,
  ): Promise<DatabasePlan> {
    const target = renames[source] ?? source;
    if (target === 'template0' || target === 'template1') {
      throw new ConfigError(
        `postgres component "${this.name}": cannot restore database "${source}" over the template database "${target}"; restore it under another name ("restore.renames").`,
      );
    }
    if (!server.existing.has(target)) return { source, target, action: 'create', recorded };
    if (target === 'postgres' && (await this.#ownObjects(target)).length === 0) {
      return { source, target, action: 'replace', pristine: true, recorded };
    }
    const action = context.conflict === 'skip' ? 'skip' : 'replace';
    return { source, target, action, recorded };
  }

  /**
   * The catalogs of `database` that hold objects created after `initdb` (OID ≥ 16384), with
   * their counts, e.g. `["pg_class: 3"]`. Temporary schemas, which sessions leave behind, do
   * not count. Empty for a database that holds nothing but the defaults.
   */
  async #ownObjects(database: string): Promise<string[]> {
    const client = await this.#connect(database);
    try {
      const catalogs = await client.query<{ name: string }>(
        `SELECT c.relname AS name FROM pg_class c
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'oid' AND NOT a.attisdropped
          WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind = 'r' AND NOT c.relisshared
          ORDER BY c.relname`,
      );
      const counts = catalogs.rows.map(
        ({ name }) =>
          `SELECT ${literal(name)} AS name, count(*) AS count FROM pg_catalog.${ident(name)} WHERE oid >= ${FIRST_NORMAL_OBJECT_ID}${
            name === 'pg_namespace' ? ` AND nspname !~ '^pg_(toast_)?temp_'` : ''
          }`,
      );
      counts.push(
        `SELECT 'pg_subscription', count(*) FROM pg_catalog.pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      );
      const result = await client.query<{ name: string; count: string }>(counts.join(' UNION ALL '));
      return result.rows.filter((row) => Number(row.count) > 0).map((row) => `${row.name}: ${row.count}`);
    } catch (error) {
      throw this.#failure(`cannot inspect database "${database}"`, error);
    } finally {
      await client.end().catch(() => {});
    }
  }

  /**
   * Refuses, before anything is written, databases whose recorded encoding or locale the
   * target cannot provide. Locales are tried with `CREATE COLLATION` in a transaction that is
   * rolled back, so the check leaves nothing behind.
   */
  async #checkLocales(plans: DatabasePlan[], server: TargetServer, where: string): Promise<void> {
    const problems: string[] = [];
    const client = await this.#connect(server.maintenance);
    try {
      const [icu] = (
        await client.query<{ available: boolean }>(
          server.version >= 100_000
            ? `SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collprovider = 'i') AS available`
            : 'SELECT false AS available',
        )
      ).rows;
      const tried = new Map<string, string | undefined>();
      const attempt = async (options: string): Promise<string | undefined> => {
        if (tried.has(options)) return tried.get(options);
        let failure: string | undefined;
        await client.query('BEGIN');
        try {
          await client.query(`CREATE COLLATION pg_temp.bk_locale_check (${options})`);
        } catch (error) {
          failure = (error as Error).message;
        } finally {
          await client.query('ROLLBACK');
        }
        tried.set(options, failure);
        return failure;
      };
      for (const plan of plans) {
        const recorded = plan.recorded;
        if (!recorded?.collate || !recorded.encoding) continue;
        const label = `database "${plan.source}" (encoding ${recorded.encoding}, LC_COLLATE "${recorded.collate}", LC_CTYPE "${recorded.ctype}", ${recorded.localeProvider ?? 'libc'}${recorded.locale ? ` locale "${recorded.locale}"` : ''})`;
        const [encoding] = (
          await client.query<{ id: number }>('SELECT pg_char_to_encoding($1) AS id', [recorded.encoding])
        ).rows;
        if ((encoding?.id ?? -1) < 0)
          problems.push(`${label}: the server does not know encoding ${recorded.encoding}`);
        for (const locale of new Set([recorded.collate, recorded.ctype ?? recorded.collate])) {
          if (/^(C|POSIX)$/i.test(locale)) continue;
          const failure = await attempt(`provider = libc, locale = ${literal(locale)}`);
          if (failure) problems.push(`${label}: ${failure}`);
        }
        const provider = recorded.localeProvider ?? 'libc';
        if (provider === 'icu') {
          if (server.version < 150_000)
            problems.push(`${label}: ICU as a database's locale provider needs PostgreSQL 15 or newer`);
          else if (!icu?.available) problems.push(`${label}: the server was built without ICU`);
          else if (recorded.icuRules && server.version < 160_000)
            problems.push(`${label}: ICU rules need PostgreSQL 16 or newer`);
          else {
            const failure = await attempt(
              `provider = icu, locale = ${literal(recorded.locale ?? 'und')}${recorded.icuRules ? `, rules = ${literal(recorded.icuRules)}` : ''}`,
            );
            if (failure) problems.push(`${label}: ${failure}`);
          }
        } else if (provider === 'builtin' && server.version < 170_000) {
          problems.push(`${label}: the builtin locale provider needs PostgreSQL 17 or newer`);
        }
      }
    } catch (error) {
      throw this.#failure('cannot check the locales of the target server', error);
    } finally {
      await client.end().catch(() => {});
    }
    if (problems.length > 0) {
      throw new UnsupportedError(
        `${where}: the target server cannot create ${problems.length > 1 ? 'these databases' : 'this database'} as ${problems.length > 1 ? 'they were' : 'it was'} backed up, so nothing was restored: ${problems.join('; ')}. Install the missing locales on the target server (then restart it), restore to a server that has them, or leave the database out ("databases").`,
      );
    }
  }

  /** The clauses of `CREATE DATABASE` that give `recorded`'s encoding and locale on this server. */
  #localeClauses(recorded: Partial<DatabaseDetails> | undefined, server: TargetServer): string {
    // Manifests written before locales were recorded: UTF8 with the server's default locale.
    if (!recorded?.collate || !recorded.encoding) return ` ENCODING 'UTF8'`;
    let clauses = ` ENCODING ${literal(recorded.encoding)} LC_COLLATE ${literal(recorded.collate)} LC_CTYPE ${literal(recorded.ctype ?? recorded.collate)}`;
    const provider = recorded.localeProvider ?? 'libc';
    // From 15 on, name the provider: template0 of a server initialised with ICU would pass its own on.
    if (server.version >= 150_000) clauses += ` LOCALE_PROVIDER ${provider}`;
    if (provider === 'icu') {
      clauses += ` ICU_LOCALE ${literal(recorded.locale ?? 'und')}`;
      if (recorded.icuRules) clauses += ` ICU_RULES ${literal(recorded.icuRules)}`;
    } else if (provider === 'builtin') {
      clauses += ` BUILTIN_LOCALE ${literal(recorded.locale ?? 'C')}`;
    }
    return clauses;
  }

  /**
   * Restores one database under a scratch name and swaps it in. Resolves with a warning when
   * the replaced database could not be dropped afterwards; the target is restored either way.
   */
  async #restoreDatabase(
    plan: DatabasePlan,
    body: ByteStream,
    server: TargetServer,
    context: RestoreContext,
  ): Promise<string | undefined> {
    const scratch = scratchName('restoring', plan.target);
    const owner = plan.recorded?.owner;
    const ownerExists =
      typeof owner === 'string' &&
      (await this.#query(server.maintenance, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [owner])).length >
        0;
    await this.#query(
      server.maintenance,
      `CREATE DATABASE ${ident(scratch)} TEMPLATE template0${this.#localeClauses(plan.recorded, server)}${ownerExists ? ` OWNER ${ident(owner!)}` : ''}`,
    );
    try {
      await this.#query(
        server.maintenance,
        `COMMENT ON DATABASE ${ident(scratch)} IS ${literal(`${MARKER}partial restore of database "${plan.target}" from backup ${context.backupName}, started ${new Date().toISOString()}`)}`,
      );
      await this.#feed(
        'pg_restore',
        ['--no-password', '--exit-on-error', '-d', conninfo(scratch)],
        body,
        context.signal,
      );
      throwIfAborted(context.signal);
      return await this.#swapIn(scratch, plan, server, context);
    } catch (error) {
      // The scratch database goes; the target was not touched (or the swap committed).
      await this.#dropDatabase(scratch, server).catch(() => {});
      throw error;
    }
  }

  /**
   * Renames `scratch` to the target in one transaction, renaming an existing target aside
   * first (after terminating its sessions); then drops the old database.
   */
  async #swapIn(
    scratch: string,
    plan: DatabasePlan,
    server: TargetServer,
    context: RestoreContext,
  ): Promise<string | undefined> {
    const where = `postgres component "${this.name}"`;
    // Never through the database being replaced: renaming needs it free of sessions, ours too.
    const via =
      plan.target === 'postgres' || plan.target === server.maintenance ? 'template1' : server.maintenance;
    let aside: string | undefined;
    for (let attempt = 1; ; attempt += 1) {
      const client = await this.#connect(via);
      aside = undefined;
      try {
        await client.query('BEGIN');
        const exists =
          (await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [plan.target])).rows.length > 0;
        if (exists) {
          if (plan.action !== 'replace' || (!plan.pristine && context.conflict !== 'overwrite')) {
            throw new ConflictError(
              plan.target,
              `${where}: PostgreSQL database "${plan.target}" appeared on the target during the restore and the conflict policy is "${context.conflict}"; it was left as it is.`,
            );
          }
          aside = scratchName('replaced', plan.target);
          await client.query(
            'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
            [plan.target],
          );
          await client.query(`ALTER DATABASE ${ident(plan.target)} RENAME TO ${ident(aside)}`);
          await client.query(
            `COMMENT ON DATABASE ${ident(aside)} IS ${literal(`${MARKER}database "${plan.target}" as it was before the restore of backup ${context.backupName}, replaced ${new Date().toISOString()}`)}`,
          );
        }
        await client.query(`ALTER DATABASE ${ident(scratch)} RENAME TO ${ident(plan.target)}`);
        await client.query(`COMMENT ON DATABASE ${ident(plan.target)} IS NULL`);
        await client.query('COMMIT');
        break;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        // 55006: a session connected between the terminate and the rename; try again.
        if (pgCode(error) === '55006' && attempt < 5) {
          await sleep(200 * attempt);
          continue;
        }
        throw this.#failure(`cannot swap the restored database "${plan.target}" into place`, error);
      } finally {
        await client.end().catch(() => {});
      }
    }
    if (aside === undefined) return undefined;
    try {
      await this.#dropDatabase(aside, server);
      return undefined;
    } catch (error) {
      return `database "${plan.target}" is restored, but its previous contents, renamed "${aside}", could not be dropped: ${(error as Error).message}`;
    }
  }

  /** Drops `name` (terminating its sessions) through a maintenance database. */
  async #dropDatabase(name: string, server: TargetServer): Promise<void> {
    if (server.version >= 130_000) {
      await this.#query(server.maintenance, `DROP DATABASE IF EXISTS ${ident(name)} WITH (FORCE)`);
      return;
    }
    await this.#query(
      server.maintenance,
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1',
      [name],
    );
    await this.#query(server.maintenance, `DROP DATABASE IF EXISTS ${ident(name)}`);
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
    // The body's own failure (a damaged entry) says more than the tool's complaint about the
    // input ending early.
    if (BkError.isInstance(writeError)) throw writeError;
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
