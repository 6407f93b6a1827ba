import { deepStrictEqual, ok, rejects, strictEqual } from 'node:assert/strict';
import {
  BkError,
  backup,
  type ConfigError,
  type Entry,
  MemoryStorage,
  type RestoreContext,
  type Restorer,
  restore,
} from '@bk/core';
import { type RabbitmqServer, startRabbitmq } from '@bk/test-servers';
import { claimedVersion, componentRoundTrip, recordedEntries } from '@bk/test-suite';
import { afterAll, beforeAll, describe, it } from 'vitest';
import {
  DEFINITIONS_ENTRY,
  type Definitions,
  fromConfig,
  passwordHashesOf,
  type RabbitmqComponent,
  rabbitmq,
  sortDefinitions,
} from '../src/index.ts';

// Two nodes (source and target, ~160 MB each) are started once for the whole file.
let source: RabbitmqServer;
let target: RabbitmqServer;
const storage = new MemoryStorage();
let backupName: string;
let sourceHashes: string[];

async function api(
  server: RabbitmqServer,
  method: string,
  path: string,
  body?: unknown,
  credentials: [string, string] = ['guest', 'guest'],
): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${server.managementUrl}/api/${path}`, {
    method,
    headers: {
      authorization: `Basic ${Buffer.from(credentials.join(':')).toString('base64')}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(20_000),
  });
  const text = await response.text();
  return { status: response.status, body: text === '' ? undefined : JSON.parse(text) };
}

async function must(server: RabbitmqServer, method: string, path: string, body?: unknown): Promise<unknown> {
  const response = await api(server, method, path, body);
  ok(response.status >= 200 && response.status < 300, `${method} ${path}: ${JSON.stringify(response)}`);
  return response.body;
}

/** The node's definitions, sorted, without the node's own `internal_cluster_id`. */
async function definitionsOf(server: RabbitmqServer, vhost?: string): Promise<Definitions> {
  const path = vhost === undefined ? 'definitions' : `definitions/${encodeURIComponent(vhost)}`;
  const definitions = (await must(server, 'GET', path)) as Definitions;
  if (Array.isArray(definitions.global_parameters)) {
    definitions.global_parameters = (definitions.global_parameters as { name: string }[]).filter(
      (parameter) => parameter.name !== 'internal_cluster_id',
    );
  }
  return sortDefinitions(definitions, vhost);
}

async function whoami(server: RabbitmqServer, user: string, password: string): Promise<number> {
  return (await api(server, 'GET', 'whoami', undefined, [user, password])).status;
}

function component(
  server: RabbitmqServer,
  extra: { vhosts?: string[]; name?: string } = {},
): RabbitmqComponent {
  return rabbitmq({ url: server.managementUrl, username: server.user, password: server.password, ...extra });
}

