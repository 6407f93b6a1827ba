import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { listenOnFreePort } from './process.ts';

/**
 * An in-memory stand-in for a Kubernetes API server, written from the public API conventions
 * (kubernetes.io/docs/reference/using-api/api-concepts/, …/server-side-apply/, the discovery
 * documents) for what a client that backs up and restores application objects uses:
 *
 * - discovery: `/version`, `/api`, `/api/v1`, `/apis` (groups with their versions and the preferred
 *   one), `/apis/<group>/<version>` (resources with `namespaced`, `kind`, `verbs`, subresources);
 * - list (all namespaces or one, `labelSelector` with `=`, `==`, `!=`, `in`, `notin`, `key`, `!key`,
 *   `limit` and `continue`), get, create (`409 AlreadyExists`, `404` for a missing namespace, `400` when
 *   `resourceVersion` or `managedFields` are sent), replace (`409 Conflict` on a stale
 *   `resourceVersion`), delete (a namespace takes its objects with it), and patch as
 *   `application/merge-patch+json`, `application/strategic-merge-patch+json` (handled as a merge) and
 *   `application/apply-patch+yaml` (server-side apply: creates when absent, `fieldManager`
 *   required, `409 Conflict` for fields another manager owns with another value unless `force=true`);
 * - server-set fields: `uid`, `resourceVersion` (one counter), `creationTimestamp`, `generation`,
 *   `managedFields` (FieldsV1), `status`; a Service gets a `clusterIP` (a taken one is refused with
 *   `422`), a new namespace gets its `default` ServiceAccount and `kube-root-ca.crt` ConfigMap, a
 *   Deployment gets a ReplicaSet it controls (`ownerReferences`);
 * - CustomResourceDefinitions: creating one registers its group, versions and resource (served
 *   right away, `Established`); deleting it removes them and their objects;
 * - errors are `metav1.Status` documents with `reason` and `code`; served over TLS (a self-signed
 *   certificate for 127.0.0.1 made with `openssl`), every request needs the bearer token (clients
 *   such as kubectl send a token only over TLS).
 *
 * Not modelled: watch, field selectors, admission, conversion between versions (an object reads
 * the same under every served version of its group, with `apiVersion` set to the one asked), list
 * merging by key in server-side apply (lists are replaced whole), removal of fields a manager stops
 * applying, YAML request bodies (JSON, which is YAML, is what kubectl and client libraries send).
 */
export interface KubernetesDouble {
  /** `https://127.0.0.1:PORT`. */
  url: string;
  /** The server's certificate (PEM), its own CA. */
  ca: string;
  /** The bearer token every request must carry. */
  token: string;
  /** A kubeconfig (YAML) naming this server with the token, context `double`. */
  kubeconfig: string;
  /** Requests served, as `METHOD /path?query`, in order. */
  requests: string[];
  /** Every stored object (a copy), for assertions. */
  objects: () => Record<string, unknown>[];
  stop: () => Promise<void>;
}

type Json = Record<string, unknown>;

interface ResourceType {
  group: string;
  /** Served versions, in the order discovery lists them (the preferred one first). */
  versions: string[];
  resource: string;
  singular: string;
  kind: string;
  namespaced: boolean;
  shortNames?: string[];
  subresources?: string[];
  /** Registered by a CRD: objects in lists keep apiVersion and kind. */
  custom?: boolean;
  verbs?: string[];
}

const ALL_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

