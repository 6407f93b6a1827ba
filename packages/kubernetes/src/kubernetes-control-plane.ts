import { lstat, readdir, readFile } from 'node:fs/promises';
import { basename, isAbsolute, join, resolve } from 'node:path';
import {
  type BackupContext,
  type Component,
  type ComponentInfo,
  ConfigError,
  ConflictError,
  checkComponentConfig,
  checkComponentName,
  checkNestedConfig,
  type Entry,
  isRecord,
  type OperationContext,
  type RestoreContext,
  type RestoreReport,
  type SecretNote,
  throwIfAborted,
} from '@bk/core';
import { assertNoRunningMember, EtcdComponent, type EtcdOptions, type EtcdRestoreOptions } from '@bk/etcd';
import { FilesComponent } from '@bk/files';
import { type KubernetesResources, resourcesFromConfig } from './kubernetes-resources.ts';

/** The kubeadm files backed up by default (those that exist; the others are listed as missing). */
export const DEFAULT_KUBEADM_PATHS: readonly string[] = [
  '/etc/kubernetes/admin.conf',
  '/etc/kubernetes/super-admin.conf',
  '/etc/kubernetes/controller-manager.conf',
  '/etc/kubernetes/scheduler.conf',
  '/etc/kubernetes/kubelet.conf',
  '/etc/kubernetes/kubeadm-config.yaml',
  '/var/lib/kubelet/config.yaml',
  '/var/lib/kubelet/kubeadm-flags.env',
];

/** Where a restore writes. */
export interface KubernetesRestoreOptions {
  /**
   * Absolute directory the files are restored under, each at its host path below it
   * (`/etc/kubernetes/pki` → `<root>/etc/kubernetes/pki`). Use `/` to restore in place.
   * Required when the backup holds files.
   */
  root?: string;
  /** How the etcd snapshot is restored (see `@bk/etcd`): `dataDir` (a new one), member name, peer URLs. */
  etcd?: EtcdRestoreOptions;
}

/** Options of {@link KubernetesControlPlane}. */
export interface KubernetesControlPlaneOptions {
  /** Component name. Default `kubernetes`. */
  name?: string;
  /** Absolute directory the host paths below are read under. Default `/`; tests use a fake root. */
  root?: string;
  /** kubeconfigs and kubeadm/kubelet config files (host paths). Default {@link DEFAULT_KUBEADM_PATHS}. */
  kubeadmPaths?: string[];
  /** The PKI directory. Default `/etc/kubernetes/pki`. */
  pkiDir?: string;
  /** The static pod manifests directory. Default `/etc/kubernetes/manifests`. */
  manifestsDir?: string;
  /**
   * The etcd to snapshot (`@bk/etcd` options without `name` and `restore`). Omit it when the
   * etcd is not reachable: then only the files are backed up.
   */
  etcd?: Omit<EtcdOptions, 'name' | 'restore'>;
  restore?: KubernetesRestoreOptions;
}

/** A sub-component and the prefix its entries are archived under. */
type Part = 'kubeadm' | 'pki' | 'manifests' | 'etcd';
const FILE_PARTS: readonly Part[] = ['kubeadm', 'pki', 'manifests'];

/** A snapshot restore talks to no server; the etcd component still wants an endpoint. */
const PLACEHOLDER_ENDPOINT = 'http://127.0.0.1:2379';

const CONFIG_FIELDS = ['kind', 'name', 'root', 'kubeadmPaths', 'pkiDir', 'manifestsDir', 'etcd', 'restore'];
const RESTORE_FIELDS = ['root', 'etcd'];

const NOT_CAPTURED = [
  'application resources as such and persistent volume data: only the etcd snapshot holds the API objects; PV contents are not backed up',
  'kubelet client certificates under /var/lib/kubelet/pki (rotated by the kubelet; a restored node re-bootstraps them)',
  'container images, CNI configuration (/etc/cni) and container runtime state',
  'worker nodes: this preset covers one control-plane node',
  'the etcd revision bump after a restore needs etcdutl >= 3.5 (restore.etcd.bumpRevision); etcdctl 3.4 cannot do it',
];

function absolute(value: unknown, field: string, where: string): string {
  if (typeof value !== 'string' || value === '' || value.includes('\0') || !isAbsolute(value)) {
    throw new ConfigError(`${where}: "${field}" must be an absolute path, got ${JSON.stringify(value)}.`);
  }
  return resolve(value);
}