async function seed(server: RabbitmqServer): Promise<void> {
  await must(server, 'PUT', 'vhosts/shop', { description: 'the shop', tags: 'prod,eu' });
  await must(server, 'PUT', 'vhosts/crm', { description: 'customers' });
  await must(server, 'PUT', 'users/alice', { password: 'alice-secret', tags: 'monitoring,policymaker' });
  await must(server, 'PUT', 'users/bob', { password: 'bob-secret', tags: 'management' });
  await must(server, 'PUT', 'user-limits/bob/max-connections', { value: 7 });
  await must(server, 'PUT', 'permissions/shop/alice', { configure: '^shop\\.', write: '.*', read: '.*' });
  await must(server, 'PUT', 'permissions/crm/bob', { configure: '', write: '.*', read: '.*' });
  await must(server, 'PUT', 'topic-permissions/shop/alice', {
    exchange: 'amq.topic',
    write: '^order',
    read: '.*',
  });
  await must(server, 'PUT', 'policies/shop/ttl', {
    pattern: '^orders$',
    definition: { 'message-ttl': 60_000, 'max-length': 1000 },
    'apply-to': 'queues',
    priority: 1,
  });
  await must(server, 'PUT', 'queues/shop/orders', {
    durable: true,
    auto_delete: false,
    arguments: { 'x-max-priority': 5, 'x-queue-type': 'classic' },
  });
  await must(server, 'PUT', 'queues/shop/audit', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await must(server, 'PUT', 'queues/crm/leads', { durable: true, arguments: {} });
  await must(server, 'PUT', 'exchanges/shop/events', {
    type: 'topic',
    durable: true,
    arguments: { 'x-note': 'a' },
  });
  await must(server, 'PUT', 'exchanges/crm/fan', { type: 'fanout', durable: true });
  await must(server, 'POST', 'bindings/shop/e/events/q/orders', { routing_key: 'order.#', arguments: {} });
  await must(server, 'POST', 'bindings/shop/e/events/q/audit', { routing_key: '#', arguments: { 'x-k': 1 } });
  await must(server, 'POST', 'bindings/crm/e/fan/q/leads', { routing_key: '', arguments: {} });
  await must(server, 'PUT', 'vhost-limits/shop/max-connections', { value: 100 });
  await must(server, 'PUT', 'global-parameters/bk-test', { value: { region: 'eu' } });
}

/** A restorer that keeps the archived entries' bytes. */
function capture(into: Map<string, string>): Restorer {
  return {
    kind: 'rabbitmq',
    name: 'rabbitmq',
    async restore(entries: AsyncIterable<Entry>) {
      let bytes = 0;
      for await (const entry of entries) {
        const chunks: Buffer[] = [];
        for await (const chunk of entry.body ?? []) chunks.push(Buffer.from(chunk));
        const text = Buffer.concat(chunks).toString('utf8');
        bytes += text.length;
        into.set(entry.path, text);
      }
      return { entries: into.size, bytes };
    },
  };
}

function isCode(code: string, check?: (error: BkError) => void) {
  return (thrown: unknown) => {
    ok(BkError.isInstance(thrown), String(thrown));
    strictEqual(thrown.code, code, thrown.message);
    check?.(thrown);
    return true;
  };
}

function withoutHashes(text: string): void {
  for (const hash of sourceHashes) ok(!text.includes(hash), `a password hash leaked: ${text}`);
  ok(!text.includes('alice-secret') && !text.includes('bob-secret'), `a password leaked: ${text}`);
}

beforeAll(async () => {
  [source, target] = await Promise.all([startRabbitmq(), startRabbitmq()]);
  await seed(source);
  sourceHashes = passwordHashesOf((await must(source, 'GET', 'definitions')) as Definitions);
  strictEqual(sourceHashes.length, 3);
  const result = await backup({ storage, components: [component(source)] });
  backupName = result.name;
}, 180_000);

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
}, 120_000);

