import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { chmod, lstat, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export const KUBERNETES_VERSION = 'v1.29.3';

function kubeconfig(user: string): string {
  const fake = (text: string) => Buffer.from(text).toString('base64');
  return `apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: ${fake('ca certificate')}
    server: https://10.0.0.10:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: ${user}
  name: ${user}@kubernetes
current-context: ${user}@kubernetes
users:
- name: ${user}
  user:
    client-certificate-data: ${fake(`${user} certificate`)}
    client-key-data: ${fake(`${user} private key`)}
`;
}

const KUBEADM_CONFIG = `apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 10.0.0.10
  bindPort: 6443
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
kubernetesVersion: ${KUBERNETES_VERSION}
clusterName: kubernetes
etcd:
  local:
    dataDir: /var/lib/etcd
networking:
  podSubnet: 10.244.0.0/16
  serviceSubnet: 10.96.0.0/12
`;

const KUBELET_CONFIG = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
clusterDNS:
- 10.96.0.10
rotateCertificates: true
staticPodPath: /etc/kubernetes/manifests
`;

const ETCD_MANIFEST = `apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  containers:
  - name: etcd
    image: registry.k8s.io/etcd:3.5.12-0
    command:
    - etcd
    - --data-dir=/var/lib/etcd
    - --cert-file=/etc/kubernetes/pki/etcd/server.crt
    - --key-file=/etc/kubernetes/pki/etcd/server.key
  volumes:
  - hostPath:
      path: /var/lib/etcd
      type: DirectoryOrCreate
    name: etcd-data
`;

const APISERVER_MANIFEST = `apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - name: kube-apiserver
    image: registry.k8s.io/kube-apiserver:${KUBERNETES_VERSION}
    command:
    - kube-apiserver
    - --etcd-servers=https://127.0.0.1:2379
    - --client-ca-file=/etc/kubernetes/pki/ca.crt
`;

/** A self-signed certificate and its key (P-256, one day), as kubeadm's PKI files. */
async function certificate(dir: string, base: string, subject: string): Promise<void> {
  await exec('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    '1',
    '-subj',
    subject,
    '-keyout',
    join(dir, `${base}.key`),
    '-out',
    join(dir, `${base}.crt`),
  ]);
  await chmod(join(dir, `${base}.key`), 0o600);
  await chmod(join(dir, `${base}.crt`), 0o644);
}

async function put(path: string, content: string | Buffer, mode: number): Promise<void> {
  await writeFile(path, content);
  await chmod(path, mode);
}

/** Writes a kubeadm control-plane layout under `root` (etc/kubernetes, var/lib/kubelet). */
export async function writeKubeadmLayout(root: string): Promise<void> {
  const kubernetes = join(root, 'etc/kubernetes');
  const pki = join(kubernetes, 'pki');
  await mkdir(join(pki, 'etcd'), { recursive: true });
  await mkdir(join(kubernetes, 'manifests'), { recursive: true });
  await mkdir(join(root, 'var/lib/kubelet'), { recursive: true });
  for (const name of ['admin', 'controller-manager', 'scheduler', 'kubelet']) {
    await put(join(kubernetes, `${name}.conf`), kubeconfig(name), 0o600);
  }
  await put(join(kubernetes, 'kubeadm-config.yaml'), KUBEADM_CONFIG, 0o644);
  await put(join(root, 'var/lib/kubelet/config.yaml'), KUBELET_CONFIG, 0o644);
  await Promise.all([
    certificate(pki, 'ca', '/CN=kubernetes'),
    certificate(pki, 'apiserver', '/CN=kube-apiserver'),
    certificate(pki, 'front-proxy-ca', '/CN=front-proxy-ca'),
    certificate(join(pki, 'etcd'), 'ca', '/CN=etcd-ca'),
    certificate(join(pki, 'etcd'), 'server', '/CN=etcd-server'),
  ]);
  const serviceAccount = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  await put(join(pki, 'sa.key'), serviceAccount.privateKey.export({ type: 'pkcs8', format: 'pem' }), 0o600);
  await put(join(pki, 'sa.pub'), serviceAccount.publicKey.export({ type: 'spki', format: 'pem' }), 0o644);
  await chmod(join(pki, 'etcd'), 0o700);
  await put(join(kubernetes, 'manifests/etcd.yaml'), ETCD_MANIFEST, 0o600);
  await put(join(kubernetes, 'manifests/kube-apiserver.yaml'), APISERVER_MANIFEST, 0o600);
}

/** Every file under `dir` (recursively) as `{ path: { mode, base64 } }`, plus directory modes. */
export async function snapshotTree(dir: string): Promise<Record<string, { mode: number; data?: string }>> {
  const tree: Record<string, { mode: number; data?: string }> = {};
  async function walk(path: string, rel: string): Promise<void> {
    let names: string[];
    try {
      names = (await readdir(path)).sort();
    } catch {
      return;
    }
    for (const name of names) {
      const absolute = join(path, name);
      const relative = rel === '' ? name : `${rel}/${name}`;
      const stats = await lstat(absolute);
      if (stats.isDirectory()) {
        tree[`${relative}/`] = { mode: stats.mode & 0o7777 };
        await walk(absolute, relative);
      } else {
        tree[relative] = { mode: stats.mode & 0o7777, data: (await readFile(absolute)).toString('base64') };
      }
    }
  }
  await walk(dir, '');
  return tree;
}

/** etcd's JSON gateway (no client library needed): put one key. */
export async function putKey(endpoint: string, key: string, value: string): Promise<void> {
  const response = await fetch(`${endpoint}/v3/kv/put`, {
    method: 'POST',
    body: JSON.stringify({
      key: Buffer.from(key).toString('base64'),
      value: Buffer.from(value).toString('base64'),
    }),
    signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok) throw new Error(`put ${key}: HTTP ${response.status}`);
}

/** Every key and value in etcd, through the JSON gateway. */
export async function allKeys(endpoint: string): Promise<Record<string, string>> {
  const response = await fetch(`${endpoint}/v3/kv/range`, {
    method: 'POST',
    body: JSON.stringify({
      key: Buffer.from([0]).toString('base64'),
      range_end: Buffer.from([0]).toString('base64'),
    }),
    signal: AbortSignal.timeout(10_000),
  });
  const body = (await response.json()) as { kvs?: { key: string; value?: string }[] };
  return Object.fromEntries(
    (body.kvs ?? []).map((kv) => [
      Buffer.from(kv.key, 'base64').toString(),
      Buffer.from(kv.value ?? '', 'base64').toString(),
    ]),
  );
}
