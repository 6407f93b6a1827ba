import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type EtcdServer,
  type PostgresServer,
  type SshdServer,
  startEtcd,
  startPostgres,
  startSshd,
  startZookeeper,
  type ZookeeperServer,
} from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseIniInventory, parseYamlInventory, planInventory } from '../src/inventory.ts';
import { assertBuilt, removeTempDirs, runBk, runBkJson, tempDir } from './bk-process.ts';

/**
 * `bk backup --inventory`: one archive from an Ansible inventory (YAML and INI) naming
 * PostgreSQL, etcd, ZooKeeper, HAProxy and a kubeadm-shaped master, the last two reached over
 * SSH on a real OpenSSH server; `bk restore --inventory --only haproxy` writes back over SSH.
 */

interface BackupJson {
  name: string;
  components: Array<{ name: string; kind: string; entries: number }>;
}

const HAPROXY_CFG = `global
  maxconn 100
defaults
  mode http
  timeout connect 5s
  timeout client 5s
  timeout server 5s
frontend web
  bind 127.0.0.1:18080
  default_backend app
backend app
  server a 127.0.0.1:18081
`;

let sshd: SshdServer | undefined;
let postgres: PostgresServer | undefined;
let etcd: EtcdServer | undefined;
let zookeeper: ZookeeperServer | undefined;
let work: string;
let master: string;
let haproxyDir: string;
let yamlInventory: string;
let iniInventory: string;
let ssh: string[];

beforeAll(async () => {
  assertBuilt();
  for (const kind of ['postgres', 'etcd', 'zookeeper', 'ssh']) {
    const dist = fileURLToPath(new URL(`../../${kind}/dist/index.js`, import.meta.url));
    if (!existsSync(dist)) throw new Error(`${dist} is missing: run \`pnpm build\` before the CLI tests.`);
  }
  [sshd, postgres, etcd, zookeeper, work] = await Promise.all([
    startSshd(),
    startPostgres(),
    startEtcd(),
    startZookeeper(),
    tempDir('inventory'),
  ]);
  master = join(work, 'master1');
  await mkdir(join(master, 'etc/kubernetes/pki/etcd'), { recursive: true });
  await mkdir(join(master, 'etc/kubernetes/manifests'), { recursive: true });
  await mkdir(join(master, 'var/lib/kubelet'), { recursive: true });
  await writeFile(join(master, 'etc/kubernetes/admin.conf'), 'apiVersion: v1\nkind: Config\n');
  await writeFile(join(master, 'etc/kubernetes/pki/ca.key'), 'key\n', { mode: 0o600 });
  await writeFile(join(master, 'etc/kubernetes/pki/ca.crt'), 'crt\n');
  await writeFile(join(master, 'etc/kubernetes/manifests/kube-apiserver.yaml'), 'kind: Pod\n');
  await writeFile(join(master, 'var/lib/kubelet/config.yaml'), 'kind: KubeletConfiguration\n');
  haproxyDir = join(work, 'lb1/etc/haproxy');
  await mkdir(haproxyDir, { recursive: true });
  await writeFile(join(haproxyDir, 'haproxy.cfg'), HAPROXY_CFG);

  const port = sshd.port;
  yamlInventory = join(work, 'inventory.yml');
  await writeFile(
    yamlInventory,
    `all:
  vars:
    ansible_user: ${sshd.username}
  children:
    k8s_cluster:
      children:
        kube_control_plane:
          hosts:
            master1:
              ansible_host: 127.0.0.1
              ansible_port: ${port}
              bk_kubernetes_root: ${master}
    etcd:
      hosts:
        etcd1:
          ansible_host: 127.0.0.1
          etcd_client_port: ${new URL(etcd.endpoint).port}
    zookeeper:
      hosts:
        zk1:
          ansible_host: 127.0.0.1
          zookeeper_client_port: ${zookeeper.port}
    postgresql:
      vars:
        postgresql_databases: [shop]
      hosts:
        db1:
          ansible_host: 127.0.0.1
          postgresql_port: ${postgres.port}
    haproxy:
      hosts:
        lb1:
          ansible_host: 127.0.0.1
          ansible_port: ${port}
          haproxy_config_dir: ${haproxyDir}
    bastion:
      hosts:
        jump1:
`,
  );
  iniInventory = join(work, 'inventory.ini');
  await writeFile(
    iniInventory,
    `# the same platform, INI format
[kube_control_plane]
master1 ansible_host=127.0.0.1 ansible_port=${port} bk_kubernetes_root=${master}

[etcd]
etcd1 ansible_host=127.0.0.1 etcd_client_port=${new URL(etcd.endpoint).port}

[zookeeper]
zk1 ansible_host=127.0.0.1 zookeeper_client_port=${zookeeper.port}

[postgresql]
db1 ansible_host=127.0.0.1 postgresql_port=${postgres.port}

[postgresql:vars]
postgresql_databases=shop

[haproxy]
lb1 ansible_host=127.0.0.1 ansible_port=${port} haproxy_config_dir=${haproxyDir}

[all:vars]
ansible_user=${sshd.username}
`,
  );
  ssh = ['--ssh-key', sshd.privateKeyPath, '--known-hosts', sshd.knownHostsPath];
  await runPsql('CREATE DATABASE shop');
}, 120_000);

afterAll(async () => {
  await Promise.all([sshd?.stop(), postgres?.stop(), etcd?.stop(), zookeeper?.stop()]);
  await removeTempDirs();
});

async function runPsql(sql: string): Promise<void> {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  await promisify(execFile)(join(postgres!.bin, 'psql'), [
    '-X',
    '-q',
    '-h',
    postgres!.host,
    '-p',
    String(postgres!.port),
    '-U',
    'postgres',
    '-c',
    sql,
  ]);
}

