import './protobuf-long.ts';
import { deepStrictEqual, ok, rejects, strictEqual } from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  backup,
  type ConfigError,
  type ConflictError,
  type Entry,
  type IntegrityError,
  MemoryStorage,
  type Restorer,
  restore,
  type VersionMismatchError,
} from '@bk/core';
import { type EtcdServer, freePort, startEtcd } from '@bk/test-servers';
import { claimedVersion } from '@bk/test-suite';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, it } from 'vitest';
import {
  type EtcdMemberRunningError,
  etcd,
  findRunningMember,
  fromConfig,
  importKeys,
  verifySnapshot,
} from '../src/index.ts';

const exec = promisify(execFile);

async function allKeys(endpoint: string, prefix = ''): Promise<Record<string, string>> {
  const client = new Etcd3({ hosts: [endpoint] });
  try {
    return prefix === '' ? await client.getAll().strings() : await client.getAll().prefix(prefix).strings();
  } finally {
    client.close();
  }
}

async function revisionOf(endpoint: string): Promise<number> {
  const client = new Etcd3({ hosts: [endpoint] });
  try {
    return Number((await client.maintenance.status()).header.revision);
  } finally {
    client.close();
  }
}

/** A restorer that captures the archived entries' bytes. */
function capture(into: Map<string, Buffer>): Restorer {
  return {
    kind: 'etcd',
    name: 'etcd',
    async restore(entries: AsyncIterable<Entry>) {
      let bytes = 0;
      for await (const entry of entries) {
        const chunks: Buffer[] = [];
        for await (const chunk of entry.body ?? []) chunks.push(Buffer.from(chunk));
        const body = Buffer.concat(chunks);
        bytes += body.length;
        into.set(entry.path, body);
      }
      return { entries: into.size, bytes };
    },
  };
}

/** Every file under `root` with its size and sha256, to tell whether anything changed. */
async function digestTree(root: string): Promise<Record<string, string>> {
  const tree: Record<string, string> = {};
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    const path = join(entry.parentPath, entry.name);
    tree[path.slice(root.length)] = entry.isFile()
      ? createHash('sha256')
          .update(await readFile(path))
          .digest('hex')
      : entry.isDirectory()
        ? 'dir'
        : 'other';
  }
  return tree;
}

async function* chunked(data: Buffer, size = 4096): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < data.length; offset += size) yield data.subarray(offset, offset + size);
}

