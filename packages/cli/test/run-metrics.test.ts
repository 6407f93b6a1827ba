import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type RunOutcome, writeMetricsFile } from '../src/run-metrics.ts';
import { removeTempDirs, tempDir } from './bk-process.ts';

afterAll(removeTempDirs);

function outcome(fields: Partial<RunOutcome>): RunOutcome {
  return {
    command: 'backup',
    target: 's3://bucket/nightly',
    endedAt: 1_800_000_000_000,
    durationSeconds: 12.5,
    components: new Map(),
    ...fields,
  };
}

describe('writeMetricsFile', () => {
  it('writes the exposition format with HELP and TYPE, escaping label values', async () => {
    const file = join(await tempDir('metrics-unit'), 'bk.prom');
    await writeMetricsFile(
      file,
      outcome({
        target: 'file:///backups/a "quoted"\\dir',
        archiveSize: 2048,
        entries: 3,
        bytes: 4096,
        components: new Map([['etc', { entries: 3, bytes: 4096 }]]),
      }),
    );
    const text = await readFile(file, 'utf8');
    const labels = 'command="backup",target="file:///backups/a \\"quoted\\"\\\\dir"';
    expect(text).toContain(
      `# HELP bk_archive_size_bytes Archive size written by the last successful backup.\n# TYPE bk_archive_size_bytes gauge\nbk_archive_size_bytes{${labels}} 2048\n`,
    );
    expect(text).toContain(`bk_component_bytes{${labels},component="etc"} 4096\n`);
    expect(text).toContain(`bk_last_success_timestamp_seconds{${labels}} 1800000000\n`);
    expect(text).toContain(`bk_last_run_duration_seconds{${labels}} 12.5\n`);
  });

  it('counts failures by code, keeps the last success, drops an old success on a new one, keeps other groups', async () => {
    const dir = await tempDir('metrics-merge');
    const file = join(dir, 'bk.prom');
    await writeFile(file, 'some_foreign_metric 1\n');
    await writeMetricsFile(file, outcome({ command: 'prune' }));
    await writeMetricsFile(
      file,
      outcome({ entries: 5, components: new Map([['old', { entries: 5, bytes: 1 }]]) }),
    );
    await writeMetricsFile(file, outcome({ endedAt: 1_800_000_100_000, errorCode: 'BK_STORAGE' }));
    await writeMetricsFile(file, outcome({ endedAt: 1_800_000_200_000, errorCode: 'BK_STORAGE' }));
    await writeMetricsFile(file, outcome({ endedAt: 1_800_000_300_000, errorCode: 'BK_COMPONENT' }));
    let text = await readFile(file, 'utf8');
    const group = 'command="backup",target="s3://bucket/nightly"';
    expect(text).toContain(`bk_failures_total{${group},code="BK_STORAGE"} 2\n`);
    expect(text).toContain(`bk_failures_total{${group},code="BK_COMPONENT"} 1\n`);
    expect(text).toContain(`bk_last_run_success{${group}} 0\n`);
    expect(text).toContain(`bk_last_success_timestamp_seconds{${group}} 1800000000\n`);
    expect(text).toContain(`bk_component_entries{${group},component="old"} 5\n`);
    expect(text).toContain('bk_last_run_success{command="prune",target="s3://bucket/nightly"} 1\n');
    expect(text).not.toContain('some_foreign_metric');

    await writeMetricsFile(
      file,
      outcome({
        endedAt: 1_800_000_400_000,
        entries: 7,
        components: new Map([['new', { entries: 7, bytes: 2 }]]),
      }),
    );
    text = await readFile(file, 'utf8');
    expect(text).not.toContain('component="old"');
    expect(text).toContain(`bk_component_entries{${group},component="new"} 7\n`);
    expect(text).toContain(`bk_failures_total{${group},code="BK_STORAGE"} 2\n`);
    expect(text).toContain(`bk_last_success_timestamp_seconds{${group}} 1800000400\n`);
    expect(await readdir(dir)).toEqual(['bk.prom']);
  });
});
