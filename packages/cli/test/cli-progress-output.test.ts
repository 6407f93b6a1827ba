import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, removeTempDirs, runBk, tempDir } from './bk-process.ts';

beforeAll(assertBuilt);
afterAll(removeTempDirs);

async function dataDir(): Promise<string> {
  const data = await tempDir('progress-data');
  // Random bytes do not compress: one stream at level 9 takes long enough for several lines.
  await writeFile(join(data, 'big.bin'), randomBytes(24 * 1024 * 1024));
  await writeFile(join(data, 'small.txt'), 'hello\n');
  return data;
}

describe('progress without a terminal (end to end)', () => {
  it('writes a progress line every --progress-interval on stderr, then the summary', async () => {
    const data = await dataDir();
    const target = await tempDir('progress-target');
    const run = await runBk([
      'backup',
      '--target',
      `file://${target}`,
      '--path',
      data,
      '--workers',
      '0',
      '--level',
      '9',
      '--progress-interval',
      '100ms',
    ]);
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stderr.trim().split('\n');
    const progress = lines.filter((line) => line.startsWith('backup: files, '));
    expect(progress.length, run.stderr).toBeGreaterThanOrEqual(2);
    for (const line of progress)
      expect(line).toMatch(/^backup: files, [\d.]+ [KMG]?i?B, [\d.]+ [KMG]?i?B\/s$/);
    expect(lines.at(-1)).toMatch(/^backup backup_\d{8}_\d{6}: 3 entries, .* archive, [\d.]+ s$/);
    expect(run.stderr).not.toContain('\x1b');
    // Restore knows its total: percentage of it.
    const restored = await runBk([
      'restore',
      '--target',
      `file://${target}`,
      '--to',
      await tempDir('progress-to'),
      '--progress-interval',
      '0s',
    ]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.stderr).not.toMatch(/^restore: /m);
  });

  it('--json-events streams NDJSON on stdout: steps, progress, and the result last', async () => {
    const data = await dataDir();
    const target = await tempDir('events-target');
    const run = await runBk([
      'backup',
      '--json-events',
      '--target',
      `file://${target}`,
      '--path',
      data,
      '--workers',
      '0',
      '--level',
      '9',
      '--progress-interval',
      '100ms',
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toBe('');
    const events = run.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { type: string; time: string; [field: string]: unknown });
    for (const event of events) expect(Number.isNaN(Date.parse(event.time))).toBe(false);
    const types = events.map((event) => event.type);
    expect(types[0]).toBe('backup-start');
    // The archive is still being written after the component ends: progress may come between.
    expect(types.filter((type) => type !== 'progress').slice(-3)).toEqual([
      'component-end',
      'backup-end',
      'result',
    ]);
    expect(types.filter((type) => type === 'progress').length).toBeGreaterThanOrEqual(2);
    expect(events.find((event) => event.type === 'progress')).toMatchObject({
      phase: 'backup',
      component: 'files',
    });
    const result = events.at(-1)!.result as { name: string; components: { entries: number }[] };
    expect(result.name).toMatch(/^backup_\d{8}_\d{6}$/);
    expect(result.components[0]!.entries).toBe(3);

    const verified = await runBk(['verify', '--json-events', '--target', `file://${target}`]);
    expect(verified.code, verified.stderr).toBe(0);
    const verifyEvents = verified.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { type: string; totalBytes?: number });
    expect(verifyEvents[0]).toMatchObject({ type: 'verify-start', totalBytes: 24 * 1024 * 1024 + 6 });
    expect(verifyEvents.at(-1)!.type).toBe('result');
  });

  it('--json-events ends in an error event with the code, without the credentials', async () => {
    const run = await runBk([
      'ls',
      '--json-events',
      '--target',
      'file://user:hunter22@localhost/var/backups',
    ]);
    expect(run.code, run.stderr).toBe(2);
    const events = run.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: 'error', error: { code: 'BK_CONFIG' } });
    expect(run.stdout + run.stderr).not.toContain('hunter22');
  });

  it('refuses --json with --json-events, and reports a bad flag as an error event', async () => {
    const both = await runBk(['ls', '--json', '--json-events', '--target', '/tmp']);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('either --json');
    const bad = await runBk(['ls', '--json-events', '--progress-interval', 'often']);
    expect(bad.code).toBe(2);
    expect(JSON.parse(bad.stdout)).toMatchObject({ type: 'error', error: { code: 'BK_CONFIG' } });
  });
});
