import { deepStrictEqual, ok, rejects, strictEqual } from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BkError, backup, type ComponentInfo, MemoryStorage, restore } from '@bk/core';
import { type KubernetesDouble, startKubernetesDouble } from '@bk/test-servers';
import { recordedEntries } from '@bk/test-suite';
import { afterAll, beforeAll, describe, it } from 'vitest';
import {
  type KubernetesResourcesOptions,
  kubernetesResources,
  RESTORE_ORDER,
  resourcesFromConfig,
  stripServerFields,
} from '../src/index.ts';
import { KubeApi } from '../src/kube-api.ts';

/**
 * The same suite runs against the API double, or against a real cluster when BK_TEST_KUBECONFIG
 * names a kubeconfig: then source and target are that one cluster, the test's namespaces get a
 * random suffix, and everything the test created is deleted at the end.
 */
const realKubeconfig = process.env.BK_TEST_KUBECONFIG;
const suffix = realKubeconfig ? `-${Math.random().toString(36).slice(2, 8)}` : '';
const SHOP = `shop${suffix}`;
const BLOG = `blog${suffix}`;
const OTHER = `other${suffix}`;
const SHOP_RESTORED = `shop-restored${suffix}`;
const BLOG_RESTORED = `blog-restored${suffix}`;
const CRD_GROUP = realKubeconfig ? `bk${suffix.slice(1)}.example.com` : 'example.com';

type Json = Record<string, unknown>;

function code(thrown: unknown): string {
  return BkError.isInstance(thrown) ? thrown.code : String(thrown);
}

interface Cluster {
  kubeconfig: string;
  api: KubeApi;
  stop: () => Promise<void>;
}

const signal = new AbortController().signal;

async function cluster(dir: string, name: string): Promise<Cluster> {
  if (realKubeconfig) {
    return {
      kubeconfig: realKubeconfig,
      api: new KubeApi({ kubeconfig: realKubeconfig }, 'test', 30_000),
      stop: async () => {},
    };
  }
  const double: KubernetesDouble = await startKubernetesDouble();
  const kubeconfig = join(dir, `${name}.kubeconfig`);
  await writeFile(kubeconfig, double.kubeconfig, { mode: 0o600 });
  return { kubeconfig, api: new KubeApi({ kubeconfig }, 'test', 30_000), stop: () => double.stop() };
}

async function create(api: KubeApi, path: string, object: Json): Promise<void> {
  await api.expect('POST', path, signal, object);
}

function crd(): Json {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `widgets.${CRD_GROUP}` },
    spec: {
      group: CRD_GROUP,
      scope: 'Namespaced',
      names: { plural: 'widgets', singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
      versions: [
        {
          name: 'v1',
          served: true,
          storage: true,
          schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
        },
      ],
    },
  };
}

