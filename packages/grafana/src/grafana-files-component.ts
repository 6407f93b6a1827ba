import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, isAbsolute, join, relative } from 'node:path';
import { pipeline } from 'node:stream/promises';
import {
  type BackupContext,
  type Component,
  ComponentError,
  type ComponentInfo,
  ConfigError,
  ConflictError,
  checkComponentName,
  checkNestedConfig,
  type Entry,
  fromBytes,
  isRecord,
  type OperationContext,
  type RestoreContext,
  type RestoreReport,
  safeEntryPath,
  throwIfAborted,
} from '@bk/core';

/**
 * Options of a {@link GrafanaFilesComponent}: a Grafana that keeps its state in SQLite.
 *
 * @example
 * const options: GrafanaFilesOptions = {
 *   database: '/var/lib/grafana/grafana.db',
 *   config: '/etc/grafana/grafana.ini',
 *   provisioning: '/etc/grafana/provisioning',
 * };
 */
export interface GrafanaFilesOptions {
  /** The component's name, unique within one backup; default `grafana`. */
  name?: string;
  /** Absolute path of Grafana's SQLite database (`[database] path`, usually `<data>/grafana.db`). */
  database: string;
  /** Absolute path of `grafana.ini` (holds `secret_key`, which the database's secrets need). */
  config?: string;
  /** Absolute path of the provisioning folder (`[paths] provisioning`). */
  provisioning?: string;
  /** Directory the consistent copy of the database is made in before it is archived; default the OS temp dir. */
  tempDir?: string;
  /**
   * Where a restore writes each part; default the paths backed up from. Restore into a stopped
   * Grafana only: it does not expect its database to be replaced under it.
   */
  restore?: { database?: string; config?: string; provisioning?: string };
}

/** Fields of a file-mode config entry for the `bk` CLI (`"kind": "grafana", "mode": "file"`). */
export const FILES_CONFIG_FIELDS = [
  'kind',
  'mode',
  'name',
  'database',
  'config',
  'provisioning',
  'tempDir',
  'restore',
];

/** Entries of a file-mode backup. */
export const DATABASE_ENTRY = 'database/grafana.db';
export const CONFIG_ENTRY = 'config/grafana.ini';
export const PROVISIONING_PREFIX = 'provisioning/';

const NOT_CAPTURED_FILES = [
  'plugins and their data (the plugins folder), rendered images, CSV exports, logs',
  'a database on MySQL or PostgreSQL (use the API mode, or @bk/postgres)',
];

type Sqlite = typeof import('node:sqlite');

/** `node:sqlite`, loaded on first use (it prints an experimental warning on Node 22). */
async function sqlite(): Promise<Sqlite> {
  return import('node:sqlite');
}

/**
 * Backs up a Grafana on SQLite as files: a consistent, point-in-time copy of `grafana.db` made
 * with SQLite's online backup API (in one step, under one read transaction, while Grafana keeps
 * running), `grafana.ini`, and the provisioning folder. Unlike the API mode this keeps data
 * source secrets, users, teams, permissions, version history — everything in the database —
 * encrypted with `grafana.ini`'s `secret_key`, which must be restored with it.
 *
 * @example
 * import { grafanaFiles } from '@bk/grafana';
 *
 * await backup({ storage, components: [grafanaFiles({ database: '/var/lib/grafana/grafana.db' })] });
 */
export class GrafanaFilesComponent implements Component {
  readonly kind = 'grafana' as const;
  readonly name: string;
  readonly options: Readonly<GrafanaFilesOptions>;

  /** @throws {ConfigError} naming the invalid option. */
  constructor(options: GrafanaFilesOptions) {
    if (!isRecord(options)) throw new ConfigError('grafana component: the options must be an object.');
    const name = options.name ?? 'grafana';
    if (typeof name !== 'string') throw new ConfigError('grafana component: "name" must be a string.');
    checkComponentName(name);
    const where = `grafana component "${name}"`;
    checkPath(options.database, 'database', where, true);
    checkPath(options.config, 'config', where);
    checkPath(options.provisioning, 'provisioning', where);
    checkPath(options.tempDir, 'tempDir', where);
    const restore = checkNestedConfig(
      options.restore,
      'restore',
      ['database', 'config', 'provisioning'],
      where,
    );
    for (const field of ['database', 'config', 'provisioning'])
      checkPath(restore?.[field], `restore.${field}`, where);
    this.name = name;
    this.options = { ...options, name };
  }