const BUILT_IN: ResourceType[] = [
  {
    group: '',
    versions: ['v1'],
    resource: 'namespaces',
    singular: 'namespace',
    kind: 'Namespace',
    namespaced: false,
    shortNames: ['ns'],
    subresources: ['status', 'finalize'],
  },
  {
    group: '',
    versions: ['v1'],
    resource: 'configmaps',
    singular: 'configmap',
    kind: 'ConfigMap',
    namespaced: true,
    shortNames: ['cm'],
  },
  { group: '', versions: ['v1'], resource: 'secrets', singular: 'secret', kind: 'Secret', namespaced: true },
  {
    group: '',
    versions: ['v1'],
    resource: 'services',
    singular: 'service',
    kind: 'Service',
    namespaced: true,
    shortNames: ['svc'],
    subresources: ['status', 'proxy'],
  },
  {
    group: '',
    versions: ['v1'],
    resource: 'serviceaccounts',
    singular: 'serviceaccount',
    kind: 'ServiceAccount',
    namespaced: true,
    shortNames: ['sa'],
    subresources: ['token'],
  },
  {
    group: '',
    versions: ['v1'],
    resource: 'persistentvolumeclaims',
    singular: 'persistentvolumeclaim',
    kind: 'PersistentVolumeClaim',
    namespaced: true,
    shortNames: ['pvc'],
    subresources: ['status'],
  },
  {
    group: '',
    versions: ['v1'],
    resource: 'persistentvolumes',
    singular: 'persistentvolume',
    kind: 'PersistentVolume',
    namespaced: false,
    shortNames: ['pv'],
    subresources: ['status'],
  },
  {
    group: '',
    versions: ['v1'],
    resource: 'pods',
    singular: 'pod',
    kind: 'Pod',
    namespaced: true,
    shortNames: ['po'],
    subresources: ['status', 'log', 'exec'],
  },
  {
    group: '',
    versions: ['v1'],
    resource: 'events',
    singular: 'event',
    kind: 'Event',
    namespaced: true,
    shortNames: ['ev'],
  },
  {
    group: '',
    versions: ['v1'],
    resource: 'endpoints',
    singular: 'endpoints',
    kind: 'Endpoints',
    namespaced: true,
    shortNames: ['ep'],
  },
  {
    group: '',
    versions: ['v1'],
    resource: 'nodes',
    singular: 'node',
    kind: 'Node',
    namespaced: false,
    shortNames: ['no'],
    subresources: ['status'],
  },
  {
    group: '',
    versions: ['v1'],
    resource: 'bindings',
    singular: 'binding',
    kind: 'Binding',
    namespaced: true,
    verbs: ['create'],
  },
  {
    group: 'apps',
    versions: ['v1'],
    resource: 'deployments',
    singular: 'deployment',
    kind: 'Deployment',
    namespaced: true,
    shortNames: ['deploy'],
    subresources: ['status', 'scale'],
  },
  {
    group: 'apps',
    versions: ['v1'],
    resource: 'replicasets',
    singular: 'replicaset',
    kind: 'ReplicaSet',
    namespaced: true,
    shortNames: ['rs'],
    subresources: ['status', 'scale'],
  },
  {
    group: 'apps',
    versions: ['v1'],
    resource: 'statefulsets',
    singular: 'statefulset',
    kind: 'StatefulSet',
    namespaced: true,
    shortNames: ['sts'],
    subresources: ['status', 'scale'],
  },
  {
    group: 'apps',
    versions: ['v1'],
    resource: 'daemonsets',
    singular: 'daemonset',
    kind: 'DaemonSet',
    namespaced: true,
    shortNames: ['ds'],
    subresources: ['status'],
  },
  {
    group: 'batch',
    versions: ['v1'],
    resource: 'jobs',
    singular: 'job',
    kind: 'Job',
    namespaced: true,
    subresources: ['status'],
  },
  {
    group: 'batch',
    versions: ['v1'],
    resource: 'cronjobs',
    singular: 'cronjob',
    kind: 'CronJob',
    namespaced: true,
    shortNames: ['cj'],
    subresources: ['status'],
  },
  {
    group: 'autoscaling',
    versions: ['v2', 'v1'],
    resource: 'horizontalpodautoscalers',
    singular: 'horizontalpodautoscaler',
    kind: 'HorizontalPodAutoscaler',
    namespaced: true,
    shortNames: ['hpa'],
    subresources: ['status'],
  },
  {
    group: 'networking.k8s.io',
    versions: ['v1'],
    resource: 'ingresses',
    singular: 'ingress',
    kind: 'Ingress',
    namespaced: true,
    shortNames: ['ing'],
    subresources: ['status'],
  },
  {
    group: 'networking.k8s.io',
    versions: ['v1'],
    resource: 'networkpolicies',
    singular: 'networkpolicy',
    kind: 'NetworkPolicy',
    namespaced: true,
    shortNames: ['netpol'],
  },
  {
    group: 'rbac.authorization.k8s.io',
    versions: ['v1'],
    resource: 'roles',
    singular: 'role',
    kind: 'Role',
    namespaced: true,
  },
  {
    group: 'rbac.authorization.k8s.io',
    versions: ['v1'],
    resource: 'rolebindings',
    singular: 'rolebinding',
    kind: 'RoleBinding',
    namespaced: true,
  },
  {
    group: 'rbac.authorization.k8s.io',
    versions: ['v1'],
    resource: 'clusterroles',
    singular: 'clusterrole',
    kind: 'ClusterRole',
    namespaced: false,
  },
  {
    group: 'rbac.authorization.k8s.io',
    versions: ['v1'],
    resource: 'clusterrolebindings',
    singular: 'clusterrolebinding',
    kind: 'ClusterRoleBinding',
    namespaced: false,
  },
  {
    group: 'storage.k8s.io',
    versions: ['v1'],
    resource: 'storageclasses',
    singular: 'storageclass',
    kind: 'StorageClass',
    namespaced: false,
    shortNames: ['sc'],
  },
  {
    group: 'apiextensions.k8s.io',
    versions: ['v1'],
    resource: 'customresourcedefinitions',
    singular: 'customresourcedefinition',
    kind: 'CustomResourceDefinition',
    namespaced: false,
    shortNames: ['crd', 'crds'],
    subresources: ['status'],
  },
  {
    group: 'events.k8s.io',
    versions: ['v1'],
    resource: 'events',
    singular: 'event',
    kind: 'Event',
    namespaced: true,
    shortNames: ['ev'],
  },
];

const INITIAL_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];
const NAME_PATTERN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

// Plain fields, no parameter properties: benchmarks load this file through Node's type stripping.
class ApiFailure extends Error {
  readonly code: number;
  readonly reason: string;
  readonly details: Json;
  constructor(code: number, reason: string, message: string, details: Json = {}) {
    super(message);
    this.code = code;
    this.reason = reason;
    this.details = details;
  }
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Kubernetes version priority: GA before beta before alpha, higher numbers first. */
function versionRank(version: string): [number, number, number] {
  const match = /^v(\d+)(?:(alpha|beta)(\d+))?$/.exec(version);
  if (!match) return [3, 0, 0];
  const level = match[2] === undefined ? 0 : match[2] === 'beta' ? 1 : 2;
  return [level, -Number(match[1]), -Number(match[3] ?? 0)];
}

function byPriority(a: string, b: string): number {
  const [x, y] = [versionRank(a), versionRank(b)];
  for (let index = 0; index < 3; index += 1) if (x[index] !== y[index]) return x[index]! - y[index]!;
  return a < b ? -1 : 1;
}

function timestamp(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
}

/** Leaf paths of a JSON object, as `a.b.c` segments (arrays are leaves: lists are replaced whole). */
function leaves(value: unknown, prefix: string[] = [], into: string[][] = []): string[][] {
  if (isObject(value) && Object.keys(value).length > 0) {
    for (const [key, child] of Object.entries(value)) leaves(child, [...prefix, key], into);
  } else if (prefix.length > 0) into.push(prefix);
  return into;
}

function valueAt(value: unknown, path: string[]): unknown {
  let current = value;
  for (const key of path) current = isObject(current) ? current[key] : undefined;
  return current;
}

/** FieldsV1 (`{"f:metadata":{"f:labels":{"f:app":{}}}}`) of a set of leaf paths. */
function fieldsV1(paths: string[][]): Json {
  const root: Json = {};
  for (const path of paths) {
    let node = root;
    for (const key of path) {
      const field = `f:${key}`;
      node[field] ??= {};
      node = node[field] as Json;
    }
  }
  return root;
}

function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return structuredClone(patch);
  const result: Json = isObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}

