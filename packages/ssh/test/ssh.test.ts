import { deepStrictEqual, ok, rejects, strictEqual } from 'node:assert/strict';
import { chmod, lstat, mkdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BkError, backup, MemoryStorage, restore } from '@bk/core';
import { freePort, type SshdServer, startSshd } from '@bk/test-servers';
import { recordedEntries } from '@bk/test-suite';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { fromConfig, knownKeys, ssh } from '../src/index.ts';

function code(thrown: unknown): string {
  return BkError.isInstance(thrown) ? thrown.code : String(thrown);
}

/** A kubeadm-shaped tree: kubeconfigs, PKI with private keys, static pod manifests, a link. */
async function writeTree(root: string): Promise<void> {
  await mkdir(join(root, 'etc/kubernetes/pki/etcd'), { recursive: true });
  await mkdir(join(root, 'etc/kubernetes/manifests'), { recursive: true });
  await writeFile(join(root, 'etc/kubernetes/admin.conf'), 'apiVersion: v1\nkind: Config\n');
  await writeFile(join(root, 'etc/kubernetes/pki/ca.crt'), '-----BEGIN CERTIFICATE-----\nca\n');
  await writeFile(join(root, 'etc/kubernetes/pki/ca.key'), 'private key\n', { mode: 0o600 });
  await chmod(join(root, 'etc/kubernetes/pki/ca.key'), 0o600);
  await writeFile(join(root, 'etc/kubernetes/pki/etcd/server.key'), Buffer.alloc(300_000, 7), {
    mode: 0o600,
  });
  await chmod(join(root, 'etc/kubernetes/pki/etcd'), 0o700);
  await writeFile(
    join(root, 'etc/kubernetes/manifests/kube-apiserver.yaml'),
    'image: registry.k8s.io/kube-apiserver:v1.29.3\n',
  );
  await symlink('ca.crt', join(root, 'etc/kubernetes/pki/ca-link.crt'));
}

