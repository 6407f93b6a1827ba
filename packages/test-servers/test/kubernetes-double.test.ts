import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type KubernetesDouble, startKubernetesDouble } from '../src/index.ts';

const run = promisify(execFile);
/** The kubectl to drive the double with: `KUBECTL`, else the one on PATH (Debian's kubernetes-client in CI). */
const KUBECTL = process.env.KUBECTL ?? 'kubectl';

/** kubectl (a client written elsewhere) is what proves the double speaks the API as a cluster does. */
async function hasKubectl(): Promise<boolean> {
  try {
    await run(KUBECTL, ['version', '--client']);
    return true;
  } catch {
    return false;
  }
}

const kubectlFound = await hasKubectl();

describe.skipIf(!kubectlFound)('the Kubernetes API double, driven by kubectl', () => {
  let double: KubernetesDouble;
  let dir: string;
  let kubeconfig: string;

  async function kubectl(args: string[], input?: string): Promise<string> {
    const child = run(KUBECTL, ['--kubeconfig', kubeconfig, '--cache-dir', join(dir, 'cache'), ...args], {
      env: { ...process.env, HOME: dir, KUBECONFIG: kubeconfig },
    });
    if (input !== undefined) {
      child.child.stdin!.end(input);
    }
    const { stdout } = await child;
    return stdout;
  }

  async function kubectlFails(args: string[], input?: string): Promise<string> {
    try {
      await kubectl(args, input);
    } catch (error) {
      return String((error as { stderr?: string }).stderr ?? error);
    }
    throw new Error(`kubectl ${args.join(' ')} succeeded`);
  }

  beforeAll(async () => {
    double = await startKubernetesDouble();
    dir = await mkdtemp(join(tmpdir(), 'bk-k8s-double-'));
    kubeconfig = join(dir, 'kubeconfig');
    await writeFile(kubeconfig, double.kubeconfig, { mode: 0o600 });
  });
  afterAll(async () => {
    await double?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('answers discovery as kubectl api-resources reads it', async () => {
    const version = JSON.parse(await kubectl(['version', '-o', 'json']));
    expect(version.serverVersion.gitVersion).toBe('v1.30.0');
    const resources = await kubectl(['api-resources', '-o', 'name']);
    expect(resources.split('\n')).toEqual(
      expect.arrayContaining([
        'configmaps',
        'deployments.apps',
        'customresourcedefinitions.apiextensions.k8s.io',
      ]),
    );
    expect(await kubectl(['api-versions'])).toContain('autoscaling/v2');
  });

  it('creates, lists by label, refuses a second create, and applies server-side with conflicts', async () => {
    await kubectl(['create', 'namespace', 'shop']);
    const namespaces = JSON.parse(await kubectl(['get', 'namespaces', '-o', 'json']));
    expect(namespaces.items.map((item: { metadata: { name: string } }) => item.metadata.name)).toContain(
      'shop',
    );
    // The namespace controller's objects are there.
    const accounts = JSON.parse(await kubectl(['get', 'serviceaccounts', '-n', 'shop', '-o', 'json']));
    expect(accounts.items.map((item: { metadata: { name: string } }) => item.metadata.name)).toEqual([
      'default',
    ]);

    await kubectl(['create', 'configmap', 'web', '-n', 'shop', '--from-literal=color=blue']);
    await kubectl(['label', 'configmap', 'web', '-n', 'shop', 'app=web']);
    expect(await kubectlFails(['create', 'configmap', 'web', '-n', 'shop'])).toMatch(
      /AlreadyExists|already exists/,
    );
    const labelled = JSON.parse(
      await kubectl(['get', 'configmaps', '-n', 'shop', '-l', 'app=web', '-o', 'json']),
    );
    expect(labelled.items).toHaveLength(1);
    expect(labelled.items[0].metadata.uid).toMatch(/-/);
    const none = JSON.parse(
      await kubectl(['get', 'configmaps', '-n', 'shop', '-l', 'app notin (web)', '-o', 'json']),
    );
    expect(none.items.map((item: { metadata: { name: string } }) => item.metadata.name)).toEqual([
      'kube-root-ca.crt',
    ]);

    const manifest = JSON.stringify({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'web', namespace: 'shop' },
      data: { color: 'green' },
    });
    // Another manager (kubectl create) owns data.color with another value.
    expect(
      await kubectlFails(
        ['apply', '--server-side', '--validate=false', '--field-manager', 'bk', '-f', '-'],
        manifest,
      ),
    ).toMatch(/conflict/i);
    await kubectl(
      ['apply', '--server-side', '--force-conflicts', '--validate=false', '--field-manager', 'bk', '-f', '-'],
      manifest,
    );
    const applied = JSON.parse(
      // --raw: the object as the server sends it (kubectl before 1.21 has no --show-managed-fields).
      await kubectl(['get', '--raw', '/api/v1/namespaces/shop/configmaps/web']),
    );
    expect(applied.data).toEqual({ color: 'green' });
    expect(applied.metadata.labels).toEqual({ app: 'web' });
    expect(applied.metadata.managedFields.map((field: { manager: string }) => field.manager)).toContain('bk');
  });

  it('registers a CRD and serves its objects', async () => {
    const crd = {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'widgets.example.com' },
      spec: {
        group: 'example.com',
        scope: 'Namespaced',
        names: { plural: 'widgets', singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
        versions: [
          { name: 'v1beta1', served: true, storage: false, schema: { openAPIV3Schema: { type: 'object' } } },
          { name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object' } } },
        ],
      },
    };
    await kubectl(['create', '--validate=false', '-f', '-'], JSON.stringify(crd));
    expect(await kubectl(['api-versions'])).toContain('example.com/v1');
    await kubectl(
      ['apply', '--server-side', '--validate=false', '-f', '-'],
      JSON.stringify({
        apiVersion: 'example.com/v1',
        kind: 'Widget',
        metadata: { name: 'gear', namespace: 'shop' },
        spec: { teeth: 12 },
      }),
    );
    const widgets = JSON.parse(await kubectl(['get', 'widgets.example.com', '-A', '-o', 'json']));
    expect(widgets.items).toHaveLength(1);
    expect(widgets.items[0]).toMatchObject({
      apiVersion: 'example.com/v1',
      kind: 'Widget',
      spec: { teeth: 12 },
    });
    await kubectl(['delete', 'namespace', 'shop']);
    expect(await kubectlFails(['get', 'configmap', 'web', '-n', 'shop'])).toMatch(/not found/i);
  });
});