  /**
   * Checks the database opens and reads SQLite's and Grafana's schema versions.
   *
   * @throws {ComponentError} when the database cannot be opened or is not SQLite.
   */
  async describe(context: OperationContext): Promise<ComponentInfo> {
    throwIfAborted(context.signal);
    const { DatabaseSync } = await sqlite();
    let migrations = 0;
    let sqliteVersion = '';
    let journalMode = '';
    try {
      const database = openSource(DatabaseSync, this.options.database);
      try {
        sqliteVersion = String(database.prepare('select sqlite_version() as v').get()?.v ?? '');
        journalMode = String(database.prepare('pragma journal_mode').get()?.journal_mode ?? '');
        const table = database
          .prepare("select name from sqlite_master where type = 'table' and name = 'migration_log'")
          .get();
        if (table)
          migrations = Number(database.prepare('select count(*) as n from migration_log').get()?.n ?? 0);
      } finally {
        database.close();
      }
    } catch (error) {
      throw new ComponentError(
        this.name,
        `cannot read the SQLite database ${this.options.database}: ${(error as Error).message}`,
        { cause: error },
      );
    }
    return {
      version: `sqlite ${sqliteVersion}`,
      capabilities: {
        incremental: false,
        pointInTime: true,
        consistentSnapshot: true,
        restoreIntoExisting: true,
        selectiveRestore: false,
      },
      secrets: {
        captured: [
          {
            kind: 'password-hash',
            what: "grafana.db: users' password hashes, API keys and service-account tokens (hashed), data source and contact point secrets (encrypted with secret_key)",
            paths: [DATABASE_ENTRY],
          },
          ...(this.options.config === undefined
            ? []
            : [
                {
                  kind: 'private-key' as const,
                  what: "grafana.ini: secret_key, which decrypts the database's data source secrets, and any admin password or OAuth client secret set there",
                  paths: [CONFIG_ENTRY],
                },
              ]),
        ],
        notCaptured:
          this.options.config === undefined
            ? [
                {
                  kind: 'private-key' as const,
                  what: 'grafana.ini\'s secret_key (no "config" given): without it the data source secrets in grafana.db cannot be decrypted',
                },
              ]
            : [],
      },
      notCaptured: [
        ...NOT_CAPTURED_FILES,
        ...(this.options.config === undefined
          ? [
              'grafana.ini (no "config" given): its secret_key decrypts the database\'s data source secrets; keep it with this backup',
            ]
          : []),
        ...(this.options.provisioning === undefined
          ? ['the provisioning folder (no "provisioning" given)']
          : []),
      ],
      details: {
        format: 'file mode: SQLite online backup of grafana.db, grafana.ini, provisioning/',
        database: this.options.database,
        journalMode,
        migrations,
        secretKey:
          "data source secrets in grafana.db are encrypted with grafana.ini's secret_key: restore both together",
      },
    };
  }

