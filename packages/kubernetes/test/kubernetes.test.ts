import { deepStrictEqual, ok, rejects, strictEqual } from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BkError, backup, type ComponentInfo, MemoryStorage, restore } from '@bk/core';
import { type EtcdServer, freePort, startEtcd } from '@bk/test-servers';
import { componentRoundTrip, recordedEntries } from '@bk/test-suite';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { fromConfig, kubernetesControlPlane } from '../src/index.ts';
import { allKeys, KUBERNETES_VERSION, putKey, snapshotTree, writeKubeadmLayout } from './layout.ts';

function code(thrown: unknown): string {
  return BkError.isInstance(thrown) ? thrown.code : String(thrown);
}

async function seedEtcd(endpoint: string): Promise<void> {
  for (let index = 0; index < 20; index += 1) {
    await putKey(endpoint, `/registry/configmaps/default/cm-${index}`, `{"data":{"n":"${index}"}}`);
  }
  await putKey(endpoint, '/registry/namespaces/kube-system', '{"kind":"Namespace"}');
  await putKey(endpoint, '/registry/secrets/default/token', 'binary\u0000value');
}

describe('KubernetesControlPlane on a kubeadm layout and a real etcd 3.4', () => {
  let etcd: EtcdServer;
  let work: string;
  let source: string;
  const storage = new MemoryStorage();
  let backupName: string;
  let info: ComponentInfo;
  let entryPaths: string[];

  beforeAll(async () => {
    [etcd, work] = await Promise.all([startEtcd(), mkdtemp(join(tmpdir(), 'bk-kubernetes-test-'))]);
    source = join(work, 'node');
    await writeKubeadmLayout(source);
    await seedEtcd(etcd.endpoint);
    const result = await backup({
      storage,
      components: [kubernetesControlPlane({ root: source, etcd: { endpoints: [etcd.endpoint] } })],
    });
    backupName = result.name;
    info = result.manifest.components[0]!.info;
    entryPaths = (await recordedEntries(storage, result.manifest, result.manifest.components[0]!.name)).map(
      (entry) => entry.path,
    );
  }, 60_000);
  afterAll(async () => {
    await etcd?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('archives each part under its prefix and merges the info', () => {
    for (const path of [
      'kubeadm/etc/kubernetes/admin.conf',
      'kubeadm/etc/kubernetes/kubeadm-config.yaml',
      'kubeadm/var/lib/kubelet/config.yaml',
      'pki/ca.key',
      'pki/etcd',
      'pki/etcd/server.key',
      'pki/sa.pub',
      'manifests/etcd.yaml',
      'manifests/kube-apiserver.yaml',
      'etcd/snapshot.db',
    ]) {
      ok(entryPaths.includes(path), `${path} missing from ${entryPaths.join(', ')}`);
    }
    ok(!entryPaths.includes('kubeadm/etc/kubernetes/super-admin.conf'));
    strictEqual(info.version, KUBERNETES_VERSION);
    strictEqual(info.details?.kubernetesVersion, KUBERNETES_VERSION);
    strictEqual(info.details?.etcdVersion, '3.4.23');
    deepStrictEqual(info.details?.parts, ['kubeadm', 'pki', 'manifests', 'etcd']);
    ok(((info.details?.missingKubeadmPaths ?? []) as string[]).includes('/etc/kubernetes/super-admin.conf'));
    ok(info.notCaptured?.some((item) => item.startsWith('etcd: leases')));
    ok(info.notCaptured?.some((item) => item.startsWith('pki: file owners')));
    ok(!JSON.stringify(info).includes(Buffer.from('admin private key').toString('base64')));
  });

  it('declares the PKI keys, kubeconfigs and etcd Secrets it holds; unencrypted it warns, required it refuses before writing', async () => {
    deepStrictEqual(
      info.secrets?.captured.map((note) => [note.kind, [...(note.paths ?? [])].sort()]),
      [
        ['private-key', ['pki/**/*.key']],
        [
          'credentials',
          [
            'kubeadm/**/admin.conf',
            'kubeadm/**/controller-manager.conf',
            'kubeadm/**/kubelet.conf',
            'kubeadm/**/scheduler.conf',
          ],
        ],
        ['kubernetes-secrets', ['etcd/snapshot.db']],
        ['password-hash', ['etcd/snapshot.db']],
      ],
    );
    ok(info.secrets?.notCaptured.some((note) => note.what.includes('encryption-provider-config')));
    const component = () => kubernetesControlPlane({ root: source, etcd: { endpoints: [etcd.endpoint] } });
    const warnings: string[] = [];
    const other = new MemoryStorage();
    await backup({
      storage: other,
      components: [component()],
      onProgress: (event) => {
        if (event.type === 'warning') warnings.push(event.message);
      },
    });
    ok(
      warnings.some((message) =>
        message.startsWith('stored unencrypted although it holds secrets: the cluster PKI private keys'),
      ),
    );
    const empty = new MemoryStorage();
    const thrown = await backup({ storage: empty, components: [component()], requireEncryption: true }).catch(
      (error: unknown) => error,
    );
    strictEqual(code(thrown), 'BK_UNENCRYPTED_SECRETS');
    ok(String((thrown as Error).message).includes('"kubernetes" (the cluster PKI private keys'));
    const left: string[] = [];
    for await (const object of empty.list('')) left.push(object.key);
    deepStrictEqual(left, []);
  });

  it('restores files byte for byte with their modes and the etcd snapshot into a new data dir', async () => {
    const target = join(work, 'restored');
    const dataDir = join(work, 'etcd-restored');
    const peerPort = await freePort();
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const component = kubernetesControlPlane({
      root: source,
      etcd: { endpoints: [etcd.endpoint] },
      restore: {
        root: target,
        etcd: { dataDir, name: 't2', initialCluster: `t2=${peerUrl}`, initialAdvertisePeerUrls: peerUrl },
      },
    });
    const report = await restore({ storage, name: backupName, restorers: [component] });
    const restored = report.components.kubernetes!;
    ok(restored.entries >= entryPaths.length - 1, String(restored.entries));

    for (const dir of ['etc/kubernetes', 'var/lib/kubelet']) {
      const before = await snapshotTree(join(source, dir));
      const after = await snapshotTree(join(target, dir));
      ok(Object.keys(before).length > 0);
      // Every file: same bytes and mode; directories inside pki and manifests keep their mode.
      for (const [path, item] of Object.entries(before)) {
        if (path.endsWith('/') && !path.startsWith('pki/')) continue;
        deepStrictEqual(after[path], item, `${dir}/${path}`);
      }
    }
    for (const key of ['ca.key', 'apiserver.key', 'sa.key', 'etcd/ca.key', 'etcd/server.key']) {
      strictEqual((await stat(join(target, 'etc/kubernetes/pki', key))).mode & 0o777, 0o600, key);
    }
    strictEqual((await stat(join(target, 'etc/kubernetes/pki/etcd'))).mode & 0o777, 0o700);

    const copy = await startEtcd({ dataDir, name: 't2', peerPort });
    try {
      const keys = await allKeys(copy.endpoint);
      deepStrictEqual(keys, await allKeys(etcd.endpoint));
      strictEqual(Object.keys(keys).filter((key) => key.startsWith('/registry/')).length, 22);
    } finally {
      await copy.stop();
    }

    // Again into the same targets: the etcd data dir is refused before any file is touched.
    await writeFile(join(target, 'etc/kubernetes/admin.conf'), 'changed locally\n');
    await rejects(restore({ storage, name: backupName, restorers: [component] }), (thrown: unknown) => {
      strictEqual(code(thrown), 'BK_CONFLICT', String(thrown));
      return true;
    });
    deepStrictEqual(
      (await snapshotTree(join(target, 'etc/kubernetes')))['admin.conf']?.data,
      Buffer.from('changed locally\n').toString('base64'),
    );

    // skip: existing files and the occupied data dir are left alone, the rest is restored.
    await rm(join(target, 'etc/kubernetes/manifests'), { recursive: true });
    const skipped = await restore({ storage, name: backupName, restorers: [component], conflict: 'skip' });
    ok((skipped.components.kubernetes!.skipped ?? 0) > 0);
    strictEqual(
      (await snapshotTree(join(target, 'etc/kubernetes')))['admin.conf']?.data,
      Buffer.from('changed locally\n').toString('base64'),
    );
    deepStrictEqual(
      await snapshotTree(join(target, 'etc/kubernetes/manifests')),
      await snapshotTree(join(source, 'etc/kubernetes/manifests')),
    );
  }, 60_000);

  it('refuses overwrite into the data dir of a running etcd member before any file is written', async () => {
    const dataDir = join(work, 'etcd-live');
    const peerPort = await freePort();
    const live = await startEtcd({ dataDir, name: 'live', peerPort });
    try {
      const before = await readdir(dataDir, { recursive: true });
      const target = join(work, 'restored-over-live');
      const peerUrl = `http://127.0.0.1:${peerPort}`;
      const component = kubernetesControlPlane({
        root: source,
        etcd: { endpoints: [etcd.endpoint] },
        restore: {
          root: target,
          etcd: {
            dataDir,
            name: 'live',
            initialCluster: `live=${peerUrl}`,
            initialAdvertisePeerUrls: peerUrl,
          },
        },
      });
      await rejects(
        restore({ storage, name: backupName, restorers: [component], conflict: 'overwrite' }),
        (thrown: unknown) => {
          strictEqual(code(thrown), 'BK_CONFLICT', String(thrown));
          strictEqual((thrown as Error).name, 'EtcdMemberRunningError');
          return true;
        },
      );
      await rejects(stat(target), (thrown: unknown) => (thrown as NodeJS.ErrnoException).code === 'ENOENT');
      deepStrictEqual(await readdir(dataDir, { recursive: true }), before);
      strictEqual(Object.keys(await allKeys(live.endpoint)).length, 0);
    } finally {
      await live.stop();
    }
  });

  it('refuses to restore without restore.root or restore.etcd, writing nothing', async () => {
    await rejects(
      restore({ storage, name: backupName, restorers: [kubernetesControlPlane({ root: source })] }),
      (thrown: unknown) => code(thrown) === 'BK_CONFIG' && /restore\.root/.test((thrown as Error).message),
    );
    const target = join(work, 'no-etcd-target');
    await rejects(
      restore({
        storage,
        name: backupName,
        restorers: [kubernetesControlPlane({ root: source, restore: { root: target } })],
      }),
      (thrown: unknown) => code(thrown) === 'BK_CONFIG' && /restore\.etcd/.test((thrown as Error).message),
    );
    deepStrictEqual(await snapshotTree(target), {});
  });

  it('backs up the files only when etcd is omitted', async () => {
    const filesOnly = new MemoryStorage();
    const result = await backup({
      storage: filesOnly,
      components: [kubernetesControlPlane({ root: source })],
    });
    const record = result.manifest.components[0]!;
    const recorded = await recordedEntries(filesOnly, result.manifest, record.name);
    ok(recorded.every((entry) => !entry.path.startsWith('etcd/')));
    strictEqual(record.info.details?.etcdVersion, null);
    ok(record.info.notCaptured?.[0]?.includes('no "etcd" option'));
    const target = join(work, 'files-only');
    await restore({
      storage: filesOnly,
      name: result.name,
      restorers: [kubernetesControlPlane({ restore: { root: target } })],
    });
    deepStrictEqual(
      await snapshotTree(join(target, 'etc/kubernetes/pki')),
      await snapshotTree(join(source, 'etc/kubernetes/pki')),
    );
  });

  it('fromConfig validates its fields', () => {
    const built = fromConfig({
      kind: 'kubernetes',
      name: 'cp1',
      etcd: { endpoints: ['https://127.0.0.1:2379'] },
      restore: { root: '/srv/restore', etcd: { dataDir: '/var/lib/etcd-restored' } },
    });
    strictEqual(built.name, 'cp1');
    strictEqual(built.pkiDir, '/etc/kubernetes/pki');
    for (const bad of [
      { bogus: 1 },
      { kind: 'etcd' },
      { root: 'relative' },
      { pkiDir: 'pki' },
      { kubeadmPaths: '/etc/kubernetes/admin.conf' },
      { kubeadmPaths: ['admin.conf'] },
      { etcd: { endpoints: [] } },
      { etcd: { endpoints: ['http://x'], restore: { dataDir: '/x' } } },
      { restore: { root: 'rel' } },
      { restore: { etcd: { dataDir: 'rel' } } },
      { restore: { dataDir: '/x' } },
      { name: '../up' },
    ]) {
      try {
        fromConfig(bad);
        ok(false, `accepted ${JSON.stringify(bad)}`);
      } catch (error) {
        strictEqual(code(error), 'BK_CONFIG', `${JSON.stringify(bad)}: ${String(error)}`);
      }
    }
  });
});

describe('@bk/test-suite componentRoundTrip on KubernetesControlPlane', () => {
  componentRoundTrip(
    it,
    async () => {
      const [server, dir, peerPort] = await Promise.all([
        startEtcd(),
        mkdtemp(join(tmpdir(), 'bk-kubernetes-suite-')),
        freePort(),
      ]);
      const root = join(dir, 'node');
      const dataDir = join(dir, 'etcd-restored');
      const peerUrl = `http://127.0.0.1:${peerPort}`;
      /** The keys the restored data dir serves, or (before a restore) the source etcd's. */
      const keys = async (): Promise<Record<string, string>> => {
        if (Object.keys(await snapshotTree(dataDir)).length === 0) return allKeys(server.endpoint);
        const copy = await startEtcd({ dataDir, name: 't2', peerPort });
        try {
          return await allKeys(copy.endpoint);
        } finally {
          await copy.stop();
        }
      };
      return {
        component: kubernetesControlPlane({
          name: 'control-plane',
          root,
          etcd: { endpoints: [server.endpoint] },
          restore: {
            root,
            etcd: { dataDir, name: 't2', initialCluster: `t2=${peerUrl}`, initialAdvertisePeerUrls: peerUrl },
          },
        }),
        seed: async () => {
          await writeKubeadmLayout(root);
          await seedEtcd(server.endpoint);
        },
        snapshot: async () => ({
          files: Object.fromEntries(
            Object.entries(await snapshotTree(root)).filter(
              ([path]) => !path.endsWith('/') || path.startsWith('etc/kubernetes/pki/'),
            ),
          ),
          keys: await keys(),
        }),
        reset: () => rm(root, { recursive: true, force: true }),
        cleanup: async () => {
          await server.stop();
          await rm(dir, { recursive: true, force: true });
        },
      };
    },
    { timeout: 60_000 },
  );
});