/** `app=web,tier!=db,env in (a,b),!legacy` → a predicate on labels. */
function parseSelector(selector: string): (labels: Record<string, string>) => boolean {
  const terms: string[] = [];
  let depth = 0;
  let current = '';
  for (const char of selector) {
    if (char === '(') depth += 1;
    if (char === ')') depth -= 1;
    if (char === ',' && depth === 0) {
      terms.push(current);
      current = '';
    } else current += char;
  }
  if (current.trim() !== '') terms.push(current);
  const tests = terms.map((raw): ((labels: Record<string, string>) => boolean) => {
    const term = raw.trim();
    let match = /^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(term);
    if (match) {
      const values = match[3]!.split(',').map((value) => value.trim());
      const key = match[1]!;
      return match[2] === 'in'
        ? (labels) => key in labels && values.includes(labels[key]!)
        : (labels) => !(key in labels) || !values.includes(labels[key]!);
    }
    match = /^([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)$/.exec(term);
    if (match) {
      const [, key, operator, value] = match as unknown as [string, string, string, string];
      return operator === '!=' ? (labels) => labels[key] !== value : (labels) => labels[key] === value;
    }
    match = /^(!?)([\w./-]+)$/.exec(term);
    if (match) {
      const key = match[2]!;
      return match[1] === '!' ? (labels) => !(key in labels) : (labels) => key in labels;
    }
    throw new ApiFailure(400, 'BadRequest', `unable to parse requirement: "${term}"`);
  });
  return (labels) => tests.every((test) => test(labels));
}

/** Starts the double on a free loopback port. */
export async function startKubernetesDouble(
  options: { gitVersion?: string } = {},
): Promise<KubernetesDouble> {
  const gitVersion = options.gitVersion ?? 'v1.30.0';
  const token = randomBytes(16).toString('hex');
  const requests: string[] = [];
  const types: ResourceType[] = BUILT_IN.map((type) => ({ ...type }));
  /** `group/resource` → `namespace/name` → object (stored without apiVersion's version). */
  const store = new Map<string, Map<string, Json>>();
  /** Field ownership per object key: manager → leaf paths (joined with `\0`). */
  const owners = new Map<
    string,
    Map<string, { operation: string; paths: Set<string>; time: string; apiVersion: string }>
  >();
  const clusterIps = new Set<string>();
  let revision = 1;
  let nextIp = 10;

  const groupResource = (type: ResourceType): string => `${type.group}/${type.resource}`;
  const apiVersionOf = (group: string, version: string): string =>
    group === '' ? version : `${group}/${version}`;
  const tableOf = (type: ResourceType): Map<string, Json> => {
    let table = store.get(groupResource(type));
    if (!table) {
      table = new Map();
      store.set(groupResource(type), table);
    }
    return table;
  };
  const keyOf = (namespace: string | undefined, name: string): string => `${namespace ?? ''}/${name}`;
  const ownerKey = (type: ResourceType, key: string): string => `${groupResource(type)}|${key}`;

  function findType(group: string, version: string, resource: string): ResourceType {
    const type = types.find(
      (candidate) =>
        candidate.group === group && candidate.resource === resource && candidate.versions.includes(version),
    );
    if (!type) throw new ApiFailure(404, 'NotFound', 'the server could not find the requested resource');
    return type;
  }

  function managedFieldsOf(type: ResourceType, key: string): Json[] {
    const entries = owners.get(ownerKey(type, key));
    if (!entries) return [];
    return [...entries].map(([manager, owned]) => ({
      manager,
      operation: owned.operation,
      apiVersion: owned.apiVersion,
      time: owned.time,
      fieldsType: 'FieldsV1',
      fieldsV1: fieldsV1([...owned.paths].map((path) => path.split('\0'))),
    }));
  }

  /** The object as the API returns it: apiVersion of the request, managedFields. */
  function present(type: ResourceType, version: string, key: string, stored: Json, inList = false): Json {
    const copy = structuredClone(stored);
    const metadata = copy.metadata as Json;
    metadata.managedFields = managedFieldsOf(type, key);
    if (inList && !type.custom) {
      delete copy.apiVersion;
      delete copy.kind;
      return copy;
    }
    return { apiVersion: apiVersionOf(type.group, version), kind: type.kind, ...copy };
  }

  function own(
    type: ResourceType,
    key: string,
    manager: string,
    operation: string,
    paths: string[][],
    apiVersion: string,
  ): void {
    const id = ownerKey(type, key);
    let entries = owners.get(id);
    if (!entries) {
      entries = new Map();
      owners.set(id, entries);
    }
    const joined = paths.map((path) => path.join('\0'));
    // A field now set by this manager is no longer another's (for Apply: only with force, checked before).
    for (const [other, owned] of entries) {
      if (other === manager) continue;
      for (const path of joined) owned.paths.delete(path);
      if (owned.paths.size === 0) entries.delete(other);
    }
    const previous = entries.get(manager);
    const next = operation === 'Apply' ? new Set(joined) : new Set([...(previous?.paths ?? []), ...joined]);
    entries.set(manager, { operation, paths: next, time: timestamp(), apiVersion });
  }

  /** Fields a client may set, as leaf paths (what managedFields track). */
  function userPaths(object: Json): string[][] {
    const { apiVersion: _a, kind: _k, status: _s, metadata, ...rest } = object;
    const tracked: Json = { ...rest };
    if (isObject(metadata)) {
      const kept: Json = {};
      for (const field of ['labels', 'annotations', 'finalizers', 'ownerReferences']) {
        if (metadata[field] !== undefined) kept[field] = metadata[field];
      }
      if (Object.keys(kept).length > 0) tracked.metadata = kept;
    }
    return leaves(tracked);
  }

  function requireNamespace(namespace: string): void {
    const namespaces = tableOf(findType('', 'v1', 'namespaces'));
    const found = namespaces.get(keyOf(undefined, namespace));
    if (!found) {
      throw new ApiFailure(404, 'NotFound', `namespaces "${namespace}" not found`, {
        name: namespace,
        kind: 'namespaces',
      });
    }
    if ((found.metadata as Json).deletionTimestamp !== undefined) {
      throw new ApiFailure(
        403,
        'Forbidden',
        `unable to create new content in namespace ${namespace} because it is being terminated`,
      );
    }
  }

  function validate(
    type: ResourceType,
    version: string,
    object: Json,
    namespace: string | undefined,
    name?: string,
  ): Json {
    if (!isObject(object.metadata)) throw new ApiFailure(400, 'BadRequest', 'Object has no metadata');
    const metadata = object.metadata;
    const expected = apiVersionOf(type.group, version);
    if (object.kind !== undefined && object.kind !== type.kind) {
      throw new ApiFailure(
        400,
        'BadRequest',
        `the API version in the data (${String(object.apiVersion)}) does not match the expected API version (${expected}) or kind ${String(object.kind)} is not ${type.kind}`,
      );
    }
    if (object.apiVersion !== undefined && object.apiVersion !== expected) {
      throw new ApiFailure(
        400,
        'BadRequest',
        `the API version in the data (${String(object.apiVersion)}) does not match the expected API version (${expected})`,
      );
    }
    if (name !== undefined && metadata.name !== undefined && metadata.name !== name) {
      throw new ApiFailure(400, 'BadRequest', 'the name of the object does not match the name on the URL');
    }
    if (namespace !== undefined && metadata.namespace !== undefined && metadata.namespace !== namespace) {
      throw new ApiFailure(
        400,
        'BadRequest',
        'the namespace of the provided object does not match the namespace sent on the request',
      );
    }
    const objectName = metadata.name ?? name;
    if (typeof objectName !== 'string' || objectName === '') {
      if (typeof metadata.generateName !== 'string') {
        throw new ApiFailure(
          422,
          'Invalid',
          `${type.kind} "" is invalid: metadata.name: Required value: name or generateName is required`,
        );
      }
    } else if (!NAME_PATTERN.test(objectName) || objectName.length > 253) {
      throw new ApiFailure(
        422,
        'Invalid',
        `${type.kind} "${objectName}" is invalid: metadata.name: Invalid value: "${objectName}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'`,
      );
    }
    return metadata;
  }

  function bump(): string {
    revision += 1;
    return String(revision);
  }

  /** Defaults and server-set fields of a new object, by kind; side objects a controller creates. */
  function initialise(type: ResourceType, object: Json, namespace: string | undefined): void {
    const metadata = object.metadata as Json;
    metadata.uid = randomUUID();
    metadata.creationTimestamp = timestamp();
    if (namespace !== undefined) metadata.namespace = namespace;
    else delete metadata.namespace;
    if (object.spec !== undefined || type.kind === 'Namespace') metadata.generation = 1;
    switch (type.kind) {
      case 'Namespace': {
        metadata.labels = {
          ...(metadata.labels as Json | undefined),
          'kubernetes.io/metadata.name': metadata.name,
        };
        object.spec = { finalizers: ['kubernetes'] };
        object.status = { phase: 'Active' };
        break;
      }
      case 'Service': {
        const spec = (object.spec ??= {}) as Json;
        spec.type ??= 'ClusterIP';
        spec.sessionAffinity ??= 'None';
        if (spec.clusterIP === undefined || spec.clusterIP === '') {
          nextIp += 1;
          spec.clusterIP = `10.96.${Math.floor(nextIp / 250)}.${nextIp % 250}`;
        } else if (spec.clusterIP !== 'None' && clusterIps.has(String(spec.clusterIP))) {
          throw new ApiFailure(
            422,
            'Invalid',
            `Service "${String(metadata.name)}" is invalid: spec.clusterIPs: Invalid value: []string{"${String(spec.clusterIP)}"}: failed to allocate IP ${String(spec.clusterIP)}: provided IP is already allocated`,
          );
        }
        if (spec.clusterIP !== 'None') clusterIps.add(String(spec.clusterIP));
        spec.clusterIPs = [spec.clusterIP];
        spec.ipFamilies ??= ['IPv4'];
        spec.ipFamilyPolicy ??= 'SingleStack';
        if (Array.isArray(spec.ports)) {
          spec.ports = spec.ports.map((port: Json) => ({ protocol: 'TCP', targetPort: port.port, ...port }));
        }
        object.status = { loadBalancer: {} };
        break;
      }
      case 'Deployment': {
        const spec = (object.spec ??= {}) as Json;
        spec.replicas ??= 1;
        spec.revisionHistoryLimit ??= 10;
        spec.progressDeadlineSeconds ??= 600;
        spec.strategy ??= {
          type: 'RollingUpdate',
          rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' },
        };
        object.status = {
          observedGeneration: 1,
          replicas: spec.replicas,
          updatedReplicas: spec.replicas,
          readyReplicas: spec.replicas,
          availableReplicas: spec.replicas,
        };
        break;
      }
      case 'PersistentVolumeClaim': {
        const spec = (object.spec ??= {}) as Json;
        spec.volumeMode ??= 'Filesystem';
        object.status = { phase: spec.volumeName ? 'Bound' : 'Pending' };
        break;
      }
      case 'PersistentVolume': {
        const spec = (object.spec ??= {}) as Json;
        spec.persistentVolumeReclaimPolicy ??= 'Retain';
        spec.volumeMode ??= 'Filesystem';
        object.status = { phase: 'Available' };
        break;
      }
      case 'Secret': {
        object.type ??= 'Opaque';
        break;
      }
      case 'CustomResourceDefinition': {
        object.status = {
          conditions: [
            {
              type: 'Established',
              status: 'True',
              reason: 'InitialNamesAccepted',
              lastTransitionTime: timestamp(),
            },
          ],
          acceptedNames: (object.spec as Json).names,
          storedVersions: [
            ((object.spec as Json).versions as Json[]).find((version) => version.storage)?.name,
          ],
        };
        break;
      }
    }
  }

  function afterCreate(type: ResourceType, object: Json): void {
    const metadata = object.metadata as Json;
    if (type.kind === 'Namespace') {
      const namespace = String(metadata.name);
      insert(
        findType('', 'v1', 'serviceaccounts'),
        'v1',
        { metadata: { name: 'default' } },
        namespace,
        'kube-controller-manager',
      );
      insert(
        findType('', 'v1', 'configmaps'),
        'v1',
        {
          metadata: {
            name: 'kube-root-ca.crt',
            annotations: {
              'kubernetes.io/description':
                'Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.',
            },
          },
          data: { 'ca.crt': '-----BEGIN CERTIFICATE-----\nMIIBdouble\n-----END CERTIFICATE-----\n' },
        },
        namespace,
        'kube-root-ca-cert-publisher',
      );
    }
    if (type.kind === 'Deployment') {
      const spec = object.spec as Json;
      const template = structuredClone((spec.template as Json | undefined) ?? {});
      const hash = randomBytes(5).toString('hex').slice(0, 10);
      insert(
        findType('apps', 'v1', 'replicasets'),
        'v1',
        {
          metadata: {
            name: `${String(metadata.name)}-${hash}`,
            labels: {
              ...((template.metadata as Json | undefined)?.labels as Json),
              'pod-template-hash': hash,
            },
            ownerReferences: [
              {
                apiVersion: 'apps/v1',
                kind: 'Deployment',
                name: metadata.name,
                uid: metadata.uid,
                controller: true,
                blockOwnerDeletion: true,
              },
            ],
          },
          spec: { replicas: spec.replicas, selector: spec.selector, template },
        },
        String(metadata.namespace),
        'kube-controller-manager',
      );
    }
    if (type.kind === 'CustomResourceDefinition') registerCrd(object);
  }

  function registerCrd(object: Json): void {
    const spec = object.spec as Json;
    const names = spec.names as Json;
    const versions = (spec.versions as Json[])
      .filter((version) => version.served !== false)
      .map((version) => String(version.name))
      .sort(byPriority);
    types.push({
      group: String(spec.group),
      versions,
      resource: String(names.plural),
      singular: String(names.singular ?? String(names.kind).toLowerCase()),
      kind: String(names.kind),
      namespaced: spec.scope !== 'Cluster',
      ...(Array.isArray(names.shortNames) ? { shortNames: names.shortNames as string[] } : {}),
      subresources: (spec.versions as Json[]).some(
        (version) => isObject(version.subresources) && version.subresources.status !== undefined,
      )
        ? ['status']
        : [],
      custom: true,
    });
  }

  function unregisterCrd(object: Json): void {
    const spec = object.spec as Json;
    const index = types.findIndex(
      (type) => type.custom && type.group === spec.group && type.resource === (spec.names as Json).plural,
    );
    if (index >= 0) {
      const [type] = types.splice(index, 1);
      store.delete(groupResource(type!));
    }
  }

  /** Creates an object; used by POST, by apply on an absent object, and by the built-in controllers. */
  function insert(
    type: ResourceType,
    version: string,
    body: Json,
    namespace: string | undefined,
    manager: string,
    operation = 'Update',
  ): Json {
    const object = structuredClone(body);
    const metadata = validate(type, version, object, namespace);
    if (metadata.resourceVersion !== undefined && metadata.resourceVersion !== '') {
      throw new ApiFailure(400, 'BadRequest', 'resourceVersion should not be set on objects to be created');
    }
    if (Array.isArray(metadata.managedFields) && metadata.managedFields.length > 0) {
      throw new ApiFailure(400, 'BadRequest', 'metadata.managedFields must be nil');
    }
    if (typeof metadata.name !== 'string' || metadata.name === '') {
      metadata.name = `${String(metadata.generateName)}${randomBytes(3).toString('hex').slice(0, 5)}`;
    }
    if (type.namespaced) requireNamespace(namespace!);
    const table = tableOf(type);
    const key = keyOf(type.namespaced ? namespace : undefined, String(metadata.name));
    if (table.has(key)) {
      throw new ApiFailure(
        409,
        'AlreadyExists',
        `${type.resource}${type.group ? `.${type.group}` : ''} "${String(metadata.name)}" already exists`,
        { name: metadata.name, group: type.group, kind: type.resource },
      );
    }
    delete object.apiVersion;
    delete object.kind;
    delete metadata.managedFields;
    const paths = userPaths(object);
    initialise(type, object, type.namespaced ? namespace : undefined);
    metadata.resourceVersion = bump();
    if (type.custom) {
      object.apiVersion = apiVersionOf(type.group, version);
      object.kind = type.kind;
    }
    table.set(key, object);
    own(type, key, manager, operation, paths, apiVersionOf(type.group, version));
    afterCreate(type, object);
    return object;
  }

  /** Replaces the user fields of a stored object; keeps server-set ones; bumps resourceVersion when something changed. */
  function update(type: ResourceType, key: string, stored: Json, next: Json): Json {
    const metadata = next.metadata as Json;
    const old = stored.metadata as Json;
    for (const field of ['uid', 'creationTimestamp', 'namespace', 'name', 'generation', 'resourceVersion']) {
      if (old[field] !== undefined) metadata[field] = old[field];
      else delete metadata[field];
    }
    delete metadata.managedFields;
    if (stored.status !== undefined) next.status = stored.status;
    else delete next.status;
    if (type.kind === 'Service' && isObject(next.spec) && isObject(stored.spec)) {
      next.spec.clusterIP = stored.spec.clusterIP;
      next.spec.clusterIPs = stored.spec.clusterIPs;
    }
    if (type.custom) {
      next.apiVersion = stored.apiVersion;
      next.kind = stored.kind;
    }
    if (JSON.stringify(next) === JSON.stringify(stored)) return stored;
    if (JSON.stringify(next.spec) !== JSON.stringify(stored.spec) && typeof old.generation === 'number') {
      metadata.generation = old.generation + 1;
    }
    metadata.resourceVersion = bump();
    tableOf(type).set(key, next);
    return next;
  }

  function remove(type: ResourceType, key: string): Json {
    const table = tableOf(type);
    const stored = table.get(key)!;
    table.delete(key);
    owners.delete(ownerKey(type, key));
    if (type.kind === 'Namespace') {
      const namespace = String((stored.metadata as Json).name);
      for (const candidate of types) {
        if (!candidate.namespaced) continue;
        for (const objectKey of [...tableOf(candidate).keys()]) {
          if (objectKey.startsWith(`${namespace}/`)) {
            tableOf(candidate).delete(objectKey);
            owners.delete(ownerKey(candidate, objectKey));
          }
        }
      }
    }
    if (type.kind === 'Service') clusterIps.delete(String((stored.spec as Json | undefined)?.clusterIP));
    if (type.kind === 'CustomResourceDefinition') unregisterCrd(stored);
    return stored;
  }

  function notFound(type: ResourceType, name: string): never {
    throw new ApiFailure(
      404,
      'NotFound',
      `${type.resource}${type.group ? `.${type.group}` : ''} "${name}" not found`,
      { name, group: type.group, kind: type.resource },
    );
  }

  function apply(
    type: ResourceType,
    version: string,
    namespace: string | undefined,
    name: string,
    body: Json,
    query: URLSearchParams,
  ): [number, Json] {
    const manager = query.get('fieldManager');
    if (!manager)
      throw new ApiFailure(
        422,
        'Invalid',
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
      );
    const force = query.get('force') === 'true';
    const metadata = validate(type, version, body, namespace, name);
    if (body.apiVersion === undefined || body.kind === undefined) {
      throw new ApiFailure(400, 'BadRequest', 'apply patches must have apiVersion and kind set');
    }
    if (Array.isArray(metadata.managedFields) && metadata.managedFields.length > 0) {
      throw new ApiFailure(400, 'BadRequest', 'metadata.managedFields must be nil');
    }
    const table = tableOf(type);
    const key = keyOf(type.namespaced ? namespace : undefined, name);
    const stored = table.get(key);
    if (!stored) {
      const created = insert(
        type,
        version,
        { ...body, metadata: { ...metadata, name } },
        namespace,
        manager,
        'Apply',
      );
      return [201, present(type, version, key, created)];
    }
    const storedMetadata = stored.metadata as Json;
    if (metadata.uid !== undefined && metadata.uid !== storedMetadata.uid) {
      throw new ApiFailure(
        409,
        'Conflict',
        `Operation cannot be fulfilled on ${type.resource} "${name}": Precondition failed: UID in precondition: ${String(metadata.uid)}, UID in object meta: ${String(storedMetadata.uid)}`,
      );
    }
    if (
      metadata.resourceVersion !== undefined &&
      metadata.resourceVersion !== storedMetadata.resourceVersion
    ) {
      throw new ApiFailure(
        409,
        'Conflict',
        `Operation cannot be fulfilled on ${type.resource} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
      );
    }
    const applied = structuredClone(body);
    delete applied.apiVersion;
    delete applied.kind;
    delete applied.status;
    const paths = userPaths(applied);
    if (!force) {
      const causes: Json[] = [];
      for (const [other, owned] of owners.get(ownerKey(type, key)) ?? []) {
        if (other === manager) continue;
        for (const path of paths) {
          if (!owned.paths.has(path.join('\0'))) continue;
          if (JSON.stringify(valueAt(stored, path)) === JSON.stringify(valueAt(applied, path))) continue;
          causes.push({
            reason: 'FieldManagerConflict',
            message: `conflict with "${other}": .${path.join('.')}`,
            field: `.${path.join('.')}`,
          });
        }
      }
      if (causes.length > 0) {
        throw new ApiFailure(
          409,
          'Conflict',
          `Apply failed with ${causes.length} conflict${causes.length === 1 ? '' : 's'}: ${causes.map((cause) => cause.message).join(', ')}`,
          { name, group: type.group, kind: type.resource, causes },
        );
      }
    }
    const merged = mergePatch(stored, applied) as Json;
    const result = update(type, key, stored, merged);
    own(type, key, manager, 'Apply', paths, apiVersionOf(type.group, version));
    return [200, present(type, version, key, result)];
  }

  function list(
    type: ResourceType,
    version: string,
    namespace: string | undefined,
    query: URLSearchParams,
  ): Json {
    const selector = parseSelector(query.get('labelSelector') ?? '');
    const keys = [...tableOf(type).keys()]
      .filter((key) => namespace === undefined || key.startsWith(`${namespace}/`))
      .sort();
    const after = query.get('continue');
    const start = after ? keys.findIndex((key) => key > Buffer.from(after, 'base64url').toString('utf8')) : 0;
    const limit = Number(query.get('limit') ?? 0);
    const items: Json[] = [];
    let next: string | undefined;
    for (const key of start < 0 ? [] : keys.slice(start)) {
      const object = tableOf(type).get(key)!;
      if (!selector(((object.metadata as Json).labels as Record<string, string> | undefined) ?? {})) continue;
      if (limit > 0 && items.length === limit) {
        next = Buffer.from(
          keyOf(
            (items.at(-1)!.metadata as Json).namespace as string | undefined,
            String((items.at(-1)!.metadata as Json).name),
          ),
          'utf8',
        ).toString('base64url');
        break;
      }
      items.push(present(type, version, key, object, true));
    }
    return {
      kind: `${type.kind}List`,
      apiVersion: apiVersionOf(type.group, version),
      metadata: { resourceVersion: String(revision), ...(next === undefined ? {} : { continue: next }) },
      items,
    };
  }

  function resourceList(group: string, version: string): Json {
    const served = types.filter((type) => type.group === group && type.versions.includes(version));
    if (served.length === 0)
      throw new ApiFailure(404, 'NotFound', 'the server could not find the requested resource');
    const resources: Json[] = [];
    for (const type of served) {
      resources.push({
        name: type.resource,
        singularName: type.singular,
        namespaced: type.namespaced,
        kind: type.kind,
        verbs: type.verbs ?? ALL_VERBS,
        ...(type.shortNames ? { shortNames: type.shortNames } : {}),
        storageVersionHash: randomBytes(8).toString('base64'),
      });
      for (const sub of type.subresources ?? []) {
        resources.push({
          name: `${type.resource}/${sub}`,
          singularName: '',
          namespaced: type.namespaced,
          kind: sub === 'scale' ? 'Scale' : type.kind,
          verbs: ['get', 'patch', 'update'],
        });
      }
    }
    return {
      kind: 'APIResourceList',
      apiVersion: 'v1',
      groupVersion: apiVersionOf(group, version),
      resources,
    };
  }

  function groupList(): Json {
    const groups = new Map<string, string[]>();
    for (const type of types) {
      if (type.group === '') continue;
      const versions = groups.get(type.group) ?? [];
      for (const version of type.versions) if (!versions.includes(version)) versions.push(version);
      groups.set(type.group, versions);
    }
    return {
      kind: 'APIGroupList',
      apiVersion: 'v1',
      groups: [...groups].map(([name, versions]) => {
        const sorted = [...versions].sort(byPriority);
        return {
          name,
          versions: sorted.map((version) => ({ groupVersion: `${name}/${version}`, version })),
          preferredVersion: { groupVersion: `${name}/${sorted[0]}`, version: sorted[0] },
        };
      }),
    };
  }

  function handle(
    method: string,
    path: string,
    query: URLSearchParams,
    body: unknown,
    contentType: string,
  ): [number, Json] {
    if (method === 'GET' && path === '/version') {
      const [, major, minor] = /^v(\d+)\.(\d+)/.exec(gitVersion) ?? [];
      return [200, { major, minor, gitVersion, platform: 'linux/amd64' }];
    }
    if (method === 'GET' && path === '/api') {
      return [
        200,
        {
          kind: 'APIVersions',
          versions: ['v1'],
          serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '127.0.0.1:6443' }],
        },
      ];
    }
    if (method === 'GET' && path === '/apis') return [200, groupList()];
    const segments = path
      .split('/')
      .filter((segment) => segment !== '')
      .map(decodeURIComponent);
    let group: string;
    let rest: string[];
    if (segments[0] === 'api' && segments[1] !== undefined) {
      group = '';
      rest = segments.slice(1);
    } else if (segments[0] === 'apis' && segments[1] !== undefined) {
      group = segments[1];
      if (segments.length === 2) {
        const found = (groupList().groups as Json[]).find((candidate) => candidate.name === group);
        if (!found) throw new ApiFailure(404, 'NotFound', 'the server could not find the requested resource');
        return [200, { kind: 'APIGroup', apiVersion: 'v1', ...found }];
      }
      rest = segments.slice(2);
    } else {
      throw new ApiFailure(404, 'NotFound', 'the server could not find the requested resource');
    }
    const version = rest[0]!;
    if (rest.length === 1) {
      if (method !== 'GET')
        throw new ApiFailure(
          405,
          'MethodNotAllowed',
          'the server does not allow this method on the requested resource',
        );
      return [200, resourceList(group, version)];
    }
    let namespace: string | undefined;
    let tail = rest.slice(1);
    if (tail[0] === 'namespaces' && tail.length >= 3) {
      namespace = tail[1];
      tail = tail.slice(2);
    }
    const type = findType(group, version, tail[0]!);
    const name = tail[1];
    if (tail.length > 2)
      throw new ApiFailure(404, 'NotFound', 'the server could not find the requested resource');
    if (!type.namespaced && namespace !== undefined)
      throw new ApiFailure(404, 'NotFound', 'the server could not find the requested resource');
    if (type.namespaced && namespace === undefined && !(method === 'GET' && name === undefined)) {
      throw new ApiFailure(404, 'NotFound', 'the server could not find the requested resource');
    }
    const table = tableOf(type);
    const key = name === undefined ? '' : keyOf(namespace, name);
    if (name === undefined) {
      if (method === 'GET') {
        if (query.get('watch') === 'true' || query.get('watch') === '1')
          throw new ApiFailure(405, 'MethodNotAllowed', 'watch is not served by this double');
        return [200, list(type, version, namespace, query)];
      }
      if (method === 'POST') {
        if (!isObject(body)) throw new ApiFailure(400, 'BadRequest', 'the request body must be an object');
        const manager = query.get('fieldManager') ?? 'unknown';
        const created = insert(type, version, body, namespace, manager);
        const createdKey = keyOf(namespace, String((created.metadata as Json).name));
        return [201, present(type, version, createdKey, created)];
      }
      throw new ApiFailure(
        405,
        'MethodNotAllowed',
        'the server does not allow this method on the requested resource',
      );
    }
    const stored = table.get(key);
    switch (method) {
      case 'GET': {
        if (!stored) notFound(type, name);
        return [200, present(type, version, key, stored)];
      }
      case 'DELETE': {
        if (!stored) notFound(type, name);
        const removed = remove(type, key);
        return [
          200,
          {
            kind: 'Status',
            apiVersion: 'v1',
            metadata: {},
            status: 'Success',
            details: { name, group: type.group, kind: type.resource, uid: (removed.metadata as Json).uid },
          },
        ];
      }
      case 'PUT': {
        if (!stored) notFound(type, name);
        if (!isObject(body)) throw new ApiFailure(400, 'BadRequest', 'the request body must be an object');
        const metadata = validate(type, version, body, namespace, name);
        if (metadata.resourceVersion === undefined || metadata.resourceVersion === '') {
          throw new ApiFailure(
            422,
            'Invalid',
            `${type.kind} "${name}" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update`,
          );
        }
        if (metadata.resourceVersion !== (stored.metadata as Json).resourceVersion) {
          throw new ApiFailure(
            409,
            'Conflict',
            `Operation cannot be fulfilled on ${type.resource}${type.group ? `.${type.group}` : ''} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
          );
        }
        const next = structuredClone(body);
        delete next.apiVersion;
        delete next.kind;
        const result = update(type, key, stored, next);
        own(
          type,
          key,
          query.get('fieldManager') ?? 'unknown',
          'Update',
          userPaths(next),
          apiVersionOf(type.group, version),
        );
        return [200, present(type, version, key, result)];
      }
      case 'PATCH': {
        if (!isObject(body)) throw new ApiFailure(400, 'BadRequest', 'the request body must be an object');
        const mediaType = contentType.split(';')[0]!.trim();
        if (mediaType === 'application/apply-patch+yaml')
          return apply(type, version, namespace, name, body, query);
        if (
          mediaType !== 'application/merge-patch+json' &&
          mediaType !== 'application/strategic-merge-patch+json'
        ) {
          throw new ApiFailure(
            415,
            'UnsupportedMediaType',
            `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`,
          );
        }
        if (!stored) notFound(type, name);
        const patched = mergePatch(stored, body) as Json;
        const result = update(type, key, stored, patched);
        own(
          type,
          key,
          query.get('fieldManager') ?? 'unknown',
          'Update',
          userPaths(body),
          apiVersionOf(type.group, version),
        );
        return [200, present(type, version, key, result)];
      }
    }
    throw new ApiFailure(
      405,
      'MethodNotAllowed',
      'the server does not allow this method on the requested resource',
    );
  }

  for (const namespace of INITIAL_NAMESPACES) {
    insert(
      findType('', 'v1', 'namespaces'),
      'v1',
      { metadata: { name: namespace } },
      undefined,
      'kube-apiserver',
    );
  }
  insert(
    findType('rbac.authorization.k8s.io', 'v1', 'clusterroles'),
    'v1',
    {
      metadata: { name: 'view', labels: { 'kubernetes.io/bootstrapping': 'rbac-defaults' } },
      rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list', 'watch'] }],
    },
    undefined,
    'kube-apiserver',
  );

  async function serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://double');
    const method = request.method ?? 'GET';
    requests.push(`${method} ${url.pathname}${url.search}`);
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    let status: number;
    let answer: Json;
    try {
      if (request.headers.authorization !== `Bearer ${token}`)
        throw new ApiFailure(401, 'Unauthorized', 'Unauthorized');
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      if (text.trim() !== '') {
        try {
          body = JSON.parse(text);
        } catch {
          throw new ApiFailure(
            400,
            'BadRequest',
            'the request body is not JSON (this double reads JSON bodies only)',
          );
        }
      }
      [status, answer] = handle(
        method,
        url.pathname,
        url.searchParams,
        body,
        request.headers['content-type'] ?? '',
      );
    } catch (error) {
      if (!(error instanceof ApiFailure)) throw error;
      status = error.code;
      answer = {
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Failure',
        message: error.message,
        reason: error.reason,
        ...(Object.keys(error.details).length > 0 ? { details: error.details } : {}),
        code: error.code,
      };
    }
    response.writeHead(status, { 'content-type': 'application/json' });
    response.end(JSON.stringify(answer));
  }

  const certDir = await mkdtemp(join(tmpdir(), 'bk-k8s-double-'));
  let key: Buffer;
  let cert: Buffer;
  try {
    await promisify(execFile)('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      join(certDir, 'key.pem'),
      '-out',
      join(certDir, 'cert.pem'),
      '-days',
      '2',
      '-subj',
      '/CN=kube-apiserver',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
    ]);
    key = await readFile(join(certDir, 'key.pem'));
    cert = await readFile(join(certDir, 'cert.pem'));
  } finally {
    await rm(certDir, { recursive: true, force: true });
  }
  const server: Server = createServer({ key, cert }, (request, response) => {
    serve(request, response).catch((error: unknown) => {
      response.writeHead(500, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify({
          kind: 'Status',
          apiVersion: 'v1',
          status: 'Failure',
          message: String(error),
          reason: 'InternalError',
          code: 500,
        }),
      );
    });
  });
  const port = await listenOnFreePort(server);
  const url = `https://127.0.0.1:${port}`;
  const kubeconfig = [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: double',
    '  cluster:',
    `    server: ${url}`,
    `    certificate-authority-data: ${cert.toString('base64')}`,
    'users:',
    '- name: double',
    '  user:',
    `    token: ${token}`,
    'contexts:',
    '- name: double',
    '  context:',
    '    cluster: double',
    '    user: double',
    'current-context: double',
    '',
  ].join('\n');
  return {
    url,
    ca: cert.toString('utf8'),
    token,
    kubeconfig,
    requests,
    objects: () => {
      const all: Json[] = [];
      for (const type of types) {
        for (const [key, object] of tableOf(type)) all.push(present(type, type.versions[0]!, key, object));
      }
      return all;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