describe('bk backup --inventory', () => {
  it('plans both formats alike and warns about a group it does not know', async () => {
    const fromYaml = planInventory(
      parseYamlInventory(await readFile(yamlInventory, 'utf8'), 'inventory.yml'),
    );
    const fromIni = planInventory(parseIniInventory(await readFile(iniInventory, 'utf8'), 'inventory.ini'));
    expect(fromYaml.configs).toEqual(fromIni.configs);
    expect(fromYaml.items.map((item) => item.name)).toEqual([
      'kubernetes-master-master1',
      'etcd',
      'zookeeper',
      'postgres-db1',
      'haproxy-lb1',
    ]);
    expect(fromYaml.warnings).toHaveLength(1);
    expect(fromYaml.warnings[0]).toContain('"bastion"');
    expect(fromIni.warnings).toEqual([]);
  });

  it('backs up every component of a YAML inventory into one archive; restore --only haproxy writes back over SSH', async () => {
    const store = await tempDir('inventory-store');
    const target = ['--target', `file://${store}`];
    const made = await runBkJson<BackupJson>(['backup', ...target, '--inventory', yamlInventory, ...ssh]);
    expect(made.code, made.stderr).toBe(0);
    expect(made.json.components.map((component) => component.name).sort()).toEqual(
      ['etcd', 'haproxy-lb1', 'kubernetes-master-master1', 'postgres-db1', 'zookeeper'].sort(),
    );
    expect(made.json.components.every((component) => component.entries > 0)).toBe(true);
    const archives = (await readdir(store)).filter((name) => /^backup_\d{8}_\d{6}\.tar\.gz$/.test(name));
    expect(archives).toEqual([`${made.json.name}.tar.gz`]);

    const listed = await runBk(['inspect', made.json.name, ...target]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain('haproxy-lb1');

    await writeFile(join(haproxyDir, 'haproxy.cfg'), 'broken\n');
    const restored = await runBkJson<{ components: Record<string, { entries: number }> }>([
      'restore',
      made.json.name,
      ...target,
      '--inventory',
      yamlInventory,
      ...ssh,
      '--only',
      'haproxy',
      '--conflict',
      'overwrite',
    ]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(Object.keys(restored.json.components)).toEqual(['haproxy-lb1']);
    expect(await readFile(join(haproxyDir, 'haproxy.cfg'), 'utf8')).toBe(HAPROXY_CFG);
  });

  it('--skip leaves a component out of an INI inventory; --dry-run prints the plan and writes nothing', async () => {
    const store = await tempDir('inventory-skip');
    const target = ['--target', `file://${store}`];
    const made = await runBkJson<BackupJson>([
      'backup',
      ...target,
      '-b',
      iniInventory,
      ...ssh,
      '--skip',
      'haproxy',
    ]);
    expect(made.code, made.stderr).toBe(0);
    expect(made.json.components.map((component) => component.name)).not.toContain('haproxy-lb1');
    expect(made.json.components).toHaveLength(4);

    const empty = await tempDir('inventory-dry');
    const planned = await runBk(['backup', '--target', `file://${empty}`, '-b', iniInventory, '--dry-run']);
    expect(planned.code, planned.stderr).toBe(0);
    expect(planned.stdout).toMatch(/haproxy-lb1 {2}ssh {2}lb1 {2}over SSH: \S+haproxy and `haproxy -c`/);
    expect(planned.stdout).toContain('postgres-db1');
    expect(await readdir(empty)).toEqual([]);
    // A group bk does not know is named on stderr (and in --json's warnings).
    const warned = await runBk(['backup', '--target', `file://${empty}`, '-b', yamlInventory, '--dry-run']);
    expect(warned.code, warned.stderr).toBe(0);
    expect(warned.stderr).toContain('bk: warning: inventory group "bastion" (jump1)');
    const json = await runBkJson<{ warnings: string[] }>([
      'backup',
      '--target',
      `file://${empty}`,
      '-b',
      yamlInventory,
      '--dry-run',
    ]);
    expect(json.json.warnings[0]).toContain('"bastion"');
    expect(await readdir(empty)).toEqual([]);
  });

  it('refuses an unknown host key, a wrong key and an unknown --skip, naming the host, writing nothing', async () => {
    const store = await tempDir('inventory-refused');
    const target = ['--target', `file://${store}`];
    const knownHosts = join(work, 'known_hosts.empty');
    await writeFile(knownHosts, '');
    const unknown = await runBk([
      'backup',
      ...target,
      '-b',
      yamlInventory,
      '--ssh-key',
      sshd!.privateKeyPath,
      '--known-hosts',
      knownHosts,
      '--only',
      'haproxy',
    ]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain(`[127.0.0.1]:${sshd!.port}`);
    expect(unknown.stderr).toContain('not in');
    const wrongKey = await runBk([
      'backup',
      ...target,
      '-b',
      yamlInventory,
      '--ssh-key',
      sshd!.strangerKeyPath,
      '--known-hosts',
      sshd!.knownHostsPath,
      '--only',
      'kubernetes-master',
    ]);
    expect(wrongKey.code).not.toBe(0);
    expect(wrongKey.stderr).toContain('refused the SSH key');
    expect((await readdir(store)).filter((name) => name.startsWith('backup_'))).toEqual([]);
    const badSkip = await runBk(['backup', ...target, '-b', yamlInventory, '--skip', 'kibana']);
    expect(badSkip.code).not.toBe(0);
    expect(badSkip.stderr).toContain('--skip kibana');
  });
});
