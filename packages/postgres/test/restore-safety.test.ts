import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  backup,
  ComponentError,
  type ComponentInfo,
  ConfigError,
  ConflictError,
  type ConflictPolicy,
  type Entry,
  MemoryStorage,
  type ProgressEvent,
  type RestoreReport,
  type Restorer,
  restore,
  UnsupportedError,
} from '@bk/core';
import { type PostgresServer, startPostgres } from '@bk/test-servers';
import type { Client as PgClient, QueryResultRow } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PostgresOptions, postgres } from '../src/index.ts';

// Restore semantics that protect the target: the `postgres` database under every conflict
// policy, fresh servers, encodings and locales, `databases` selection, and restores killed
// part-way. Every server here is a real PostgreSQL 15 started for this file.

const run = promisify(execFile);
const Client = createRequire(import.meta.url)('pg/lib/client.js') as typeof PgClient;
const CHILD = fileURLToPath(new URL('./restore-child.ts', import.meta.url));

const DATABASES = ['ascii', 'crm', 'legacy', 'postgres', 'shop', 'sorted'];
const WORDS = ['Zebra', 'apple', 'Äpfel', 'zoo', 'Ärger', 'ähnlich', 'Bär', 'bar'];

let source: PostgresServer;
const servers: PostgresServer[] = [];
let sandbox: string;
const storage = new MemoryStorage();
let backupName: string;
/** Each database of the backup as the source held it when it was backed up. */
let complete: Map<string, string>;
/** The component's manifest record and every entry of the backup, read back once. */
let captured: { info: ComponentInfo; entries: Array<{ path: string; bytes: Buffer }> };

function connection(server: PostgresServer) {
  return { host: server.host, port: server.port, user: 'postgres', password: server.password };
}

async function psql(server: PostgresServer, database: string, ...statements: string[]): Promise<void> {
  const args = ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', server.host, '-p', String(server.port)];
  args.push('-U', 'postgres', '-d', database);
  for (const statement of statements) args.push('-c', statement);
  const env = { ...process.env, PGPASSWORD: server.password ?? '', PGCLIENTENCODING: 'UTF8' };
  await run(join(server.bin, 'psql'), args, { env });
}

async function query<T extends QueryResultRow>(
  server: PostgresServer,
  database: string,
  sql: string,
  values?: unknown[],
): Promise<T[]> {
  const client = new Client({ ...connection(server), database });
  await client.connect();
  try {
    return (await client.query<T>(sql, values)).rows;
  } finally {
    await client.end();
  }
}

/** Names of the databases that are not templates. */
async function databasesOf(server: PostgresServer): Promise<string[]> {
  const rows = await query<{ datname: string }>(
    server,
    'template1',
    'SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY datname',
  );
  return rows.map((row) => row.datname);
}

/**
 * One string per database: its encoding, locales, provider and owner, and per user table its
 * row count and a hash of its rows. One connection per database.
 */
async function fingerprint(server: PostgresServer, database: string): Promise<string> {
  const [settings] = await query<{ text: string }>(
    server,
    'template1',
    `SELECT concat_ws(' ', pg_encoding_to_char(encoding), datcollate, datctype, datlocprovider, daticulocale,
                      pg_get_userbyid(datdba)) AS text
       FROM pg_database WHERE datname = $1`,
    [database],
  );
  const client = new Client({ ...connection(server), database });
  await client.connect();
  try {
    const tables = await client.query<{ name: string }>(
      `SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables
        WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`,
    );
    const parts = [settings?.text ?? 'missing'];
    for (const { name } of tables.rows) {
      // md5 of each row's text hashes its bytes as stored, whatever the encoding.
      const { rows } = await client.query<{ n: string; h: string }>(
        `SELECT count(*) AS n, md5(coalesce(string_agg(md5(t::text), ',' ORDER BY md5(t::text)), '')) AS h FROM ${name} t`,
      );
      parts.push(`${name}=${rows[0]?.n}:${rows[0]?.h}`);
    }
    return parts.join(' | ');
  } finally {
    await client.end();
  }
}

async function fingerprints(server: PostgresServer): Promise<Map<string, string>> {
  const existing = await databasesOf(server);
  const result = new Map<string, string>();
  for (const database of DATABASES) {
    result.set(database, existing.includes(database) ? await fingerprint(server, database) : 'absent');
  }
  return result;
}

