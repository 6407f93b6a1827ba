import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CronJob, Job } from 'kubernetes-models/batch/v1';
import { ConfigMap, PersistentVolumeClaim, Secret } from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { configOf, EXAMPLE, type Manifest, nameOf, podOf, readManifests } from './manifests.ts';

/**
 * VolumeSnapshot is a CRD of the external-snapshotter, which kubernetes-models does not carry:
 * its shape checked by hand against the snapshot.storage.k8s.io/v1 schema (spec.source is
 * required and holds exactly one of persistentVolumeClaimName, for a dynamic snapshot, or
 * volumeSnapshotContentName, for a pre-provisioned one; volumeSnapshotClassName is optional; no
 * other spec fields; status is the controller's).
 */
class VolumeSnapshot {
  readonly object: Record<string, unknown>;

  constructor(object: Record<string, unknown>) {
    this.object = object;
  }

  validate(): void {
    const { apiVersion, kind, metadata, spec, ...rest } = this.object as {
      apiVersion?: unknown;
      kind?: unknown;
      metadata?: { name?: unknown; namespace?: unknown };
      spec?: Record<string, unknown>;
    };
    const fail = (message: string): never => {
      throw new Error(`VolumeSnapshot: ${message}`);
    };
    if (apiVersion !== 'snapshot.storage.k8s.io/v1') fail(`apiVersion ${String(apiVersion)}`);
    if (kind !== 'VolumeSnapshot') fail(`kind ${String(kind)}`);
    const unknown = Object.keys(rest).filter((key) => key !== 'status');
    if (unknown.length > 0) fail(`unknown fields ${unknown.join(', ')}`);
    const dnsSubdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
    if (typeof metadata?.name !== 'string' || !dnsSubdomain.test(metadata.name) || metadata.name.length > 253)
      fail('metadata.name must be a DNS subdomain');
    if (metadata?.namespace !== undefined && typeof metadata.namespace !== 'string')
      fail('metadata.namespace must be a string');
    if (typeof spec !== 'object' || spec === null) fail('spec is required');
    const { source, volumeSnapshotClassName, ...otherSpec } = spec as Record<string, unknown>;
    if (Object.keys(otherSpec).length > 0) fail(`unknown spec fields ${Object.keys(otherSpec).join(', ')}`);
    if (volumeSnapshotClassName !== undefined && typeof volumeSnapshotClassName !== 'string')
      fail('spec.volumeSnapshotClassName must be a string');
    if (typeof source !== 'object' || source === null) fail('spec.source is required');
    const sourceFields = Object.entries(source as Record<string, unknown>);
    const allowed = ['persistentVolumeClaimName', 'volumeSnapshotContentName'];
    if (
      sourceFields.length !== 1 ||
      !allowed.includes(sourceFields[0]![0]) ||
      typeof sourceFields[0]![1] !== 'string' ||
      sourceFields[0]![1] === ''
    )
      fail(`spec.source must hold exactly one of ${allowed.join(', ')}, a non-empty string`);
  }
}

const models: Record<string, new (data: never) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'batch/v1/CronJob': CronJob,
  'batch/v1/Job': Job,
  'snapshot.storage.k8s.io/v1/VolumeSnapshot': VolumeSnapshot,
};

const manifests = await readManifests();
const workloads = manifests.filter((manifest) => manifest.kind === 'CronJob' || manifest.kind === 'Job');
const byName = (name: string): Manifest => {
  const found = manifests.find(
    (manifest) => (manifest.metadata.name ?? manifest.metadata.generateName) === name,
  );
  if (!found) throw new Error(`no manifest named ${name}`);
  return found;
};
const config = configOf(byName('bk-config'));
/** The components of every bk config the manifests hold. */
const allComponents = manifests
  .filter((manifest) => manifest.kind === 'ConfigMap')
  .flatMap((manifest) => configOf(manifest).components);

/** Memory in MiB from a Kubernetes quantity such as `256Mi`. */
function mebibytes(quantity: string | undefined): number {
  const match = /^(\d+)(Mi|Gi)$/.exec(quantity ?? '');
  if (!match) throw new Error(`unexpected memory quantity ${quantity}`);
  return Number(match[1]) * (match[2] === 'Gi' ? 1024 : 1);
}

