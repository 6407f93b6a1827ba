import { deepStrictEqual, ok, rejects, strictEqual } from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  BkError,
  backup,
  type ConfigError,
  type Entry,
  MemoryStorage,
  type Restorer,
  restore,
} from '@bk/core';
import { startZookeeper, type ZookeeperServer } from '@bk/test-servers';
import { claimedVersion, componentRoundTrip } from '@bk/test-suite';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { fromConfig, sequenceCounter, ZNODES_ENTRY, type ZnodeRecord, zookeeper } from '../src/index.ts';
import { type Acl, CREATE_MODES, OPEN_ACL, ZookeeperSession } from '../src/zookeeper-client.ts';

const USER = 'admin';
const PASSWORD = 'Pw-9f2c-never-logged';
const AUTH = { scheme: 'digest', credentials: `${USER}:${PASSWORD}` };
/** ZooKeeper's digest id: `user:base64(sha1("user:password"))`. */
const DIGEST_ID = `${USER}:${createHash('sha1').update(`${USER}:${PASSWORD}`).digest('base64')}`;
const READ_ONLY: Acl[] = [{ perms: 1, scheme: 'world', id: 'anyone' }];
const DIGEST_ALL: Acl[] = [{ perms: 31, scheme: 'digest', id: DIGEST_ID }];
const MIXED: Acl[] = [
  { perms: 1, scheme: 'world', id: 'anyone' },
  { perms: 31, scheme: 'digest', id: DIGEST_ID },
];
const BINARY = Buffer.from(Array.from({ length: 512 }, (_, index) => (index * 7) % 256));

/** A session as the digest user `admin`, or as the server's super user (passes every ACL check). */
function open(server: ZookeeperServer, as: 'admin' | 'super' = 'admin'): Promise<ZookeeperSession> {
  return ZookeeperSession.open({
    connectString: server.connectString,
    auth: [as === 'admin' ? AUTH : server.superAuth],
    sessionTimeoutMs: 30_000,
    connectTimeoutMs: 20_000,
    signal: new AbortController().signal,
  });
}

async function withSession<T>(
  server: ZookeeperServer,
  use: (session: ZookeeperSession) => Promise<T>,
): Promise<T> {
  const session = await open(server, 'super');
  try {
    return await use(session);
  } finally {
    session.close();
  }
}

interface Snapshot {
  [path: string]: { data: string | null; acl: Acl[] };
}

/** Every znode below `root` (excluding `root` itself when it is `/`, and `/zookeeper`), with data and ACL. */
async function snapshotTree(server: ZookeeperServer, root = '/'): Promise<Snapshot> {
  return withSession(server, async (session) => {
    const tree: Snapshot = {};
    const visit = async (path: string): Promise<void> => {
      if (path === '/zookeeper') return;
      const znode = await session.read(path);
      if (!znode) return;
      if (path !== '/') {
        const sortedAcl = [...znode.acl].sort((a, b) =>
          `${a.scheme}:${a.id}`.localeCompare(`${b.scheme}:${b.id}`),
        );
        tree[path] = {
          data: znode.data === undefined ? null : znode.data.toString('base64'),
          acl: sortedAcl,
        };
      }
      for (const child of [...znode.children].sort())
        await visit(path === '/' ? `/${child}` : `${path}/${child}`);
    };
    await visit(root);
    return tree;
  });
}

async function removeTree(session: ZookeeperSession, path: string): Promise<void> {
  if (!(await session.exists(path))) return;
  for (const child of await session.getChildren(path)) await removeTree(session, `${path}/${child}`);
  await session.remove(path);
}

/** A restorer that captures the archived entries' bytes. */
function capture(into: Map<string, Buffer>): Restorer {
  return {
    kind: 'zookeeper',
    name: 'zookeeper',
    async restore(entries: AsyncIterable<Entry>) {
      let bytes = 0;
      for await (const entry of entries) {
        const chunks: Buffer[] = [];
        for await (const chunk of entry.body ?? []) chunks.push(Buffer.from(chunk));
        into.set(entry.path, Buffer.concat(chunks));
        bytes += into.get(entry.path)!.length;
      }
      return { entries: into.size, bytes };
    },
  };
}

