import { describe, expect, it } from 'vitest';
import {
  backup,
  collect,
  type Entry,
  generateAgeIdentity,
  MemoryStorage,
  type PreflightResult,
  type ProgressEvent,
  parseVersion,
  type Restorer,
  refuseOlderTarget,
  refuseOtherMajor,
  restore,
  type SecretNote,
  type Source,
  UnencryptedSecretsError,
  VersionMismatchError,
} from '../src/index.ts';

const text = (value: string) => new TextEncoder().encode(value);

function file(path: string, data: string, secret?: Entry['secret']): Entry {
  const bytes = text(data);
  return {
    path,
    size: bytes.byteLength,
    ...(secret ? { secret } : {}),
    body: (async function* () {
      yield bytes;
    })(),
  };
}

function source(
  name: string,
  entries: () => Entry[],
  secrets?: { captured: SecretNote[]; notCaptured: SecretNote[] },
): Source {
  return {
    kind: 'test',
    name,
    describe: async () => ({ version: '3.4.30', ...(secrets ? { secrets } : {}) }),
    async *backup() {
      yield* entries();
    },
  };
}

async function keys(storage: MemoryStorage): Promise<string[]> {
  const found: string[] = [];
  for await (const object of storage.list('')) found.push(object.key);
  return found.sort();
}

const ETCD_SECRETS = {
  captured: [
    { kind: 'kubernetes-secrets' as const, what: 'every Kubernetes Secret', paths: ['snapshot.db'] },
  ],
  notCaptured: [],
};

