import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  backup,
  type Component,
  collect,
  type Entry,
  IntegrityError,
  MemoryStorage,
  StorageError,
} from '@bk/core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ComponentRegistry } from '../src/component-registry.ts';
import { main } from '../src/main.ts';
import { StorageRegistry } from '../src/storage-registry.ts';

/** An in-memory component: backs up fixed entries, records what it restores. */
function demo(name: string, data: Record<string, string>, restored = new Map<string, string>()): Component {
  return {
    kind: 'demo',
    name,
    async describe() {
      return { version: '1.2.3' };
    },
    async *backup() {
      for (const [path, text] of Object.entries(data)) {
        const bytes = new TextEncoder().encode(text);
        yield {
          path,
          size: bytes.byteLength,
          body: (async function* () {
            yield bytes;
          })(),
        } satisfies Entry;
      }
    },
    async restore(entries) {
      let count = 0;
      for await (const entry of entries) {
        restored.set(entry.path, new TextDecoder().decode(await collect(entry.body!)));
        count += 1;
      }
      return { entries: count, bytes: 0 };
    },
  };
}

function capture() {
  const text = { value: '' };
  return { text, stream: { write: (chunk: string) => (text.value += chunk) } };
}

let directory: string;
let storage: MemoryStorage;
let restored: Map<string, string>;

async function run(...argv: string[]) {
  const stdout = capture();
  const stderr = capture();
  const components = new ComponentRegistry().register('demo', (config) =>
    demo(String(config.name), { 'a.txt': 'alpha', 'dir/b.txt': 'beta' }, restored),
  );
  const storages = new StorageRegistry().register('mem', () => storage);
  const code = await main(argv, {
    stdout: stdout.stream,
    stderr: stderr.stream,
    env: {},
    cwd: directory,
    storages,
    components,
  });
  return { code, stdout: stdout.text.value, stderr: stderr.text.value };
}

async function runJson(...argv: string[]) {
  const result = await run('--json', ...argv);
  return { ...result, json: JSON.parse(result.stdout) as Record<string, unknown> };
}

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'bk-cli-main-'));
  await writeFile(
    join(directory, 'bk.config.json'),
    JSON.stringify({ components: [{ kind: 'demo', name: 'app' }] }),
  );
  await writeFile(join(directory, 'empty.json'), '{}');
  await writeFile(
    join(directory, 'two.json'),
    JSON.stringify({
      components: [
        { kind: 'demo', name: 'zookeeper' },
        { kind: 'demo', name: 'postgres' },
      ],
    }),
  );
});

afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

beforeEach(() => {
  storage = new MemoryStorage();
  restored = new Map();
});

