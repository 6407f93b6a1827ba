import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { SidecarManifest } from '@bk/core';
import { parseServersState } from '@bk/haproxy';
import {
  type EtcdServer,
  type HaproxyServer,
  type PostgresServer,
  startEtcd,
  startHaproxy,
  startPostgres,
  startZookeeper,
  type ZookeeperServer,
} from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// The ZooKeeper package's session helper seeds the tree (it is not part of its public API).
import { OPEN_ACL, ZookeeperSession } from '../../zookeeper/src/zookeeper-client.ts';
import { assertBuilt, removeTempDirs, runBk, runBkJson, tempDir } from './bk-process.ts';

/**
 * Acceptance test of the platform scenario: one `bk backup` from a config file holding
 * PostgreSQL, etcd, ZooKeeper, HAProxy and files components writes ONE archive, and
 * `bk restore --only <component>` restores that component and leaves the others alone.
 * Real servers, started from the Debian binaries by @bk/test-servers; the built `bk` runs them.
 */

const run = promisify(execFile);

/** The component kinds `bk` loads from `@bk/<kind>`'s built `dist` (the binary does not read sources). */
const KINDS = ['postgres', 'etcd', 'zookeeper', 'haproxy'] as const;

const ZNODES: Record<string, string> = {
  '/platform': 'root',
  '/platform/config': '{"replicas":3}',
  '/platform/config/feature-flags': 'checkout=on',
  '/platform/services': '',
  '/platform/services/api': '10.0.0.1:8080',
};
const ITEMS = [
  [1, 'widget', 12],
  [2, 'gadget', 7],
  [3, 'gizmo', 30],
] as const;
const ETCD_KEYS: Record<string, string> = {
  '/platform/region': 'eu-west',
  '/platform/replicas': '3',
  '/platform/owner': 'team-infra',
};

let postgres: PostgresServer | undefined;
let etcd: EtcdServer | undefined;
let zookeeper: ZookeeperServer | undefined;
let haproxy: HaproxyServer | undefined;
let work: string;
let target: string;
let configFile: string;

interface BackupJson {
  name: string;
  key: string;
  sidecarKey: string;
  components: Array<{ name: string; kind: string; version?: string; entries: number; bytes: number }>;
}
interface RestoreJson {
  name: string;
  entries: number;
  components: Record<string, { entries: number; bytes: number; skipped?: number }>;
}

async function psql(sql: string): Promise<string> {
  const server = postgres!;
  const args = ['-X', '-q', '-tA', '-v', 'ON_ERROR_STOP=1', '-h', server.host, '-p', String(server.port)];
  const { stdout } = await run(join(server.bin, 'psql'), [
    ...args,
    '-U',
    'postgres',
    '-d',
    'shop',
    '-c',
    sql,
  ]);
  return stdout.trim();
}

async function withZookeeper<T>(use: (session: ZookeeperSession) => Promise<T>): Promise<T> {
  const session = await ZookeeperSession.open({
    connectString: zookeeper!.connectString,
    auth: [zookeeper!.superAuth],
    sessionTimeoutMs: 30_000,
    connectTimeoutMs: 20_000,
    signal: new AbortController().signal,
  });
  try {
    return await use(session);
  } finally {
    session.close();
  }
}

/** Path → data (utf8) of every znode in `ZNODES` that exists. */
function readZnodes(): Promise<Record<string, string>> {
  return withZookeeper(async (session) => {
    const found: Record<string, string> = {};
    for (const path of Object.keys(ZNODES)) {
      const znode = await session.read(path);
      if (znode) found[path] = znode.data?.toString('utf8') ?? '';
    }
    return found;
  });
}

async function removeTree(session: ZookeeperSession, path: string): Promise<void> {
  for (const child of await session.getChildren(path)) await removeTree(session, `${path}/${child}`);
  await session.remove(path);
}

async function seed(): Promise<void> {
  await run(join(postgres!.bin, 'psql'), [
    '-X',
    '-q',
    '-v',
    'ON_ERROR_STOP=1',
    '-h',
    postgres!.host,
    '-p',
    String(postgres!.port),
    '-U',
    'postgres',
    '-d',
    'postgres',
    '-c',
    'CREATE DATABASE shop',
  ]);
  await psql('CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int NOT NULL)');
  await psql(
    `INSERT INTO items VALUES ${ITEMS.map(([id, name, qty]) => `(${id}, '${name}', ${qty})`).join(', ')}`,
  );

  for (const [key, value] of Object.entries(ETCD_KEYS))
    await run('etcdctl', ['--endpoints', etcd!.endpoint, 'put', key, value], {
      env: { ...process.env, ETCDCTL_API: '3' },
    });

  await withZookeeper(async (session) => {
    for (const [path, data] of Object.entries(ZNODES))
      await session.create(path, data === '' ? undefined : Buffer.from(data), OPEN_ACL);
  });

  expect((await haproxy!.command('set server be_app/app1 weight 50')).trim()).toBe('');
  expect((await haproxy!.command('disable server be_app/app2')).trim()).toBe('');

  await mkdir(join(work, 'app', 'conf'), { recursive: true });
  await writeFile(join(work, 'app', 'conf', 'app.yaml'), 'listen: 8080\n');
  await writeFile(join(work, 'app', 'VERSION'), '1.4.2\n');
}