function component(server: PostgresServer, extra: Partial<PostgresOptions> = {}) {
  return postgres({ ...connection(server), ...extra });
}

async function restoreInto(
  server: PostgresServer,
  conflict?: ConflictPolicy,
  extra: Partial<PostgresOptions> = {},
  events: ProgressEvent[] = [],
) {
  return restore({
    storage,
    name: backupName,
    restorers: [component(server, extra)],
    conflict,
    onProgress: (event) => events.push(event),
  });
}

async function fresh(options: { password?: string } = {}): Promise<PostgresServer> {
  const server = await startPostgres(options);
  servers.push(server);
  return server;
}

/**
 * Entries as the restorer receives them; `stallAt`'s body delivers all but its last 16 bytes
 * (pg_restore has read the table of contents and connected), then waits for `release`.
 */
function entriesWithStall(
  stallAt: string,
  stalled: () => void,
  release: Promise<void>,
): AsyncIterable<Entry> {
  return (async function* () {
    for (const { path, bytes } of captured.entries) {
      const body = (async function* () {
        if (path !== stallAt) {
          yield bytes;
          return;
        }
        yield bytes.subarray(0, bytes.length - 16);
        stalled();
        await release;
        yield bytes.subarray(bytes.length - 16);
      })();
      yield { path, type: 'file' as const, body };
    }
  })();
}

function contextFor(
  conflict: ConflictPolicy,
  info: ComponentInfo = captured.info,
  events: ProgressEvent[] = [],
) {
  return {
    signal: new AbortController().signal,
    progress: (event: ProgressEvent) => events.push(event),
    backupName,
    component: { name: 'postgres', kind: 'postgres', info },
    conflict,
  };
}

/** PIDs of this process's children running `command`. */
async function childrenNamed(command: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    const match = /^\d+ \((.*)\) \S (\d+)/.exec(stat);
    if (match?.[1] === command && Number(match[2]) === process.pid) pids.push(Number(name));
  }
  return pids;
}

/** Waits until pg_restore is connected to a scratch database of the restore into `server`. */
async function waitForScratch(server: PostgresServer): Promise<string> {
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const rows = await query<{ datname: string }>(
      server,
      'template1',
      "SELECT datname FROM pg_stat_activity WHERE datname LIKE 'bk\\_restoring\\_%' AND application_name = 'pg_restore'",
    );
    if (rows[0]) return rows[0].datname;
    await sleep(50);
  }
  throw new Error('pg_restore never connected to a scratch database');
}

/** Every database is either exactly as before or exactly as backed up; returns which. */
async function expectBeforeOrComplete(
  server: PostgresServer,
  before: Map<string, string>,
): Promise<Record<string, 'before' | 'complete'>> {
  const now = await fingerprints(server);
  const states: Record<string, 'before' | 'complete'> = {};
  for (const database of DATABASES) {
    const state = now.get(database);
    if (state === complete.get(database)) states[database] = 'complete';
    else if (state === before.get(database)) states[database] = 'before';
    else expect.fail(`${database} is neither as before nor complete: ${state}`);
  }
  return states;
}

/** Leaves a trace in every database, so "as before" differs from "as backed up". */
async function dirty(server: PostgresServer, label: string): Promise<void> {
  for (const database of DATABASES) {
    await psql(
      server,
      database,
      `CREATE TABLE IF NOT EXISTS local_change (note text)`,
      `INSERT INTO local_change VALUES ('${label}')`,
    );
  }
}

