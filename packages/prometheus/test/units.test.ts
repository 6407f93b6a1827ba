import { mkdir, mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromBytes, ignoreProgress } from '@bk/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { layoutConfigFiles } from '../src/config-files.ts';
import {
  AlertmanagerComponent,
  alertmanager,
  fromConfig,
  isExpired,
  isSameSilence,
  PrometheusComponent,
  parseSilences,
  planSilences,
  prometheus,
  type Silence,
  toPostable,
} from '../src/index.ts';

const NOW = Date.parse('2026-11-21T10:00:00.000Z');
const minutes = (count: number) => new Date(NOW + count * 60_000).toISOString();

function silence(overrides: Partial<Silence> = {}): Silence {
  return {
    id: 'id-1',
    status: { state: 'active' },
    updatedAt: minutes(-10),
    matchers: [
      { name: 'alertname', value: 'DiskFull', isRegex: false, isEqual: true },
      { name: 'instance', value: 'db-.*', isRegex: true, isEqual: true },
    ],
    startsAt: minutes(-10),
    endsAt: minutes(60),
    createdBy: 'alice',
    comment: 'maintenance',
    ...overrides,
  };
}

describe('silence selection', () => {
  it('skips silences that are expired by state or by endsAt, keeps active and pending ones', () => {
    const backedUp = [
      silence({ id: 'active' }),
      silence({ id: 'pending', status: { state: 'pending' }, startsAt: minutes(30), comment: 'later' }),
      silence({ id: 'expired-state', status: { state: 'expired' }, endsAt: minutes(-1), comment: 'gone' }),
      silence({
        id: 'expired-since',
        status: { state: 'active' },
        endsAt: minutes(-0.01),
        comment: 'just ended',
      }),
      silence({ id: 'ends-now', endsAt: minutes(0), comment: 'ends now' }),
    ];
    const plan = planSilences(backedUp, [], NOW);
    expect(plan.create.map((created) => created.comment)).toEqual(['maintenance', 'later']);
    expect(plan.expired.map((expired) => expired.id)).toEqual(['expired-state', 'expired-since', 'ends-now']);
    expect(plan.existing).toEqual([]);
    expect(isExpired(silence(), NOW)).toBe(false);
  });

  it('drops id, status and updatedAt before posting, and fills in isEqual', () => {
    const postable = toPostable(silence({ matchers: [{ name: 'a', value: 'b', isRegex: false }] }));
    expect(postable).toEqual({
      matchers: [{ name: 'a', value: 'b', isRegex: false, isEqual: true }],
      startsAt: minutes(-10),
      endsAt: minutes(60),
      createdBy: 'alice',
      comment: 'maintenance',
    });
    expect(Object.keys(postable)).not.toContain('id');
  });

  it('finds an equal silence on the target: matchers as a set, comment, endsAt, startsAt (or a clamped start)', () => {
    const original = silence();
    const reordered = silence({ id: 'other', matchers: [...original.matchers].reverse() });
    expect(isSameSilence(original, reordered, NOW)).toBe(true);
    // Alertmanager moved the past start to the moment the silence was re-created.
    expect(isSameSilence(original, silence({ startsAt: minutes(-2) }), NOW)).toBe(true);
    expect(isSameSilence(original, silence({ startsAt: minutes(-20) }), NOW)).toBe(false);
    expect(isSameSilence(original, silence({ comment: 'other' }), NOW)).toBe(false);
    expect(isSameSilence(original, silence({ endsAt: minutes(61) }), NOW)).toBe(false);
    expect(
      isSameSilence(
        original,
        silence({ matchers: [{ name: 'alertname', value: 'DiskFull', isRegex: false, isEqual: false }] }),
        NOW,
      ),
    ).toBe(false);
    const pending = silence({ startsAt: minutes(30), status: { state: 'pending' } });
    expect(isSameSilence(pending, silence({ startsAt: minutes(30) }), NOW)).toBe(true);
    expect(isSameSilence(pending, silence({ startsAt: minutes(31) }), NOW)).toBe(false);

    // Expired silences on the target do not count: the backed-up one is created again.
    const plan = planSilences(
      [original],
      [silence({ id: 'old', status: { state: 'expired' }, endsAt: minutes(60) })],
      NOW,
    );
    expect(plan.create).toHaveLength(1);
    expect(planSilences([original], [reordered], NOW).existing).toHaveLength(1);
  });

  it('rejects a malformed silences.json', () => {
    expect(() => parseSilences({}, 'am')).toThrow(/not a JSON array/);
    expect(() => parseSilences([{ matchers: [] }], 'am')).toThrow(/#0 is malformed/);
    expect(() => parseSilences([silence({ endsAt: 'soon' })], 'am')).toThrow(/#0 is malformed/);
    expect(parseSilences([silence()], 'am')).toHaveLength(1);
  });
});

describe('fromConfig and options', () => {
  it('builds a Prometheus component by default and an Alertmanager one for service "alertmanager"', () => {
    const built = fromConfig({
      kind: 'prometheus',
      url: 'http://127.0.0.1:9090',
      restore: { dataDir: '/srv/p' },
    });
    expect(built).toBeInstanceOf(PrometheusComponent);
    expect(built.kind).toBe('prometheus');
    expect(built.name).toBe('prometheus');
    const withoutKind = fromConfig({ url: 'http://127.0.0.1:9090' });
    expect(withoutKind).toBeInstanceOf(PrometheusComponent);
    const am = fromConfig({
      kind: 'prometheus',
      service: 'alertmanager',
      name: 'am',
      url: 'http://127.0.0.1:9093',
    });
    expect(am).toBeInstanceOf(AlertmanagerComponent);
    expect(am.kind).toBe('alertmanager');
    expect(am.name).toBe('am');
    // As the CLI calls it (kind removed) and as a library call with kind "alertmanager".
    expect(fromConfig({ service: 'alertmanager', url: 'http://127.0.0.1:9093' })).toBeInstanceOf(
      AlertmanagerComponent,
    );
    expect(fromConfig({ kind: 'alertmanager', url: 'http://127.0.0.1:9093' })).toBeInstanceOf(
      AlertmanagerComponent,
    );
  });

  it.each([
    [{ kind: 'prometheus', url: 'http://x', bogus: 1 }, /"bogus" is not a field of a prometheus component/],
    [{ kind: 'influx', url: 'http://x' }, /"kind" must be "prometheus"/],
    [{ service: 'grafana', url: 'http://x' }, /"service" must be "prometheus" or "alertmanager"/],
    [{ kind: 'alertmanager', service: 'prometheus', url: 'http://x' }, /contradicts/],
    [
      { service: 'alertmanager', url: 'http://x', dataDir: '/x' },
      /"dataDir" is not a field of a alertmanager component/,
    ],
    [{ url: 'ftp://x' }, /http:\/\/ or https:\/\//],
    [{ url: 'not a url' }, /is not a URL/],
    [{ url: 'http://user:pw@127.0.0.1:9090' }, /must not contain credentials/],
    [{}, /"url" must be a non-empty URL string/],
    [{ url: 'http://x', dataDir: 'relative/data' }, /"dataDir" must be an absolute path/],
    [{ url: 'http://x', restore: { dataDir: 'relative' } }, /"restore.dataDir" must be an absolute path/],
    [{ url: 'http://x', restore: { dataDir: '/ok', target: '/x' } }, /"restore.target" is not known/],
    [{ url: 'http://x', restore: {} }, /"restore.dataDir" must be an absolute path/],
    [{ url: 'http://x', headers: { Authorization: 1 } }, /"headers.Authorization"/],
    [{ url: 'http://x', timeoutMs: 0 }, /"timeoutMs" must be a positive integer/],
    [{ url: 'http://x', skipHead: 'yes' }, /"skipHead" must be true or false/],
    [{ url: 'http://x', ruleFiles: 'rules/*.yml' }, /"ruleFiles" must be an array/],
    [{ url: 'http://x', ruleFiles: ['rules/*.yml'] }, /relative "ruleFiles" need "configFile"/],
    [{ url: 'http://x', name: '../evil' }, /Invalid component name/],
    [
      { service: 'alertmanager', url: 'http://x', restore: { configDir: 'rel' } },
      /"restore.configDir" must be an absolute path/,
    ],
    [
      { service: 'alertmanager', url: 'http://x', restore: { dataDir: '/x' } },
      /"restore.dataDir" is not known/,
    ],
  ])('refuses %j with ConfigError', (config, message) => {
    let caught: unknown;
    try {
      fromConfig(config as Record<string, unknown>);
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({ code: 'BK_CONFIG' });
    expect((caught as Error).message).toMatch(message);
  });

  it('never puts a header value into an error message', () => {
    let caught: unknown;
    try {
      prometheus({ url: 'http://x', headers: { 'Bad Header': 'Bearer s3cret' } });
    } catch (error) {
      caught = error;
    }
    expect((caught as Error).message).toMatch(/Bad Header/);
    expect((caught as Error).message).not.toMatch(/s3cret/);
    expect(alertmanager({ url: 'http://127.0.0.1:9093/' }).options.url).toBe('http://127.0.0.1:9093/');
  });

  it('lays out rule files relative to the config dir and refuses two files with one entry path', () => {
    const files = layoutConfigFiles(
      { path: 'prometheus.yml', source: '/etc/prometheus/prometheus.yml', role: 'config' },
      '/etc/prometheus',
      ['/etc/prometheus/rules/a.yml', '/opt/other/b.yml'],
      'here',
    );
    expect(files.map((file) => file.path)).toEqual(['prometheus.yml', 'rules/a.yml', 'b.yml']);
    expect(() =>
      layoutConfigFiles(
        { path: 'prometheus.yml', role: 'config', text: '' },
        undefined,
        ['/a/x.yml', '/b/x.yml'],
        'here',
      ),
    ).toThrow(/would both be stored as config\/x\.yml/);
  });
});

describe('restoring config files', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bk-prometheus-units-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a config path that leaves the config dir through a link', async () => {
    const configDir = join(dir, 'config');
    const outside = join(dir, 'outside');
    await mkdir(configDir, { recursive: true });
    await mkdir(outside, { recursive: true });
    await symlink(outside, join(configDir, 'rules'));
    const restorer = alertmanager({ url: 'http://127.0.0.1:1', restore: { configDir } });
    async function* entries() {
      yield { path: 'config/rules/evil.yml', type: 'file' as const, body: fromBytes('x') };
    }
    await expect(
      restorer.restore(entries(), {
        signal: new AbortController().signal,
        progress: ignoreProgress,
        backupName: 'b',
        component: { name: 'alertmanager', kind: 'alertmanager', info: {} },
        conflict: 'overwrite',
      }),
    ).rejects.toMatchObject({ code: 'BK_UNSAFE_PATH' });
    expect(await readdir(outside)).toEqual([]);
    expect((await readdir(configDir)).sort()).toEqual(['rules']);
  });
});
