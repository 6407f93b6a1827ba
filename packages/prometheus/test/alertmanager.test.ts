import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  backup,
  type Entry,
  inspect,
  MemoryStorage,
  type RestoreReport,
  type Restorer,
  restore,
} from '@bk/core';
import { type AlertmanagerServer, startAlertmanager, waitFor } from '@bk/test-servers';
import { recordedEntries } from '@bk/test-suite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alertmanager, type Silence } from '../src/index.ts';
import {
  canonicalMatchers,
  createSilence,
  expireSilence,
  isoIn,
  listSilences,
  liveSilences,
} from './alertmanager-api.ts';

let source: AlertmanagerServer;
let target: AlertmanagerServer;
let sandbox: string;
const storage = new MemoryStorage();
let backupName: string;
let backedUpLive: Silence[];
let expiringId: string;

beforeAll(async () => {
  [source, target, sandbox] = await Promise.all([
    startAlertmanager(),
    startAlertmanager(),
    mkdtemp(join(tmpdir(), 'bk-alertmanager-test-')),
  ]);
  // Active, with a regex matcher and a negative one.
  await createSilence(source.url, {
    matchers: [
      { name: 'alertname', value: 'DiskFull', isRegex: false, isEqual: true },
      { name: 'instance', value: 'db-.*', isRegex: true, isEqual: true },
      { name: 'env', value: 'dev', isRegex: false, isEqual: false },
    ],
    startsAt: isoIn(0),
    endsAt: isoIn(3_600_000),
    createdBy: 'alice',
    comment: 'a: maintenance window',
  });
  // Pending: starts in 30 minutes.
  await createSilence(source.url, {
    matchers: [{ name: 'alertname', value: 'Backup.*', isRegex: true }],
    startsAt: isoIn(1_800_000),
    endsAt: isoIn(7_200_000),
    createdBy: 'bob',
    comment: 'b: tonight’s backup',
  });
  // Active in the backup, expired by the time of the restore.
  expiringId = await createSilence(source.url, {
    matchers: [{ name: 'alertname', value: 'Flapping', isRegex: false }],
    startsAt: isoIn(0),
    endsAt: isoIn(2_500),
    comment: 'c: expires in seconds',
  });
  // Already expired in the backup.
  const expired = await createSilence(source.url, {
    matchers: [{ name: 'alertname', value: 'Old', isRegex: false }],
    startsAt: isoIn(0),
    endsAt: isoIn(3_600_000),
    comment: 'd: expired',
  });
  await expireSilence(source.url, expired);
  backedUpLive = await liveSilences(source.url);
  expect(backedUpLive.map((silence) => silence.comment)).toEqual([
    'a: maintenance window',
    'b: tonight’s backup',
    'c: expires in seconds',
  ]);
  const result = await backup({
    storage,
    components: [alertmanager({ url: source.url, configFile: source.configFile })],
  });
  backupName = result.name;
  // Wait (by probing, not sleeping) until silence c has expired on the source.
  await waitFor(
    'silence c to expire',
    async () =>
      (await listSilences(source.url)).find((silence) => silence.id === expiringId)?.status?.state ===
      'expired',
    15_000,
    200,
  );
});

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  if (sandbox) await rm(sandbox, { recursive: true, force: true });
});