async function load(api: KubeApi): Promise<void> {
  await create(api, '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd());
  await create(api, '/apis/storage.k8s.io/v1/storageclasses', {
    apiVersion: 'storage.k8s.io/v1',
    kind: 'StorageClass',
    metadata: { name: `fast${suffix}` },
    provisioner: 'kubernetes.io/no-provisioner',
    volumeBindingMode: 'WaitForFirstConsumer',
  });
  await create(api, '/api/v1/persistentvolumes', {
    apiVersion: 'v1',
    kind: 'PersistentVolume',
    metadata: { name: `pv-data${suffix}` },
    spec: {
      capacity: { storage: '1Gi' },
      accessModes: ['ReadWriteOnce'],
      storageClassName: `fast${suffix}`,
      hostPath: { path: '/tmp/bk-pv-data' },
      claimRef: { namespace: SHOP, name: 'data' },
    },
  });
  for (const namespace of [SHOP, BLOG, OTHER]) {
    await create(api, '/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: namespace, labels: { team: 'web' } },
    });
  }
  const ns = (namespace: string) => `/api/v1/namespaces/${namespace}`;
  await create(api, `${ns(SHOP)}/configmaps`, {
    metadata: { name: 'web-config', labels: { app: 'web' } },
    data: { 'nginx.conf': 'server { listen 80; }\n', color: 'blue' },
  });
  await create(api, `${ns(SHOP)}/secrets`, {
    metadata: { name: 'web-secret', labels: { app: 'web' } },
    type: 'Opaque',
    data: { password: Buffer.from('s3cret').toString('base64') },
  });
  await create(api, `${ns(SHOP)}/serviceaccounts`, { metadata: { name: 'web', labels: { app: 'web' } } });
  await create(api, `${ns(SHOP)}/persistentvolumeclaims`, {
    metadata: { name: 'data', labels: { app: 'web' } },
    spec: {
      accessModes: ['ReadWriteOnce'],
      storageClassName: `fast${suffix}`,
      volumeName: `pv-data${suffix}`,
      resources: { requests: { storage: '1Gi' } },
    },
  });
  await create(api, `${ns(SHOP)}/services`, {
    metadata: { name: 'web', labels: { app: 'web' } },
    spec: {
      selector: { app: 'web' },
      ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }],
    },
  });
  await create(api, `/apis/rbac.authorization.k8s.io/v1/namespaces/${SHOP}/roles`, {
    metadata: { name: 'web-reader', labels: { app: 'web' } },
    rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get'] }],
  });
  await create(api, `/apis/rbac.authorization.k8s.io/v1/namespaces/${SHOP}/rolebindings`, {
    metadata: { name: 'web-reader', labels: { app: 'web' } },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'web-reader' },
    subjects: [{ kind: 'ServiceAccount', name: 'web', namespace: SHOP }],
  });
  await create(api, `/apis/apps/v1/namespaces/${SHOP}/deployments`, {
    metadata: { name: 'web', labels: { app: 'web' } },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels: { app: 'web' } },
        spec: {
          serviceAccountName: 'web',
          containers: [{ name: 'nginx', image: 'nginx:1.27', ports: [{ containerPort: 8080 }] }],
          volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'data' } }],
        },
      },
    },
  });
  await waitServed(api, `/apis/${CRD_GROUP}/v1`, 'widgets');
  for (const [namespace, name, teeth] of [
    [SHOP, 'gear', 12],
    [BLOG, 'cog', 8],
  ] as const) {
    await create(api, `/apis/${CRD_GROUP}/v1/namespaces/${namespace}/widgets`, {
      apiVersion: `${CRD_GROUP}/v1`,
      kind: 'Widget',
      metadata: { name, labels: { app: 'web' } },
      spec: { teeth, material: 'steel' },
    });
  }
  await create(api, `${ns(BLOG)}/configmaps`, {
    metadata: { name: 'posts', labels: { app: 'blog' } },
    data: { count: '3' },
  });
  await create(api, `${ns(OTHER)}/configmaps`, { metadata: { name: 'not-selected' }, data: { x: '1' } });
}

async function waitServed(api: KubeApi, path: string, resource: string): Promise<void> {
  for (let attempt = 0; attempt < 120; attempt += 1) {
    const answer = await api.call('GET', path, signal);
    if (answer.status === 200 && (answer.body.resources as Json[]).some((item) => item.name === resource))
      return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`${resource} not served`);
}

/** The object at `path` without the fields the server sets, or undefined. */
async function read(api: KubeApi, path: string): Promise<Json | undefined> {
  const answer = await api.call('GET', path, signal);
  if (answer.status === 404) return undefined;
  strictEqual(answer.status, 200, JSON.stringify(answer.body));
  return stripServerFields(answer.body);
}

