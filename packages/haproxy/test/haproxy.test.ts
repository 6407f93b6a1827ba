import { deepStrictEqual, ok, rejects, strictEqual } from 'node:assert/strict';
import { access, chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BkError, backup, type ComponentInfo, MemoryStorage, restore } from '@bk/core';
import { type HaproxyServer, startHaproxy } from '@bk/test-servers';
import { componentRoundTrip, recordedEntries } from '@bk/test-suite';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { fromConfig, haproxy, parseServersState } from '../src/index.ts';

const CONFIG = `global
    stats socket unix@admin.sock mode 600 level admin
    stats timeout 30s
    server-state-file server-state
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    load-server-state-from-file global
    errorfile 503 errors/503.http
backend be_app
    http-request set-header X-Route %[req.hdr(host),lower,map(maps/hosts.map,none)]
    server app1 127.0.0.1:21081 weight 10
    server app2 127.0.0.1:21082 weight 10
backend be_other
    server other1 127.0.0.1:21083 weight 10
`;

const FILES = {
  'maps/hosts.map': 'shop.example.com be_app\nstatic.example.com be_other\n',
  'errors/503.http': 'HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\ndown\n',
};

/** What must survive a restore of each server: address, port, operational and admin state, weight. */
async function serverState(server: HaproxyServer): Promise<Record<string, unknown>> {
  const parsed = parseServersState(await server.command('show servers state'));
  ok(parsed, 'show servers state did not parse');
  return Object.fromEntries(
    parsed.rows.map((row) => [
      `${row.be_name}/${row.srv_name}`,
      {
        addr: row.srv_addr,
        port: row.srv_port,
        opState: row.srv_op_state,
        adminState: row.srv_admin_state,
        weight: row.srv_uweight,
      },
    ]),
  );
}

async function changeRuntimeState(server: HaproxyServer): Promise<void> {
  strictEqual((await server.command('set server be_app/app1 weight 50')).trim(), '');
  strictEqual((await server.command('disable server be_app/app2')).trim(), '');
  strictEqual((await server.command('set server be_other/other1 state drain')).trim(), '');
}

async function missing(path: string): Promise<boolean> {
  return access(path).then(
    () => false,
    () => true,
  );
}

function code(thrown: unknown): string {
  return BkError.isInstance(thrown) ? thrown.code : String(thrown);
}

