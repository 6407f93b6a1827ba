import {
  type BackupContext,
  type Component,
  ComponentError,
  type ComponentInfo,
  ConfigError,
  ConflictError,
  checkComponentConfig,
  checkComponentName,
  checkNestedConfig,
  type Entry,
  fromBytes,
  isRecord,
  type OperationContext,
  type RestoreContext,
  type RestoreReport,
  throwIfAborted,
} from '@bk/core';
import { KubeApi, type KubeConnection } from './kube-api.ts';

/**
 * Options of {@link KubernetesResources}.
 *
 * @example
 * const options: KubernetesResourcesOptions = {
 *   kubeconfig: '/etc/bk/kubeconfig',
 *   namespaces: ['shop', 'blog'],
 *   labelSelector: 'backup!=no',
 *   excludeResources: ['jobs.batch'],
 *   restore: { namespaceMapping: { shop: 'shop-restored' } },
 * };
 */
export interface KubernetesResourcesOptions extends KubeConnection {
  /** Component name. Default `kubernetes-resources`. */
  name?: string;
  /** Namespaces to back up. Default: every namespace. */
  namespaces?: string[];
  /** Namespaces left out (after `namespaces`). */
  excludeNamespaces?: string[];
  /** A label selector (`app=web,tier in (a,b),!legacy`) every backed-up object must match; namespaces themselves are kept. */
  labelSelector?: string;
  /**
   * Resources to back up, as `resource.group` (`deployments.apps`, `widgets.example.com`) or
   * `resource` for the core group (`configmaps`). Default: every resource the server lists.
   */
  includeResources?: string[];
  /** Resources left out, same names; {@link DEFAULT_EXCLUDED_RESOURCES} are always left out. */
  excludeResources?: string[];
  /**
   * Cluster-scoped objects: `true` all of them, `false` only the selected namespaces' `Namespace`
   * objects. Default: all when every namespace is backed up; otherwise the ones the selected
   * namespaces need (their `Namespace`, the CRDs of their custom objects, the PVs bound to their
   * PVCs and the StorageClasses those name).
   */
  includeClusterResources?: boolean;
  /** Time one API request may take, in ms; default 60 000. */
  timeoutMs?: number;
  /** Objects per list request; default 500. */
  pageSize?: number;
  restore?: KubernetesResourcesRestoreOptions;
}

/** How a restore writes. */
export interface KubernetesResourcesRestoreOptions {
  /** Namespace of the backup → namespace to restore it as (`{ shop: 'shop-restored' }`). */
  namespaceMapping?: Record<string, string>;
  /** The server-side apply field manager of `overwrite`; default `bk`. */
  fieldManager?: string;
  /** How long to wait for a restored CRD's resource to be served, in ms; default 60 000. */
  crdWaitMs?: number;
}

/** Resources never backed up: rebuilt by the cluster, or not objects one can create. */
export const DEFAULT_EXCLUDED_RESOURCES: readonly string[] = [
  'events',
  'events.events.k8s.io',
  'nodes',
  'endpoints',
  'endpointslices.discovery.k8s.io',
  'leases.coordination.k8s.io',
  'componentstatuses',
  'controllerrevisions.apps',
];

/** Resources restored first, in this order; the others follow by name, custom resources last. */
export const RESTORE_ORDER: readonly string[] = [
  'customresourcedefinitions.apiextensions.k8s.io',
  'namespaces',
  'storageclasses.storage.k8s.io',
  'persistentvolumes',
  'persistentvolumeclaims',
  'secrets',
  'configmaps',
  'serviceaccounts',
  'clusterroles.rbac.authorization.k8s.io',
  'clusterrolebindings.rbac.authorization.k8s.io',
  'roles.rbac.authorization.k8s.io',
  'rolebindings.rbac.authorization.k8s.io',
  'limitranges',
  'resourcequotas',
  'services',
];

/** Where one object is stored: `resources/<group.resource>/namespaces/<ns>/<name>.json` or `…/cluster/<name>.json`. */
export function objectEntryPath(groupResource: string, namespace: string | undefined, name: string): string {
  const file = `${encodeURIComponent(name)}.json`;
  return namespace === undefined
    ? `resources/${groupResource}/cluster/${file}`
    : `resources/${groupResource}/namespaces/${encodeURIComponent(namespace)}/${file}`;
}

/** Metadata fields the API server sets; never backed up. */
const SERVER_METADATA = [
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'managedFields',
  'selfLink',
];

/**
 * An object without what the server set: metadata's `uid`, `resourceVersion`, `generation`,
 * timestamps, `managedFields`, `selfLink`, the `status`, a Service's allocated cluster IPs (a
 * restore on another cluster needs new ones) and a PV's `claimRef` identity.
 */