describe('@bk/rabbitmq against two real RabbitMQ 3.10 nodes', () => {
  it('records the version and the hashing algorithm, and never a password hash, in the manifest', async () => {
    const manifestText = JSON.stringify(
      (await backup({ storage: new MemoryStorage(), components: [component(source)] })).manifest,
    );
    withoutHashes(manifestText);
    const captured = new Map<string, string>();
    await restore({ storage, name: backupName, restorers: [capture(captured)] });
    deepStrictEqual([...captured.keys()], [DEFINITIONS_ENTRY]);
    const stored = JSON.parse(captured.get(DEFINITIONS_ENTRY)!) as Definitions;
    // The archive does hold the hashes: that is what lets restored users log in.
    deepStrictEqual(passwordHashesOf(stored).sort(), [...sourceHashes].sort());
    const shop = (stored.vhosts as { name: string; description?: string; tags?: string[] }[]).find(
      (vhost) => vhost.name === 'shop',
    );
    deepStrictEqual(shop, { name: 'shop', description: 'the shop', tags: ['prod', 'eu'] });

    const { manifest } = await backup({ storage: new MemoryStorage(), components: [component(source)] });
    const record = manifest.components[0]!;
    strictEqual(record.version, '3.10.8');
    const details = record.info.details!;
    deepStrictEqual(details.hashingAlgorithms, ['rabbit_password_hashing_sha256']);
    strictEqual(details.rabbitmqVersion, '3.10.8');
    strictEqual(details.passwordHashes, true);
    deepStrictEqual((details.counts as Record<string, number>).queues, 3);
    ok(record.info.notCaptured?.some((line) => line.startsWith('messages')));
  });

  it('fail: refuses a fresh node whose guest user differs, before importing anything', async () => {
    await rejects(
      restore({ storage, name: backupName, restorers: [component(target)] }),
      isCode('BK_CONFLICT', (error) => {
        ok(error.message.includes('user "guest"'), error.message);
        withoutHashes(error.message);
      }),
    );
    strictEqual((await api(target, 'GET', 'vhosts/shop')).status, 404);
    strictEqual(await whoami(target, 'alice', 'alice-secret'), 401);
  });

  it('overwrite: a second node gets identical definitions, and users log in with their old passwords', async () => {
    const result = await restore({
      storage,
      name: backupName,
      restorers: [component(target)],
      conflict: 'overwrite',
    });
    const report = result.components.rabbitmq!;
    strictEqual(report.entries, 1);
    ok(report.bytes > 0);
    deepStrictEqual(await definitionsOf(target), await definitionsOf(source));
    strictEqual(await whoami(target, 'alice', 'alice-secret'), 200);
    strictEqual(await whoami(target, 'bob', 'bob-secret'), 200);
    strictEqual(await whoami(target, 'alice', 'wrong'), 401);
    const shop = (await must(target, 'GET', 'vhosts/shop')) as { description: string; tags: string[] };
    deepStrictEqual([shop.description, shop.tags], ['the shop', ['prod', 'eu']]);
  });

  it('fail: identical objects are no conflict, a changed user is', async () => {
    await restore({ storage, name: backupName, restorers: [component(target)], conflict: 'fail' });
    await must(target, 'PUT', 'users/alice', { password: 'changed', tags: 'monitoring,policymaker' });
    await must(target, 'DELETE', 'queues/crm/leads');
    await rejects(
      restore({ storage, name: backupName, restorers: [component(target)], conflict: 'fail' }),
      isCode('BK_CONFLICT', (error) => {
        ok(error.message.includes('user "alice"'), error.message);
        withoutHashes(error.message);
      }),
    );
    // Checked before importing: the deleted queue is still missing.
    strictEqual((await api(target, 'GET', 'queues/crm/leads')).status, 404);
  });

  it('skip: imports only the objects the target lacks', async () => {
    await must(target, 'PUT', 'policies/shop/ttl', {
      pattern: '^orders$',
      definition: { 'message-ttl': 1000 },
      'apply-to': 'queues',
      priority: 5,
    });
    const result = await restore({
      storage,
      name: backupName,
      restorers: [component(target)],
      conflict: 'skip',
    });
    ok((result.components.rabbitmq!.skipped ?? 0) > 10, JSON.stringify(result.components.rabbitmq));
    const leads = (await must(target, 'GET', 'queues/crm/leads')) as { durable: boolean };
    strictEqual(leads.durable, true);
    const binding = (await must(target, 'GET', 'bindings/crm/e/fan/q/leads')) as unknown[];
    strictEqual(binding.length, 1);
    strictEqual(((await must(target, 'GET', 'policies/shop/ttl')) as { priority: number }).priority, 5);
    strictEqual(await whoami(target, 'alice', 'changed'), 200);
  });

  it('overwrite: updates existing objects and deletes nothing', async () => {
    await must(target, 'PUT', 'queues/crm/extra', { durable: true });
    await must(target, 'DELETE', 'queues/crm/leads');
    await must(target, 'PUT', 'queues/crm/leads', { durable: true, arguments: { 'x-max-length': 3 } });
    const result = await restore({
      storage,
      name: backupName,
      restorers: [component(target)],
      conflict: 'overwrite',
    });
    strictEqual(((await must(target, 'GET', 'policies/shop/ttl')) as { priority: number }).priority, 1);
    strictEqual(await whoami(target, 'alice', 'alice-secret'), 200);
    strictEqual((await api(target, 'GET', 'queues/crm/extra')).status, 200);
    // A queue cannot be redeclared with other arguments: it keeps the target's, and the report says so.
    deepStrictEqual(result.components.rabbitmq!.details?.notUpdated, ['queue "leads" in vhost "crm"']);
    deepStrictEqual(((await must(target, 'GET', 'queues/crm/leads')) as { arguments: unknown }).arguments, {
      'x-max-length': 3,
    });
    await must(target, 'DELETE', 'queues/crm/extra');
    await must(target, 'DELETE', 'queues/crm/leads');
    await restore({ storage, name: backupName, restorers: [component(target)], conflict: 'skip' });
    deepStrictEqual(await definitionsOf(target), await definitionsOf(source));
  });

  it('vhosts: backs up one vhost with its description and tags, and recreates it', async () => {
    const vhostStorage = new MemoryStorage();
    const result = await backup({
      storage: vhostStorage,
      components: [component(source, { vhosts: ['shop'] })],
    });
    const record = result.manifest.components[0]!;
    deepStrictEqual(
      (await recordedEntries(vhostStorage, result.manifest, record.name)).map((entry) => entry.path),
      ['vhosts/shop.json'],
    );
    deepStrictEqual(record.info.details?.hashingAlgorithms, []);
    ok(record.info.notCaptured?.some((line) => line.startsWith('users, permissions')));
    await must(target, 'DELETE', 'vhosts/shop');
    await restore({ storage: vhostStorage, name: result.name, restorers: [component(target)] });
    deepStrictEqual(await definitionsOf(target, 'shop'), await definitionsOf(source, 'shop'));
    const shop = (await must(target, 'GET', 'vhosts/shop')) as { description: string; tags: string[] };
    deepStrictEqual([shop.description, shop.tags], ['the shop', ['prod', 'eu']]);
    // Changed on the target: fail refuses, overwrite puts the backup's properties back.
    await must(target, 'PUT', 'vhosts/shop', { description: 'changed' });
    await rejects(
      restore({ storage: vhostStorage, name: result.name, restorers: [component(target)] }),
      isCode('BK_CONFLICT', (error) => ok(error.message.includes('vhost "shop"'), error.message)),
    );
    await restore({
      storage: vhostStorage,
      name: result.name,
      restorers: [component(target)],
      conflict: 'overwrite',
    });
    strictEqual(
      ((await must(target, 'GET', 'vhosts/shop')) as { description: string }).description,
      'the shop',
    );
    // The vhost's permissions are not in a vhost backup: put them back for the other tests.
    await must(target, 'PUT', 'permissions/shop/alice', { configure: '^shop\\.', write: '.*', read: '.*' });
    await must(target, 'PUT', 'topic-permissions/shop/alice', {
      exchange: 'amq.topic',
      write: '^order',
      read: '.*',
    });
    deepStrictEqual(await definitionsOf(target), await definitionsOf(source));
  });

  it('a refused import is reported without the password hashes it carried', async () => {
    const secretHash = 'QkstdGVzdC1ub3QtYS1yZWFsLWhhc2gtYnV0LXNlY3JldA';
    const definitions = {
      users: [
        {
          name: 'mallory',
          password_hash: `${secretHash}!!`,
          hashing_algorithm: 'rabbit_password_hashing_sha256',
          tags: [],
        },
      ],
    };
    const context: RestoreContext = {
      signal: new AbortController().signal,
      progress: () => {},
      backupName: 'test',
      component: { name: 'rabbitmq', kind: 'rabbitmq', info: {} },
      conflict: 'overwrite',
    };
    const entries = (async function* (): AsyncIterable<Entry> {
      yield {
        path: DEFINITIONS_ENTRY,
        type: 'file',
        body: (async function* () {
          yield Buffer.from(JSON.stringify(definitions));
        })(),
      };
    })();
    await rejects(
      component(target).restore(entries, context),
      isCode('BK_COMPONENT', (error) => {
        ok(error.message.includes('400'), error.message);
        ok(!error.message.includes(secretHash), error.message);
      }),
    );
  });

  it('reports an unknown vhost, a wrong password and an unreachable server as bk errors', async () => {
    await rejects(
      backup({ storage: new MemoryStorage(), components: [component(source, { vhosts: ['nosuch'] })] }),
      isCode('BK_CONFIG', (error) => ok(error.message.includes('"nosuch"'), error.message)),
    );
    const wrong = rabbitmq({ url: source.managementUrl, username: 'guest', password: 'not-the-password' });
    await rejects(
      backup({ storage: new MemoryStorage(), components: [wrong] }),
      isCode('BK_COMPONENT', (error) => {
        ok(error.message.includes('401'), error.message);
        ok(!error.message.includes('not-the-password'), error.message);
      }),
    );
    const closed = rabbitmq({
      url: 'http://127.0.0.1:1',
      username: 'guest',
      password: 'guest',
      timeoutMs: 5_000,
    });
    await rejects(
      backup({ storage: new MemoryStorage(), components: [closed] }),
      isCode('BK_COMPONENT', (error) => strictEqual(error.retryable, true)),
    );
  });

  it('refuses definitions recorded from a newer major before importing, and imports them with force', async () => {
    const other = new MemoryStorage();
    const newer = await backup({
      storage: other,
      components: [claimedVersion(component(source), (info) => ({ ...info, version: '4.0.5' }))],
    });
    deepStrictEqual(
      newer.manifest.components[0]!.info.secrets?.captured.map((note) => note.what),
      [
        'password hashes of 3 RabbitMQ users (rabbit_password_hashing_sha256)',
        'URIs of shovels and federation upstreams, with the passwords they carry (parameters)',
      ],
    );
    withoutHashes(JSON.stringify(newer.manifest));
    await must(target, 'DELETE', 'queues/crm/leads');
    await rejects(
      restore({ storage: other, name: newer.name, restorers: [component(target)], conflict: 'overwrite' }),
      isCode('BK_VERSION_MISMATCH', (error) => {
        ok(
          error.message.includes(
            "(backed up from version 4.0.5) into the target's version 3.10.8: RabbitMQ does not take data from a newer major version; restore into RabbitMQ 4 or newer",
          ),
          error.message,
        );
      }),
    );
    strictEqual((await api(target, 'GET', 'queues/crm/leads')).status, 404);
    const forced = await restore({
      storage: other,
      name: newer.name,
      restorers: [component(target)],
      conflict: 'overwrite',
      force: true,
    });
    strictEqual(forced.preflight.rabbitmq?.targetVersion, '3.10.8');
    strictEqual((await api(target, 'GET', 'queues/crm/leads')).status, 200);
  });

  it('fromConfig builds the component and names invalid fields', () => {
    const built = fromConfig({
      kind: 'rabbitmq',
      name: 'mq',
      url: 'http://127.0.0.1:15672/',
      username: 'admin',
      password: 'pw-never-shown',
      vhosts: ['/', 'app'],
    });
    strictEqual(built.name, 'mq');
    strictEqual(built.options.url, 'http://127.0.0.1:15672');
    ok(!JSON.stringify(built.options).includes('pw-never-shown'));
    const base = { url: 'http://127.0.0.1:15672', username: 'admin', password: 'pw-never-shown' };
    for (const [bad, phrase] of [
      [{ ...base, bogus: 1 }, '"bogus"'],
      [{ ...base, kind: 'postgres' }, '"kind"'],
      [{ ...base, url: 'ftp://host' }, '"url"'],
      [{ ...base, url: 'http://admin:pw-never-shown@host:15672' }, 'credentials'],
      [{ ...base, url: undefined }, '"url"'],
      [{ ...base, username: '' }, '"username"'],
      [{ ...base, password: 5 }, '"password"'],
      [{ ...base, vhosts: [] }, '"vhosts"'],
      [{ ...base, vhosts: ['a', 'a'] }, '"vhosts"'],
      [{ ...base, timeoutMs: -1 }, '"timeoutMs"'],
      [{ ...base, name: '../x' }, ''],
    ] as const) {
      try {
        fromConfig(bad as Record<string, unknown>);
        ok(false, `accepted ${JSON.stringify(bad)}`);
      } catch (error) {
        strictEqual((error as ConfigError).code, 'BK_CONFIG', String(error));
        ok((error as Error).message.includes(phrase), (error as Error).message);
        ok(!(error as Error).message.includes('pw-never-shown'), (error as Error).message);
      }
    }
  });
});