describe('SshComponent against a real OpenSSH server', () => {
  let sshd: SshdServer;
  let root: string;
  let target: Record<string, unknown>;

  beforeAll(async () => {
    sshd = await startSshd();
    root = join(sshd.dir, 'node');
    await writeTree(root);
    target = {
      host: sshd.host,
      port: sshd.port,
      username: sshd.username,
      privateKeyPath: sshd.privateKeyPath,
      knownHostsPath: sshd.knownHostsPath,
    };
  }, 60_000);
  afterAll(async () => {
    await sshd?.stop();
  });

  it('backs up a tree over SFTP and a command over exec, and restores the files byte for byte', async () => {
    const storage = new MemoryStorage();
    const component = ssh({
      ...target,
      name: 'master',
      host: sshd.host,
      paths: [join(root, 'etc/kubernetes'), join(root, 'etc/absent.conf')],
      commands: [{ entry: 'uname.txt', command: 'echo hello; uname -s' }],
      restore: { root: join(sshd.dir, 'restored') },
    });
    const result = await backup({ storage, components: [component] });
    const info = result.manifest.components[0]!.info;
    ok(info.notCaptured?.some((item) => item.includes('absent.conf')));
    // Private keys are recorded as secrets by their names, as @bk/files does.
    const secretPaths = info.secrets?.captured.flatMap((note) => note.paths ?? []) ?? [];
    ok(secretPaths.includes(`files${root}/etc/kubernetes/pki/ca.key`), JSON.stringify(info.secrets));
    const paths = (await recordedEntries(storage, result.manifest, 'master')).map((entry) => entry.path);
    for (const path of [
      'admin.conf',
      'pki/ca.key',
      'pki/etcd/server.key',
      'pki/ca-link.crt',
      'manifests/kube-apiserver.yaml',
    ]) {
      ok(paths.includes(`files${root}/etc/kubernetes/${path}`), `${path} in ${paths.join(', ')}`);
    }
    ok(paths.includes('commands/uname.txt'));

    const report = await restore({ storage, name: result.name, restorers: [component] });
    const restored = join(sshd.dir, 'restored', root, 'etc/kubernetes');
    deepStrictEqual(await readFile(join(restored, 'pki/etcd/server.key')), Buffer.alloc(300_000, 7));
    strictEqual((await lstat(join(restored, 'pki/ca.key'))).mode & 0o777, 0o600);
    strictEqual((await lstat(join(restored, 'pki/etcd'))).mode & 0o777, 0o700);
    strictEqual(await readlink(join(restored, 'pki/ca-link.crt')), 'ca.crt');
    strictEqual(report.components.master!.skipped, 1, 'the command output is not written back');

    // fail refuses an existing file, skip keeps it, overwrite replaces it.
    await writeFile(join(restored, 'admin.conf'), 'changed\n');
    await rejects(
      restore({ storage, name: result.name, restorers: [component] }),
      (thrown: unknown) => code(thrown) === 'BK_CONFLICT',
    );
    await restore({ storage, name: result.name, restorers: [component], conflict: 'skip' });
    strictEqual(await readFile(join(restored, 'admin.conf'), 'utf8'), 'changed\n');
    await restore({ storage, name: result.name, restorers: [component], conflict: 'overwrite' });
    strictEqual(await readFile(join(restored, 'admin.conf'), 'utf8'), 'apiVersion: v1\nkind: Config\n');

    // A link on the way to a target is never written through.
    const outside = join(sshd.dir, 'outside');
    await mkdir(outside, { recursive: true });
    await rm(join(restored, 'manifests'), { recursive: true });
    await symlink(outside, join(restored, 'manifests'));
    await rejects(
      restore({ storage, name: result.name, restorers: [component], conflict: 'overwrite' }),
      (thrown: unknown) => code(thrown) === 'BK_UNSAFE_PATH',
    );
    deepStrictEqual(await readdirNames(outside), []);
  });

  it('refuses an unknown host key unless accepted, a changed host key, a wrong key and an unreachable host, naming the host', async () => {
    const empty = join(sshd.dir, 'known_hosts.empty');
    await writeFile(empty, '');
    const paths = [join(root, 'etc/kubernetes/admin.conf')];
    const run = (options: Record<string, unknown>) =>
      backup({ storage: new MemoryStorage(), components: [ssh({ ...target, paths, ...options } as never)] });
    await rejects(run({ knownHostsPath: empty }), (thrown: unknown) => {
      ok(
        String(thrown).includes(`[127.0.0.1]:${sshd.port}`) && /not in/.test(String(thrown)),
        String(thrown),
      );
      return true;
    });
    // Accepted once, then known.
    await run({ knownHostsPath: empty, acceptNewHostKey: true });
    strictEqual(knownKeys(await readFile(empty, 'utf8'), `[127.0.0.1]:${sshd.port}`).length, 1);
    await run({ knownHostsPath: empty });

    const changed = join(sshd.dir, 'known_hosts.changed');
    const strangerPublic = (await readFile(`${sshd.strangerKeyPath}.pub`, 'utf8')).split(' ');
    await writeFile(changed, `[127.0.0.1]:${sshd.port} ${strangerPublic[0]} ${strangerPublic[1]}\n`);
    await rejects(run({ knownHostsPath: changed, acceptNewHostKey: true }), /differs/);

    await rejects(run({ privateKeyPath: sshd.strangerKeyPath }), (thrown: unknown) => {
      ok(
        String(thrown).includes('refused the SSH key') && String(thrown).includes(sshd.strangerKeyPath),
        String(thrown),
      );
      return true;
    });
    const closed = await freePort();
    await rejects(run({ port: closed }), (thrown: unknown) => {
      ok(String(thrown).includes(`127.0.0.1]:${closed}`) && code(thrown) === 'BK_COMPONENT', String(thrown));
      return true;
    });
  });

  it('fromConfig validates the fields', () => {
    ok(fromConfig({ kind: 'ssh', host: 'lb1', paths: ['/etc/haproxy'] }));
    for (const bad of [
      { kind: 'ssh', host: 'lb1' },
      { kind: 'ssh', host: 'lb1', paths: ['etc/haproxy'] },
      { kind: 'ssh', paths: ['/etc'] },
      { kind: 'ssh', host: 'lb1', paths: ['/etc'], color: 'red' },
    ]) {
      let thrown: unknown;
      try {
        fromConfig(bad);
      } catch (error) {
        thrown = error;
      }
      strictEqual(code(thrown), 'BK_CONFIG', JSON.stringify(bad));
    }
  });
});

async function readdirNames(dir: string): Promise<string[]> {
  const { readdir } = await import('node:fs/promises');
  return (await readdir(dir)).sort();
}
