import { execFile } from 'node:child_process';
import { chmod, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  backup,
  ComponentError,
  ConfigError,
  ConflictError,
  type Entry,
  inspect,
  MemoryStorage,
  type RestoreReport,
  type Restorer,
  restore,
  VersionMismatchError,
} from '@bk/core';
import { type PostgresServer, startPostgres } from '@bk/test-servers';
import { claimedVersion } from '@bk/test-suite';
import type { Client as PgClient, QueryResultRow } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromConfig, PostgresComponent, postgres } from '../src/index.ts';

const run = promisify(execFile);
const Client = createRequire(import.meta.url)('pg/lib/client.js') as typeof PgClient;

let source: PostgresServer;
let target: PostgresServer;
let sandbox: string;
const storage = new MemoryStorage();
let backupName: string;

const TABLES: Record<string, string[]> = { shop: ['items', 'orders'], crm: ['contacts'] };

async function psql(server: PostgresServer, database: string, ...statements: string[]): Promise<void> {
  const args = [
    '-X',
    '-q',
    '-v',
    'ON_ERROR_STOP=1',
    '-h',
    server.host,
    '-p',
    String(server.port),
    '-U',
    'postgres',
  ];
  args.push('-d', database);
  for (const statement of statements) args.push('-c', statement);
  await run(join(server.bin, 'psql'), args);
}

async function query<T extends QueryResultRow>(
  server: PostgresServer,
  database: string,
  sql: string,
): Promise<T[]> {
  const client = new Client({ host: server.host, port: server.port, user: 'postgres', database });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

async function rows(server: PostgresServer, database: string, table: string): Promise<unknown[]> {
  return query(server, database, `SELECT * FROM ${table} ORDER BY id`);
}

function component(
  server: PostgresServer,
  extra: Partial<ConstructorParameters<typeof PostgresComponent>[0]> = {},
) {
  return postgres({
    host: server.host,
    port: server.port,
    user: 'postgres',
    databases: ['shop', 'crm'],
    ...extra,
  });
}

beforeAll(async () => {
  [source, target] = await Promise.all([startPostgres(), startPostgres()]);
  sandbox = await mkdtemp(join(tmpdir(), 'bk-pg-test-'));
  await psql(
    source,
    'postgres',
    "CREATE ROLE app LOGIN PASSWORD 'secret'",
    'CREATE ROLE reader NOLOGIN',
    'CREATE DATABASE shop OWNER app',
    'CREATE DATABASE crm',
  );
  await psql(
    source,
    'shop',
    'CREATE TABLE items (id int PRIMARY KEY, name text, price numeric)',
    "INSERT INTO items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 1000) g",
    'CREATE TABLE orders (id serial PRIMARY KEY, item int REFERENCES items(id), note text)',
    "INSERT INTO orders (item, note) SELECT g % 1000 + 1, repeat('x', g % 50) FROM generate_series(1, 500) g",
    'ALTER TABLE items OWNER TO app',
    'GRANT SELECT ON items TO reader',
  );
  await psql(
    source,
    'crm',
    'CREATE TABLE contacts (id int PRIMARY KEY, email text)',
    "INSERT INTO contacts SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 300) g",
  );
  const result = await backup({ storage, components: [component(source)] });
  backupName = result.name;
  expect(result.manifest.components[0]?.version).toMatch(/^15\./);
});

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  if (sandbox) await rm(sandbox, { recursive: true, force: true });
});

async function expectSameData(restored: PostgresServer, renames: Record<string, string> = {}): Promise<void> {
  for (const [database, tables] of Object.entries(TABLES)) {
    for (const table of tables) {
      const want = await rows(source, database, table);
      expect(want.length).toBeGreaterThan(0);
      expect(await rows(restored, renames[database] ?? database, table), `${database}.${table}`).toEqual(
        want,
      );
    }
  }
}