describe(`KubernetesResources against ${realKubeconfig ? 'the cluster of BK_TEST_KUBECONFIG' : 'the API double'}`, () => {
  let dir: string;
  let source: Cluster;
  let target: Cluster;
  const storage = new MemoryStorage();
  let backupName: string;
  let info: ComponentInfo;
  let paths: string[];
  let options: KubernetesResourcesOptions;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bk-kubernetes-resources-'));
    source = await cluster(dir, 'source');
    target = realKubeconfig ? source : await cluster(dir, 'target');
    await load(source.api);
    options = { kubeconfig: source.kubeconfig, namespaces: [SHOP, BLOG], pageSize: 2 };
    const result = await backup({ storage, components: [kubernetesResources(options)] });
    backupName = result.name;
    info = result.manifest.components[0]!.info;
    paths = (await recordedEntries(storage, result.manifest, 'kubernetes-resources')).map(
      (entry) => entry.path,
    );
  }, 120_000);
  afterAll(async () => {
    if (realKubeconfig && source) {
      for (const namespace of [SHOP, BLOG, OTHER, SHOP_RESTORED, BLOG_RESTORED]) {
        await source.api.call('DELETE', `/api/v1/namespaces/${namespace}`, signal);
      }
      await source.api.call(
        'DELETE',
        `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.${CRD_GROUP}`,
        signal,
      );
      await source.api.call('DELETE', `/api/v1/persistentvolumes/pv-data${suffix}`, signal);
      await source.api.call('DELETE', `/apis/storage.k8s.io/v1/storageclasses/fast${suffix}`, signal);
    }
    await source?.stop();
    if (target !== source) await target?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('stores every selected object in the Velero layout, in restore order, and what the namespaces need', () => {
    for (const path of [
      `resources/customresourcedefinitions.apiextensions.k8s.io/cluster/widgets.${CRD_GROUP}.json`,
      `resources/namespaces/cluster/${SHOP}.json`,
      `resources/namespaces/cluster/${BLOG}.json`,
      `resources/storageclasses.storage.k8s.io/cluster/fast${suffix}.json`,
      `resources/persistentvolumes/cluster/pv-data${suffix}.json`,
      `resources/persistentvolumeclaims/namespaces/${SHOP}/data.json`,
      `resources/secrets/namespaces/${SHOP}/web-secret.json`,
      `resources/configmaps/namespaces/${SHOP}/web-config.json`,
      `resources/configmaps/namespaces/${BLOG}/posts.json`,
      `resources/serviceaccounts/namespaces/${SHOP}/web.json`,
      `resources/roles.rbac.authorization.k8s.io/namespaces/${SHOP}/web-reader.json`,
      `resources/rolebindings.rbac.authorization.k8s.io/namespaces/${SHOP}/web-reader.json`,
      `resources/services/namespaces/${SHOP}/web.json`,
      `resources/deployments.apps/namespaces/${SHOP}/web.json`,
      `resources/widgets.${CRD_GROUP}/namespaces/${SHOP}/gear.json`,
      `resources/widgets.${CRD_GROUP}/namespaces/${BLOG}/cog.json`,
    ]) {
      ok(paths.includes(path), `${path} missing from ${paths.join('\n')}`);
    }
    ok(
      !paths.some((path) => path.includes(`/${OTHER}/`) || path.endsWith(`/${OTHER}.json`)),
      'other namespace',
    );
    ok(!paths.some((path) => path.startsWith('resources/namespaces/cluster/default')));
    ok(!paths.some((path) => path.startsWith('resources/clusterroles.')), 'cluster roles not needed');
    ok(!paths.some((path) => path.startsWith('resources/events')));
    // Restore order: each group of a resource comes after the ones it depends on.
    const firstIndex = (prefix: string) => paths.findIndex((path) => path.startsWith(`resources/${prefix}/`));
    const sequence = [
      'customresourcedefinitions.apiextensions.k8s.io',
      'namespaces',
      'storageclasses.storage.k8s.io',
      'persistentvolumes',
      'persistentvolumeclaims',
      'secrets',
      'configmaps',
      'serviceaccounts',
      'roles.rbac.authorization.k8s.io',
      'rolebindings.rbac.authorization.k8s.io',
      'services',
      'deployments.apps',
      `widgets.${CRD_GROUP}`,
    ].map(firstIndex);
    deepStrictEqual(
      [...sequence].sort((a, b) => a - b),
      sequence,
    );
    ok(sequence.every((index) => index >= 0));
    strictEqual(info.details?.holdsSecrets, true);
    strictEqual(info.secrets?.captured[0]?.kind, 'kubernetes-secrets');
    deepStrictEqual(info.details?.namespaces, [BLOG, SHOP]);
    ok(String(info.version).startsWith('v1.'));
    deepStrictEqual(RESTORE_ORDER.slice(0, 2), [
      'customresourcedefinitions.apiextensions.k8s.io',
      'namespaces',
    ]);
  });

  it('stores each object as JSON without the fields the server set', async () => {
    const stored = new Map<string, Json>();
    await restore({
      storage,
      name: backupName,
      restorers: [
        {
          kind: 'kubernetes-resources',
          name: 'kubernetes-resources',
          async restore(entries) {
            for await (const entry of entries) {
              const chunks: Uint8Array[] = [];
              for await (const chunk of entry.body ?? []) chunks.push(chunk);
              stored.set(entry.path, JSON.parse(Buffer.concat(chunks).toString('utf8')));
            }
            return { entries: stored.size, bytes: 0 };
          },
        },
      ],
    });
    const live = await source.api.expect('GET', `/apis/apps/v1/namespaces/${SHOP}/deployments/web`, signal);
    ok(
      (live.metadata as Json).uid && (live.metadata as Json).managedFields && live.status,
      'the server sets them',
    );
    const deployment = stored.get(`resources/deployments.apps/namespaces/${SHOP}/web.json`)!;
    deepStrictEqual(deployment, stripServerFields(live));
    strictEqual(deployment.apiVersion, 'apps/v1');
    strictEqual(deployment.kind, 'Deployment');
    for (const object of stored.values()) {
      const metadata = object.metadata as Json;
      for (const field of ['uid', 'resourceVersion', 'creationTimestamp', 'managedFields', 'generation']) {
        strictEqual(metadata[field], undefined, `${field} of ${String(metadata.name)}`);
      }
      strictEqual(object.status, undefined);
    }
    const service = stored.get(`resources/services/namespaces/${SHOP}/web.json`)!;
    strictEqual((service.spec as Json).clusterIP, undefined);
    deepStrictEqual((service.spec as Json).selector, { app: 'web' });
    const secret = stored.get(`resources/secrets/namespaces/${SHOP}/web-secret.json`)!;
    strictEqual(Buffer.from(String((secret.data as Json).password), 'base64').toString(), 's3cret');
  });

  it('restores two namespaces mapped into an empty cluster: every object as it was, in order, with a report', async () => {
    const component = kubernetesResources({
      ...options,
      kubeconfig: target.kubeconfig,
      restore: { namespaceMapping: { [SHOP]: SHOP_RESTORED, [BLOG]: BLOG_RESTORED } },
    });
    const result = await restore({
      storage,
      name: backupName,
      restorers: [component],
      conflict: realKubeconfig ? 'skip' : 'fail',
    });
    const report = result.components['kubernetes-resources']!;
    const details = report.details as {
      order: string[];
      objects: { resource: string; namespace?: string; name: string; action: string; reason?: string }[];
    };
    const map = (namespace: string) =>
      namespace === SHOP ? SHOP_RESTORED : namespace === BLOG ? BLOG_RESTORED : namespace;

    // The backed-up objects, compared field by field after stripping server fields.
    const compare = async (path: string, mappedPath: string, edit: (object: Json) => void = () => {}) => {
      const before = await read(source.api, path);
      ok(before, `${path} on the source`);
      edit(before);
      const after = await read(target.api, mappedPath);
      ok(after, `${mappedPath} on the target`);
      deepStrictEqual(after, before);
    };
    const withNamespace = (namespace: string) => (object: Json) => {
      (object.metadata as Json).namespace = namespace;
    };
    for (const [collection, name] of [
      ['/api/v1/namespaces/NS/configmaps', 'web-config'],
      ['/api/v1/namespaces/NS/secrets', 'web-secret'],
      ['/api/v1/namespaces/NS/serviceaccounts', 'web'],
      ['/api/v1/namespaces/NS/persistentvolumeclaims', 'data'],
      ['/apis/rbac.authorization.k8s.io/v1/namespaces/NS/roles', 'web-reader'],
      ['/apis/apps/v1/namespaces/NS/deployments', 'web'],
      [`/apis/${CRD_GROUP}/v1/namespaces/NS/widgets`, 'gear'],
    ] as const) {
      await compare(
        `${collection.replace('NS', SHOP)}/${name}`,
        `${collection.replace('NS', SHOP_RESTORED)}/${name}`,
        withNamespace(SHOP_RESTORED),
      );
    }
    await compare(
      `/apis/${CRD_GROUP}/v1/namespaces/${BLOG}/widgets/cog`,
      `/apis/${CRD_GROUP}/v1/namespaces/${BLOG_RESTORED}/widgets/cog`,
      withNamespace(BLOG_RESTORED),
    );
    await compare(
      `/api/v1/namespaces/${BLOG}/configmaps/posts`,
      `/api/v1/namespaces/${BLOG_RESTORED}/configmaps/posts`,
      withNamespace(BLOG_RESTORED),
    );
    await compare(
      `/apis/rbac.authorization.k8s.io/v1/namespaces/${SHOP}/rolebindings/web-reader`,
      `/apis/rbac.authorization.k8s.io/v1/namespaces/${SHOP_RESTORED}/rolebindings/web-reader`,
      (object) => {
        withNamespace(SHOP_RESTORED)(object);
        (object.subjects as Json[])[0]!.namespace = SHOP_RESTORED;
      },
    );
    // The Service keeps its ports and selector and gets a new cluster IP.
    await compare(
      `/api/v1/namespaces/${SHOP}/services/web`,
      `/api/v1/namespaces/${SHOP_RESTORED}/services/web`,
      withNamespace(SHOP_RESTORED),
    );
    if (!realKubeconfig) {
      await compare(
        `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.${CRD_GROUP}`,
        `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.${CRD_GROUP}`,
      );
      await compare(
        `/apis/storage.k8s.io/v1/storageclasses/fast${suffix}`,
        `/apis/storage.k8s.io/v1/storageclasses/fast${suffix}`,
      );
      await compare(
        `/api/v1/persistentvolumes/pv-data${suffix}`,
        `/api/v1/persistentvolumes/pv-data${suffix}`,
        (object) => {
          ((object.spec as Json).claimRef as Json).namespace = SHOP_RESTORED;
        },
      );
    }
    const namespace = await read(target.api, `/api/v1/namespaces/${SHOP_RESTORED}`);
    deepStrictEqual((namespace?.metadata as Json | undefined)?.labels, {
      team: 'web',
      'kubernetes.io/metadata.name': SHOP_RESTORED,
    });
    // Nothing of the namespace that was not selected.
    strictEqual(
      await read(target.api, `/api/v1/namespaces/${map(OTHER)}/configmaps/not-selected`),
      realKubeconfig
        ? await read(target.api, `/api/v1/namespaces/${OTHER}/configmaps/not-selected`)
        : undefined,
    );

    // The report: order and every object's outcome.
    deepStrictEqual(details.order.slice(0, 5), [
      'customresourcedefinitions.apiextensions.k8s.io',
      'namespaces',
      'storageclasses.storage.k8s.io',
      'persistentvolumes',
      'persistentvolumeclaims',
    ]);
    ok(
      details.order.indexOf('deployments.apps') >
        details.order.indexOf('rolebindings.rbac.authorization.k8s.io'),
    );
    strictEqual(details.order.at(-1), `widgets.${CRD_GROUP}`);
    const outcome = (resource: string, namespace: string | undefined, name: string) =>
      details.objects.find(
        (object) => object.resource === resource && object.namespace === namespace && object.name === name,
      );
    strictEqual(outcome('deployments.apps', SHOP_RESTORED, 'web')?.action, 'created');
    strictEqual(outcome(`widgets.${CRD_GROUP}`, BLOG_RESTORED, 'cog')?.action, 'created');
    strictEqual(outcome('serviceaccounts', SHOP_RESTORED, 'default')?.action, 'skipped');
    strictEqual(outcome('configmaps', SHOP_RESTORED, 'kube-root-ca.crt')?.action, 'skipped');
    const replicaSet = details.objects.find((object) => object.resource === 'replicasets.apps');
    if (replicaSet) {
      strictEqual(replicaSet.action, 'skipped');
      ok(replicaSet.reason?.includes('Deployment "web"'));
    }
    strictEqual(details.objects.length, paths.length);
    strictEqual(report.entries + (report.skipped ?? 0), paths.length);
  });

  it('overwrite applies the backed-up object over a changed one; skip leaves it; fail refuses before writing', async () => {
    const mapped = { restore: { namespaceMapping: { [SHOP]: SHOP_RESTORED, [BLOG]: BLOG_RESTORED } } };
    const path = `/api/v1/namespaces/${SHOP_RESTORED}/configmaps/web-config`;
    await target.api.expect(
      'PATCH',
      `${path}?fieldManager=someone-else`,
      signal,
      { data: { color: 'red' } },
      'application/merge-patch+json',
    );
    await target.api.expect('DELETE', `/api/v1/namespaces/${BLOG_RESTORED}/configmaps/posts`, signal);

    await rejects(
      restore({
        storage,
        name: backupName,
        restorers: [kubernetesResources({ ...options, kubeconfig: target.kubeconfig, ...mapped })],
      }),
      (thrown: unknown) => {
        strictEqual(code(thrown), 'BK_CONFLICT', String(thrown));
        ok(String(thrown).includes(`configmaps "${SHOP_RESTORED}/web-config"`), String(thrown));
        return true;
      },
    );
    strictEqual(
      await read(target.api, `/api/v1/namespaces/${BLOG_RESTORED}/configmaps/posts`),
      undefined,
      'fail wrote nothing',
    );

    const skipped = await restore({
      storage,
      name: backupName,
      restorers: [kubernetesResources({ ...options, kubeconfig: target.kubeconfig, ...mapped })],
      conflict: 'skip',
    });
    strictEqual(((await read(target.api, path))?.data as Json | undefined)?.color, 'red');
    const skipDetails = skipped.components['kubernetes-resources']!.details as {
      created: number;
      objects: { name: string; action: string }[];
    };
    strictEqual(skipDetails.created, 1, 'only the deleted config map came back');
    strictEqual(
      (
        (await read(target.api, `/api/v1/namespaces/${BLOG_RESTORED}/configmaps/posts`))?.data as
          | Json
          | undefined
      )?.count,
      '3',
    );

    const overwritten = await restore({
      storage,
      name: backupName,
      restorers: [kubernetesResources({ ...options, kubeconfig: target.kubeconfig, ...mapped })],
      conflict: 'overwrite',
    });
    deepStrictEqual((await read(target.api, path))?.data, {
      'nginx.conf': 'server { listen 80; }\n',
      color: 'blue',
    });
    const overwriteDetails = overwritten.components['kubernetes-resources']!.details as {
      objects: { resource: string; namespace?: string; name: string; action: string }[];
    };
    strictEqual(
      overwriteDetails.objects.find(
        (object) => object.resource === 'configmaps' && object.name === 'web-config',
      )?.action,
      'updated',
    );
    const raw = await target.api.expect('GET', path, signal);
    ok(((raw.metadata as Json).managedFields as Json[]).some((field) => field.manager === 'bk'));
  });

  it('selects by label selector and resource include/exclude', async () => {
    const selective = new MemoryStorage();
    const result = await backup({
      storage: selective,
      components: [
        kubernetesResources({
          kubeconfig: source.kubeconfig,
          namespaces: [SHOP],
          labelSelector: 'app=web',
          includeResources: ['configmaps', 'secrets', 'deployments.apps', `widgets.${CRD_GROUP}`],
          excludeResources: ['secrets'],
        }),
      ],
    });
    const selected = (await recordedEntries(selective, result.manifest, 'kubernetes-resources'))
      .map((entry) => entry.path)
      .sort();
    deepStrictEqual(
      selected,
      [
        `resources/configmaps/namespaces/${SHOP}/web-config.json`,
        `resources/customresourcedefinitions.apiextensions.k8s.io/cluster/widgets.${CRD_GROUP}.json`,
        `resources/deployments.apps/namespaces/${SHOP}/web.json`,
        `resources/namespaces/cluster/${SHOP}.json`,
        `resources/widgets.${CRD_GROUP}/namespaces/${SHOP}/gear.json`,
      ].sort(),
    );
  });

  it('names what is wrong: an unknown namespace, an unknown option, a kubeconfig that does not load', async () => {
    await rejects(
      backup({
        storage: new MemoryStorage(),
        components: [kubernetesResources({ kubeconfig: source.kubeconfig, namespaces: ['nope'] })],
      }),
      /namespace "nope" not found/,
    );
    let thrown: unknown;
    try {
      resourcesFromConfig({ kind: 'kubernetes-resources', namespace: 'x' });
    } catch (error) {
      thrown = error;
    }
    strictEqual(code(thrown), 'BK_CONFIG');
    ok(String(thrown).includes('namespace'), String(thrown));
    await rejects(
      backup({
        storage: new MemoryStorage(),
        components: [kubernetesResources({ kubeconfig: join(dir, 'missing') })],
      }),
      (thrown: unknown) => code(thrown) === 'BK_CONFIG' && String(thrown).includes('missing'),
    );
  });
});