/** `/etc/kubernetes/pki` under `root`. */
function under(root: string, hostPath: string): string {
  return join(root, hostPath);
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** `kubernetesVersion: v1.29.3` in a kubeadm ClusterConfiguration. */
function kubernetesVersionOf(text: string): string | undefined {
  if (!/^\s*kind:\s*ClusterConfiguration\b/m.test(text)) return undefined;
  return /^\s*kubernetesVersion:\s*["']?([^"'\s#]+)/m.exec(text)?.[1];
}

/** The tag of the kube-apiserver image in its static pod manifest. */
function apiserverImageVersionOf(text: string): string | undefined {
  return /image:\s*["']?\S*kube-apiserver:([^"'\s@]+)/.exec(text)?.[1];
}

/** An iterator whose next item can be looked at without taking it. */
class Peekable<T> {
  #iterator: AsyncIterator<T>;
  #head: IteratorResult<T> | undefined;
  constructor(source: AsyncIterable<T>) {
    this.#iterator = source[Symbol.asyncIterator]();
  }
  async peek(): Promise<IteratorResult<T>> {
    this.#head ??= await this.#iterator.next();
    return this.#head;
  }
  take(): void {
    this.#head = undefined;
  }
}

/**
 * The control plane of a kubeadm node as ONE component: kubeconfigs and kubeadm/kubelet config
 * (`kubeadm/`), the PKI (`pki/`) and the static pod manifests (`manifests/`) through
 * `@bk/files`, and the etcd snapshot (`etcd/`) through `@bk/etcd`. Restore routes each entry by
 * its prefix back to the sub-component that wrote it.
 *
 * @example
 * import { backup } from '@bk/core';
 * import { kubernetesControlPlane } from '@bk/kubernetes';
 * await backup({ storage, components: [kubernetesControlPlane({ etcd: { endpoints: ['https://127.0.0.1:2379'], tls } })] });
 */
export class KubernetesControlPlane implements Component {
  readonly kind = 'kubernetes';
  readonly name: string;
  readonly root: string;
  readonly kubeadmPaths: readonly string[];
  readonly pkiDir: string;
  readonly manifestsDir: string;
  readonly etcdOptions: Readonly<Omit<EtcdOptions, 'name' | 'restore'>> | undefined;
  readonly restoreOptions: Readonly<KubernetesRestoreOptions>;
  #etcd: EtcdComponent | undefined;
  #kubeadmFound: string[] | undefined;

  /** Validates the options; touches no file. @throws {ConfigError} naming the invalid option. */
  constructor(options: KubernetesControlPlaneOptions = {}) {
    if (!isRecord(options)) throw new ConfigError('kubernetes component: the options must be an object.');
    const name = options.name ?? 'kubernetes';
    if (typeof name !== 'string') throw new ConfigError('kubernetes component: "name" must be a string.');
    checkComponentName(name);
    const where = `kubernetes component "${name}"`;
    this.name = name;
    this.root = absolute(options.root ?? '/', 'root', where);
    if (options.kubeadmPaths !== undefined && !Array.isArray(options.kubeadmPaths)) {
      throw new ConfigError(`${where}: "kubeadmPaths" must be an array of absolute paths.`);
    }
    this.kubeadmPaths = (options.kubeadmPaths ?? DEFAULT_KUBEADM_PATHS).map((path, index) =>
      absolute(path, `kubeadmPaths[${index}]`, where),
    );
    this.pkiDir = absolute(options.pkiDir ?? '/etc/kubernetes/pki', 'pkiDir', where);
    this.manifestsDir = absolute(options.manifestsDir ?? '/etc/kubernetes/manifests', 'manifestsDir', where);
    const etcd: unknown = options.etcd;
    if (etcd !== undefined) {
      if (!isRecord(etcd)) throw new ConfigError(`${where}: "etcd" must be an object.`);
      if ('name' in etcd || 'restore' in etcd) {
        throw new ConfigError(
          `${where}: set the etcd restore options as "restore.etcd"; "etcd.name" is fixed.`,
        );
      }
      // Validates the etcd options now (endpoints, keyRanges…).
      this.#etcd = new EtcdComponent({ ...(etcd as Omit<EtcdOptions, 'name'>), name: 'etcd' });
      this.etcdOptions = etcd as Omit<EtcdOptions, 'name' | 'restore'>;
    }
    const restore: unknown = options.restore ?? {};
    if (!isRecord(restore)) throw new ConfigError(`${where}: "restore" must be an object.`);
    const etcdRestore = restore.etcd as EtcdRestoreOptions | undefined;
    this.restoreOptions = {
      ...(restore.root === undefined ? {} : { root: absolute(restore.root, 'restore.root', where) }),
      ...(etcdRestore === undefined ? {} : { etcd: etcdRestore }),
    };
    if (etcdRestore !== undefined) {
      // Validates dataDir, tool and bumpRevision with the etcd component's own rules.
      new EtcdComponent({ name: 'etcd', endpoints: [PLACEHOLDER_ENDPOINT], restore: etcdRestore });
    }
  }

  /** The backup-side files component of a part. */
  #files(part: Part, kubeadmFound: string[]): FilesComponent {
    if (part === 'kubeadm')
      return new FilesComponent({ name: 'kubeadm', root: this.root, paths: kubeadmFound });
    const dir = part === 'pki' ? this.pkiDir : this.manifestsDir;
    return new FilesComponent({ name: part, root: under(this.root, dir), paths: ['.'] });
  }

  /** The restore-side files component of a part, writing under `restore.root`. */
  #restoreFiles(part: Part, root: string): FilesComponent {
    if (part === 'kubeadm') return new FilesComponent({ name: 'kubeadm', root, paths: ['.'] });
    const dir = under(root, part === 'pki' ? this.pkiDir : this.manifestsDir);
    return new FilesComponent({ name: part, root: dir, paths: ['.'], restoreTo: dir });
  }

  async #findKubeadm(): Promise<{ found: string[]; missing: string[] }> {
    const found: string[] = [];
    const missing: string[] = [];
    for (const path of this.kubeadmPaths) {
      if (await exists(under(this.root, path))) found.push(under(this.root, path));
      else missing.push(path);
    }
    return { found, missing };
  }

  /** Reads the sub-components' info and merges it: versions, what is not captured, details. */
  async describe(context: OperationContext): Promise<ComponentInfo> {
    throwIfAborted(context.signal);
    for (const dir of [this.pkiDir, this.manifestsDir]) {
      if (!(await exists(under(this.root, dir)))) {
        throw new ConfigError(
          `kubernetes component "${this.name}": "${under(this.root, dir)}" does not exist.`,
        );
      }
    }
    const { found, missing } = await this.#findKubeadm();
    this.#kubeadmFound = found;
    const parts: Record<string, ComponentInfo> = {};
    for (const part of FILE_PARTS) {
      if (part === 'kubeadm' && found.length === 0) continue;
      parts[part] = await this.#files(part, found).describe(context);
    }
    if (this.#etcd) parts.etcd = await this.#etcd.describe(context);

    let kubernetesVersion: string | undefined;
    for (const path of found) {
      if (!/\.ya?ml$/.test(path)) continue;
      kubernetesVersion ??= kubernetesVersionOf(await readFile(path, 'utf8').catch(() => ''));
    }
    const apiserverManifest = join(under(this.root, this.manifestsDir), 'kube-apiserver.yaml');
    const apiserverImageVersion = apiserverImageVersionOf(
      await readFile(apiserverManifest, 'utf8').catch(() => ''),
    );
    const notCaptured = [...NOT_CAPTURED];
    if (!this.#etcd) {
      notCaptured.unshift('the etcd data: no "etcd" option was set (files only); back up etcd separately');
    }
    for (const path of missing) notCaptured.push(`${path}: not present on this node`);
    for (const [part, info] of Object.entries(parts)) {
      for (const item of info.notCaptured ?? []) notCaptured.push(`${part}: ${item}`);
    }
    const version = kubernetesVersion ?? apiserverImageVersion;
    const captured: SecretNote[] = [];
    if (parts.pki) {
      captured.push({
        kind: 'private-key',
        what: 'the cluster PKI private keys: CA, API server, front-proxy, etcd CA and service-account signing key (sa.key)',
        paths: ['pki/**/*.key'],
      });
    }
    const kubeconfigs = found.filter((path) => path.endsWith('.conf')).map((path) => basename(path));
    if (kubeconfigs.length > 0) {
      captured.push({
        kind: 'credentials',
        what: 'kubeconfigs with client keys (admin.conf is cluster-admin)',
        paths: kubeconfigs.map((name) => `kubeadm/**/${name}`),
      });
    }
    for (const note of parts.etcd?.secrets?.captured ?? [])
      captured.push({ ...note, ...(note.paths ? { paths: note.paths.map((path) => `etcd/${path}`) } : {}) });
    return {
      ...(version === undefined ? {} : { version }),
      secrets: {
        captured,
        notCaptured: [
          {
            kind: 'private-key',
            what: "the API server's encryption-at-rest key file (--encryption-provider-config), unless it lies under a captured path: without it, Secrets encrypted at rest in the etcd snapshot cannot be read",
          },
          {
            kind: 'private-key',
            what: "the kubelet's client certificate key under /var/lib/kubelet/pki",
          },
        ],
      },
      capabilities: {
        incremental: false,
        pointInTime: false,
        consistentSnapshot: false,
        restoreIntoExisting: false,
        selectiveRestore: false,
      },
      notCaptured,
      details: {
        kubernetesVersion: kubernetesVersion ?? null,
        apiserverImageVersion: apiserverImageVersion ?? null,
        etcdVersion: parts.etcd?.version ?? null,
        root: this.root,
        kubeadmPaths: found.map((path) => path.slice(this.root === '/' ? 0 : this.root.length)),
        missingKubeadmPaths: missing,
        pkiDir: this.pkiDir,
        manifestsDir: this.manifestsDir,
        parts: Object.keys(parts),
        components: parts,
      },
    };
  }

  /** `kubeadm/…`, `pki/…`, `manifests/…` (files), then `etcd/snapshot.db`. */
  async *backup(context: BackupContext): AsyncIterable<Entry> {
    const found = this.#kubeadmFound ?? (await this.#findKubeadm()).found;
    this.#kubeadmFound = undefined;
    for (const part of FILE_PARTS) {
      if (part === 'kubeadm' && found.length === 0) continue;
      for await (const entry of this.#files(part, found).backup(context)) {
        // The secrets of these parts are declared up front in describe().
        const { secret: _secret, ...rest } = entry;
        yield { ...rest, path: `${part}/${entry.path}` };
      }
    }
    if (this.#etcd) {
      for await (const entry of this.#etcd.backup(context)) yield { ...entry, path: `etcd/${entry.path}` };
    }
  }

  /**
   * Routes each entry by its prefix to the sub-component that backed it up: files under
   * `restore.root`, the etcd snapshot into `restore.etcd.dataDir`. The targets are checked
   * before anything is written: a missing `restore.root` or `restore.etcd`, and (unless the
   * policy is `overwrite`) a non-empty etcd data dir, and an etcd data dir a running member uses,
   * fail first.
   *
   * @throws {ConfigError} when a needed restore target is not set.
   * @throws {EtcdMemberRunningError} (`BK_CONFLICT`) when a running etcd member uses the etcd data
   *   dir, whatever the policy, before anything is written.
   * @throws {ConflictError} for a non-empty etcd data dir under `fail`, and as `@bk/files` does for files.
   */
  async restore(entries: AsyncIterable<Entry>, context: RestoreContext): Promise<RestoreReport> {
    throwIfAborted(context.signal);
    const where = `kubernetes component "${this.name}"`;
    const recorded = context.component.info.details?.parts;
    const parts = Array.isArray(recorded) ? (recorded as string[]) : [...FILE_PARTS, 'etcd'];
    const root = this.restoreOptions.root;
    if (root === undefined && parts.some((part) => FILE_PARTS.includes(part as Part))) {
      throw new ConfigError(
        `${where}: restoring needs "restore.root", the directory to restore the files under ("/" restores them in place).`,
      );
    }
    let skipEtcd = false;
    if (parts.includes('etcd')) {
      const etcdRestore = this.restoreOptions.etcd;
      if (!etcdRestore) {
        throw new ConfigError(
          `${where}: the backup holds an etcd snapshot; restoring it needs "restore.etcd.dataDir".`,
        );
      }
      const occupied = await readdir(etcdRestore.dataDir).then(
        (names) => names.length > 0,
        () => false,
      );
      // Before any file is written: never replace the data dir of a running member.
      if (occupied) await assertNoRunningMember(etcdRestore.dataDir);
      if (occupied && context.conflict === 'fail') {
        throw new ConflictError(
          etcdRestore.dataDir,
          `etcd data dir "${etcdRestore.dataDir}" is not empty; restore into a new data dir, or use conflict "overwrite" to replace it. Nothing was restored.`,
        );
      }
      skipEtcd = occupied && context.conflict === 'skip';
    }

    const source = new Peekable(entries);
    const reports: Record<string, RestoreReport> = {};
    let entryCount = 0;
    let bytes = 0;
    let skipped = 0;
    for (;;) {
      const head = await source.peek();
      if (head.done) break;
      throwIfAborted(context.signal);
      const slash = head.value.path.indexOf('/');
      const part = head.value.path.slice(0, slash) as Part;
      const prefix = `${part}/`;
      const group: AsyncIterable<Entry> = {
        [Symbol.asyncIterator]: () => ({
          async next(): Promise<IteratorResult<Entry>> {
            const next = await source.peek();
            if (next.done || !next.value.path.startsWith(prefix)) return { done: true, value: undefined };
            source.take();
            return { done: false, value: { ...next.value, path: next.value.path.slice(prefix.length) } };
          },
        }),
      };
      const restorer =
        part === 'etcd'
          ? skipEtcd
            ? undefined
            : new EtcdComponent({
                name: 'etcd',
                endpoints: [PLACEHOLDER_ENDPOINT],
                restore: this.restoreOptions.etcd!,
              })
          : FILE_PARTS.includes(part) && root !== undefined
            ? this.#restoreFiles(part, root)
            : undefined;
      if (restorer) {
        const info = (
          context.component.info.details?.components as Record<string, ComponentInfo> | undefined
        )?.[part];
        const report = await restorer.restore(group, {
          ...context,
          component: {
            name: part,
            kind: restorer.kind,
            ...(info?.version ? { version: info.version } : {}),
            info: info ?? {},
          },
        });
        reports[part] = report;
        entryCount += report.entries;
        bytes += report.bytes;
        skipped += report.skipped ?? 0;
      }
      // Whatever the restorer did not take (or a skipped or unknown part) is read through here.
      let passed = 0;
      for await (const entry of group) {
        for await (const _ of entry.body ?? []) {
          // Read so that the archive checks its size and sha256.
        }
        passed += 1;
      }
      if (!restorer && passed > 0) {
        if (part === 'etcd') skipped += passed;
        else {
          context.progress({
            type: 'warning',
            component: this.name,
            message: `ignored ${passed} entries under "${prefix}"`,
          });
        }
      }
    }
    return { entries: entryCount, bytes, skipped, details: { root: root ?? null, parts: reports } };
  }
}

/** Same as `new KubernetesControlPlane(options)`. */
export function kubernetesControlPlane(options: KubernetesControlPlaneOptions = {}): KubernetesControlPlane {
  return new KubernetesControlPlane(options);
}

/**
 * Builds the component from the CLI's JSON config: the control plane
 * (`{ "kind": "kubernetes", "etcd": { "endpoints": […] } }`, `"mode": "control-plane"` by default),
 * or with `"mode": "resources"` the application objects over the API
 * (`{ "kind": "kubernetes", "mode": "resources", "namespaces": ["shop"] }`, see {@link KubernetesResources}).
 *
 * @throws {ConfigError} naming an unknown or invalid field.
 */
export function fromConfig(config: Record<string, unknown>): KubernetesControlPlane | KubernetesResources {
  if (
    isRecord(config) &&
    config.mode !== undefined &&
    config.mode !== 'control-plane' &&
    config.mode !== 'resources'
  ) {
    throw new ConfigError(
      `kubernetes component config: "mode" must be "control-plane" or "resources", got ${JSON.stringify(config.mode)}.`,
    );
  }
  if (isRecord(config) && config.mode === 'resources') {
    const { kind: _kind, mode: _mode, ...options } = config;
    return resourcesFromConfig(options);
  }
  const { mode: _mode, ...rest } = isRecord(config) ? config : { config };
  const where = checkComponentConfig(rest, 'kubernetes', CONFIG_FIELDS);
  checkNestedConfig(rest.restore, 'restore', RESTORE_FIELDS, where);
  const { kind: _kind, ...options } = rest;
  return new KubernetesControlPlane(options as KubernetesControlPlaneOptions);
}