function lines(jsonl: Buffer): ZnodeRecord[] {
  return jsonl
    .toString('utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as ZnodeRecord);
}

function isCode(code: string): (thrown: unknown) => boolean {
  return (thrown: unknown) => {
    ok(BkError.isInstance(thrown), String(thrown));
    strictEqual(thrown.code, code, thrown.message);
    ok(!thrown.message.includes(PASSWORD), 'an error message holds the password');
    return true;
  };
}

/** Builds the test tree on `server`; the returned session holds the ephemeral znode. */
async function seed(server: ZookeeperServer): Promise<{ session: ZookeeperSession; sequential: string }> {
  const session = await open(server);
  await session.create('/app', Buffer.from('application root'), OPEN_ACL);
  await session.create('/app/config', Buffer.from('{"replicas":3,"name":"héllo"}'), OPEN_ACL);
  await session.create('/app/binary', BINARY, OPEN_ACL);
  await session.create('/app/empty', Buffer.alloc(0), OPEN_ACL);
  await session.create('/app/nodata', undefined, OPEN_ACL);
  // A read-only znode with a child: the child must be restorable under it.
  await session.create('/app/readonly', Buffer.from('ro'), OPEN_ACL);
  await session.create('/app/readonly/child', Buffer.from('child of ro'), OPEN_ACL);
  await session.create('/app/readonly/child/leaf', Buffer.from('deep'), READ_ONLY);
  await session.setAcl('/app/readonly', READ_ONLY);
  await session.create('/app/secret', Buffer.from('only admin reads me'), DIGEST_ALL);
  await session.create('/app/secret/nested', Buffer.from('also admin'), MIXED);
  await session.create('/app/queue', Buffer.from(''), OPEN_ACL);
  for (let index = 0; index < 3; index += 1) {
    await session.create(
      '/app/queue/item-',
      Buffer.from(`item ${index}`),
      OPEN_ACL,
      CREATE_MODES.PERSISTENT_SEQUENTIAL,
    );
  }
  const sequential = (await session.getChildren('/app/queue')).sort()[1]!;
  for (let index = 0; index < 40; index += 1) {
    await session.create(`/app/many-${String(index).padStart(2, '0')}`, Buffer.from(`n${index}`), OPEN_ACL);
  }
  await session.create('/app/live', Buffer.from('ephemeral'), OPEN_ACL, CREATE_MODES.EPHEMERAL);
  await session.create('/other', Buffer.from('other root'), OPEN_ACL);
  await session.create('/other/x', Buffer.from('x'), OPEN_ACL);
  return { session, sequential };
}

describe('ZookeeperComponent against a real ZooKeeper 3.8', () => {
  let source: ZookeeperServer;
  let target: ZookeeperServer;
  let holder: ZookeeperSession;
  let sequential: string;
  const storage = new MemoryStorage();
  let backupName: string;
  const captured = new Map<string, Buffer>();
  let manifestText: string;

  beforeAll(async () => {
    [source, target] = await Promise.all([startZookeeper(), startZookeeper()]);
    ({ session: holder, sequential } = await seed(source));
    const result = await backup({
      storage,
      components: [zookeeper({ connectString: source.connectString, auth: AUTH })],
    });
    backupName = result.name;
    manifestText = JSON.stringify(result.manifest);
    await restore({ storage, name: backupName, restorers: [capture(captured)] });
  }, 120_000);
  afterAll(async () => {
    holder?.close();
    await Promise.all([source?.stop(), target?.stop()]);
  });

  it('records the server version and node count, and no credentials', () => {
    const record = JSON.parse(manifestText) as {
      components: {
        kind: string;
        version?: string;
        info: { details?: Record<string, unknown>; notCaptured?: string[] };
      }[];
    };
    const component = record.components[0]!;
    strictEqual(component.kind, 'zookeeper');
    strictEqual(component.version, '3.8.0');
    strictEqual(component.info.details?.mode, 'standalone');
    ok(
      typeof component.info.details?.serverNodeCount === 'number' &&
        component.info.details.serverNodeCount > 50,
    );
    deepStrictEqual(component.info.details?.paths, ['/']);
    ok(component.info.notCaptured?.some((line) => line.includes('ephemeral')));
    ok(!manifestText.includes(PASSWORD), 'the manifest holds the password');
    ok(!captured.get(ZNODES_ENTRY)!.toString().includes(PASSWORD), 'the backup holds the password');
  });

  it('writes znodes.jsonl parent before child, without ephemeral znodes or /zookeeper', () => {
    const records = lines(captured.get(ZNODES_ENTRY)!);
    const paths = records.map((record) => record.path);
    const seen = new Set<string>();
    for (const path of paths) {
      const parent = path.slice(0, path.lastIndexOf('/'));
      ok(parent === '' || seen.has(parent), `"${path}" comes before its parent`);
      seen.add(path);
    }
    ok(!paths.includes('/app/live'), 'the ephemeral znode was backed up');
    ok(
      !paths.some((path) => path === '/zookeeper' || path.startsWith('/zookeeper/')),
      '/zookeeper was backed up',
    );
    ok(!paths.includes('/'));
    strictEqual(paths.length, 56);
    for (const record of records) strictEqual(record.ephemeralOwner, '0');
    const binary = records.find((record) => record.path === '/app/binary')!;
    deepStrictEqual(Buffer.from(binary.data!, 'base64'), BINARY);
    strictEqual(records.find((record) => record.path === '/app/empty')!.data, '');
    strictEqual(records.find((record) => record.path === '/app/nodata')!.data, null);
    deepStrictEqual(records.find((record) => record.path === '/app/secret')!.acl, DIGEST_ALL);
    ok(binary.ctime > 0 && binary.mtime >= binary.ctime && /^\d+$/.test(binary.czxid));
  });

  it('restores into a second, fresh ZooKeeper: every path, data and ACL', async () => {
    const report = await restore({
      storage,
      name: backupName,
      restorers: [zookeeper({ connectString: target.connectString, auth: AUTH })],
    });
    const details = report.components.zookeeper!.details!;
    strictEqual(details.created, 56);
    const expected = await snapshotTree(source);
    delete expected['/app/live'];
    deepStrictEqual(await snapshotTree(target), expected);
    ok(Object.keys(expected).includes(`/app/queue/${sequential}`), 'sequential names are kept');
  });

  it('conflict fail: refuses before writing anything', async () => {
    await withSession(target, (session) => removeTree(session, '/app/config'));
    await rejects(
      restore({
        storage,
        name: backupName,
        restorers: [zookeeper({ connectString: target.connectString, auth: AUTH })],
      }),
      isCode('BK_CONFLICT'),
    );
    strictEqual(await withSession(target, (session) => session.exists('/app/config')), false);
  });

  it('conflict skip: leaves existing znodes untouched and creates the missing ones', async () => {
    await withSession(target, async (session) => {
      await session.setData('/app/binary', Buffer.from('changed'));
      await session.setAcl('/app/many-00', DIGEST_ALL);
    });
    const report = await restore({
      storage,
      name: backupName,
      conflict: 'skip',
      restorers: [zookeeper({ connectString: target.connectString, auth: AUTH })],
    });
    strictEqual(report.components.zookeeper!.details!.created, 1);
    strictEqual(report.components.zookeeper!.skipped, 55);
    const tree = await snapshotTree(target);
    strictEqual(Buffer.from(tree['/app/binary']!.data!, 'base64').toString(), 'changed');
    deepStrictEqual(tree['/app/many-00']!.acl, DIGEST_ALL);
    ok(tree['/app/config'], '/app/config was not restored');
  });

  it('conflict overwrite: sets data and ACL of existing znodes back', async () => {
    await withSession(target, (session) => session.setAcl('/app/secret/nested', OPEN_ACL));
    const report = await restore({
      storage,
      name: backupName,
      conflict: 'overwrite',
      restorers: [zookeeper({ connectString: target.connectString, auth: AUTH })],
    });
    // Only what differs is written: /app/binary's data, the ACLs of /app/many-00 and /app/secret/nested.
    strictEqual(report.components.zookeeper!.details!.overwritten, 3);
    strictEqual(report.components.zookeeper!.details!.unchanged, 53);
    const expected = await snapshotTree(source);
    delete expected['/app/live'];
    deepStrictEqual(await snapshotTree(target), expected);
  });

  it('backs up only the selected paths and restores them into an empty tree', async () => {
    const selected = new MemoryStorage();
    const result = await backup({
      storage: selected,
      components: [
        zookeeper({ connectString: source.connectString, auth: AUTH, paths: ['/other', '/app/readonly'] }),
      ],
    });
    const bytes = new Map<string, Buffer>();
    await restore({ storage: selected, name: result.name, restorers: [capture(bytes)] });
    deepStrictEqual(
      lines(bytes.get(ZNODES_ENTRY)!).map((record) => record.path),
      ['/app/readonly', '/other', '/app/readonly/child', '/other/x', '/app/readonly/child/leaf'],
    );
    await withSession(target, async (session) => {
      await removeTree(session, '/app');
      await removeTree(session, '/other');
    });
    await restore({
      storage: selected,
      name: result.name,
      restorers: [zookeeper({ connectString: target.connectString, auth: AUTH, paths: ['/app'] })],
    });
    const tree = await snapshotTree(target);
    deepStrictEqual(Object.keys(tree).sort(), [
      '/app',
      '/app/readonly',
      '/app/readonly/child',
      '/app/readonly/child/leaf',
    ]);
    deepStrictEqual(
      tree['/app']!,
      { data: null, acl: OPEN_ACL },
      'the missing ancestor is created empty and open',
    );
    deepStrictEqual(tree['/app/readonly']!.acl, READ_ONLY);
  });

  it('refuses a backup recorded from a newer ZooKeeper before writing, and restores it with force', async () => {
    const other = new MemoryStorage();
    const newer = await backup({
      storage: other,
      components: [
        claimedVersion(zookeeper({ connectString: source.connectString, auth: AUTH }), (info) => ({
          ...info,
          version: '3.9.2',
        })),
      ],
    });
    ok(newer.manifest.components[0]!.info.secrets?.captured.some((note) => note.kind === 'password-hash'));
    const before = await snapshotTree(target);
    const restorer = zookeeper({ connectString: target.connectString, auth: AUTH });
    await rejects(
      restore({ storage: other, name: newer.name, restorers: [restorer], conflict: 'overwrite' }),
      (thrown: unknown) => {
        ok(isCode('BK_VERSION_MISMATCH')(thrown), String(thrown));
        ok(
          (thrown as Error).message.includes(
            "(backed up from version 3.9.2) into the target's version 3.8.0: ZooKeeper does not take data from a newer version; restore into ZooKeeper 3.9 or newer",
          ),
          (thrown as Error).message,
        );
        return true;
      },
    );
    deepStrictEqual(await snapshotTree(target), before);
    const forced = await restore({
      storage: other,
      name: newer.name,
      restorers: [restorer],
      conflict: 'overwrite',
      force: true,
    });
    strictEqual(forced.preflight.zookeeper?.targetVersion, '3.8.0');
    const restored = await withSession(target, (session) => session.getData('/app/binary'));
    deepStrictEqual(restored, BINARY);
    ok(forced.components.zookeeper!.entries > 0);
  });

  it('fails clearly without the credentials a digest ACL needs', async () => {
    await rejects(
      backup({
        storage: new MemoryStorage(),
        components: [zookeeper({ connectString: source.connectString, paths: ['/app/secret'] })],
      }),
      (thrown: unknown) => isCode('BK_COMPONENT')(thrown) && /not authorised/.test((thrown as Error).message),
    );
  });

  it('describe: a missing path is a config error, an unreachable server a component error', async () => {
    const context = { signal: new AbortController().signal, progress: () => {} };
    await rejects(
      zookeeper({ connectString: source.connectString, paths: ['/missing'] }).describe(context),
      isCode('BK_CONFIG'),
    );
    await rejects(
      zookeeper({ connectString: '127.0.0.1:1', connectTimeoutMs: 1_500, auth: AUTH }).describe(context),
      isCode('BK_COMPONENT'),
    );
  });

  it('refuses lines outside the backed-up paths or malformed, before writing them', async () => {
    const component = zookeeper({ connectString: target.connectString, auth: AUTH });
    const context = {
      signal: new AbortController().signal,
      progress: () => {},
      backupName: 'hand-made',
      conflict: 'skip' as const,
      component: { name: 'zookeeper', kind: 'zookeeper', info: { details: { paths: ['/app'] } } },
    };
    const entry = (text: string): AsyncIterable<Entry> =>
      (async function* () {
        yield {
          path: ZNODES_ENTRY,
          type: 'file' as const,
          body: (async function* () {
            yield Buffer.from(text);
          })(),
        };
      })();
    const record = { data: null, acl: OPEN_ACL, numChildren: 0 };
    await rejects(
      component.restore(entry(`${JSON.stringify({ ...record, path: '/evil' })}\n`), context),
      (thrown: unknown) => isCode('BK_COMPONENT')(thrown) && /outside/.test((thrown as Error).message),
    );
    await rejects(component.restore(entry('{"path":"/app/x",'), context), isCode('BK_COMPONENT'));
    await rejects(
      component.restore(entry(JSON.stringify({ ...record, path: '/app/../zookeeper' })), context),
      isCode('BK_COMPONENT'),
    );
    strictEqual(await withSession(target, (session) => session.exists('/evil')), false);
  });

  it('fromConfig builds the component and names invalid fields', () => {
    const component = fromConfig({
      kind: 'zookeeper',
      name: 'zk',
      connectString: '127.0.0.1:2181',
      paths: ['/app'],
      auth: AUTH,
    });
    strictEqual(component.name, 'zk');
    deepStrictEqual(component.paths, ['/app']);
    for (const bad of [
      {},
      { connectString: '' },
      { connectString: '127.0.0.1:2181', bogus: 1 },
      { kind: 'etcd', connectString: '127.0.0.1:2181' },
      { connectString: '127.0.0.1:2181/chroot' },
      { connectString: '127.0.0.1:2181', paths: [] },
      { connectString: '127.0.0.1:2181', paths: ['app'] },
      { connectString: '127.0.0.1:2181', paths: ['/app/'] },
      { connectString: '127.0.0.1:2181', paths: ['/a/../b'] },
      { connectString: '127.0.0.1:2181', paths: ['/zookeeper/quota'] },
      { connectString: '127.0.0.1:2181', auth: { scheme: 'digest' } },
      { connectString: '127.0.0.1:2181', auth: { scheme: 'digest', credentials: PASSWORD, extra: PASSWORD } },
      { connectString: '127.0.0.1:2181', auth: { scheme: '', credentials: PASSWORD } },
      { connectString: '127.0.0.1:2181', concurrency: 0 },
      { connectString: '127.0.0.1:2181', sessionTimeoutMs: -1 },
      { connectString: '127.0.0.1:2181', name: '../x' },
    ]) {
      try {
        fromConfig(bad);
        ok(false, JSON.stringify(bad));
      } catch (error) {
        isCode('BK_CONFIG')(error);
        ok((error as ConfigError).message.length > 0);
      }
    }
  });

  describe('@bk/test-suite componentRoundTrip', () => {
    componentRoundTrip(
      it,
      async () => {
        const session = await open(target);
        const component = zookeeper({
          name: 'zk',
          connectString: target.connectString,
          auth: AUTH,
          paths: ['/rt'],
        });
        return {
          component,
          seed: async () => {
            await session.create('/rt', Buffer.from('round trip'), OPEN_ACL);
            await session.create('/rt/a', Buffer.from([0, 1, 2, 255]), READ_ONLY);
            await session.create('/rt/b', Buffer.alloc(0), DIGEST_ALL);
            await session.create('/rt/b/c', undefined, MIXED);
            await session.create('/rt/d', Buffer.alloc(300_000, 7), OPEN_ACL);
          },
          snapshot: () => snapshotTree(target, '/rt'),
          reset: () => removeTree(session, '/rt'),
          cleanup: async () => {
            await removeTree(session, '/rt');
            session.close();
          },
        };
      },
      { timeout: 60_000 },
    );
  });
});

describe('sequence counters after a restore (lock and queue recipes)', () => {
  let source: ZookeeperServer;
  let target: ZookeeperServer;
  const storage = new MemoryStorage();
  /** Parent → the sequential children it holds at backup time. */
  const parents: Record<string, string[]> = {};
  let backupName: string;

  /** Sequential children under `parent` numbered from `first` on: the counter is raised to it first. */
  async function sequentialChildren(
    session: ZookeeperSession,
    parent: string,
    prefix: string,
    first: number,
    count: number,
  ): Promise<void> {
    const { cversion, numChildren } = (await session.stat(parent))!;
    const raise = first - sequenceCounter(cversion, numChildren);
    if (raise > 0) await session.churnChild(parent, 'scratch', raise);
    const made: string[] = [];
    for (let index = 0; index < count; index += 1) {
      const path = await session.create(
        `${parent}/${prefix}`,
        Buffer.from(`${index}`),
        OPEN_ACL,
        CREATE_MODES.PERSISTENT_SEQUENTIAL,
      );
      made.push(path.slice(parent.length + 1));
    }
    parents[parent] = made;
  }

  beforeAll(async () => {
    [source, target] = await Promise.all([startZookeeper(), startZookeeper()]);
    const session = await open(source, 'super');
    try {
      for (const path of ['/locks', '/locks/db', '/queue', '/queue/jobs', '/deep', '/deep/a', '/deep/a/b']) {
        await session.create(path, undefined, OPEN_ACL);
      }
      await sequentialChildren(session, '/locks/db', 'lock-', 500, 2);
      await sequentialChildren(session, '/queue/jobs', 'qn-', 1234, 3);
      await session.remove(`/queue/jobs/${parents['/queue/jobs']![0]}`); // consumed: a gap
      parents['/queue/jobs']!.shift();
      await sequentialChildren(session, '/deep/a/b', 'item-', 7, 1);
      // A read-only parent: its counter is advanced while it still has the restore's temporary ACL.
      await session.create('/ro-queue', undefined, OPEN_ACL);
      await sequentialChildren(session, '/ro-queue', 'qn-', 301, 2);
      await session.setAcl('/ro-queue', READ_ONLY);
      // Under 10 digits that are no sequence number (above the parent's counter): left alone.
      await session.create('/events', undefined, OPEN_ACL);
      await session.create('/events/ts-1795236814', Buffer.from('not sequential'), OPEN_ACL);
      // Low numbers that a fresh parent's counter reaches by itself.
      await session.create('/small', undefined, OPEN_ACL);
      await sequentialChildren(session, '/small', 'n-', 0, 3);
    } finally {
      session.close();
    }
    backupName = (await backup({ storage, components: [zookeeper({ connectString: source.connectString })] }))
      .name;
  }, 120_000);
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  it('advances each restored parent past its highest sequential child, so the next create succeeds first time', async () => {
    const started = performance.now();
    const report = await restore({
      storage,
      name: backupName,
      restorers: [zookeeper({ connectString: target.connectString })],
    });
    const elapsed = performance.now() - started;
    const details = report.components.zookeeper!.details!;
    // /locks/db, /queue/jobs, /deep/a/b and /ro-queue; not /small (already past) nor /events.
    strictEqual(details.countersAdvanced, 4);
    // Exactly what each counter lacked: highest + 1 minus the children the restore created.
    strictEqual(details.counterIncrements, 502 - 2 + (1237 - 2) + (8 - 1) + (303 - 2));
    ok(elapsed < 20_000, `restore took ${Math.round(elapsed)} ms`);

    await withSession(target, async (session) => {
      for (const [parent, children] of Object.entries(parents)) {
        deepStrictEqual((await session.getChildren(parent)).sort(), [...children].sort(), parent);
        const highest = Math.max(...children.map((name) => Number(name.slice(-10))));
        const prefix = children[0]!.slice(0, -10);
        // Queue recipe: a persistent sequential create, on the first try.
        const created = await session.create(
          `${parent}/${prefix}`,
          Buffer.from('after restore'),
          OPEN_ACL,
          CREATE_MODES.PERSISTENT_SEQUENTIAL,
        );
        ok(Number(created.slice(-10)) > highest, `${parent}: ${created} is not after ${highest}`);
      }
      // Lock recipe: an ephemeral sequential node that sorts after the restored ones.
      const lock = await session.create(
        '/locks/db/lock-',
        undefined,
        OPEN_ACL,
        CREATE_MODES.EPHEMERAL_SEQUENTIAL,
      );
      deepStrictEqual(
        (await session.getChildren('/locks/db')).sort().at(-1),
        lock.slice('/locks/db/'.length),
      );
      // No scratch child is left, and the untouched parents kept small counters.
      for (const parent of Object.keys(parents)) {
        ok(!(await session.getChildren(parent)).some((name) => name.startsWith('.bk-')), parent);
      }
      ok((await session.stat('/events'))!.cversion < 10);
      deepStrictEqual((await snapshotTree(target, '/ro-queue'))['/ro-queue']!.acl, READ_ONLY);
    });

    // Restored again with skip: every counter is already past, nothing to advance.
    const again = await restore({
      storage,
      name: backupName,
      conflict: 'skip',
      restorers: [zookeeper({ connectString: target.connectString })],
    });
    strictEqual(again.components.zookeeper!.details!.countersAdvanced, 0);
  }, 60_000);
});