describe('secrets accounting', () => {
  it('records declared secrets and entries marked secret per component, and warns when stored unencrypted', async () => {
    const storage = new MemoryStorage();
    const events: ProgressEvent[] = [];
    const result = await backup({
      storage,
      components: [
        source('etcd', () => [file('snapshot.db', 'snap')], ETCD_SECRETS),
        source('files', () => [
          file('etc/app.conf', 'plain'),
          file('etc/tls/server.key', 'KEY', { kind: 'private-key', what: 'private keys by file name' }),
          file('etc/tls/other.key', 'KEY', { kind: 'private-key', what: 'private keys by file name' }),
        ]),
        source('plain', () => [file('a', 'a')]),
      ],
      onProgress: (event) => events.push(event),
    });
    const byName = Object.fromEntries(result.manifest.components.map((c) => [c.name, c.info.secrets]));
    expect(byName.etcd).toEqual(ETCD_SECRETS);
    expect(byName.files).toEqual({
      captured: [
        {
          kind: 'private-key',
          what: 'private keys by file name',
          paths: ['etc/tls/server.key', 'etc/tls/other.key'],
        },
      ],
      notCaptured: [],
    });
    expect(byName.plain).toBeUndefined();
    const warnings = events.filter((event) => event.type === 'warning');
    expect(warnings.map((event) => event.type === 'warning' && event.component)).toEqual(['etcd', 'files']);
    expect(JSON.stringify(warnings)).toContain('stored unencrypted although it holds secrets');
  });

  it('does not warn when the backup is encrypted', async () => {
    const events: ProgressEvent[] = [];
    await backup({
      storage: new MemoryStorage(),
      components: [source('etcd', () => [file('snapshot.db', 'snap')], ETCD_SECRETS)],
      encryption: { recipients: [generateAgeIdentity().recipient] },
      requireEncryption: true,
      onProgress: (event) => events.push(event),
    });
    expect(events.filter((event) => event.type === 'warning')).toEqual([]);
  });

  it('refuses declared secrets unencrypted before anything is written when encryption is required', async () => {
    const storage = new MemoryStorage();
    let read = false;
    const error = await backup({
      storage,
      components: [
        source(
          'etcd',
          () => {
            read = true;
            return [file('snapshot.db', 'snap')];
          },
          ETCD_SECRETS,
        ),
      ],
      requireEncryption: true,
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UnencryptedSecretsError);
    expect((error as UnencryptedSecretsError).code).toBe('BK_UNENCRYPTED_SECRETS');
    expect((error as Error).message).toContain('"etcd" (every Kubernetes Secret (snapshot.db))');
    expect(read).toBe(false);
    expect(await keys(storage)).toEqual([]);
  });

  it('refuses an entry marked secret when encryption is required, leaving nothing stored', async () => {
    const storage = new MemoryStorage();
    const error = await backup({
      storage,
      components: [
        source('files', () => [
          file('a', 'a'),
          file('id_ed25519', 'KEY', { kind: 'private-key', what: 'SSH private keys' }),
        ]),
      ],
      requireEncryption: true,
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UnencryptedSecretsError);
    expect((error as Error).message).toContain('SSH private keys (id_ed25519)');
    expect(await keys(storage)).toEqual([]);
  });

  it('backs up components without secrets unencrypted even when encryption is required', async () => {
    const result = await backup({
      storage: new MemoryStorage(),
      components: [source('plain', () => [file('a', 'a')])],
      requireEncryption: true,
    });
    expect(result.manifest.encryption).toBeNull();
  });
});

function restorer(name: string, preflight?: Restorer['preflight']): Restorer & { restored: string[] } {
  const restored: string[] = [];
  return {
    kind: 'test',
    name,
    restored,
    ...(preflight ? { preflight } : {}),
    async restore(entries) {
      for await (const entry of entries) {
        if (entry.body) await collect(entry.body);
        restored.push(entry.path);
      }
      return { entries: restored.length, bytes: 0 };
    },
  };
}

describe('version preflight', () => {
  async function stored() {
    const storage = new MemoryStorage();
    await backup({
      storage,
      components: [source('one', () => [file('a', 'a')]), source('two', () => [file('b', 'b')])],
    });
    return storage;
  }

  it('refuses the whole restore before any component writes when one target is refused', async () => {
    const storage = await stored();
    const one = restorer('one', async () => ({ targetVersion: '3.4.30' }));
    const two = restorer('two', async (context) => ({
      targetVersion: '2.3.0',
      refusal: refuseOtherMajor('etcd', context.component.version, '2.3.0'),
    }));
    const error = await restore({ storage, name: 'latest', restorers: [one, two] }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(VersionMismatchError);
    expect((error as VersionMismatchError).code).toBe('BK_VERSION_MISMATCH');
    expect((error as Error).message).toMatch(
      /^two: refusing to restore backup_\S+ \(backed up from version 3\.4\.30\) into the target's version 2\.3\.0: etcd 3 backups restore only into etcd 3\.x/,
    );
    expect((error as Error).message).toContain('--force');
    expect(one.restored).toEqual([]);
    expect(two.restored).toEqual([]);
  });

  it('restores with force, warning, when the refusal is forceable; never when it is not', async () => {
    const storage = await stored();
    const refused = (forceable: boolean) => async (): Promise<PreflightResult> => ({
      targetVersion: '2.0.0',
      refusal: { reason: 'too old', forceable },
    });
    const events: ProgressEvent[] = [];
    const forced = restorer('one', refused(true));
    const result = await restore({
      storage,
      name: 'latest',
      restorers: [forced, restorer('two')],
      force: true,
      onProgress: (event) => events.push(event),
    });
    expect(forced.restored).toEqual(['a']);
    expect(result.preflight.one?.targetVersion).toBe('2.0.0');
    expect(events.find((event) => event.type === 'warning')).toMatchObject({
      component: 'one',
      message: expect.stringContaining('restoring anyway (forced) from version 3.4.30 into 2.0.0: too old'),
    });
    const never = restorer('one', refused(false));
    const error = await restore({
      storage,
      name: 'latest',
      restorers: [never, restorer('two')],
      force: true,
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(VersionMismatchError);
    expect((error as Error).message).not.toContain('--force');
    expect(never.restored).toEqual([]);
  });
});

describe('version rules', () => {
  it('parses the versions servers report', () => {
    expect(parseVersion('15.18 (Debian 15.18-1.pgdg120+1)')).toEqual({ major: 15, minor: 18, patch: 0 });
    expect(parseVersion('v3.4.30')).toEqual({ major: 3, minor: 4, patch: 30 });
    expect(parseVersion('1.6.7~rc0')).toEqual({ major: 1, minor: 6, patch: 7 });
    expect(parseVersion('unknown')).toBeUndefined();
  });

  it('refuses other majors and older targets, and cannot judge unknown versions', () => {
    expect(refuseOtherMajor('InfluxDB', '2.7.1', '1.6.7')?.reason).toContain(
      'InfluxDB 2 backups restore only into InfluxDB 2.x',
    );
    expect(refuseOtherMajor('InfluxDB', '1.8.10', '1.6.7')).toBeUndefined();
    expect(refuseOtherMajor('InfluxDB', undefined, '1.6.7')).toBeUndefined();
    expect(refuseOlderTarget('etcd', '3.5.0', '3.4.30', 'minor')?.reason).toContain(
      'restore into etcd 3.5 or newer',
    );
    expect(refuseOlderTarget('etcd', '3.4.30', '3.5.0', 'minor')).toBeUndefined();
    expect(refuseOlderTarget('PostgreSQL', '16.1', '15.18', 'major')?.reason).toContain(
      'PostgreSQL 16 or newer',
    );
    expect(refuseOlderTarget('PostgreSQL', '15.1', '15.0', 'major')).toBeUndefined();
  });
});