describe('@bk/postgres against real PostgreSQL 15', () => {
  it('restores databases, roles and grants into a fresh server', async () => {
    const result = await restore({ storage, name: backupName, restorers: [component(target)] });
    expect(result.name).toBe(backupName);
    await expectSameData(target);
    const roles = await query<{ rolname: string; rolcanlogin: boolean }>(
      target,
      'postgres',
      "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname IN ('app', 'reader') ORDER BY rolname",
    );
    expect(roles).toEqual([
      { rolname: 'app', rolcanlogin: true },
      { rolname: 'reader', rolcanlogin: false },
    ]);
    const [owner] = await query<{ owner: string }>(
      target,
      'postgres',
      "SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = 'shop'",
    );
    expect(owner?.owner).toBe('app');
    const grants = await query(
      target,
      'shop',
      "SELECT privilege_type FROM information_schema.role_table_grants WHERE grantee = 'reader' AND table_name = 'items'",
    );
    expect(grants).toEqual([{ privilege_type: 'SELECT' }]);
  });

  it('stores pg_dump -Fc archives that pg_restore -l lists', async () => {
    const captured = new Map<string, Buffer>();
    const capturing: Restorer = {
      kind: 'postgres',
      name: 'postgres',
      async restore(entries: AsyncIterable<Entry>): Promise<RestoreReport> {
        for await (const entry of entries) {
          const chunks: Uint8Array[] = [];
          for await (const chunk of entry.body ?? []) chunks.push(chunk);
          captured.set(entry.path, Buffer.concat(chunks));
        }
        return { entries: captured.size, bytes: 0 };
      },
    };
    await restore({ storage, name: backupName, restorers: [capturing] });
    expect([...captured.keys()]).toEqual(['globals.sql', 'databases/shop.dump', 'databases/crm.dump']);
    expect(captured.get('globals.sql')?.toString()).toContain('CREATE ROLE app');
    const dump = captured.get('databases/shop.dump')!;
    expect(dump.subarray(0, 5).toString()).toBe('PGDMP');
    const file = join(sandbox, 'shop.dump');
    await writeFile(file, dump);
    const { stdout } = await run(join(source.bin, 'pg_restore'), ['-l', file]);
    expect(stdout).toMatch(/TABLE public items app/);
    expect(stdout).toMatch(/TABLE DATA public orders/);
  });

  it('refuses existing databases with conflict fail, before changing anything', async () => {
    await expect(
      restore({ storage, name: backupName, restorers: [component(target)] }),
    ).rejects.toBeInstanceOf(ConflictError);
  });

  it('restores under other names', async () => {
    const renames = { shop: 'shop_copy', crm: 'crm_copy' };
    await restore({ storage, name: backupName, restorers: [component(target, { restore: { renames } })] });
    await expectSameData(target, renames);
  });

  it('overwrites an existing database with conflict overwrite, and leaves it with skip', async () => {
    await psql(target, 'crm', 'DELETE FROM contacts WHERE id > 10');
    await restore({ storage, name: backupName, restorers: [component(target)], conflict: 'skip' });
    expect(await rows(target, 'crm', 'contacts')).toHaveLength(10);
    await restore({ storage, name: backupName, restorers: [component(target)], conflict: 'overwrite' });
    await expectSameData(target);
  });

  it('describe lists every non-template database by default', async () => {
    const all = postgres({ host: source.host, port: source.port, user: 'postgres' });
    const info = await all.describe({ signal: new AbortController().signal, progress: () => {} });
    const names = ((info.details?.databases ?? []) as Array<{ name: string }>).map(
      (database) => database.name,
    );
    expect(names).toEqual(['crm', 'postgres', 'shop']);
    expect(info.notCaptured?.length).toBeGreaterThan(0);
  });

  it('fails fast when the client tools are older than the server', async () => {
    const bin = join(sandbox, 'old-bin');
    await run('mkdir', ['-p', bin]);
    await writeFile(join(bin, 'pg_dump'), '#!/bin/sh\necho "pg_dump (PostgreSQL) 14.9"\n');
    await chmod(join(bin, 'pg_dump'), 0o755);
    await expect(
      backup({ storage: new MemoryStorage(), components: [component(source, { pgBin: bin })] }),
    ).rejects.toBeInstanceOf(ConfigError);
  });

  it('refuses a dump of a newer server before writing anything, and restores it with force', async () => {
    const other = new MemoryStorage();
    const newer = await backup({
      storage: other,
      components: [
        claimedVersion(component(source, { databases: ['crm'] }), (info) => ({ ...info, version: '16.4' })),
      ],
    });
    const renames = { crm: 'crm_from_16' };
    const restorer = () => component(target, { databases: ['crm'], restore: { renames } });
    const refused = await restore({ storage: other, name: newer.name, restorers: [restorer()] }).catch(
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(VersionMismatchError);
    expect((refused as VersionMismatchError).targetVersion).toMatch(/^15\./);
    expect((refused as Error).message).toMatch(
      /^postgres: refusing to restore backup_\S+ \(backed up from version 16\.4\) into the target's version 15\.[^:]+: PostgreSQL does not take data from a newer major version; restore into PostgreSQL 16 or newer\. Nothing was written\. Restore with --force to try anyway\.$/,
    );
    expect(
      await query(target, 'postgres', "SELECT 1 FROM pg_database WHERE datname = 'crm_from_16'"),
    ).toEqual([]);
    const forced = await restore({ storage: other, name: newer.name, restorers: [restorer()], force: true });
    expect(forced.preflight.postgres?.targetVersion).toMatch(/^15\./);
    expect(await rows(target, 'crm_from_16', 'contacts')).toEqual(await rows(source, 'crm', 'contacts'));
  });

  it('refuses a dump that the local pg_restore is too old to read, even with force', async () => {
    const bin = join(sandbox, 'old-restore-bin');
    await run('mkdir', ['-p', bin]);
    await writeFile(join(bin, 'pg_restore'), '#!/bin/sh\necho "pg_restore (PostgreSQL) 14.9"\n');
    await chmod(join(bin, 'pg_restore'), 0o755);
    for (const force of [false, true]) {
      const refused = await restore({
        storage,
        name: backupName,
        restorers: [
          component(target, { pgBin: bin, restore: { renames: { shop: 'shop_old', crm: 'crm_old' } } }),
        ],
        force,
      }).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(VersionMismatchError);
      expect((refused as VersionMismatchError).forceable).toBe(false);
      expect((refused as Error).message).toContain(
        '"pg_restore (PostgreSQL) 14.9" cannot read them; point "pgBin" at PostgreSQL 15 client tools or newer',
      );
      expect((refused as Error).message).not.toContain('--force');
    }
    expect(
      await query(target, 'postgres', "SELECT 1 FROM pg_database WHERE datname IN ('shop_old', 'crm_old')"),
    ).toEqual([]);
  });

  it('records the role password hashes it captures as secrets', async () => {
    const [recorded] = (await inspect({ storage, name: backupName })).components;
    expect(recorded?.info.secrets?.captured.map((note) => [note.kind, note.paths])).toEqual([
      ['password-hash', ['globals.sql']],
      ['credentials', ['databases/*.dump']],
    ]);
  });

  it('fails the entry with the tool’s stderr when pg_dump fails', async () => {
    const bin = join(sandbox, 'failing-bin');
    await run('mkdir', ['-p', bin]);
    await symlink(join(source.bin, 'pg_dumpall'), join(bin, 'pg_dumpall'));
    await writeFile(
      join(bin, 'pg_dump'),
      '#!/bin/sh\nif [ "$1" = "--version" ]; then echo "pg_dump (PostgreSQL) 15.1"; exit 0; fi\nprintf PGDMP\necho "pg_dump: error: boom" >&2\nexit 1\n',
    );
    await chmod(join(bin, 'pg_dump'), 0o755);
    const failure = await backup({
      storage: new MemoryStorage(),
      components: [component(source, { pgBin: bin })],
    }).catch((error: unknown) => error);
    expect(String((failure as Error).message) + String((failure as Error).cause ?? '')).toContain('boom');
    const chain: unknown[] = [];
    for (let error: unknown = failure; error; error = (error as Error).cause) chain.push(error);
    expect(chain.some((error) => error instanceof ComponentError)).toBe(true);
  });

  it('validates the config', () => {
    expect(() => fromConfig({ kind: 'postgres', host: 'h', port: 5432, user: 'u', nope: 1 })).toThrow(
      ConfigError,
    );
    expect(() => fromConfig({ host: 'h', port: 0, user: 'u' })).toThrow(ConfigError);
    expect(() => fromConfig({ host: 'h', port: 5432, user: 'u', restore: { renames: { a: '' } } })).toThrow(
      ConfigError,
    );
    expect(fromConfig({ kind: 'postgres', host: 'h', port: 5432, user: 'u' })).toBeInstanceOf(
      PostgresComponent,
    );
  });
});