beforeAll(async () => {
  source = await startPostgres();
  sandbox = await mkdtemp(join(tmpdir(), 'bk-pg-safety-'));
  await psql(
    source,
    'postgres',
    "CREATE ROLE app LOGIN PASSWORD 'secret'",
    'CREATE ROLE reader NOLOGIN',
    'CREATE DATABASE shop OWNER app',
    'CREATE DATABASE crm',
    "CREATE DATABASE legacy TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'",
    "CREATE DATABASE sorted TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'de-DE'",
    "CREATE DATABASE ascii TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'",
    'CREATE TABLE notes (id int PRIMARY KEY, body text)',
    "INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 50) g",
  );
  await psql(
    source,
    'shop',
    'CREATE TABLE items (id int PRIMARY KEY, name text)',
    "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 2000) g",
    'ALTER TABLE items OWNER TO app',
    'GRANT SELECT ON items TO reader',
  );
  await psql(
    source,
    'crm',
    'CREATE TABLE contacts (id int PRIMARY KEY, email text)',
    "INSERT INTO contacts SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 300) g",
  );
  await psql(
    source,
    'legacy',
    'CREATE TABLE words (w text)',
    "INSERT INTO words VALUES ('café'), ('naïve'), ('Øre')",
  );
  await psql(
    source,
    'sorted',
    'CREATE TABLE words (w text)',
    `INSERT INTO words VALUES ${WORDS.map((word) => `('${word}')`).join(', ')}`,
  );
  // In a SQL_ASCII database bytes above 127 are stored as they come: here 0xE9, no valid UTF-8.
  await psql(source, 'ascii', 'CREATE TABLE raw (v text)', "INSERT INTO raw VALUES (E'caf\\xE9'), ('plain')");
  const result = await backup({ storage, components: [postgres(connection(source))] });
  backupName = result.name;
  complete = await fingerprints(source);
  const entries: Array<{ path: string; bytes: Buffer }> = [];
  let info: ComponentInfo | undefined;
  const capturing: Restorer = {
    kind: 'postgres',
    name: 'postgres',
    async restore(stream: AsyncIterable<Entry>, context): Promise<RestoreReport> {
      info = context.component.info;
      for await (const entry of stream) {
        const chunks: Uint8Array[] = [];
        for await (const chunk of entry.body ?? []) chunks.push(chunk);
        entries.push({ path: entry.path, bytes: Buffer.concat(chunks) });
      }
      return { entries: entries.length, bytes: 0 };
    },
  };
  await restore({ storage, name: backupName, restorers: [capturing] });
  captured = { info: info!, entries };
}, 120_000);

afterAll(async () => {
  await Promise.all([source?.stop(), ...servers.map((server) => server.stop())]);
  if (sandbox) await rm(sandbox, { recursive: true, force: true });
});