  /**
   * `database/grafana.db` (a copy made with SQLite's backup API into `tempDir`, deleted after it
   * is archived), then `config/grafana.ini` and `provisioning/…` as they are on disk.
   */
  async *backup(context: BackupContext): AsyncIterable<Entry> {
    const { DatabaseSync, backup } = await sqlite();
    const directory = await mkdtemp(join(this.options.tempDir ?? tmpdir(), 'bk-grafana-'));
    try {
      const copy = join(directory, 'grafana.db');
      const source = openSource(DatabaseSync, this.options.database);
      try {
        // rate -1: every page in one step, under one read transaction: a point-in-time copy that
        // a busy writer cannot make restart for ever.
        await backup(source, copy, { rate: -1 });
      } catch (error) {
        throw new ComponentError(
          this.name,
          `the online backup of ${this.options.database} failed: ${(error as Error).message}`,
          { cause: error, retryable: true },
        );
      } finally {
        source.close();
      }
      throwIfAborted(context.signal);
      yield await fileEntry(DATABASE_ENTRY, copy);
      if (this.options.config !== undefined) yield await fileEntry(CONFIG_ENTRY, this.options.config);
      if (this.options.provisioning !== undefined) {
        for await (const path of walk(this.options.provisioning)) {
          throwIfAborted(context.signal);
          const relativePath = relative(this.options.provisioning, path).split('\\').join('/');
          yield await fileEntry(`${PROVISIONING_PREFIX}${relativePath}`, path);
        }
      }
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  }

  /**
   * Writes the database, `grafana.ini` and the provisioning files to the `restore` paths (default:
   * where they were backed up from). Each file is written beside its place and renamed over it
   * once complete; the database is checked with `PRAGMA integrity_check` first. An existing
   * file: `fail` → `ConflictError` (checked for every file before anything is written), `skip` →
   * kept, `overwrite` → replaced. Stop Grafana first.
   */
  async restore(entries: AsyncIterable<Entry>, context: RestoreContext): Promise<RestoreReport> {
    const targets = {
      database: this.options.restore?.database ?? this.options.database,
      config: this.options.restore?.config ?? this.options.config,
      provisioning: this.options.restore?.provisioning ?? this.options.provisioning,
    };
    const destinationOf = (path: string): string | undefined => {
      if (path === DATABASE_ENTRY) return targets.database;
      if (path === CONFIG_ENTRY) return targets.config;
      if (path.startsWith(PROVISIONING_PREFIX) && targets.provisioning !== undefined)
        return join(targets.provisioning, safeEntryPath(path.slice(PROVISIONING_PREFIX.length)));
      if (path.startsWith(PROVISIONING_PREFIX)) return undefined;
      throw new ComponentError(this.name, `unexpected entry "${path}" in the backup.`);
    };
    // Checked before anything is written: the database, grafana.ini, a non-empty provisioning folder.
    if (context.conflict === 'fail') {
      const existing: string[] = [];
      for (const path of [targets.database, targets.config]) {
        if (path !== undefined && (await exists(path))) existing.push(path);
      }
      if (targets.provisioning !== undefined && (await nonEmptyDirectory(targets.provisioning)))
        existing.push(targets.provisioning);
      if (existing.length > 0) {
        throw new ConflictError(
          existing[0]!,
          `${existing.join(', ')} already exist(s) and the conflict policy is "fail"; nothing was written (stop Grafana and restore with "overwrite", or choose other "restore" paths).`,
        );
      }
    }
    const skippedPaths = new Set<string>();
    const { DatabaseSync } = await sqlite();
    let count = 0;
    let bytes = 0;
    const written: string[] = [];
    const withoutTarget: string[] = [];
    for await (const entry of entries) {
      throwIfAborted(context.signal);
      if (entry.type !== undefined && entry.type !== 'file') continue;
      count += 1;
      const destination = destinationOf(entry.path);
      if (destination !== undefined && context.conflict === 'skip' && (await exists(destination)))
        skippedPaths.add(destination);
      if (destination === undefined || skippedPaths.has(destination)) {
        for await (const _ of entry.body ?? []) {
          // Read so core checks it; it is not written.
        }
        if (destination === undefined) withoutTarget.push(entry.path);
        continue;
      }
      await mkdir(dirname(destination), { recursive: true });
      const temporary = join(
        dirname(destination),
        `.${basename(destination)}.bk-${process.pid}-${Date.now()}`,
      );
      try {
        await pipeline(
          entry.body ?? fromBytes(new Uint8Array()),
          createWriteStream(temporary, { mode: entry.mode ?? 0o640 }),
          {
            signal: context.signal,
          },
        );
        bytes += (await stat(temporary)).size;
        if (entry.path === DATABASE_ENTRY) {
          const database = new DatabaseSync(temporary, { readOnly: true });
          try {
            const result = database.prepare('pragma integrity_check').all();
            if (result.length !== 1 || result[0]?.integrity_check !== 'ok')
              throw new ComponentError(
                this.name,
                `the restored database fails PRAGMA integrity_check: ${JSON.stringify(result).slice(0, 500)}`,
              );
          } finally {
            database.close();
          }
          // A journal or WAL left beside the old database would be replayed into the new one.
          for (const suffix of ['-journal', '-wal', '-shm'])
            await rm(`${destination}${suffix}`, { force: true });
        }
        await rename(temporary, destination);
        written.push(destination);
      } finally {
        await rm(temporary, { force: true });
      }
    }
    return {
      entries: count,
      bytes,
      skipped: skippedPaths.size + withoutTarget.length,
      details: { conflict: context.conflict, written, skipped: [...skippedPaths], withoutTarget },
    };
  }
}

/**
 * Opens the live database for reading. Read-write when the files allow it: a connection that
 * finds a hot journal left by a crashed writer must roll it back first, which a read-only one
 * cannot; read-only when bk may only read the files. bk itself writes nothing.
 */
function openSource(
  DatabaseSync: Sqlite['DatabaseSync'],
  path: string,
): InstanceType<Sqlite['DatabaseSync']> {
  try {
    const database = new DatabaseSync(path, { timeout: 30_000 });
    database.prepare('select count(*) from sqlite_master').get();
    return database;
  } catch {
    return new DatabaseSync(path, { readOnly: true, timeout: 30_000 });
  }
}

function checkPath(value: unknown, field: string, where: string, required = false): void {
  if (value === undefined && !required) return;
  if (typeof value !== 'string' || !isAbsolute(value))
    throw new ConfigError(`${where}: "${field}" must be an absolute path.`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function nonEmptyDirectory(path: string): Promise<boolean> {
  try {
    return (await readdir(path)).length > 0;
  } catch {
    return false;
  }
}

async function fileEntry(path: string, source: string): Promise<Entry> {
  const info = await stat(source);
  return {
    path,
    type: 'file',
    size: info.size,
    mode: info.mode & 0o777,
    mtime: info.mtime,
    body: createReadStream(source),
  };
}

/** Regular files under `root`, sorted, depth first (symlinks and other types are left out). */
async function* walk(root: string): AsyncIterable<string> {
  const children = (await readdir(root, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const child of children) {
    const path = join(root, child.name);
    if (child.isDirectory()) yield* walk(path);
    else if (child.isFile()) yield path;
  }
}

/** Same as `new GrafanaFilesComponent(options)`. */
export function grafanaFiles(options: GrafanaFilesOptions): GrafanaFilesComponent {
  return new GrafanaFilesComponent(options);
}