describe('the Kubernetes manifests', () => {
  it('has the objects the README applies', () => {
    expect(manifests.map(nameOf)).toEqual([
      'CronJob bk-backup-postgres',
      'CronJob bk-backup-etcd',
      'CronJob bk-backup-influx',
      'ConfigMap bk-config',
      'CronJob bk-prune',
      'Job bk-restore-',
      'Secret bk-credentials',
      'ConfigMap bk-volume-config',
      'CronJob bk-backup-app-data',
      'PersistentVolumeClaim app-data-restored',
      'Job bk-restore-app-data-',
      'VolumeSnapshot app-data-snapshot',
      'PersistentVolumeClaim app-data-snapshot',
    ]);
  });

  it.each(manifests.map((manifest) => [nameOf(manifest), manifest] as const))(
    '%s validates against the Kubernetes API schema',
    (_name, manifest) => {
      const Model = models[`${manifest.apiVersion}/${manifest.kind}`];
      expect(Model, `${manifest.file}: no schema for ${manifest.apiVersion} ${manifest.kind}`).toBeDefined();
      const { file: _file, ...object } = manifest;
      expect(() => new Model!(object as never).validate()).not.toThrow();
    },
  );

  it('the schema check catches a wrong field type (the validation is not a no-op)', () => {
    const cronJob = structuredClone(workloads[0]!) as Manifest & { spec: Record<string, unknown> };
    const { file: _file, ...object } = cronJob;
    expect(() =>
      new CronJob({ ...object, spec: { ...cronJob.spec, concurrencyPolicy: 7 } } as never).validate(),
    ).toThrow();
    expect(() =>
      new CronJob({ ...object, spec: { ...cronJob.spec, schedule: undefined } } as never).validate(),
    ).toThrow();
  });

  it('every CronJob forbids overlapping runs', () => {
    for (const manifest of workloads.filter((workload) => workload.kind === 'CronJob')) {
      expect((manifest.spec as { concurrencyPolicy?: string }).concurrencyPolicy, nameOf(manifest)).toBe(
        'Forbid',
      );
    }
  });

  it('every pod runs bk as a non-root user, with a memory limit above the measured peak', () => {
    for (const manifest of workloads) {
      const pod = podOf(manifest);
      expect(pod.securityContext?.runAsNonRoot, nameOf(manifest)).toBe(true);
      expect(pod.securityContext?.runAsUser, nameOf(manifest)).toBeGreaterThan(0);
      expect(pod.restartPolicy).toBe('Never');
      for (const container of pod.containers) {
        // The root README's measured peak RSS of bk backup/restore to S3 is 143 MiB; the pod also
        // holds pg_dump or pg_restore. The limit leaves room for both; the request is the peak.
        expect(mebibytes(container.resources?.limits?.memory), nameOf(manifest)).toBeGreaterThanOrEqual(192);
        expect(mebibytes(container.resources?.requests?.memory), nameOf(manifest)).toBeGreaterThanOrEqual(
          143,
        );
        expect(container.command, 'the image entrypoint is bk: only args are given').toBeUndefined();
      }
    }
  });

  it('takes every secret value from keys the Secret has', () => {
    const secret = manifests.find((manifest) => manifest.kind === 'Secret') as Manifest & {
      stringData: Record<string, string>;
    };
    for (const manifest of workloads) {
      for (const variable of podOf(manifest).containers.flatMap((container) => container.env ?? [])) {
        const reference = variable.valueFrom?.secretKeyRef;
        if (!reference) continue;
        expect(reference.name).toBe(secret.metadata.name);
        expect(Object.keys(secret.stringData), `${nameOf(manifest)} ${variable.name}`).toContain(
          reference.key,
        );
      }
    }
  });

  it('backs up each configured component in its own CronJob', () => {
    const backedUp = workloads
      .map((manifest) => podOf(manifest).containers[0]?.args ?? [])
      .filter((args) => args[0] === 'backup')
      .map((args) => args[args.indexOf('--only') + 1]);
    expect(backedUp.sort()).toEqual(allComponents.map((component) => component.name).sort());
  });

  it('the schema checks catch a bad claim and a bad VolumeSnapshot', () => {
    const { file: _claimFile, ...claim } = byName('app-data-restored') as Manifest & {
      spec: Record<string, unknown>;
    };
    expect(() =>
      new PersistentVolumeClaim({
        ...claim,
        spec: { ...claim.spec, accessModes: 'ReadWriteOnce' },
      } as never).validate(),
    ).toThrow();
    const { file: _snapshotFile, ...snapshot } = byName('app-data-snapshot') as Manifest & {
      spec: { source: Record<string, string> };
    };
    const snapshotSpec = snapshot.spec;

    for (const spec of [
      undefined,
      { source: {} },
      { source: { ...snapshotSpec.source, volumeSnapshotContentName: 'content' } },
      { source: { persistentVolumeClaimName: 7 } },
      { ...snapshotSpec, volumeSnapshotClassName: ['csi'] },
      { ...snapshotSpec, size: '10Gi' },
    ])
      expect(() => new VolumeSnapshot({ ...snapshot, spec }).validate(), JSON.stringify(spec)).toThrow();
    expect(() =>
      new VolumeSnapshot({ ...snapshot, apiVersion: 'snapshot.storage.k8s.io/v1beta1' }).validate(),
    ).toThrow();
  });
});