export function stripServerFields(object: Record<string, unknown>): Record<string, unknown> {
  const copy = structuredClone(object);
  delete copy.status;
  if (isRecord(copy.metadata)) {
    for (const field of SERVER_METADATA) delete copy.metadata[field];
  }
  if (copy.kind === 'Service' && isRecord(copy.spec) && copy.spec.clusterIP !== 'None') {
    delete copy.spec.clusterIP;
    delete copy.spec.clusterIPs;
  }
  if (copy.kind === 'PersistentVolume' && isRecord(copy.spec) && isRecord(copy.spec.claimRef)) {
    delete copy.spec.claimRef.uid;
    delete copy.spec.claimRef.resourceVersion;
  }
  return copy;
}

/** One resource type the server serves, at its group's preferred version. */
interface ResourceType {
  group: string;
  version: string;
  resource: string;
  kind: string;
  namespaced: boolean;
  /** `resource.group`, or `resource` in the core group. */
  groupResource: string;
  custom: boolean;
}

/** What a backup reads: the types in restore order, the namespaces, the cluster-scoped names per type (or all). */
interface Plan {
  types: ResourceType[];
  namespaces: string[];
  clusterNames: Map<string, Set<string> | 'all'>;
}

/** What the restore did with one object. */
interface ObjectOutcome {
  resource: string;
  namespace?: string;
  name: string;
  action: 'created' | 'updated' | 'unchanged' | 'skipped' | 'refused';
  reason?: string;
}

const CONFIG_FIELDS = [
  'kind',
  'name',
  'kubeconfig',
  'context',
  'inCluster',
  'namespaces',
  'excludeNamespaces',
  'labelSelector',
  'includeResources',
  'excludeResources',
  'includeClusterResources',
  'timeoutMs',
  'pageSize',
  'restore',
];
const RESTORE_FIELDS = ['namespaceMapping', 'fieldManager', 'crdWaitMs'];

/** Largest object read back on restore. */
const OBJECT_LIMIT = 16 * 1024 * 1024;

const NOT_CAPTURED = [
  'persistent volume data: only the PV and PVC objects are stored; back the files up with @bk/files in a Job that mounts the claim',
  'objects rebuilt by the cluster: events, nodes, endpoints and endpoint slices, leases, controller revisions',
  "other versions of a resource than its group's preferred one (the server converts on read)",
  'status of every object (the controllers rebuild it)',
];

function stringList(value: unknown, field: string, where: string): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.some((item) => typeof item !== 'string' || item === '')) {
    throw new ConfigError(`${where}: "${field}" must be an array of non-empty strings.`);
  }
  return value as string[];
}

function apiBase(group: string, version: string): string {
  return group === '' ? `/api/${version}` : `/apis/${group}/${version}`;
}

function collectionPath(
  type: Pick<ResourceType, 'group' | 'version' | 'resource' | 'namespaced'>,
  namespace?: string,
): string {
  return `${apiBase(type.group, type.version)}${type.namespaced && namespace !== undefined ? `/namespaces/${encodeURIComponent(namespace)}` : ''}/${type.resource}`;
}

/** `deployments.apps` → `{ resource: 'deployments', group: 'apps' }`; `configmaps` → core. */
function splitGroupResource(groupResource: string): { resource: string; group: string } {
  const dot = groupResource.indexOf('.');
  return dot < 0
    ? { resource: groupResource, group: '' }
    : { resource: groupResource.slice(0, dot), group: groupResource.slice(dot + 1) };
}

/** Why the cluster recreates this object itself (restore leaves it to the cluster), or undefined. */
function recreatedBy(object: Record<string, unknown>): string | undefined {
  const metadata = isRecord(object.metadata) ? object.metadata : {};
  const owners = Array.isArray(metadata.ownerReferences) ? metadata.ownerReferences : [];
  const controller = owners.find((owner) => isRecord(owner) && owner.controller === true) as
    | Record<string, unknown>
    | undefined;
  if (controller)
    return `controlled by ${String(controller.kind)} "${String(controller.name)}", which recreates it`;
  if (object.kind === 'ServiceAccount' && metadata.name === 'default') {
    return 'every namespace gets its "default" service account from the cluster';
  }
  if (object.kind === 'ConfigMap' && metadata.name === 'kube-root-ca.crt') {
    return 'the cluster publishes its own CA bundle into every namespace';
  }
  if (object.kind === 'Secret' && object.type === 'kubernetes.io/service-account-token') {
    return 'service account tokens are issued by the target cluster';
  }
  return undefined;
}