describe('@bk/prometheus alertmanager against a real Alertmanager 0.25', () => {
  it('backs up the config and every silence, and records the version', async () => {
    const manifest = await inspect({ storage, name: backupName });
    const recorded = manifest.components[0]!;
    expect(recorded.kind).toBe('alertmanager');
    expect(recorded.version).toBe('0.25.0');
    expect((await recordedEntries(storage, manifest, recorded.name)).map((entry) => entry.path)).toEqual([
      'config/alertmanager.yml',
      'silences.json',
    ]);
    expect(recorded.info.details).toMatchObject({
      configFrom: 'file',
      cluster: 'disabled',
      silences: { active: 2, pending: 1, expired: 1 },
    });
    const captured = new Map<string, Buffer>();
    const capturing: Restorer = {
      kind: 'alertmanager',
      name: 'alertmanager',
      async restore(entries: AsyncIterable<Entry>): Promise<RestoreReport> {
        for await (const entry of entries) {
          const chunks: Uint8Array[] = [];
          for await (const chunk of entry.body ?? []) chunks.push(chunk);
          captured.set(entry.path, Buffer.concat(chunks));
        }
        return { entries: captured.size, bytes: 0 };
      },
    };
    await restore({ storage, name: backupName, restorers: [capturing] });
    expect(captured.get('config/alertmanager.yml')?.toString()).toBe(
      await readFile(source.configFile, 'utf8'),
    );
    const silences = JSON.parse(captured.get('silences.json')!.toString()) as Silence[];
    expect(silences).toHaveLength(4);
    // Silence c was still active when backed up: the restore skips it by its endsAt.
    expect(silences.find((silence) => silence.id === expiringId)?.status?.state).toBe('active');
  });

  it('re-creates the active and pending silences in a fresh Alertmanager, skipping expired ones', async () => {
    const configDir = join(sandbox, 'restored-config');
    const result = await restore({
      storage,
      name: backupName,
      restorers: [alertmanager({ url: target.url, restore: { configDir } })],
    });
    const report = result.components.alertmanager!;
    expect(report.details?.silences).toMatchObject({
      inBackup: 4,
      created: 2,
      skippedExpired: 2,
      skippedExisting: 0,
    });
    expect(report.skipped).toBe(2);
    expect(await readFile(join(configDir, 'alertmanager.yml'), 'utf8')).toBe(
      await readFile(source.configFile, 'utf8'),
    );

    const restored = await liveSilences(target.url);
    const wanted = backedUpLive.slice(0, 2);
    expect(restored).toHaveLength(2);
    for (const [index, silence] of restored.entries()) {
      const original = wanted[index]!;
      expect(canonicalMatchers(silence)).toEqual(canonicalMatchers(original));
      expect(silence.comment).toBe(original.comment);
      expect(silence.createdBy).toBe(original.createdBy);
      expect(silence.endsAt).toBe(original.endsAt);
      expect(silence.id).not.toBe(original.id);
    }
    // Pending: startsAt kept exactly. Active: Alertmanager moves a past start to the moment of creation.
    expect(restored[1]!.status?.state).toBe('pending');
    expect(restored[1]!.startsAt).toBe(wanted[1]!.startsAt);
    expect(restored[0]!.status?.state).toBe('active');
    expect(Date.parse(restored[0]!.startsAt)).toBeGreaterThanOrEqual(Date.parse(wanted[0]!.startsAt));

    // Restoring again creates nothing: skip keeps them, fail refuses before creating anything.
    const silencesOnly = alertmanager({ url: target.url });
    const again = await restore({ storage, name: backupName, restorers: [silencesOnly], conflict: 'skip' });
    expect(again.components.alertmanager!.details?.silences).toMatchObject({
      created: 0,
      skippedExisting: 2,
    });
    await expect(restore({ storage, name: backupName, restorers: [silencesOnly] })).rejects.toMatchObject({
      code: 'BK_CONFLICT',
    });
    const overwrite = await restore({
      storage,
      name: backupName,
      restorers: [silencesOnly],
      conflict: 'overwrite',
    });
    expect(overwrite.components.alertmanager!.details?.silences).toMatchObject({
      created: 0,
      skippedExisting: 2,
    });
    expect(await liveSilences(target.url)).toHaveLength(2);

    // The config dir now holds the file: fail refuses, skip keeps a changed file, overwrite replaces it.
    const withConfig = alertmanager({ url: target.url, restore: { configDir } });
    await expect(
      restore({ storage, name: backupName, restorers: [withConfig], conflict: 'fail' }),
    ).rejects.toMatchObject({ code: 'BK_CONFLICT', message: expect.stringContaining('alertmanager.yml') });
    await writeFile(join(configDir, 'alertmanager.yml'), 'changed\n');
    await restore({ storage, name: backupName, restorers: [withConfig], conflict: 'skip' });
    expect(await readFile(join(configDir, 'alertmanager.yml'), 'utf8')).toBe('changed\n');
    await restore({ storage, name: backupName, restorers: [withConfig], conflict: 'overwrite' });
    expect(await readFile(join(configDir, 'alertmanager.yml'), 'utf8')).toBe(
      await readFile(source.configFile, 'utf8'),
    );
    expect(await liveSilences(target.url)).toHaveLength(2);
  });

  it('stores config.original from the API when no config file is given', async () => {
    const info = await alertmanager({ url: source.url }).describe({
      signal: new AbortController().signal,
      progress: () => {},
    });
    expect(info.details).toMatchObject({ configFrom: 'api', configEntry: 'config/alertmanager.yml' });
    expect(info.notCaptured?.some((line) => line.includes('<secret>'))).toBe(true);
  });

  it('fails with a ComponentError that names no header value when the server is unreachable', async () => {
    const component = alertmanager({
      url: 'http://127.0.0.1:1',
      headers: { Authorization: 'Bearer s3cret-token' },
      timeoutMs: 5_000,
    });
    const error = await component
      .describe({ signal: new AbortController().signal, progress: () => {} })
      .catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'BK_COMPONENT', retryable: true });
    expect(String((error as Error).message)).not.toContain('s3cret');
  });
});