describe('@bk/postgres restores without damaging the target (real PostgreSQL 15)', () => {
  it('records every database with its encoding, locales and provider, postgres included', () => {
    const recorded = captured.info.details?.databases as Array<Record<string, unknown>>;
    expect(recorded.map((database) => database.name)).toEqual(DATABASES);
    const byName = Object.fromEntries(recorded.map((database) => [database.name, database]));
    expect(byName.legacy).toMatchObject({
      encoding: 'LATIN1',
      collate: 'C',
      ctype: 'C',
      localeProvider: 'libc',
    });
    expect(byName.sorted).toMatchObject({ encoding: 'UTF8', localeProvider: 'icu', locale: 'de-DE' });
    expect(byName.ascii).toMatchObject({ encoding: 'SQL_ASCII', collate: 'C', localeProvider: 'libc' });
    expect(captured.entries.map((entry) => entry.path)).toEqual([
      'globals.sql',
      ...DATABASES.map((database) => `databases/${database}.dump`),
    ]);
  });

  it('restores everything into a fresh server by default, with encodings, collations and providers', async () => {
    const target = await fresh();
    const result = await restoreInto(target);
    expect(result.components.postgres?.details?.databases).toEqual(DATABASES);
    expect(await fingerprints(target)).toEqual(complete);
    expect(await databasesOf(target)).toEqual(DATABASES);
    const [legacy] = await query<{ w: string; bytes: number }>(
      target,
      'legacy',
      "SELECT w, octet_length(w) AS bytes FROM words WHERE w LIKE 'caf%'",
    );
    expect(legacy).toEqual({ w: 'café', bytes: 4 });
    const order = (server: PostgresServer) =>
      query<{ w: string }>(server, 'sorted', 'SELECT w FROM words ORDER BY w').then((rows) =>
        rows.map((row) => row.w),
      );
    const icuOrder = await order(target);
    expect(icuOrder).toEqual(await order(source));
    // de-DE: umlauts sort with their base letter, case second; C puts 'Bär' and 'Zebra' first, umlauts last.
    expect(icuOrder).toEqual(['ähnlich', 'Äpfel', 'apple', 'Ärger', 'bar', 'Bär', 'Zebra', 'zoo']);
    const [raw] = await query<{ hex: string }>(
      target,
      'ascii',
      "SELECT encode(convert_to(v, 'SQL_ASCII'), 'hex') AS hex FROM raw WHERE v LIKE 'caf%'",
    );
    expect(raw?.hex).toBe('636166e9');
    expect(await query(target, 'postgres', 'SELECT count(*)::int AS n FROM notes')).toEqual([{ n: 50 }]);
  });

  it('restores into fresh servers with skip and with overwrite too', async () => {
    const [skipping, overwriting] = await Promise.all([fresh({ password: 'pw-fresh' }), fresh()]);
    const events: ProgressEvent[] = [];
    const skipped = await restoreInto(skipping, 'skip', {}, events);
    expect(skipped.components.postgres?.skipped).toBe(0);
    expect(events.filter((event) => event.type === 'warning')).toEqual([]);
    await restoreInto(overwriting, 'overwrite');
    expect(await fingerprints(skipping)).toEqual(complete);
    expect(await fingerprints(overwriting)).toEqual(complete);
  });

  it('refuses with fail on the same server, listing every existing database, before changing anything', async () => {
    await psql(source, 'postgres', 'ALTER ROLE reader LOGIN');
    const before = await fingerprints(source);
    const failure = await restoreInto(source).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ConflictError);
    for (const database of DATABASES) expect((failure as Error).message).toContain(`"${database}"`);
    expect(await fingerprints(source)).toEqual(before);
    const [reader] = await query<{ rolcanlogin: boolean }>(
      source,
      'postgres',
      "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'reader'",
    );
    expect(reader?.rolcanlogin).toBe(true);
    await psql(source, 'postgres', 'ALTER ROLE reader NOLOGIN');
  });

  it('skips every existing database on the same server, postgres with a warning', async () => {
    await dirty(source, 'skip');
    const before = await fingerprints(source);
    const events: ProgressEvent[] = [];
    const result = await restoreInto(source, 'skip', {}, events);
    expect(result.components.postgres?.skipped).toBe(DATABASES.length);
    expect(await fingerprints(source)).toEqual(before);
    const warnings = events.filter((event) => event.type === 'warning').map((event) => event.message);
    expect(warnings.join('\n')).toMatch(/"postgres".*not restored/);
  });

  it('overwrites every database on the same server, postgres included, never connecting through it', async () => {
    const oids = await query<{ datname: string; oid: number }>(
      source,
      'template1',
      'SELECT datname, oid::int FROM pg_database',
    );
    // A session on postgres, as monitoring keeps one; it is terminated by the swap.
    const session = new Client({ ...connection(source), database: 'postgres' });
    session.on('error', () => {});
    await session.connect();
    await restoreInto(source, 'overwrite');
    await session.end().catch(() => {});
    expect(await fingerprints(source)).toEqual(complete);
    expect(await databasesOf(source)).toEqual(DATABASES);
    const after = await query<{ datname: string; oid: number }>(
      source,
      'template1',
      'SELECT datname, oid::int FROM pg_database',
    );
    for (const database of DATABASES) {
      expect(after.find((row) => row.datname === database)?.oid).not.toBe(
        oids.find((row) => row.datname === database)?.oid,
      );
    }
  });

  it('restores only the databases selected with "databases", and refuses one the backup lacks', async () => {
    const before = await databasesOf(source);
    const renames = { crm: 'crm_selected', legacy: 'legacy_selected' };
    const result = await restoreInto(source, undefined, {
      databases: ['crm', 'legacy'],
      restore: { renames },
    });
    expect(result.components.postgres?.details?.databases).toEqual(['crm_selected', 'legacy_selected']);
    expect(await databasesOf(source)).toEqual([...before, 'crm_selected', 'legacy_selected'].sort());
    expect((await fingerprint(source, 'legacy_selected')).split(' | ').slice(1)).toEqual(
      complete.get('legacy')!.split(' | ').slice(1),
    );
    const [legacy] = await query<{ encoding: string }>(
      source,
      'template1',
      "SELECT pg_encoding_to_char(encoding) AS encoding FROM pg_database WHERE datname = 'legacy_selected'",
    );
    expect(legacy?.encoding).toBe('LATIN1');
    await expect(restoreInto(source, 'overwrite', { databases: ['crm', 'nope'] })).rejects.toBeInstanceOf(
      ConfigError,
    );
    expect(await databasesOf(source)).toEqual([...before, 'crm_selected', 'legacy_selected'].sort());
    await psql(source, 'postgres', 'DROP DATABASE crm_selected', 'DROP DATABASE legacy_selected');
  });

  it('leaves every database as before or complete when pg_restore is killed part-way', async () => {
    const target = await fresh();
    await restoreInto(target);
    await dirty(target, 'before the killed restore');
    const before = await fingerprints(target);
    let stalled!: () => void;
    const stall = new Promise<void>((resolve) => {
      stalled = resolve;
    });
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const restoring = component(target).restore(
      entriesWithStall('databases/postgres.dump', stalled, released),
      contextFor('overwrite'),
    );
    restoring.catch(() => {});
    await stall;
    await waitForScratch(target);
    const [pid] = await childrenNamed('pg_restore');
    expect(pid).toBeDefined();
    process.kill(pid!, 'SIGKILL');
    release();
    const failure = await restoring.catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ComponentError);
    expect((failure as Error).message).toMatch(/^postgres: pg_restore/);
    expect(await expectBeforeOrComplete(target, before)).toEqual({
      ascii: 'complete',
      crm: 'complete',
      legacy: 'complete',
      postgres: 'before',
      shop: 'before',
      sorted: 'before',
    });
    // The scratch database went with the failure.
    expect(await databasesOf(target)).toEqual(DATABASES);
  });

  it('leaves every database as before or complete when the restoring process is killed, and says what it left', async () => {
    const target = await fresh();
    await restoreInto(target);
    await dirty(target, 'before the killed process');
    const before = await fingerprints(target);
    const files: Array<{ path: string; file: string }> = [];
    for (const [index, { path, bytes }] of captured.entries.entries()) {
      const file = join(sandbox, `entry-${index}`);
      await writeFile(file, bytes);
      files.push({ path, file });
    }
    const spec = join(sandbox, 'spec.json');
    await writeFile(
      spec,
      JSON.stringify({
        options: connection(target),
        info: captured.info,
        backupName,
        conflict: 'overwrite',
        entries: files,
        stallAt: 'databases/shop.dump',
      }),
    );
    const flags = ['--conditions=@bk/source', '--experimental-transform-types', '--no-warnings'];
    const child = spawn(process.execPath, [...flags, CHILD, spec], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const exited = new Promise((resolve) => child.on('close', resolve));
    for (let waited = 0; !output.includes('stalled'); waited += 1) {
      if (waited > 600 || child.exitCode !== null) throw new Error(`the child did not stall: ${output}`);
      await sleep(50);
    }
    const scratch = await waitForScratch(target);
    child.kill('SIGKILL');
    await exited;
    // pg_restore, orphaned, reads the end of its input and exits.
    for (let attempt = 0; attempt < 100; attempt += 1) {
      const busy = await query(
        target,
        'template1',
        "SELECT 1 FROM pg_stat_activity WHERE application_name = 'pg_restore'",
      );
      if (busy.length === 0) break;
      await sleep(50);
    }
    expect(await expectBeforeOrComplete(target, before)).toEqual({
      ascii: 'complete',
      crm: 'complete',
      legacy: 'complete',
      postgres: 'complete',
      shop: 'before',
      sorted: 'before',
    });
    expect(await databasesOf(target)).toEqual([...DATABASES, scratch].sort());
    // The next restore names the scratch database it finds, and completes.
    const events: ProgressEvent[] = [];
    await restoreInto(target, 'overwrite', {}, events);
    const warnings = events.filter((event) => event.type === 'warning').map((event) => event.message);
    expect(warnings.join('\n')).toContain(scratch);
    expect(await fingerprints(target)).toEqual(complete);
    await psql(target, 'postgres', `DROP DATABASE "${scratch}"`);
  });

  it('refuses, before writing anything, databases whose locale the target cannot provide', async () => {
    const target = servers[0]!;
    const before = await fingerprints(target);
    const info: ComponentInfo = {
      ...captured.info,
      details: {
        databases: [
          {
            name: 'lost',
            owner: 'postgres',
            encoding: 'LATIN1',
            collate: 'de_DE.ISO-8859-1',
            ctype: 'de_DE.ISO-8859-1',
            localeProvider: 'libc',
            locale: null,
          },
          {
            name: 'ruled',
            owner: 'postgres',
            encoding: 'UTF8',
            collate: 'C',
            ctype: 'C',
            localeProvider: 'icu',
            locale: 'de-DE',
            icuRules: '&a < g',
          },
        ],
      },
    };
    const entries = (async function* (): AsyncIterable<Entry> {
      yield {
        path: 'globals.sql',
        type: 'file',
        body: [Buffer.from('CREATE ROLE must_not_appear;\n')] as unknown as AsyncIterable<Uint8Array>,
      };
      yield {
        path: 'databases/lost.dump',
        type: 'file',
        body: [Buffer.from('PGDMP')] as unknown as AsyncIterable<Uint8Array>,
      };
    })();
    const failure = await component(target)
      .restore(entries, contextFor('fail', info))
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(UnsupportedError);
    const message = (failure as Error).message;
    expect(message).toMatch(/^postgres component "postgres": /);
    expect(message).toContain('de_DE.ISO-8859-1');
    expect(message).toContain('ICU rules need PostgreSQL 16');
    expect(
      await query(target, 'postgres', "SELECT 1 FROM pg_roles WHERE rolname = 'must_not_appear'"),
    ).toEqual([]);
    expect(await fingerprints(target)).toEqual(before);
    expect(await databasesOf(target)).toEqual(DATABASES);
  });

  it('creates databases of manifests without recorded locales as before: UTF8, the server’s locale', async () => {
    const target = servers[0]!;
    const dump = captured.entries.find((entry) => entry.path === 'databases/crm.dump')!;
    const info: ComponentInfo = {
      ...captured.info,
      details: { databases: [{ name: 'crm', owner: 'postgres', encoding: 'UTF8' }] },
    };
    const report = await component(target, { restore: { renames: { crm: 'crm_old_manifest' } } }).restore(
      (async function* (): AsyncIterable<Entry> {
        yield {
          path: dump.path,
          type: 'file',
          body: (async function* () {
            yield dump.bytes;
          })(),
        };
      })(),
      contextFor('fail', info),
    );
    expect(report.details?.databases).toEqual(['crm_old_manifest']);
    expect((await fingerprint(target, 'crm_old_manifest')).split(' | ')[0]).toBe(
      'UTF8 C.UTF-8 C.UTF-8 c postgres',
    );
    await psql(target, 'postgres', 'DROP DATABASE crm_old_manifest');
  });

  it('names the component when the password is wrong, on restore as on backup', async () => {
    const guarded = servers.find((server) => server.password === 'pw-fresh')!;
    const wrong = { password: 'not-the-password' };
    const restoring = await restoreInto(guarded, 'overwrite', wrong).catch((error: unknown) => error);
    expect(restoring).toBeInstanceOf(ComponentError);
    expect((restoring as Error).message).toMatch(/^postgres: .*password authentication failed/);
    const backingUp = await backup({
      storage: new MemoryStorage(),
      components: [component(guarded, wrong)],
    }).catch((error: unknown) => error);
    expect(String((backingUp as Error).message)).toMatch(/postgres: .*password authentication failed/);
  });

  it('reads PGPASSWORD from the environment when the config has no password, for queries and tools', async () => {
    const guarded = servers.find((server) => server.password === 'pw-fresh')!;
    const saved = process.env.PGPASSWORD;
    process.env.PGPASSWORD = 'pw-fresh';
    try {
      const result = await backup({
        storage: new MemoryStorage(),
        components: [
          postgres({ host: guarded.host, port: guarded.port, user: 'postgres', databases: ['crm'] }),
        ],
      });
      expect(result.manifest.components[0]?.stats.entries).toBe(2);
    } finally {
      if (saved === undefined) delete process.env.PGPASSWORD;
      else process.env.PGPASSWORD = saved;
    }
  });
});
