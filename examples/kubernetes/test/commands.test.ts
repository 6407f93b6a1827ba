import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import {
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  type EtcdServer,
  type InfluxdServer,
  type PostgresServer,
  type SwiftServer,
  startEtcd,
  startInfluxd,
  startPostgres,
  startSwift,
} from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Container,
  configOf,
  EXAMPLE,
  type Manifest,
  nameOf,
  podOf,
  readManifests,
} from './manifests.ts';

/**
 * Runs the command lines of the manifests, as Kubernetes would run them in the image (entrypoint
 * `bk`), with the built `bk` against real servers: the args are taken from the YAML, `$(VAR)` is
 * expanded from the container's env, secret values come from a Secret with the test servers'
 * credentials, and the ConfigMap's mount path is a folder holding its `bk.config.json` with the
 * servers' addresses in place of the cluster's. The target stays as written: Swift's S3 API
 * serves its bucket. A mounted PersistentVolumeClaim is a local folder per claim, and a files
 * component's root at the claim's mount path is that folder.
 */

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../../../packages/cli/dist/bin.js', import.meta.url));
const PASSWORD = 'k8s-example-secret';

const manifests = await readManifests();
const byName = (name: string): Manifest => {
  const found = manifests.find(
    (manifest) => (manifest.metadata.name ?? manifest.metadata.generateName) === name,
  );
  if (!found) throw new Error(`no manifest named ${name}`);
  return found;
};
const configMap = byName('bk-config') as Manifest & { data: Record<string, string> };
const secretTemplate = byName('bk-credentials') as Manifest & { stringData: Record<string, string> };

let swift: SwiftServer;
let postgres: PostgresServer;
let etcd: EtcdServer;
let influxd: InfluxdServer;
let workspace: string;
/** The Secret as created for this test: the template's keys with the test servers' values. */
let secret: Record<string, string>;
/** Where the ConfigMap is "mounted". */
let configDir: string;
/** Env values that name a cluster service, with the test server's address. */
let services: Record<string, string>;

/** Kubernetes' expansion of `$(VAR)` in args from the container's env (`$$` escapes a `$`). */
function expand(arg: string, env: Record<string, string>): string {
  return arg.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (match, name: string | undefined) =>
    name === undefined ? '$' : (env[name] ?? match),
  );
}

/** The container's env as the kubelet builds it, with `overrides` for what an operator edits. */
function containerEnv(container: Container, overrides: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const variable of container.env ?? []) {
    const reference = variable.valueFrom?.secretKeyRef;
    if (reference) {
      expect(reference.name).toBe(secretTemplate.metadata.name);
      const value = secret[reference.key];
      if (value === undefined && !reference.optional) throw new Error(`Secret has no key ${reference.key}`);
      if (value !== undefined) env[variable.name] = value;
    } else if (variable.name in services) {
      // A cluster address: the test server instead.
      expect(variable.value).toMatch(/^[a-z0-9.-]+\.svc\.cluster\.local:\d+$/);
      env[variable.name] = services[variable.name]!;
    } else {
      env[variable.name] = expand(variable.value ?? '', env);
    }
  }
  return { ...env, ...overrides };
}

interface JobRun {
  argv: string[];
  code: number | null;
  stdout: string;
  stderr: string;
  /** Peak RSS of the largest process, bk or a child (pg_dump, …), from GNU time. */
  peakMiB: number;
}

/** The local folder standing in for a PersistentVolumeClaim. */
const claimDir = (claimName: string): string => join(workspace, 'claims', claimName);

/**
 * Where the pod's ConfigMap is "mounted": bk-config's folder, or for another ConfigMap a folder
 * holding its config with each files component's root at a claim's mount path moved to the
 * claim's folder.
 */
async function mountConfig(manifest: Manifest): Promise<{ mountPath: string; folder: string }> {
  const pod = podOf(manifest);
  const container = pod.containers[0]!;
  const mounted = (container.volumeMounts ?? []).flatMap((mount) => {
    const volume = pod.volumes?.find((candidate) => candidate.name === mount.name);
    return volume ? [{ mount, volume }] : [];
  });
  const configs = mounted.filter(({ volume }) => volume.configMap);
  expect(configs, `${nameOf(manifest)} mounts one config`).toHaveLength(1);
  const { mount, volume } = configs[0]!;
  if (volume.configMap?.name === configMap.metadata.name)
    return { mountPath: mount.mountPath, folder: configDir };
  const config = configOf(byName(volume.configMap!.name));
  for (const component of config.components) {
    const claim = mounted.find(({ mount: candidate }) => candidate.mountPath === component.root);
    if (component.kind === 'files' && claim?.volume.persistentVolumeClaim)
      component.root = claimDir(claim.volume.persistentVolumeClaim.claimName);
  }
  const folder = join(workspace, 'configs', volume.configMap!.name);
  await mkdir(folder, { recursive: true });
  await writeFile(join(folder, 'bk.config.json'), JSON.stringify(config, null, 2));
  return { mountPath: mount.mountPath, folder };
}