describe('EtcdComponent against a real etcd 3.4', () => {
  let source: EtcdServer;
  let dir: string;
  const storage = new MemoryStorage();
  let backupName: string;
  const captured = new Map<string, Buffer>();
  let originalRevision: number;

  beforeAll(async () => {
    [source, dir] = await Promise.all([startEtcd(), mkdtemp(join(tmpdir(), 'bk-etcd-test-'))]);
    const client = new Etcd3({ hosts: [source.endpoint] });
    for (let index = 0; index < 200; index += 1) {
      await client.put(`/app/key${String(index).padStart(3, '0')}`).value(`value ${index}`);
    }
    // More revisions of some keys, and keys outside the exported range.
    for (let index = 0; index < 20; index += 1)
      await client.put(`/app/key${String(index).padStart(3, '0')}`).value(`v2 ${index}`);
    await client.put('/other/a').value(Buffer.from([0, 1, 2, 255]));
    client.close();
    originalRevision = await revisionOf(source.endpoint);

    const result = await backup({
      storage,
      components: [etcd({ endpoints: ['http://127.0.0.1:1', source.endpoint], keyRanges: ['/app/'] })],
    });
    backupName = result.name;
    const recorded = result.manifest.components[0]!;
    strictEqual(recorded.kind, 'etcd');
    strictEqual(recorded.version, '3.4.23');
    strictEqual(recorded.info.details?.endpoint, source.endpoint);
    await restore({ storage, name: backupName, restorers: [capture(captured)] });
  });
  afterAll(async () => {
    await source?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('stores a snapshot that etcdctl snapshot status accepts', async () => {
    const file = join(dir, 'captured.db');
    await writeFile(file, captured.get('snapshot.db')!);
    const { stdout } = await exec('etcdctl', ['snapshot', 'status', file, '-w', 'json'], {
      env: { ...process.env, ETCDCTL_API: '3' },
    });
    const status = JSON.parse(stdout) as { hash: number; revision: number; totalKey: number };
    ok(status.hash > 0);
    strictEqual(status.revision, originalRevision);
    ok(status.totalKey >= 201, String(status.totalKey));
  });

  it('restores into a new data dir that a new etcd serves with every key', async () => {
    const dataDir = join(dir, 'restored');
    const peerPort = await freePort();
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const restorer = etcd({
      endpoints: [source.endpoint],
      restore: { dataDir, name: 't2', initialCluster: `t2=${peerUrl}`, initialAdvertisePeerUrls: peerUrl },
    });
    const report = await restore({ storage, name: backupName, restorers: [restorer] });
    ok(report.components.etcd!.bytes > 0);
    const copy = await startEtcd({ dataDir, name: 't2', peerPort });
    try {
      deepStrictEqual(await allKeys(copy.endpoint), await allKeys(source.endpoint));
      strictEqual(Object.keys(await allKeys(copy.endpoint, '/app/')).length, 200);
      ok((await revisionOf(copy.endpoint)) >= originalRevision);
    } finally {
      await copy.stop();
    }

    // The data dir is now populated: another restore refuses unless told to overwrite.
    await rejects(restore({ storage, name: backupName, restorers: [restorer] }), (thrown: unknown) => {
      ok((thrown as ConflictError).code === 'BK_CONFLICT', String(thrown));
      return true;
    });
  });

  it('refuses to overwrite the data dir of a running member, and overwrites it once stopped', async () => {
    const dataDir = join(dir, 'live');
    const peerPort = await freePort();
    let live: EtcdServer | undefined = await startEtcd({ dataDir, name: 'live', peerPort });
    try {
      const client = new Etcd3({ hosts: [live.endpoint] });
      await client.put('/live/before').value('written before the restore');
      client.close();
      const found = await findRunningMember(dataDir);
      ok(
        found?.pid !== undefined && /member\/snap\/db is locked/.test(found.evidence),
        JSON.stringify(found),
      );
      const before = await digestTree(dataDir);
      const besides = await readdir(dir);
      const peerUrl = `http://127.0.0.1:${peerPort}`;
      const restorer = etcd({
        endpoints: [source.endpoint],
        restore: {
          dataDir,
          name: 'live',
          initialCluster: `live=${peerUrl}`,
          initialAdvertisePeerUrls: peerUrl,
        },
      });
      for (const conflict of ['overwrite', 'skip', 'fail'] as const) {
        await rejects(
          restore({ storage, name: backupName, restorers: [restorer], conflict }),
          (thrown: unknown) => {
            const error = thrown as EtcdMemberRunningError;
            strictEqual(error.code, 'BK_CONFLICT', String(thrown));
            strictEqual(error.name, 'EtcdMemberRunningError');
            strictEqual(error.pid, found.pid);
            ok(
              error.message.includes(`pid ${found.pid}`) && /Stop that etcd member/.test(error.message),
              error.message,
            );
            return true;
          },
        );
      }
      // Byte for byte as it was, and no temp file or dir left beside it.
      deepStrictEqual(await digestTree(dataDir), before);
      deepStrictEqual(await readdir(dir), besides);

      // The member keeps working: a write acknowledged now survives its restart.
      const after = new Etcd3({ hosts: [live.endpoint] });
      await after.put('/live/after').value('acknowledged after the refused restore');
      after.close();
      await live.stop();
      live = await startEtcd({ dataDir, name: 'live', peerPort });
      deepStrictEqual(await allKeys(live.endpoint, '/live/'), {
        '/live/after': 'acknowledged after the refused restore',
        '/live/before': 'written before the restore',
      });
      await live.stop();
      live = undefined;

      // Stopped: nothing holds the data dir any more, and overwrite replaces it.
      strictEqual(await findRunningMember(dataDir), undefined);
      await restore({ storage, name: backupName, restorers: [restorer], conflict: 'overwrite' });
      live = await startEtcd({ dataDir, name: 'live', peerPort });
      deepStrictEqual(await allKeys(live.endpoint), await allKeys(source.endpoint));
    } finally {
      await live?.stop();
    }
  });

  it('refuses a non-empty data dir with ConflictError', async () => {
    const dataDir = join(dir, 'occupied');
    await mkdir(dataDir);
    await writeFile(join(dataDir, 'keep'), 'x');
    await rejects(
      restore({
        storage,
        name: backupName,
        restorers: [etcd({ endpoints: [source.endpoint], restore: { dataDir } })],
      }),
      (thrown: unknown) => (thrown as ConflictError).code === 'BK_CONFLICT',
    );
    strictEqual(await readFile(join(dataDir, 'keep'), 'utf8'), 'x');
  });

  it('refuses a snapshot recorded from a newer etcd than the restore tool before writing, and restores it with force', async () => {
    const other = new MemoryStorage();
    const newer = await backup({
      storage: other,
      components: [
        claimedVersion(etcd({ endpoints: [source.endpoint] }), (info) => ({ ...info, version: '3.5.17' })),
      ],
    });
    strictEqual(newer.manifest.components[0]!.version, '3.5.17');
    const dataDir = join(dir, 'newer');
    const restorer = () => etcd({ endpoints: [source.endpoint], restore: { dataDir, tool: 'etcdctl' } });
    await rejects(
      restore({ storage: other, name: newer.name, restorers: [restorer()] }),
      (thrown: unknown) => {
        strictEqual((thrown as VersionMismatchError).code, 'BK_VERSION_MISMATCH');
        strictEqual((thrown as VersionMismatchError).backupVersion, '3.5.17');
        strictEqual((thrown as VersionMismatchError).targetVersion, '3.4.23');
        ok(
          (thrown as Error).message.includes(
            "(backed up from version 3.5.17) into the target's version 3.4.23: etcd does not take data from a newer version; restore into etcd 3.5 or newer (the restore tool here is etcdctl 3.4.23",
          ),
          (thrown as Error).message,
        );
        return true;
      },
    );
    deepStrictEqual(await readdir(dir).then((names) => names.filter((name) => name.includes('newer'))), []);
    const warnings: string[] = [];
    const forced = await restore({
      storage: other,
      name: newer.name,
      restorers: [restorer()],
      force: true,
      onProgress: (event) => {
        if (event.type === 'warning') warnings.push(event.message);
      },
    });
    strictEqual(forced.preflight.etcd?.targetVersion, '3.4.23');
    ok(forced.components.etcd!.bytes > 0);
    ok(
      warnings.some((message) =>
        message.startsWith('restoring anyway (forced) from version 3.5.17 into 3.4.23'),
      ),
    );
    ok((await readdir(dataDir)).includes('member'));
  });

  it('fails clearly when bumpRevision is asked of etcdctl 3.4', async () => {
    const restorer = etcd({
      endpoints: [source.endpoint],
      restore: { dataDir: join(dir, 'bumped'), bumpRevision: 1000, tool: 'etcdctl' },
    });
    await rejects(restore({ storage, name: backupName, restorers: [restorer] }), (thrown: unknown) => {
      ok((thrown as ConfigError).code === 'BK_CONFIG', String(thrown));
      ok((thrown as Error).message.includes('etcdutl'), (thrown as Error).message);
      return true;
    });
  });

  it('round-trips the key-range export into a fresh etcd', async () => {
    const jsonl = captured.get('keys.jsonl')!;
    strictEqual(jsonl.toString().trim().split('\n').length, 200);
    const fresh = await startEtcd();
    const client = new Etcd3({ hosts: [fresh.endpoint] });
    try {
      strictEqual(await importKeys(chunked(jsonl, 1000), client), 200);
      deepStrictEqual(await allKeys(fresh.endpoint), await allKeys(source.endpoint, '/app/'));
    } finally {
      client.close();
      await fresh.stop();
    }
  });

  it('fails the sha256 check on a snapshot with a flipped byte', async () => {
    const snapshot = Buffer.from(captured.get('snapshot.db')!);
    let length = 0;
    for await (const chunk of verifySnapshot(chunked(snapshot, 777))) length += chunk.length;
    strictEqual(length, snapshot.length);
    const middle = Math.floor(snapshot.length / 2);
    snapshot[middle] = snapshot[middle]! ^ 0xff;
    await rejects(
      (async () => {
        for await (const _ of verifySnapshot(chunked(snapshot, 777))) {
        }
      })(),
      (thrown: unknown) =>
        (thrown as IntegrityError).code === 'BK_INTEGRITY' && /sha256/.test((thrown as Error).message),
    );
  });

  it('fromConfig names unknown fields', () => {
    ok(fromConfig({ kind: 'etcd', endpoints: ['http://127.0.0.1:2379'] }).name === 'etcd');
    for (const bad of [
      { endpoints: [] },
      { endpoints: ['x'], bogus: 1 },
      { endpoints: ['x'], restore: { dataDir: 'rel' } },
    ]) {
      try {
        fromConfig(bad);
        ok(false, JSON.stringify(bad));
      } catch (error) {
        ok((error as ConfigError).code === 'BK_CONFIG', String(error));
      }
    }
  });
});

describe('leases through a restore, against a real etcd 3.4', () => {
  const TTL = 5;
  let source: EtcdServer;
  let dir: string;
  const storage = new MemoryStorage();
  let backupName: string;
  const captured = new Map<string, Buffer>();
  let granted: number;

  async function leaseOf(client: Etcd3, key: string): Promise<string | undefined> {
    return (await client.kv.range({ key: Buffer.from(key) })).kvs[0]?.lease;
  }

  beforeAll(async () => {
    [source, dir] = await Promise.all([startEtcd(), mkdtemp(join(tmpdir(), 'bk-etcd-lease-test-'))]);
    const client = new Etcd3({ hosts: [source.endpoint] });
    try {
      // Granted without keep-alive: nothing refreshes it, it runs out TTL seconds from now.
      const { ID } = await client.leaseClient.leaseGrant({ TTL });
      granted = Date.now();
      await client.kv.put({ key: Buffer.from('/leased/a'), value: Buffer.from('a'), lease: ID });
      await client.kv.put({ key: Buffer.from('/leased/b'), value: Buffer.from('b'), lease: ID });
      await client.put('/plain/c').value('c');
    } finally {
      client.close();
    }
    const result = await backup({
      storage,
      components: [etcd({ endpoints: [source.endpoint], keyRanges: ['/leased/', '/plain/'] })],
    });
    backupName = result.name;
    await restore({ storage, name: backupName, restorers: [capture(captured)] });
  }, 60_000);
  afterAll(async () => {
    await source?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('keep (default) brings the lease back live with its TTL restarted; drop keeps the keys under no lease', async () => {
    const restoreInto = async (name: string, leases?: 'keep' | 'drop') => {
      const dataDir = join(dir, name);
      const peerPort = await freePort();
      const peerUrl = `http://127.0.0.1:${peerPort}`;
      const report = await restore({
        storage,
        name: backupName,
        restorers: [
          etcd({
            endpoints: [source.endpoint],
            restore: {
              dataDir,
              name,
              initialCluster: `${name}=${peerUrl}`,
              initialAdvertisePeerUrls: peerUrl,
              ...(leases ? { leases } : {}),
            },
          }),
        ],
      });
      return { dataDir, peerPort, details: report.components.etcd!.details! };
    };
    const kept = await restoreInto('kept');
    const dropped = await restoreInto('dropped', 'drop');
    strictEqual(kept.details.leases, 'keep');
    strictEqual(dropped.details.leasesRevoked, 1);
    strictEqual(dropped.details.keysDetached, 2);
    ok(
      (await readdir(dir)).every((name) => !name.startsWith('.')),
      String(await readdir(dir)),
    );

    // The original lease runs out on the source.
    await new Promise((resolve) =>
      setTimeout(resolve, Math.max(0, granted + (TTL + 1.5) * 1000 - Date.now())),
    );
    deepStrictEqual(Object.keys(await allKeys(source.endpoint)), ['/plain/c']);

    const [keptMember, droppedMember] = await Promise.all([
      startEtcd({ dataDir: kept.dataDir, name: 'kept', peerPort: kept.peerPort }),
      startEtcd({ dataDir: dropped.dataDir, name: 'dropped', peerPort: dropped.peerPort }),
    ]);
    const started = Date.now();
    const keptClient = new Etcd3({ hosts: [keptMember.endpoint] });
    const droppedClient = new Etcd3({ hosts: [droppedMember.endpoint] });
    try {
      // keep: past the original expiry, the keys are there on a live lease whose timer restarted.
      deepStrictEqual(Object.keys(await allKeys(keptMember.endpoint)).sort(), [
        '/leased/a',
        '/leased/b',
        '/plain/c',
      ]);
      const lease = await leaseOf(keptClient, '/leased/a');
      ok(lease !== undefined && lease !== '0', String(lease));
      const live = await keptClient.leaseClient.leaseTimeToLive({ ID: lease, keys: true });
      strictEqual(Number(live.grantedTTL), TTL);
      ok(Number(live.TTL) >= TTL - 2, `remaining TTL ${live.TTL}`);
      strictEqual(live.keys.length, 2);
      // drop: the same keys and values, on no lease, and no lease left.
      deepStrictEqual(await allKeys(droppedMember.endpoint), {
        '/leased/a': 'a',
        '/leased/b': 'b',
        '/plain/c': 'c',
      });
      strictEqual(await leaseOf(droppedClient, '/leased/a'), '0');
      strictEqual((await droppedClient.leaseClient.leaseLeases()).leases.length, 0);

      // About TTL after the restored member started, keep has lost the leased keys; drop has not.
      await new Promise((resolve) =>
        setTimeout(resolve, Math.max(0, started + (TTL + 1.5) * 1000 - Date.now())),
      );
      deepStrictEqual(Object.keys(await allKeys(keptMember.endpoint)), ['/plain/c']);
      deepStrictEqual(Object.keys(await allKeys(droppedMember.endpoint)).sort(), [
        '/leased/a',
        '/leased/b',
        '/plain/c',
      ]);
    } finally {
      keptClient.close();
      droppedClient.close();
      await Promise.all([keptMember.stop(), droppedMember.stop()]);
    }
  }, 60_000);

  it('records leases in keys.jsonl; importKeys drops them by default and grants new ones with keep', async () => {
    const lines = captured
      .get('keys.jsonl')!
      .toString()
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { key: string; lease?: string; leaseTtl?: number });
    const byKey = Object.fromEntries(lines.map((line) => [Buffer.from(line.key, 'base64').toString(), line]));
    strictEqual(byKey['/leased/a']!.leaseTtl, TTL);
    strictEqual(byKey['/leased/a']!.lease, byKey['/leased/b']!.lease);
    strictEqual(byKey['/plain/c']!.lease, undefined);

    const fresh = await startEtcd();
    const client = new Etcd3({ hosts: [fresh.endpoint] });
    try {
      strictEqual(await importKeys(chunked(captured.get('keys.jsonl')!, 50), client), 3);
      strictEqual(await leaseOf(client, '/leased/a'), '0');
      strictEqual(await importKeys(chunked(captured.get('keys.jsonl')!, 50), client, { leases: 'keep' }), 3);
      const lease = await leaseOf(client, '/leased/a');
      strictEqual(await leaseOf(client, '/leased/b'), lease);
      strictEqual(await leaseOf(client, '/plain/c'), '0');
      const live = await client.leaseClient.leaseTimeToLive({ ID: lease! });
      strictEqual(Number(live.grantedTTL), TTL);
      strictEqual((await client.leaseClient.leaseLeases()).leases.length, 1);
    } finally {
      client.close();
      await fresh.stop();
    }
  });
});