beforeAll(async () => {
  assertBuilt();
  for (const kind of KINDS) {
    const dist = fileURLToPath(new URL(`../../${kind}/dist/index.js`, import.meta.url));
    if (!existsSync(dist)) throw new Error(`${dist} is missing: run \`pnpm build\` before the CLI tests.`);
  }
  const started = await Promise.allSettled([startPostgres(), startEtcd(), startZookeeper(), startHaproxy()]);
  [postgres, etcd, zookeeper, haproxy] = started.map((result) =>
    result.status === 'fulfilled' ? result.value : undefined,
  ) as [PostgresServer?, EtcdServer?, ZookeeperServer?, HaproxyServer?];
  const failed = started.find((result) => result.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason; // afterAll stops the ones that did start

  work = await tempDir('platform');
  target = join(work, 'backups');
  configFile = join(work, 'bk.config.json');
  await seed();
  await writeFile(
    configFile,
    JSON.stringify(
      {
        target: `file://${target}`,
        components: [
          {
            kind: 'postgres',
            name: 'postgres',
            host: postgres!.host,
            port: postgres!.port,
            user: 'postgres',
            databases: ['shop'],
          },
          {
            kind: 'etcd',
            name: 'etcd',
            endpoints: [etcd!.endpoint],
            keyRanges: ['/platform/'],
            restore: { dataDir: join(work, 'etcd-restored') },
          },
          {
            kind: 'zookeeper',
            name: 'zookeeper',
            connectString: zookeeper!.connectString,
            paths: ['/platform'],
          },
          {
            kind: 'haproxy',
            name: 'haproxy',
            configFile: haproxy!.configFile,
            socket: haproxy!.socketPath,
            restore: { configDir: join(work, 'haproxy-restored') },
          },
          { kind: 'files', name: 'app', root: 'app', paths: ['.'] },
        ],
      },
      null,
      2,
    ),
  );
}, 90_000);

afterAll(async () => {
  await Promise.allSettled([postgres?.stop(), etcd?.stop(), zookeeper?.stop(), haproxy?.stop()]);
  await removeTempDirs();
}, 60_000);

describe('bk with a whole platform in one config (end to end, real servers)', () => {
  const NAMES = ['postgres', 'etcd', 'zookeeper', 'haproxy', 'app'];
  let backupName: string;

  it('backs up PostgreSQL, etcd, ZooKeeper, HAProxy and files into ONE archive that gzip and tar open', async () => {
    const made = await runBkJson<BackupJson>(['backup', '--config', configFile], { cwd: work });
    expect(made.code, made.stderr).toBe(0);
    backupName = made.json.name;
    expect(made.json.components.map((component) => [component.name, component.kind])).toEqual([
      ['postgres', 'postgres'],
      ['etcd', 'etcd'],
      ['zookeeper', 'zookeeper'],
      ['haproxy', 'haproxy'],
      ['app', 'files'],
    ]);
    for (const component of made.json.components)
      expect(component.entries, component.name).toBeGreaterThan(0);

    // Exactly one archive, its entry index and its sidecar, no leftover lock, and nothing left in
    // the fs storage's temp dir.
    const inTarget = (await readdir(target)).sort();
    expect(inTarget.filter((key) => key !== '.bk-tmp')).toEqual([
      `${backupName}.entries.ndjson.gz`,
      `${backupName}.manifest.json`,
      `${backupName}.tar.gz`,
    ]);
    if (inTarget.includes('.bk-tmp')) expect(await readdir(join(target, '.bk-tmp'))).toEqual([]);
    expect(backupName).toMatch(/^backup_\d{8}_\d{6}$/);

    const manifest = JSON.parse(
      await readFile(join(target, `${backupName}.manifest.json`), 'utf8'),
    ) as SidecarManifest;
    expect(manifest.components.map((component) => component.name)).toEqual(NAMES);
    for (const component of manifest.components.filter((component) => component.kind !== 'files')) {
      // Each server's own version: PostgreSQL 15.x, etcd 3.4.x, ZooKeeper 3.8.x, HAProxy 2.6.x.
      expect(component.version, component.name).toMatch(/^\d+\.\d+/);
    }
    expect(manifest.components.find((component) => component.name === 'postgres')!.version).toMatch(/^1\d\./);
    expect(manifest.components.find((component) => component.name === 'etcd')!.version).toMatch(/^3\./);
    expect(manifest.components.find((component) => component.name === 'zookeeper')!.version).toMatch(/^3\./);
    expect(manifest.components.find((component) => component.name === 'haproxy')!.version).toMatch(/^[23]\./);

    const archive = join(target, `${backupName}.tar.gz`);
    await run('gzip', ['-t', archive]);
    const listed = (await run('tar', ['-tzf', archive], { maxBuffer: 16 * 1024 * 1024 })).stdout
      .split('\n')
      .filter(Boolean);
    for (const name of NAMES)
      expect(
        listed.some((path) => path.startsWith(`${name}/`)),
        name,
      ).toBe(true);
    // A body of unknown length (a dump, a snapshot, a JSON-lines export) is stored as chunks
    // `<path>/part-NNNNNN`; files of known size are entries of their own.
    const stored = (path: string) => listed.filter((key) => key === path || key.startsWith(`${path}/part-`));
    for (const path of [
      'postgres/globals.sql',
      'postgres/databases/shop.dump',
      'etcd/snapshot.db',
      'etcd/keys.jsonl',
      'zookeeper/znodes.jsonl',
      'haproxy/config/haproxy.cfg',
      'haproxy/server-state',
      'app/VERSION',
      'app/conf/app.yaml',
    ])
      expect(stored(path), path).not.toEqual([]);
    expect(listed.at(-1)).toBe('manifest.json');

    // What the entries hold, read with GNU tar: the znodes, the etcd keys and the runtime state.
    const entry = async (path: string) =>
      (await run('tar', ['-xzOf', archive, ...stored(path)], { maxBuffer: 16 * 1024 * 1024 })).stdout;
    const znodes = (await entry('zookeeper/znodes.jsonl'))
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { path: string });
    expect(znodes.map((record) => record.path).sort()).toEqual(Object.keys(ZNODES).sort());
    const keys = (await entry('etcd/keys.jsonl'))
      .split('\n')
      .filter(Boolean)
      .map((line) => Buffer.from((JSON.parse(line) as { key: string }).key, 'base64').toString());
    expect(keys.sort()).toEqual(Object.keys(ETCD_KEYS).sort());
    const state = parseServersState(await entry('haproxy/server-state'));
    const server = (name: string) => state?.rows.find((row) => row.srv_name === name);
    expect(server('app1')?.srv_uweight).toBe('50');
    expect(Number(server('app2')?.srv_admin_state) & 1, 'app2 in forced maintenance').toBe(1);

    const verified = await runBkJson<{ name: string; ok: boolean }>(['verify', '--config', configFile], {
      cwd: work,
    });
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.json).toMatchObject({ name: backupName, ok: true });
  });

  it('restore --only zookeeper brings the znodes back and leaves PostgreSQL alone', async () => {
    expect(backupName).toBeDefined();
    await withZookeeper((session) => removeTree(session, '/platform'));
    expect(await readZnodes()).toEqual({});
    await psql('UPDATE items SET qty = 0 WHERE id = 1');

    // The default conflict policy (fail): a restore that touched the existing "shop" database
    // would be refused, so success also shows that PostgreSQL was not part of it.
    const restored = await runBkJson<RestoreJson>(
      ['restore', '--only', 'zookeeper', '--config', configFile],
      {
        cwd: work,
      },
    );
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.json.name).toBe(backupName);
    expect(Object.keys(restored.json.components)).toEqual(['zookeeper']);
    expect(await readZnodes()).toEqual(ZNODES);
    expect(await psql('SELECT qty FROM items WHERE id = 1')).toBe('0');
  });

  it('restore --only postgres refuses an existing database by default and replaces it with --conflict overwrite', async () => {
    expect(backupName).toBeDefined();
    const refused = await runBk(['restore', '--only', 'postgres', '--config', configFile], { cwd: work });
    expect(refused.code, refused.stderr).toBe(5);
    expect(refused.stderr).toMatch(/shop/);
    expect(await psql('SELECT qty FROM items WHERE id = 1')).toBe('0');

    const restored = await runBkJson<RestoreJson>(
      ['restore', '--only', 'postgres', '--conflict', 'overwrite', '--config', configFile],
      { cwd: work },
    );
    expect(restored.code, restored.stderr).toBe(0);
    expect(Object.keys(restored.json.components)).toEqual(['postgres']);
    expect(await psql('SELECT id, name, qty FROM items ORDER BY id')).toBe(
      ITEMS.map((row) => row.join('|')).join('\n'),
    );
    // The ZooKeeper tree is untouched by the second restore.
    expect(await readZnodes()).toEqual(ZNODES);
  });

  it('restore --only nosuch fails with exit 2 naming the components the backup holds', async () => {
    expect(backupName).toBeDefined();
    const failed = await runBk(['restore', '--only', 'nosuch', '--config', configFile], { cwd: work });
    expect(failed.code).toBe(2);
    expect(failed.stdout).toBe('');
    expect(failed.stderr).toContain('"nosuch"');
    expect(failed.stderr).toContain(`known: ${NAMES.join(', ')}`);
    expect(failed.stderr).not.toMatch(/\n\s+at /);

    const json = await runBkJson<{ error: { code: string; message: string } }>(
      ['restore', '--only', 'nosuch', '--config', configFile],
      { cwd: work },
    );
    expect(json.code).toBe(2);
    expect(json.json.error.code).toBe('BK_CONFIG');
    expect(json.json.error.message).toContain('nosuch');
  });
});