/**
 * The application objects of a Kubernetes cluster, read and written over its API with the
 * connection `@kubernetes/client-node` resolves (a kubeconfig or the in-cluster service account).
 *
 * Backup discovers every API group and resource at its preferred version (CRDs included), lists
 * the selected namespaces' objects and the cluster-scoped ones they need, strips what the server
 * set, and stores one JSON object per entry in Velero's layout, in restore order. Restore creates
 * each object in that order, with namespace mapping and the conflict policy (`overwrite` through
 * server-side apply), and reports every object created, updated, skipped or refused.
 *
 * @example
 * import { backup } from '@bk/core';
 * import { kubernetesResources } from '@bk/kubernetes';
 * await backup({ storage, components: [kubernetesResources({ namespaces: ['shop'] })] });
 */
export class KubernetesResources implements Component {
  readonly kind = 'kubernetes-resources';
  readonly name: string;
  readonly namespaces: readonly string[] | undefined;
  readonly excludeNamespaces: readonly string[];
  readonly labelSelector: string | undefined;
  readonly includeResources: readonly string[] | undefined;
  readonly excludeResources: readonly string[];
  readonly includeClusterResources: boolean | undefined;
  readonly pageSize: number;
  readonly restoreOptions: Readonly<KubernetesResourcesRestoreOptions>;
  readonly #connection: KubeConnection;
  readonly #timeoutMs: number;
  #api: KubeApi | undefined;
  #plan: Plan | undefined;

