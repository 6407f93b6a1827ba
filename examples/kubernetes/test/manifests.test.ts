import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CronJob, Job } from 'kubernetes-models/batch/v1';
import { ConfigMap, Secret } from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { EXAMPLE, type Manifest, nameOf, podOf, readManifests } from './manifests.ts';

const models: Record<string, new (data: never) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'batch/v1/CronJob': CronJob,
  'batch/v1/Job': Job,
};

const manifests = await readManifests();
const workloads = manifests.filter((manifest) => manifest.kind === 'CronJob' || manifest.kind === 'Job');
const config = JSON.parse(
  ((
    manifests.find((manifest) => manifest.kind === 'ConfigMap') as Manifest & { data: Record<string, string> }
  ).data['bk.config.json'] ?? '') as string,
) as { target: string; components: Array<{ kind: string; name: string }> };

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
    expect(backedUp.sort()).toEqual(config.components.map((component) => component.name).sort());
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
    const needed = [
      '@bk/cli',
      `@bk/storage-${new URL(config.target).protocol.slice(0, -1)}`,
      ...config.components.map((component) => `@bk/${component.kind}`),
    ];
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