describe('the volume manifests', () => {
  const backup = byName('bk-backup-app-data');
  const restore = byName('bk-restore-app-data-');
  const volumeConfig = configOf(byName('bk-volume-config'));
  const claimMount = (manifest: Manifest) => {
    const pod = podOf(manifest);
    const claims = (pod.volumes ?? []).filter((volume) => volume.persistentVolumeClaim);
    expect(claims, nameOf(manifest)).toHaveLength(1);
    const volume = claims[0]!;
    const mount = pod.containers[0]?.volumeMounts?.find((candidate) => candidate.name === volume.name);
    expect(mount, `${nameOf(manifest)} mounts its claim`).toBeDefined();
    return { claim: volume.persistentVolumeClaim!, mount: mount! };
  };

  it('the backup mounts the claim read-only, where the files component’s root is', () => {
    const { claim, mount } = claimMount(backup);
    expect(claim).toEqual({ claimName: 'app-data', readOnly: true });
    expect(mount.readOnly).toBe(true);
    const args = podOf(backup).containers[0]?.args ?? [];
    const component = volumeConfig.components.find(
      (entry) => entry.name === args[args.indexOf('--only') + 1],
    );
    expect(component).toMatchObject({ kind: 'files', root: mount.mountPath, paths: ['.'] });
    // No fsGroup: the kubelet would change the group of the application's files.
    expect(podOf(backup).securityContext?.fsGroup).toBeUndefined();
  });

  it('the restore mounts the new claim of its own file, writable, at the same root', () => {
    const { claim, mount } = claimMount(restore);
    const created = manifests.find(
      (manifest) => manifest.kind === 'PersistentVolumeClaim' && manifest.file === restore.file,
    );
    expect(created?.metadata.name).toBe(claim.claimName);
    expect(claim.claimName).not.toBe(claimMount(backup).claim.claimName);
    expect(claim.readOnly).toBeUndefined();
    expect(mount.readOnly).toBeUndefined();
    expect(mount.mountPath).toBe(claimMount(backup).mount.mountPath);
    expect(podOf(restore).securityContext?.fsGroup).toBe(podOf(restore).securityContext?.runAsUser);
    const args = podOf(restore).containers[0]?.args ?? [];
    expect(args[args.indexOf('--only') + 1]).toBe('app-data');
    expect(args[args.indexOf('--conflict') + 1]).toBe('fail');
  });

  it('the snapshot is of the claim the backup reads, and the claim from it is restored from it', () => {
    const snapshot = byName('app-data-snapshot') as Manifest & {
      spec: { source: { persistentVolumeClaimName: string } };
    };
    const fromSnapshot = manifests.find(
      (manifest) => manifest.kind === 'PersistentVolumeClaim' && manifest.file === snapshot.file,
    ) as Manifest & { spec: { dataSource: Record<string, string> } };
    expect(snapshot.spec.source.persistentVolumeClaimName).toBe(claimMount(backup).claim.claimName);
    expect(fromSnapshot.spec.dataSource).toEqual({
      apiGroup: 'snapshot.storage.k8s.io',
      kind: 'VolumeSnapshot',
      name: snapshot.metadata.name,
    });
  });

  it('every object a pod mounts is in the pod’s namespace', () => {
    for (const manifest of workloads) {
      for (const volume of podOf(manifest).volumes ?? []) {
        const name = volume.configMap?.name ?? volume.persistentVolumeClaim?.claimName;
        const kind = volume.configMap ? 'ConfigMap' : 'PersistentVolumeClaim';
        const object = manifests.find(
          (candidate) => candidate.kind === kind && candidate.metadata.name === name,
        );
        if (kind === 'PersistentVolumeClaim' && object === undefined) continue; // the application's own
        if (name === undefined) continue;
        expect(object?.metadata.namespace, `${nameOf(manifest)} ${kind} ${name}`).toBe(
          manifest.metadata.namespace,
        );
      }
    }
    const snapshot = byName('app-data-snapshot');
    expect(snapshot.metadata.namespace).toBe(backup.metadata.namespace);
  });
});