describe('HaproxyComponent against a real HAProxy 2.6', () => {
  let source: HaproxyServer;
  let work: string;
  const storage = new MemoryStorage();
  let backupName: string;
  let info: ComponentInfo;
  let stateBefore: Record<string, unknown>;

  const component = (restoreOptions: Record<string, unknown> = {}) =>
    haproxy({
      configFile: source.configFile,
      configFiles: [join(source.dir, 'maps'), join(source.dir, 'errors')],
      socket: source.socketPath,
      restore: restoreOptions,
    });

  beforeAll(async () => {
    [source, work] = await Promise.all([
      startHaproxy({ config: CONFIG, files: FILES }),
      mkdtemp(join(tmpdir(), 'bk-haproxy-test-')),
    ]);
    await chmod(join(source.dir, 'maps/hosts.map'), 0o640);
    await chmod(join(source.dir, 'errors/503.http'), 0o600);
    await changeRuntimeState(source);
    stateBefore = await serverState(source);
    const result = await backup({ storage, components: [component()] });
    backupName = result.name;
    const recorded = result.manifest.components[0]!;
    info = recorded.info;
    deepStrictEqual(
      (await recordedEntries(storage, result.manifest, recorded.name)).map((entry) => entry.path),
      ['config/errors/503.http', 'config/haproxy.cfg', 'config/maps/hosts.map', 'server-state'],
    );
  }, 60_000);
  afterAll(async () => {
    await source?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('records the version from show info', () => {
    ok(info.version?.startsWith('2.6.'), info.version);
    strictEqual(info.details?.mainConfig, 'haproxy.cfg');
    strictEqual(info.details?.serverState, true);
  });

  it('restores the config byte for byte and a second HAProxy starts with the same server state', async () => {
    const target = join(work, 'restored');
    const report = await restore({
      storage,
      name: backupName,
      restorers: [component({ configDir: target, stateFile: join(target, 'server-state') })],
    });
    const details = report.components.haproxy!.details!;
    strictEqual(details.checked, true);
    strictEqual(details.stateFile, join(target, 'server-state'));
    for (const [path, mode] of [
      ['haproxy.cfg', undefined],
      ['maps/hosts.map', 0o640],
      ['errors/503.http', 0o600],
    ] as const) {
      deepStrictEqual(await readFile(join(target, path)), await readFile(join(source.dir, path)), path);
      const expected = mode ?? (await stat(join(source.dir, path))).mode & 0o7777;
      strictEqual((await stat(join(target, path))).mode & 0o7777, expected, path);
    }
    // The first server keeps running: the second one has its own socket and state file in `target`.
    const copy = await startHaproxy({ configFile: join(target, 'haproxy.cfg'), dir: target });
    try {
      deepStrictEqual(await serverState(copy), stateBefore);
      deepStrictEqual(stateBefore['be_app/app1'], {
        addr: '127.0.0.1',
        port: '21081',
        opState: '2',
        adminState: '0',
        weight: '50',
      });
      strictEqual((stateBefore['be_app/app2'] as { adminState: string }).adminState, '1');
      strictEqual((stateBefore['be_other/other1'] as { adminState: string }).adminState, '8');
    } finally {
      await copy.stop();
    }
  });

  it('honours fail, skip and overwrite on existing files, replacing nothing under fail', async () => {
    const target = join(work, 'conflicts');
    const stateFile = join(target, 'server-state');
    const restoreWith = (conflict: 'fail' | 'skip' | 'overwrite') =>
      restore({
        storage,
        name: backupName,
        conflict,
        restorers: [component({ configDir: target, stateFile })],
      });
    await mkdir(join(target, 'maps'), { recursive: true });
    await writeFile(join(target, 'maps/hosts.map'), 'local change\n');

    await rejects(restoreWith('fail'), (thrown: unknown) => code(thrown) === 'BK_CONFLICT');
    strictEqual(await readFile(join(target, 'maps/hosts.map'), 'utf8'), 'local change\n');
    ok(await missing(join(target, 'haproxy.cfg')), 'fail must not publish any file');
    ok(await missing(stateFile), 'fail must not write the state');

    const skipped = await restoreWith('skip');
    strictEqual(skipped.components.haproxy!.skipped, 1);
    strictEqual(await readFile(join(target, 'maps/hosts.map'), 'utf8'), 'local change\n');
    strictEqual(await readFile(join(target, 'haproxy.cfg'), 'utf8'), CONFIG);

    await restoreWith('overwrite');
    strictEqual(await readFile(join(target, 'maps/hosts.map'), 'utf8'), FILES['maps/hosts.map']);
    ok(parseServersState(await readFile(stateFile, 'utf8')));
  });

  it('applies the server state live through the runtime API', async () => {
    const fresh = await startHaproxy({ config: CONFIG, files: FILES });
    try {
      ok((await serverState(fresh))['be_app/app1'] !== undefined);
      const report = await restore({
        storage,
        name: backupName,
        restorers: [component({ configDir: join(work, 'live'), applyLive: true, socket: fresh.socketPath })],
      });
      deepStrictEqual(report.components.haproxy!.details!.live, {
        socket: fresh.socketPath,
        applied: 3,
        missing: [],
      });
      deepStrictEqual(await serverState(fresh), stateBefore);
    } finally {
      await fresh.stop();
    }
  });

  it('refuses a configuration that haproxy -c rejects before writing anything', async () => {
    const bad = join(work, 'bad-source');
    for (const [path, content] of Object.entries(FILES)) {
      await mkdir(join(bad, path, '..'), { recursive: true });
      await writeFile(join(bad, path), content);
    }
    await writeFile(join(bad, 'haproxy.cfg'), `${CONFIG}    bogus_directive on\n`);
    const badStorage = new MemoryStorage();
    const written = await backup({
      storage: badStorage,
      components: [
        haproxy({
          name: 'edge',
          configFile: join(bad, 'haproxy.cfg'),
          configFiles: [join(bad, 'maps'), join(bad, 'errors')],
        }),
      ],
    });
    const target = join(work, 'bad-target');
    await rejects(
      restore({
        storage: badStorage,
        name: written.name,
        restorers: [
          haproxy({
            name: 'edge',
            configFile: join(bad, 'haproxy.cfg'),
            restore: { configDir: target, stateFile: join(target, 'server-state') },
          }),
        ],
      }),
      (thrown: unknown) => {
        strictEqual(code(thrown), 'BK_CONFIG', String(thrown));
        ok((thrown as Error).message.includes('haproxy -c'), (thrown as Error).message);
        ok((thrown as Error).message.includes('bogus_directive'), (thrown as Error).message);
        return true;
      },
    );
    ok(await missing(target), 'the refused restore left files behind');
  });

  it('refuses to restore config files without configDir or inPlace', async () => {
    await rejects(
      restore({ storage, name: backupName, restorers: [component()] }),
      (thrown: unknown) => code(thrown) === 'BK_CONFIG' && /configDir/.test((thrown as Error).message),
    );
  });

  it('fromConfig validates its fields', () => {
    const built = fromConfig({ kind: 'haproxy', name: 'lb', socket: '/run/haproxy/admin.sock' });
    strictEqual(built.name, 'lb');
    strictEqual(built.configFile, '/etc/haproxy/haproxy.cfg');
    for (const bad of [
      { bogus: 1 },
      { kind: 'nginx' },
      { socket: 'relative.sock' },
      { configFile: 'haproxy.cfg' },
      { configFiles: '/etc/haproxy/maps' },
      { configFiles: ['/etc/ssl/private/x.pem'] },
      { restore: { configDir: 'rel' } },
      { restore: { unknown: true } },
      { restore: { configDir: '/tmp/x', inPlace: true } },
      { restore: { applyLive: 'yes' } },
      { timeoutMs: -1 },
      { name: 'a/b' },
    ]) {
      try {
        fromConfig(bad);
        ok(false, `accepted ${JSON.stringify(bad)}`);
      } catch (error) {
        strictEqual(code(error), 'BK_CONFIG', `${JSON.stringify(bad)}: ${String(error)}`);
      }
    }
  });
});

describe('@bk/test-suite componentRoundTrip on HaproxyComponent', () => {
  componentRoundTrip(
    it,
    async () => {
      const server = await startHaproxy({ config: CONFIG, files: FILES });
      const files = ['haproxy.cfg', 'maps/hosts.map', 'errors/503.http'];
      return {
        component: haproxy({
          name: 'lb',
          configFile: server.configFile,
          configFiles: [join(server.dir, 'maps'), join(server.dir, 'errors')],
          socket: server.socketPath,
          restore: { inPlace: true, stateFile: server.stateFile, applyLive: true },
        }),
        seed: async () => {
          await writeFile(join(server.dir, 'maps/hosts.map'), 'api.example.com be_app\n');
          await changeRuntimeState(server);
        },
        snapshot: async () => {
          const contents: Record<string, string | null> = {};
          for (const file of files) {
            contents[file] = await readFile(join(server.dir, file), 'utf8').catch(() => null);
          }
          return { files: contents, servers: await serverState(server) };
        },
        reset: async () => {
          for (const file of [...files, 'server-state']) await rm(join(server.dir, file), { force: true });
          for (const name of ['be_app/app1', 'be_app/app2', 'be_other/other1']) {
            await server.command(`set server ${name} weight 10`);
            await server.command(`set server ${name} state ready`);
          }
        },
        cleanup: () => server.stop(),
      };
    },
    { timeout: 30_000 },
  );
});