describe('main (in process)', () => {
  it('writes exactly one JSON document for each command', async () => {
    const made = await runJson('backup', '--target', 'mem://', '--label', 'env=test');
    expect(made.code).toBe(0);
    expect(made.json).toMatchObject({
      size: expect.any(Number),
      sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    expect(made.stderr).toBe('');
    const listed = await runJson('ls', '--target', 'mem://');
    expect(listed.json).toEqual({
      backups: [
        {
          name: made.json.name,
          time: expect.any(String),
          size: made.json.size,
          key: `${made.json.name}.tar.gz`,
          encrypted: false,
          unencryptedSecrets: [],
          parent: null,
        },
      ],
    });
    const inspected = await runJson('inspect', '--target', 'mem://');
    expect(inspected.json).toMatchObject({ name: made.json.name, labels: { env: 'test' } });
    const verified = await runJson('verify', String(made.json.name), '--target', 'mem://');
    expect(verified.json).toMatchObject({ name: made.json.name, ok: true, entries: 2 });
    const pruned = await runJson('prune', '--keep-last', '1', '--target', 'mem://');
    expect(pruned.json).toEqual({
      dryRun: false,
      kept: [made.json.name],
      keptForChain: [],
      deleted: [],
      orphans: [],
      incomplete: [],
      notes: [],
    });
  });

  it('needs components to back up', async () => {
    const result = await run('backup', '--config', 'empty.json', '--target', 'mem://');
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^bk: Nothing to back up/);
  });

  it('exits 2 for unknown commands and flags, with a JSON error under --json', async () => {
    expect((await run('frobnicate')).code).toBe(2);
    const flag = await run('ls', '--frobnicate');
    expect(flag.code).toBe(2);
    expect(flag.stderr).toBe("bk: Unknown option '--frobnicate' (see bk --help)\n");
    const json = await runJson('ls', '--frobnicate');
    expect(json.json).toEqual({
      error: { code: 'BK_CONFIG', message: expect.stringContaining('--frobnicate') },
    });
    expect((await run('backup', '--level', '0', '--target', 'mem://')).code).toBe(2);
    expect((await run('restore', '--conflict', 'maybe', '--target', 'mem://')).code).toBe(2);
    expect((await run('prune', '--keep-last', 'x', '--target', 'mem://')).code).toBe(2);
    expect((await run('ls')).stderr).toMatch(/No target/);
    expect((await run('--config', 'missing.json', 'ls')).code).toBe(2);
  });

  it('exits 0 for --help and --version', async () => {
    const help = await run('--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: bk');
    expect((await run('--version')).code).toBe(0);
  });

  it('exits 3 when the backup does not exist', async () => {
    const latest = await runJson('restore', '--target', 'mem://');
    expect(latest.code).toBe(3);
    expect(latest.json).toMatchObject({ error: { code: 'BK_NOT_FOUND' } });
    expect((await run('inspect', 'backup_20200101_000000', '--target', 'mem://')).code).toBe(3);
  });

  it('restores with --only from the newest backup that holds those components', async () => {
    const both = await runJson('backup', '--config', 'two.json', '--target', 'mem://');
    const postgresOnly = await runJson(
      'backup',
      '--config',
      'two.json',
      '--only',
      'postgres',
      '--target',
      'mem://',
    );
    expect(postgresOnly.json.name).not.toBe(both.json.name);
    const zookeeper = await runJson(
      'restore',
      '--config',
      'two.json',
      '--only',
      'zookeeper',
      '--target',
      'mem://',
    );
    expect(zookeeper.code).toBe(0);
    expect(zookeeper.json).toMatchObject({ name: both.json.name, components: { zookeeper: { entries: 2 } } });
    const postgres = await runJson(
      'restore',
      'latest',
      '--config',
      'two.json',
      '--only',
      'postgres',
      '--target',
      'mem://',
    );
    expect(postgres.json).toMatchObject({ name: postgresOnly.json.name });
    const missing = await runJson('restore', '--config', 'two.json', '--only', 'etcd', '--target', 'mem://');
    // A component no backup holds is a usage error naming the components there are.
    expect(missing.code).toBe(2);
    expect(missing.json).toMatchObject({
      error: { code: 'BK_CONFIG', message: expect.stringContaining('"etcd"') },
    });
  });

  it('exits 2, a usage error, for a malformed backup name', async () => {
    const malformed = await runJson('verify', 'not-a-name', '--target', 'mem://');
    expect(malformed.code).toBe(2);
    expect(malformed.json).toMatchObject({
      error: { code: 'BK_CONFIG', message: expect.stringContaining('"not-a-name" is not a backup name') },
    });
    expect((await run('restore', 'backup_2026', '--target', 'mem://')).code).toBe(2);
  });

  it('exits 4 naming the entry when verify finds damage', async () => {
    const made = await runJson('backup', '--target', 'mem://', '--level', '1');
    storage.corrupt(String(made.json.key), (bytes) => {
      bytes[Math.floor(bytes.length / 3)]! ^= 0xff;
    });
    const result = await runJson('verify', '--target', 'mem://');
    expect(result.code).toBe(4);
    expect(result.json).toMatchObject({ error: { code: 'BK_INTEGRITY' } });
    const entry = (result.json.error as { entry?: string }).entry;
    if (entry !== undefined) expect(result.stderr).toContain(`entry: ${entry}`);
  });

  it('reports interruption as 130', async () => {
    const controller = new AbortController();
    controller.abort(new Error('SIGINT'));
    const stderr = capture();
    const code = await main(['ls', '--target', 'mem://'], {
      stdout: capture().stream,
      stderr: stderr.stream,
      env: {},
      cwd: '/',
      signal: controller.signal,
      storages: new StorageRegistry().register('mem', () => storage),
    });
    expect(code).toBe(130);
  });

  it('prints a stack trace only with BK_DEBUG=1', async () => {
    const stderr = capture();
    const failing = new StorageRegistry().register('mem', () => {
      throw new IntegrityError('boom', { entry: 'etc/x' });
    });
    const base = { stdout: capture().stream, cwd: '/', storages: failing };
    expect(await main(['ls', '--target', 'mem://'], { ...base, stderr: stderr.stream, env: {} })).toBe(4);
    expect(stderr.text.value).toBe('bk: boom\nentry: etc/x\n');
    const debug = capture();
    await main(['ls', '--target', 'mem://'], { ...base, stderr: debug.stream, env: { BK_DEBUG: '1' } });
    expect(debug.text.value).toMatch(/IntegrityError: boom\n\s+at /);
  });

  it('never prints the credentials of the target URL, even from a storage error', async () => {
    const stderr = capture();
    const stdout = capture();
    const leaky = new StorageRegistry().register('s3', (url) => {
      throw new StorageError(`cannot reach ${url.href} with key ${url.username}`);
    });
    const code = await main(
      ['--json', 'ls', '--target', 's3://AKIAKEY:s3cr%2Ft@bucket/x?token=t0ken&region=eu'],
      {
        stdout: stdout.stream,
        stderr: stderr.stream,
        env: { BK_DEBUG: '1' },
        cwd: '/',
        storages: leaky,
      },
    );
    expect(code, stderr.text.value).toBe(6);
    for (const text of [stderr.text.value, stdout.text.value]) {
      expect(text).toContain('bucket/x');
      expect(text).not.toMatch(/AKIAKEY|s3cr|t0ken/);
    }
  });

  it('prunes by the retention flags', async () => {
    const component = demo('c', { f: 'x' });
    for (const time of [
      '2026-11-01T10:00:00Z',
      '2026-11-02T10:00:00Z',
      '2026-11-02T11:00:00Z',
      '2026-11-03T10:00:00Z',
    ]) {
      await backup({ storage, components: [component], now: () => new Date(time) });
    }
    const dry = await runJson('prune', '--keep-daily', '2', '--dry-run', '--target', 'mem://');
    expect(dry.json).toEqual({
      dryRun: true,
      kept: ['backup_20261102_110000', 'backup_20261103_100000'],
      keptForChain: [],
      deleted: ['backup_20261101_100000', 'backup_20261102_100000'],
      orphans: [],
      incomplete: [],
      notes: [],
    });
    expect(((await runJson('ls', '--target', 'mem://')).json.backups as unknown[]).length).toBe(4);
    const human = await run('prune', '--keep-last', '1', '--target', 'mem://');
    expect(human.stdout.split('\n').filter(Boolean)).toEqual([
      'deleted backup_20261101_100000',
      'deleted backup_20261102_100000',
      'deleted backup_20261102_110000',
      'kept backup_20261103_100000',
    ]);
  });

  it('restores through the configured restorers', async () => {
    await run('backup', '--target', 'mem://', '--quiet');
    const result = await run('restore', '--target', 'mem://', '--quiet');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^restored backup_\d{8}_\d{6}: 2 entries/);
    expect(Object.fromEntries(restored)).toEqual({ 'a.txt': 'alpha', 'dir/b.txt': 'beta' });
  });
});