describe('the image recipe', () => {
  it('is Node 22 slim, installs the packages the config needs, runs bk as a non-root user', async () => {
    const dockerfile = await readFile(join(EXAMPLE, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^FROM node:22-[a-z]+-slim$/m);
    expect(dockerfile).toMatch(/^USER 10001:10001$/m);
    expect(dockerfile).toMatch(/^ENTRYPOINT \["bk"\]$/m);
    const installed = [...dockerfile.matchAll(/(@bk\/[a-z0-9-]+)@\$\{BK_VERSION\}/g)].map(
      (match) => match[1] ?? '',
    );
    // A kind the CLI depends on (files) comes with @bk/cli.
    const cli = JSON.parse(await readFile(join(EXAMPLE, '../../packages/cli/package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    const needed = [
      '@bk/cli',
      `@bk/storage-${new URL(config.target).protocol.slice(0, -1)}`,
      ...allComponents.map((component) => `@bk/${component.kind}`),
    ].filter((name, index, names) => names.indexOf(name) === index && !(name in cli.dependencies));
    expect(Object.keys(cli.dependencies)).toContain('@bk/files');
    expect(installed.sort()).toEqual(needed.sort());
    for (const name of installed) {
      const folder = name === '@bk/cli' ? 'cli' : name.slice('@bk/'.length);
      const packageJson = JSON.parse(
        await readFile(join(EXAMPLE, '../../packages', folder, 'package.json'), 'utf8'),
      );
      expect(packageJson.name).toBe(name);
      expect(packageJson.private, `${name} must be published to be installed with npm`).toBeUndefined();
    }
  });
});

describe('the systemd units', () => {
  const run = promisify(execFile);

  it('pass systemd-analyze verify with no warning', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'bk-systemd-'));
    try {
      // verify checks that ExecStart's binary exists: point it at a stand-in executable.
      const bin = join(folder, 'bk');
      await writeFile(bin, '#!/bin/sh\n');
      await chmod(bin, 0o755);
      const service = await readFile(join(EXAMPLE, 'systemd/bk-backup.service'), 'utf8');
      expect(service).toContain('ExecStart=/usr/local/bin/bk ');
      await writeFile(join(folder, 'bk-backup.service'), service.replaceAll('/usr/local/bin/bk', bin));
      await writeFile(
        join(folder, 'bk-backup.timer'),
        await readFile(join(EXAMPLE, 'systemd/bk-backup.timer')),
      );
      const { stderr } = await run('systemd-analyze', ['verify', 'bk-backup.service', 'bk-backup.timer'], {
        cwd: folder,
      });
      expect(stderr).toBe('');
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });
});