/** Runs the pod's container command line (entrypoint `bk` + args) to completion. */
async function runJob(manifest: Manifest, overrides: Record<string, string> = {}): Promise<JobRun> {
  const pod = podOf(manifest);
  expect(pod.containers).toHaveLength(1);
  const container = pod.containers[0]!;
  const env = containerEnv(container, overrides);
  const { mountPath, folder } = await mountConfig(manifest);
  const argv = (container.args ?? []).map((arg) => expand(arg, env));
  const local = argv.map((arg) =>
    arg.startsWith(`${mountPath}/`) ? folder + arg.slice(mountPath.length) : arg,
  );
  const timeFile = join(workspace, 'time.txt');
  const child = spawn('/usr/bin/time', ['-f', '%M', '-o', timeFile, process.execPath, BIN, ...local], {
    cwd: workspace,
    // Nothing from the test's own environment but PATH: what bk needs comes from the manifest.
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: workspace, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  const peakKiB = Number((await readFile(timeFile, 'utf8')).trim().split('\n').at(-1));
  return { argv, code, stdout, stderr, peakMiB: peakKiB / 1024 };
}

/** `bk ls --json` on the configured target, with the Secret's S3 credentials. */
async function listBackups(): Promise<Array<{ name: string }>> {
  const { stdout } = await run(
    process.execPath,
    [BIN, 'ls', '--json', '--config', join(configDir, 'bk.config.json')],
    {
      env: { PATH: process.env.PATH, HOME: workspace, ...secret },
    },
  );
  return (JSON.parse(stdout) as { backups: Array<{ name: string }> }).backups;
}

async function psql(sql: string, database = 'postgres'): Promise<string> {
  const { stdout } = await run(
    join(postgres.bin, 'psql'),
    ['-h', postgres.host, '-p', String(postgres.port), '-U', postgres.user, '-d', database, '-tAc', sql],
    { env: { ...process.env, PGPASSWORD: PASSWORD } },
  );
  return stdout.trim();
}

async function influxQuery(q: string, database?: string): Promise<unknown> {
  const url = new URL('/query', influxd.httpUrl);
  url.searchParams.set('q', q);
  if (database) url.searchParams.set('db', database);
  const response = await fetch(url, { method: 'POST' });
  expect(response.status, await response.clone().text()).toBe(200);
  return response.json();
}

async function influxCount(): Promise<unknown> {
  const result = (await influxQuery('SELECT count(value) FROM cpu', 'telemetry')) as {
    results: Array<{ series?: Array<{ values: Array<[string, number]> }> }>;
  };
  return result.results[0]?.series?.[0]?.values[0]?.[1];
}

beforeAll(async () => {
  if (!existsSync(BIN))
    throw new Error(`${BIN} is missing: build the CLI first (pnpm --filter @bk/cli... run build).`);
  [swift, postgres, etcd, influxd] = await Promise.all([
    startSwift(),
    startPostgres({ password: PASSWORD }),
    startEtcd(),
    startInfluxd(),
  ]);
  workspace = await mkdtemp(join(tmpdir(), 'bk-k8s-'));
  configDir = join(workspace, 'config');
  await mkdir(configDir);

  secret = {
    ...secretTemplate.stringData,
    S3_REGION: swift.s3.region,
    S3_REGION_ENDPOINT: swift.s3.endpoint,
    S3_ACCESS_KEY: swift.s3.accessKeyId,
    S3_SECRET_KEY: swift.s3.secretAccessKey,
    PGPASSWORD: PASSWORD,
  };
  expect(Object.keys(secret).sort()).toEqual(Object.keys(secretTemplate.stringData).sort());

  // The ConfigMap's config with the test servers in place of the cluster's services.
  const config = JSON.parse(configMap.data['bk.config.json']!) as {
    target: string;
    components: Array<Record<string, unknown>>;
  };
  const addresses: Record<string, Record<string, unknown>> = {
    postgres: { host: postgres.host, port: postgres.port, user: postgres.user },
    etcd: { endpoints: [etcd.endpoint] },
    influx: { httpUrl: influxd.httpUrl },
  };
  services = { INFLUX_ADDR: `${influxd.host}:${influxd.rpcPort}` };
  for (const component of config.components) {
    const address = addresses[component.name as string];
    if (!address) throw new Error(`no test server for component ${component.name}`);
    for (const field of Object.keys(address))
      expect(component, `${component.name}.${field}`).toHaveProperty(field);
    Object.assign(component, address);
  }
  await writeFile(join(configDir, 'bk.config.json'), JSON.stringify(config, null, 2));

  // The bucket of the target, as a Swift container.
  const bucket = new URL(config.target).host;
  const auth = await fetch(swift.authUrl, {
    headers: { 'x-auth-user': swift.user, 'x-auth-key': swift.key },
  });
  const created = await fetch(`${swift.storageUrl}/${bucket}`, {
    method: 'PUT',
    headers: { 'x-auth-token': auth.headers.get('x-auth-token')! },
  });
  expect(created.status).toBeLessThan(300);

  // Data in each store.
  await psql('CREATE DATABASE app');
  await psql(
    'CREATE TABLE orders (id int PRIMARY KEY, item text); INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 500) g',
    'app',
  );
  await run('etcdctl', ['--endpoints', etcd.endpoint, 'put', '/registry/example', 'kept']);
  await influxQuery('CREATE DATABASE telemetry');
  const lines = Array.from(
    { length: 300 },
    (_, index) => `cpu,host=h${index % 3} value=${index} ${1_704_067_200 + index * 60}`,
  );
  const written = await fetch(`${influxd.httpUrl}/write?db=telemetry&precision=s`, {
    method: 'POST',
    body: lines.join('\n'),
  });
  expect(written.status).toBe(204);
}, 120_000);

afterAll(async () => {
  await Promise.all([swift?.stop(), postgres?.stop(), etcd?.stop(), influxd?.stop()]);
  if (workspace) await rm(workspace, { recursive: true, force: true });
});

describe('the manifests’ command lines against real servers', () => {
  it.each(['bk-backup-postgres', 'bk-backup-etcd', 'bk-backup-influx'])(
    '%s backs up its component to the S3 target, within the memory limit',
    async (name) => {
      const job = await runJob(byName(name));
      expect(job.code, `${job.argv.join(' ')}\n${job.stderr}`).toBe(0);
      expect(job.stdout).toMatch(/backup_\d{8}_\d{6}/);
      expect(job.peakMiB).toBeLessThan(256);
      console.log(`${name}: ${job.argv.join(' ')}: peak RSS ${job.peakMiB.toFixed(0)} MiB`);
    },
  );

  it('bk-restore restores the latest PostgreSQL backup into a server that lost the database', async () => {
    await psql('DROP DATABASE app');
    const job = await runJob(byName('bk-restore-'));
    expect(job.argv).toEqual([
      'restore',
      'latest',
      '--config',
      '/etc/bk/bk.config.json',
      '--only',
      'postgres',
      '--conflict',
      'fail',
    ]);
    expect(job.code, job.stderr).toBe(0);
    expect(await psql('SELECT count(*) FROM orders', 'app')).toBe('500');
  });

  it('bk-restore with BK_ONLY=influx restores the InfluxDB database', async () => {
    await influxQuery('DROP DATABASE telemetry');
    const job = await runJob(byName('bk-restore-'), { BK_ONLY: 'influx' });
    expect(job.code, job.stderr).toBe(0);
    expect(await influxCount()).toBe(300);
  });

  it('bk-restore under the default conflict policy refuses to overwrite a database that exists', async () => {
    const job = await runJob(byName('bk-restore-'));
    expect(job.code, job.stderr).toBe(5);
    expect(await psql('SELECT count(*) FROM orders', 'app')).toBe('500');
  });

  it('bk-prune keeps what the config’s retention keeps', async () => {
    for (let run = 0; run < 2; run += 1) {
      expect((await runJob(byName('bk-backup-etcd'))).code).toBe(0);
    }
    const before = await listBackups();
    expect(before).toHaveLength(5);
    const job = await runJob(byName('bk-prune'));
    expect(job.code, job.stderr).toBe(0);
    const after = await listBackups();
    // keepLast 3; keepDaily keeps the newest of today, already among them.
    expect(after.map((backup) => backup.name)).toEqual(before.slice(-3).map((backup) => backup.name));
  });

  it('the systemd service’s ExecStart lines back up every component, then prune', async () => {
    const unit = await readFile(join(EXAMPLE, 'systemd/bk-backup.service'), 'utf8');
    const lines = [...unit.matchAll(/^ExecStart=(.+)$/gm)].map((match) => match[1]!.split(' '));
    expect(lines.map((line) => line.slice(0, 2))).toEqual([
      ['/usr/local/bin/bk', 'backup'],
      ['/usr/local/bin/bk', 'prune'],
    ]);
    // EnvironmentFile=/etc/bk/bk.env holds what the Secret holds, and the InfluxDB address.
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: workspace, ...secret, ...services };
    for (const [_bk, ...args] of lines) {
      const local = args.map((arg) =>
        arg.startsWith('/etc/bk/') ? join(configDir, arg.slice('/etc/bk/'.length)) : arg,
      );
      const { stdout } = await run(process.execPath, [BIN, ...local], { cwd: workspace, env });
      if (args[0] === 'backup') expect(stdout).toMatch(/backup_\d{8}_\d{6}/);
    }
    const backups = await listBackups();
    expect(backups).toHaveLength(3);
    const { stdout } = await run(
      process.execPath,
      [BIN, 'inspect', 'latest', '--json', '--config', join(configDir, 'bk.config.json')],
      { env },
    );
    const manifest = JSON.parse(stdout) as { components: Array<{ name: string }> };
    expect(manifest.components.map((component) => component.name).sort()).toEqual([
      'etcd',
      'influx',
      'postgres',
    ]);
  });

  describe('the volume Jobs, with a local folder for each claim', () => {
    /**
     * Every entry under a folder: type, permission bits, mtime, and content digest or link target.
     * mtimes to the microsecond: what the restore sets here (Node's utimes takes a number of
     * seconds, whose double keeps no more).
     */
    async function tree(folder: string): Promise<Record<string, string>> {
      const entries: Record<string, string> = {};
      for (const name of (await readdir(folder, { recursive: true })).sort()) {
        const path = join(folder, name);
        const stat = await lstat(path, { bigint: true });
        const mode = (stat.mode & 0o7777n).toString(8);
        const mtime = stat.mtimeNs / 1000n;
        entries[name] = stat.isSymbolicLink()
          ? `link -> ${await readlink(path)}`
          : stat.isDirectory()
            ? `dir ${mode} ${mtime}`
            : `file ${mode} ${mtime} ${createHash('sha256')
                .update(await readFile(path))
                .digest('hex')}`;
      }
      return entries;
    }

    let source: Record<string, string>;

    it('bk-backup-app-data backs up the files of the claim it mounts, writing nothing there', async () => {
      // What an application leaves on its volume: nested folders, a private file, a link, an
      // empty folder and a larger binary file.
      const claim = claimDir('app-data');
      await mkdir(join(claim, 'uploads/2026/12'), { recursive: true });
      await mkdir(join(claim, 'cache'));
      await writeFile(join(claim, 'uploads/2026/12/report.pdf'), randomBytes(3 * 1024 * 1024));
      await writeFile(join(claim, 'settings.json'), '{"theme":"dark"}\n', { mode: 0o600 });
      await symlink('uploads/2026/12/report.pdf', join(claim, 'latest-report'));
      await utimes(
        join(claim, 'settings.json'),
        new Date('2026-01-02T03:04:05Z'),
        new Date('2026-01-02T03:04:05Z'),
      );
      source = await tree(claim);

      const job = await runJob(byName('bk-backup-app-data'));
      expect(job.argv).toEqual(['backup', '--config', '/etc/bk/bk.config.json', '--only', 'app-data']);
      expect(job.code, job.stderr).toBe(0);
      expect(job.stdout).toMatch(/backup_\d{8}_\d{6}/);
      expect(job.peakMiB).toBeLessThan(256);
      expect(await tree(claim)).toEqual(source);
      console.log(`bk-backup-app-data: ${job.argv.join(' ')}: peak RSS ${job.peakMiB.toFixed(0)} MiB`);
    });

    it('bk-restore-app-data- restores them into the new, empty claim', async () => {
      const claim = claimDir('app-data-restored');
      await mkdir(claim, { recursive: true });
      const job = await runJob(byName('bk-restore-app-data-'));
      expect(job.argv).toEqual([
        'restore',
        'latest',
        '--config',
        '/etc/bk/bk.config.json',
        '--only',
        'app-data',
        '--conflict',
        'fail',
      ]);
      expect(job.code, job.stderr).toBe(0);
      expect(job.peakMiB).toBeLessThan(256);
      expect(await tree(claim)).toEqual(source);
    });

    it('bk-restore-app-data- refuses to overwrite the files of a claim that has them', async () => {
      const claim = claimDir('app-data-restored');
      await writeFile(join(claim, 'settings.json'), '{"theme":"light"}\n');
      const job = await runJob(byName('bk-restore-app-data-'));
      expect(job.code, job.stderr).toBe(5);
      expect(await readFile(join(claim, 'settings.json'), 'utf8')).toBe('{"theme":"light"}\n');
    });
  });
});