describe('@bk/test-suite componentRoundTrip on RabbitmqComponent', () => {
  componentRoundTrip(
    it,
    async () => {
      const reset = async () => {
        for (const path of ['vhosts/suite', 'users/suite-user']) {
          const response = await api(source, 'DELETE', path);
          ok([204, 404].includes(response.status), `DELETE ${path}: ${response.status}`);
        }
      };
      return {
        component: component(source),
        seed: async () => {
          await must(source, 'PUT', 'vhosts/suite', { description: 'round trip', tags: 'suite' });
          await must(source, 'PUT', 'users/suite-user', { password: 'suite-secret', tags: 'management' });
          await must(source, 'PUT', 'permissions/suite/suite-user', {
            configure: '.*',
            write: '.*',
            read: '',
          });
          await must(source, 'PUT', 'queues/suite/work', {
            durable: true,
            arguments: { 'x-max-length': 10 },
          });
          await must(source, 'PUT', 'exchanges/suite/in', { type: 'direct', durable: true });
          await must(source, 'POST', 'bindings/suite/e/in/q/work', { routing_key: 'job', arguments: {} });
          await must(source, 'PUT', 'policies/suite/lazy', {
            pattern: '.*',
            definition: { 'queue-mode': 'lazy' },
            'apply-to': 'queues',
          });
        },
        snapshot: async () => ({
          definitions: await definitionsOf(source),
          login: await whoami(source, 'suite-user', 'suite-secret'),
        }),
        reset,
        cleanup: reset,
      };
    },
    { timeout: 60_000 },
  );
});