  /** Validates the options; loads no kubeconfig and sends no request. @throws {ConfigError} naming the invalid option. */
  constructor(options: KubernetesResourcesOptions = {}) {
    if (!isRecord(options as unknown))
      throw new ConfigError('kubernetes resources component: the options must be an object.');
    const name = options.name ?? 'kubernetes-resources';
    if (typeof name !== 'string')
      throw new ConfigError('kubernetes resources component: "name" must be a string.');
    checkComponentName(name);
    const where = `kubernetes resources component "${name}"`;
    this.name = name;
    // Checked as untyped JSON: the options often come from a config file.
    const raw: Record<string, unknown> = { ...options };
    for (const field of ['kubeconfig', 'context', 'labelSelector'] as const) {
      if (raw[field] !== undefined && (typeof raw[field] !== 'string' || raw[field] === '')) {
        throw new ConfigError(`${where}: "${field}" must be a non-empty string.`);
      }
    }
    if (raw.inCluster !== undefined && typeof raw.inCluster !== 'boolean') {
      throw new ConfigError(`${where}: "inCluster" must be true or false.`);
    }
    if (raw.includeClusterResources !== undefined && typeof raw.includeClusterResources !== 'boolean') {
      throw new ConfigError(`${where}: "includeClusterResources" must be true or false.`);
    }
    this.namespaces = stringList(options.namespaces, 'namespaces', where);
    this.excludeNamespaces = stringList(options.excludeNamespaces, 'excludeNamespaces', where) ?? [];
    this.includeResources = stringList(options.includeResources, 'includeResources', where);
    this.excludeResources = stringList(options.excludeResources, 'excludeResources', where) ?? [];
    this.labelSelector = options.labelSelector;
    this.includeClusterResources = options.includeClusterResources;
    for (const field of ['timeoutMs', 'pageSize'] as const) {
      const value = raw[field];
      if (value !== undefined && (!Number.isSafeInteger(value) || (value as number) < 1)) {
        throw new ConfigError(`${where}: "${field}" must be a positive integer.`);
      }
    }
    this.#timeoutMs = options.timeoutMs ?? 60_000;
    this.pageSize = options.pageSize ?? 500;
    const restore = checkNestedConfig(options.restore, 'restore', RESTORE_FIELDS, where) ?? {};
    const mapping = restore.namespaceMapping;
    if (mapping !== undefined) {
      if (
        !isRecord(mapping) ||
        Object.values(mapping).some((value) => typeof value !== 'string' || value === '')
      ) {
        throw new ConfigError(
          `${where}: "restore.namespaceMapping" must map namespace names to namespace names.`,
        );
      }
    }
    if (
      restore.fieldManager !== undefined &&
      (typeof restore.fieldManager !== 'string' || restore.fieldManager === '')
    ) {
      throw new ConfigError(`${where}: "restore.fieldManager" must be a non-empty string.`);
    }
    if (
      restore.crdWaitMs !== undefined &&
      (!Number.isSafeInteger(restore.crdWaitMs) || (restore.crdWaitMs as number) < 0)
    ) {
      throw new ConfigError(`${where}: "restore.crdWaitMs" must be a number of milliseconds.`);
    }
    this.restoreOptions = restore as KubernetesResourcesRestoreOptions;
    this.#connection = {
      ...(options.kubeconfig === undefined ? {} : { kubeconfig: options.kubeconfig }),
      ...(options.context === undefined ? {} : { context: options.context }),
      ...(options.inCluster === undefined ? {} : { inCluster: options.inCluster }),
    };
  }

  get #client(): KubeApi {
    this.#api ??= new KubeApi(this.#connection, this.name, this.#timeoutMs);
    return this.#api;
  }

  /** Every listable, creatable resource at its group's preferred version. */
  async #discover(signal: AbortSignal): Promise<ResourceType[]> {
    const api = this.#client;
    const groupVersions: { group: string; version: string }[] = [];
    const core = await api.expect('GET', '/api', signal);
    const coreVersions = Array.isArray(core.versions) ? (core.versions as string[]) : ['v1'];
    groupVersions.push({ group: '', version: coreVersions.includes('v1') ? 'v1' : coreVersions[0]! });
    const groups = await api.expect('GET', '/apis', signal);
    for (const group of Array.isArray(groups.groups) ? groups.groups.filter(isRecord) : []) {
      const preferred = isRecord(group.preferredVersion) ? group.preferredVersion.version : undefined;
      const version =
        typeof preferred === 'string'
          ? preferred
          : (group.versions as { version: string }[] | undefined)?.[0]?.version;
      if (typeof group.name === 'string' && version !== undefined)
        groupVersions.push({ group: group.name, version });
    }
    const crds = new Set<string>();
    const types: ResourceType[] = [];
    for (const { group, version } of groupVersions) {
      const answer = await api.call('GET', apiBase(group, version), signal);
      // An aggregated API that is down answers 503: its resources cannot be listed; say so below.
      if (answer.status !== 200) {
        throw api.failure('GET', apiBase(group, version), answer);
      }
      for (const resource of Array.isArray(answer.body.resources)
        ? answer.body.resources.filter(isRecord)
        : []) {
        const name = String(resource.name ?? '');
        const verbs = Array.isArray(resource.verbs) ? resource.verbs : [];
        if (name === '' || name.includes('/') || !verbs.includes('list') || !verbs.includes('create'))
          continue;
        const groupResource = group === '' ? name : `${name}.${group}`;
        types.push({
          group,
          version,
          resource: name,
          kind: String(resource.kind),
          namespaced: resource.namespaced === true,
          groupResource,
          custom: false,
        });
      }
    }
    const crdType = types.find(
      (type) => type.groupResource === 'customresourcedefinitions.apiextensions.k8s.io',
    );
    if (crdType) {
      for await (const crd of this.#list(crdType, undefined, undefined, signal)) {
        const spec = isRecord(crd.spec) ? crd.spec : {};
        const names = isRecord(spec.names) ? spec.names : {};
        crds.add(`${String(names.plural)}.${String(spec.group)}`);
      }
    }
    for (const type of types) type.custom = crds.has(type.groupResource);
    return types.sort((a, b) => {
      const rank = (type: ResourceType) => {
        const index = RESTORE_ORDER.indexOf(type.groupResource);
        return index >= 0 ? index : type.custom ? RESTORE_ORDER.length + 1 : RESTORE_ORDER.length;
      };
      return (
        rank(a) - rank(b) ||
        (a.groupResource < b.groupResource ? -1 : a.groupResource > b.groupResource ? 1 : 0)
      );
    });
  }

  /** Every object of a type (in a namespace or all), paged; `kind` and `apiVersion` set on each. */
  async *#list(
    type: ResourceType,
    namespace: string | undefined,
    labelSelector: string | undefined,
    signal: AbortSignal,
  ): AsyncGenerator<Record<string, unknown>> {
    let next: string | undefined;
    do {
      const query = new URLSearchParams({ limit: String(this.pageSize) });
      if (labelSelector !== undefined) query.set('labelSelector', labelSelector);
      if (next !== undefined) query.set('continue', next);
      const path = `${collectionPath(type, namespace)}?${query}`;
      const answer = await this.#client.call('GET', path, signal);
      // A namespace deleted between discovery and listing has nothing left.
      if (answer.status === 404 && namespace !== undefined) return;
      if (answer.status !== 200) throw this.#client.failure('GET', path, answer);
      for (const item of Array.isArray(answer.body.items) ? answer.body.items.filter(isRecord) : []) {
        yield {
          apiVersion: type.group === '' ? type.version : `${type.group}/${type.version}`,
          kind: type.kind,
          ...item,
        };
      }
      const metadata = isRecord(answer.body.metadata) ? answer.body.metadata : {};
      next =
        typeof metadata.continue === 'string' && metadata.continue !== '' ? metadata.continue : undefined;
    } while (next !== undefined);
  }

  #selected(groupResource: string): boolean {
    if (DEFAULT_EXCLUDED_RESOURCES.includes(groupResource)) return false;
    if (this.excludeResources.includes(groupResource)) return false;
    if (this.includeResources === undefined || this.includeResources.includes('*')) return true;
    return this.includeResources.includes(groupResource);
  }

  /**
   * What the backup will read: the resource types, the namespaces, and for each cluster-scoped
   * type the names needed (or all).
   */
  async #makePlan(signal: AbortSignal): Promise<Plan> {
    const types = await this.#discover(signal);
    const namespaceType = types.find((type) => type.groupResource === 'namespaces');
    if (!namespaceType) throw new ComponentError(this.name, 'the API server lists no "namespaces" resource.');
    const existing: string[] = [];
    for await (const namespace of this.#list(namespaceType, undefined, undefined, signal)) {
      existing.push(String((namespace.metadata as Record<string, unknown>).name));
    }
    const wanted =
      this.namespaces === undefined || this.namespaces.includes('*') ? existing : [...this.namespaces];
    const missing = wanted.filter((namespace) => !existing.includes(namespace));
    if (missing.length > 0) {
      throw new ConfigError(
        `kubernetes resources component "${this.name}": namespace${missing.length === 1 ? '' : 's'} ${missing.map((name) => `"${name}"`).join(', ')} not found on ${this.#client.server}; check "namespaces".`,
      );
    }
    const namespaces = wanted.filter((namespace) => !this.excludeNamespaces.includes(namespace)).sort();
    const allNamespaces = this.namespaces === undefined || this.namespaces.includes('*');
    const includeCluster = this.includeClusterResources ?? allNamespaces;
    const clusterNames = new Map<string, Set<string> | 'all'>();
    clusterNames.set('namespaces', new Set(namespaces));
    if (includeCluster) {
      for (const type of types)
        if (!type.namespaced && type.groupResource !== 'namespaces')
          clusterNames.set(type.groupResource, 'all');
    } else if (this.includeClusterResources === undefined) {
      // The cluster-scoped objects the selected namespaces need.
      const crds = new Set<string>();
      const volumes = new Set<string>();
      const classes = new Set<string>();
      for (const type of types) {
        if (!type.namespaced || !this.#selected(type.groupResource)) continue;
        if (type.custom) {
          for (const namespace of namespaces) {
            const first = await this.#client.call(
              'GET',
              `${collectionPath(type, namespace)}?limit=1`,
              signal,
            );
            if (Array.isArray(first.body.items) && first.body.items.length > 0) {
              crds.add(type.groupResource);
              break;
            }
          }
        }
        if (type.groupResource === 'persistentvolumeclaims') {
          for (const namespace of namespaces) {
            for await (const claim of this.#list(type, namespace, this.labelSelector, signal)) {
              const spec = isRecord(claim.spec) ? claim.spec : {};
              if (typeof spec.volumeName === 'string' && spec.volumeName !== '') volumes.add(spec.volumeName);
              if (typeof spec.storageClassName === 'string') classes.add(spec.storageClassName);
            }
          }
        }
      }
      const pvType = types.find((type) => type.groupResource === 'persistentvolumes');
      if (pvType && volumes.size > 0) {
        for await (const volume of this.#list(pvType, undefined, undefined, signal)) {
          const metadata = volume.metadata as Record<string, unknown>;
          const spec = isRecord(volume.spec) ? volume.spec : {};
          const claim = isRecord(spec.claimRef) ? spec.claimRef : {};
          if (volumes.has(String(metadata.name)) || namespaces.includes(String(claim.namespace))) {
            volumes.add(String(metadata.name));
            if (typeof spec.storageClassName === 'string') classes.add(spec.storageClassName);
          }
        }
      }
      clusterNames.set('customresourcedefinitions.apiextensions.k8s.io', crds);
      clusterNames.set('persistentvolumes', volumes);
      clusterNames.set('storageclasses.storage.k8s.io', classes);
    }
    // Needed cluster-scoped objects come along unless their resource is excluded by name.
    const needed = (type: ResourceType) =>
      clusterNames.get(type.groupResource) instanceof Set &&
      !this.excludeResources.includes(type.groupResource);
    return {
      types: types.filter((type) => this.#selected(type.groupResource) || needed(type)),
      namespaces,
      clusterNames,
    };
  }

  /** The server's version, the plan (resource types, namespaces), and what is not captured. */
  async describe(context: OperationContext): Promise<ComponentInfo> {
    throwIfAborted(context.signal);
    const version = await this.#client.expect('GET', '/version', context.signal);
    const plan = await this.#makePlan(context.signal);
    this.#plan = plan;
    return {
      ...(typeof version.gitVersion === 'string' ? { version: version.gitVersion } : {}),
      capabilities: {
        incremental: false,
        pointInTime: false,
        consistentSnapshot: false,
        restoreIntoExisting: true,
        selectiveRestore: false,
      },
      notCaptured: [...NOT_CAPTURED],
      secrets: {
        captured: plan.types.some((type) => type.groupResource === 'secrets')
          ? [
              {
                kind: 'kubernetes-secrets',
                what: `Secret objects of namespace${plan.namespaces.length === 1 ? '' : 's'} ${plan.namespaces.join(', ')} (values base64, not encrypted)`,
                paths: ['resources/secrets/**'],
              },
            ]
          : [],
        notCaptured: [],
      },
      details: {
        format:
          'one JSON object per entry: resources/<group.resource>/namespaces/<ns>/<name>.json, resources/<group.resource>/cluster/<name>.json',
        server: this.#client.server,
        holdsSecrets: plan.types.some((type) => type.groupResource === 'secrets'),
        namespaces: plan.namespaces,
        ...(this.labelSelector === undefined ? {} : { labelSelector: this.labelSelector }),
        resources: plan.types.map((type) => ({
          resource: type.groupResource,
          apiVersion: type.group === '' ? type.version : `${type.group}/${type.version}`,
          kind: type.kind,
          namespaced: type.namespaced,
          ...(type.custom ? { custom: true } : {}),
        })),
        restoreOrder: plan.types.map((type) => type.groupResource),
      },
    };
  }

  /** One entry per object, resource types in restore order; each object as JSON without server-set fields. */
  async *backup(context: BackupContext): AsyncIterable<Entry> {
    const plan = this.#plan ?? (await this.#makePlan(context.signal));
    this.#plan = undefined;
    for (const type of plan.types) {
      throwIfAborted(context.signal);
      if (type.namespaced) {
        for (const namespace of plan.namespaces) {
          for await (const object of this.#list(type, namespace, this.labelSelector, context.signal)) {
            yield objectEntry(type, stripServerFields(object));
          }
        }
        continue;
      }
      const names = plan.clusterNames.get(type.groupResource);
      if (names === undefined || (names !== 'all' && names.size === 0)) continue;
      // Namespaces and needed objects are taken whatever their labels.
      const selector = names === 'all' ? this.labelSelector : undefined;
      for await (const object of this.#list(type, undefined, selector, context.signal)) {
        const name = String((object.metadata as Record<string, unknown>).name);
        if (names !== 'all' && !names.has(name)) continue;
        yield objectEntry(type, stripServerFields(object));
      }
    }
  }

  /**
   * Creates every object in the order the backup holds them (its restore order: CRDs,
   * namespaces, storage classes, PVs, PVCs, secrets, config maps, service accounts, RBAC, then
   * the rest, custom resources last), mapping namespaces. Objects the cluster recreates itself are
   * skipped. An object that exists: `skip` leaves it, `overwrite` applies the backed-up one
   * server-side (field manager `bk`, forced), `fail` refuses the restore before anything is written
   * (the objects are read whole first to check; they are small JSON documents). An existing
   * namespace is used as it is.
   *
   * @throws {ConflictError} under `fail`, naming the objects that exist, before anything is written.
   * @throws {ComponentError} when the API server refuses an object (with its message).
   */
  async restore(entries: AsyncIterable<Entry>, context: RestoreContext): Promise<RestoreReport> {
    throwIfAborted(context.signal);
    const api = this.#client;
    const mapping = this.restoreOptions.namespaceMapping ?? {};
    const outcomes: ObjectOutcome[] = [];
    const order: string[] = [];
    let bytes = 0;
    const objects = async function* (
      this: KubernetesResources,
    ): AsyncGenerator<{ groupResource: string; object: Record<string, unknown> }> {
      for await (const entry of entries) {
        const match = /^resources\/([^/]+)\/(?:namespaces\/[^/]+|cluster)\/[^/]+\.json$/.exec(entry.path);
        if (!match || (entry.type ?? 'file') !== 'file') {
          for await (const _ of entry.body ?? []) {
            // Read through so the archive checks its size and sha256.
          }
          context.progress({
            type: 'warning',
            component: this.name,
            message: `ignored entry "${entry.path}"`,
          });
          continue;
        }
        const chunks: Uint8Array[] = [];
        let size = 0;
        for await (const chunk of entry.body ?? []) {
          size += chunk.byteLength;
          if (size > OBJECT_LIMIT)
            throw new ComponentError(this.name, `"${entry.path}" is larger than ${OBJECT_LIMIT} bytes.`);
          chunks.push(chunk);
        }
        bytes += size;
        let object: unknown;
        try {
          object = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch (error) {
          throw new ComponentError(this.name, `"${entry.path}" is not a JSON object.`, { cause: error });
        }
        if (!isRecord(object) || !isRecord(object.metadata) || typeof object.apiVersion !== 'string') {
          throw new ComponentError(
            this.name,
            `"${entry.path}" is not a Kubernetes object (apiVersion, metadata).`,
          );
        }
        yield { groupResource: match[1]!, object: mapNamespaces(stripServerFields(object), mapping) };
      }
    }.call(this);

    const targetOf = (groupResource: string, object: Record<string, unknown>) => {
      const { resource, group } = splitGroupResource(groupResource);
      const apiVersion = String(object.apiVersion);
      const version = apiVersion.includes('/') ? apiVersion.slice(apiVersion.indexOf('/') + 1) : apiVersion;
      const metadata = object.metadata as Record<string, unknown>;
      const namespace = typeof metadata.namespace === 'string' ? metadata.namespace : undefined;
      const type = { group, version, resource, namespaced: namespace !== undefined };
      const name = String(metadata.name);
      return {
        type,
        namespace,
        name,
        collection: collectionPath(type, namespace),
        path: `${collectionPath(type, namespace)}/${encodeURIComponent(name)}`,
      };
    };

    let pending: AsyncIterable<{ groupResource: string; object: Record<string, unknown> }> = objects;
    if (context.conflict === 'fail') {
      // Check every object before writing any.
      const all: { groupResource: string; object: Record<string, unknown> }[] = [];
      const conflicts: string[] = [];
      const servedGroups = new Set<string>();
      for await (const item of objects) {
        all.push(item);
        if (item.groupResource === 'namespaces' || recreatedBy(item.object)) continue;
        const target = targetOf(item.groupResource, item.object);
        // A custom resource whose CRD is not served yet cannot exist yet either.
        const base = apiBase(target.type.group, target.type.version);
        if (!servedGroups.has(base)) {
          const served = await api.call('GET', base, context.signal);
          if (served.status !== 200) continue;
          servedGroups.add(base);
        }
        const found = await api.call('GET', target.path, context.signal);
        if (found.status === 200)
          conflicts.push(describeObject(item.groupResource, target.namespace, target.name));
        else if (found.status !== 404) throw api.failure('GET', target.path, found);
      }
      if (conflicts.length > 0) {
        const shown = conflicts.slice(0, 10).join(', ');
        const more = conflicts.length > 10 ? ` and ${conflicts.length - 10} more` : '';
        throw new ConflictError(
          conflicts[0]!,
          `the cluster at ${api.server} already has ${shown}${more}, and the conflict policy is "fail"; nothing was written (restore with "skip" to keep them, "overwrite" to apply the backed-up objects, or map the namespaces elsewhere).`,
        );
      }
      pending = (async function* () {
        yield* all;
      })();
    }

    const fieldManager = this.restoreOptions.fieldManager ?? 'bk';
    for await (const { groupResource, object } of pending) {
      throwIfAborted(context.signal);
      if (order.at(-1) !== groupResource) order.push(groupResource);
      const target = targetOf(groupResource, object);
      const outcome: ObjectOutcome = {
        resource: groupResource,
        ...(target.namespace === undefined ? {} : { namespace: target.namespace }),
        name: target.name,
        action: 'created',
      };
      outcomes.push(outcome);
      const reason = recreatedBy(object);
      if (reason !== undefined) {
        outcome.action = 'skipped';
        outcome.reason = reason;
        continue;
      }
      await this.#waitServed(target.type.group, target.type.version, target.type.resource, context.signal);
      const existing = await api.call('GET', target.path, context.signal);
      if (existing.status === 404) {
        const created = await api.call('POST', target.collection, context.signal, object);
        if (created.status === 201 || created.status === 200 || created.status === 202) continue;
        if (created.status !== 409) {
          outcome.action = 'refused';
          throw api.failure('POST', target.collection, created);
        }
      } else if (existing.status !== 200) {
        throw api.failure('GET', target.path, existing);
      }
      if (groupResource === 'namespaces' && context.conflict !== 'overwrite') {
        outcome.action = 'skipped';
        outcome.reason = 'the namespace exists; its objects are restored into it';
        continue;
      }
      if (context.conflict === 'skip') {
        outcome.action = 'skipped';
        outcome.reason = 'exists (conflict policy "skip")';
        continue;
      }
      if (context.conflict === 'fail') {
        // Created between the check and now, by someone else.
        outcome.action = 'refused';
        outcome.reason = 'exists (conflict policy "fail")';
        continue;
      }
      const before = isRecord(existing.body.metadata) ? existing.body.metadata.resourceVersion : undefined;
      const query = `fieldManager=${encodeURIComponent(fieldManager)}&force=true`;
      const applied = await api.call(
        'PATCH',
        `${target.path}?${query}`,
        context.signal,
        object,
        'application/apply-patch+yaml',
      );
      if (applied.status !== 200 && applied.status !== 201) {
        outcome.action = 'refused';
        throw api.failure('PATCH', target.path, applied);
      }
      const after = isRecord(applied.body.metadata) ? applied.body.metadata.resourceVersion : undefined;
      outcome.action = before !== undefined && before === after ? 'unchanged' : 'updated';
    }
    const count = (action: ObjectOutcome['action']) =>
      outcomes.filter((outcome) => outcome.action === action).length;
    const refused = outcomes.filter((outcome) => outcome.action === 'refused');
    if (refused.length > 0) {
      context.progress({
        type: 'warning',
        component: this.name,
        message: `refused ${refused.length} objects created meanwhile by someone else: ${refused.map((outcome) => describeObject(outcome.resource, outcome.namespace, outcome.name)).join(', ')}`,
      });
    }
    return {
      entries: count('created') + count('updated') + count('unchanged'),
      bytes,
      skipped: count('skipped') + refused.length,
      details: {
        server: api.server,
        created: count('created'),
        updated: count('updated'),
        unchanged: count('unchanged'),
        skipped: count('skipped'),
        refused: refused.length,
        order,
        objects: outcomes,
      },
    };
  }

  #served = new Set<string>();

  /** Waits until a resource is served (a CRD just created needs a moment to be established). */
  async #waitServed(group: string, version: string, resource: string, signal: AbortSignal): Promise<void> {
    const key = `${group}/${version}/${resource}`;
    if (this.#served.has(key)) return;
    const deadline = Date.now() + (this.restoreOptions.crdWaitMs ?? 60_000);
    for (;;) {
      const answer = await this.#client.call('GET', apiBase(group, version), signal);
      const resources =
        answer.status === 200 && Array.isArray(answer.body.resources) ? answer.body.resources : [];
      if (resources.some((item) => isRecord(item) && item.name === resource)) {
        this.#served.add(key);
        return;
      }
      if (Date.now() >= deadline) {
        throw new ComponentError(
          this.name,
          `the cluster at ${this.#client.server} does not serve "${resource}" in ${group === '' ? 'the core group' : group}/${version}; restore its CustomResourceDefinition (or install the operator that defines it) first.`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
      throwIfAborted(signal);
    }
  }
}

function describeObject(groupResource: string, namespace: string | undefined, name: string): string {
  return namespace === undefined ? `${groupResource} "${name}"` : `${groupResource} "${namespace}/${name}"`;
}

function objectEntry(type: ResourceType, object: Record<string, unknown>): Entry {
  const metadata = object.metadata as Record<string, unknown>;
  const bytes = Buffer.from(`${JSON.stringify(object, null, 2)}\n`);
  return {
    path: objectEntryPath(
      type.groupResource,
      type.namespaced ? String(metadata.namespace) : undefined,
      String(metadata.name),
    ),
    type: 'file',
    size: bytes.byteLength,
    mode: 0o600,
    body: fromBytes(bytes),
  };
}

/** The object with its namespace, a Namespace's name, a PV's claim and binding subjects mapped. */
function mapNamespaces(
  object: Record<string, unknown>,
  mapping: Record<string, string>,
): Record<string, unknown> {
  if (Object.keys(mapping).length === 0) return object;
  const map = (value: unknown) =>
    typeof value === 'string' && mapping[value] !== undefined ? mapping[value] : value;
  const metadata = object.metadata as Record<string, unknown>;
  if (metadata.namespace !== undefined) metadata.namespace = map(metadata.namespace);
  if (object.kind === 'Namespace') {
    metadata.name = map(metadata.name);
    if (isRecord(metadata.labels) && metadata.labels['kubernetes.io/metadata.name'] !== undefined) {
      metadata.labels['kubernetes.io/metadata.name'] = metadata.name;
    }
  }
  if (object.kind === 'PersistentVolume' && isRecord(object.spec) && isRecord(object.spec.claimRef)) {
    object.spec.claimRef.namespace = map(object.spec.claimRef.namespace);
  }
  if (
    (object.kind === 'RoleBinding' || object.kind === 'ClusterRoleBinding') &&
    Array.isArray(object.subjects)
  ) {
    for (const subject of object.subjects) {
      if (isRecord(subject) && subject.namespace !== undefined) subject.namespace = map(subject.namespace);
    }
  }
  return object;
}

/** Same as `new KubernetesResources(options)`. */
export function kubernetesResources(options: KubernetesResourcesOptions = {}): KubernetesResources {
  return new KubernetesResources(options);
}

/**
 * Builds the component from the CLI's JSON config (`{ "kind": "kubernetes-resources", "namespaces": ["shop"] }`).
 *
 * @throws {ConfigError} naming an unknown or invalid field.
 */
export function resourcesFromConfig(config: Record<string, unknown>): KubernetesResources {
  const where = checkComponentConfig(config, 'kubernetes-resources', CONFIG_FIELDS);
  checkNestedConfig(config.restore, 'restore', RESTORE_FIELDS, where);
  const { kind: _kind, ...options } = config;
  return new KubernetesResources(options as KubernetesResourcesOptions);
}
