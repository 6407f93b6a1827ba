import { describe, expect, it } from 'vitest';
import { formatBytes } from '../src/format-bytes.ts';
import { ProgressBar } from '../src/progress-bar.ts';
import { ProgressLog } from '../src/progress-log.ts';

function fakeStream(columns = 100) {
  const writes: string[] = [];
  return { writes, isTTY: true, columns, write: (text: string) => writes.push(text) };
}

describe('formatBytes', () => {
  it('uses binary units with one decimal', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(12.3 * 1024 * 1024)).toBe('12.3 MiB');
    expect(formatBytes(5 * 1024 ** 4)).toBe('5.0 TiB');
  });
});

describe('ProgressBar', () => {
  it('shows phase, bar, percentage, bytes of total, rate and the current entry', () => {
    let now = 0;
    const stream = fakeStream();
    const bar = new ProgressBar(stream, { now: () => now, barWidth: 10 });
    bar.listener({ type: 'restore-start', backup: 'b', components: ['etc'], totalBytes: 4 * 1024 * 1024 });
    bar.listener({ type: 'component-start', component: 'etc', kind: 'files' });
    now = 1000;
    bar.listener({ type: 'bytes', component: 'etc', path: 'haproxy/haproxy.cfg', bytes: 1024 * 1024 });
    expect(bar.line()).toBe(
      'restore  [###-------]   25%  1.0 MiB / 4.0 MiB  1.0 MiB/s  etc/haproxy/haproxy.cfg',
    );
    expect(stream.writes.at(-1)).toBe(`\r\x1b[K${bar.line()}`);
    bar.finish();
    expect(stream.writes.at(-1)).toBe('\r\x1b[K');
  });

  it('shows bytes and rate without a total during a backup', () => {
    let now = 0;
    const bar = new ProgressBar(fakeStream(), { now: () => now });
    bar.listener({ type: 'backup-start', backup: 'b', components: ['etc'] });
    now = 2000;
    bar.listener({ type: 'bytes', component: 'etc', path: 'a', bytes: 4096 });
    expect(bar.line()).toBe('backup  4.0 KiB  2.0 KiB/s  etc/a');
    bar.finish();
  });

  it('redraws at most once per interval', () => {
    let now = 0;
    const stream = fakeStream();
    const bar = new ProgressBar(stream, { now: () => now, intervalMs: 100 });
    bar.listener({ type: 'verify-start', backup: 'b', totalBytes: 1000 });
    const drawn = stream.writes.length;
    for (let step = 0; step < 50; step += 1) {
      now += 1;
      bar.listener({ type: 'bytes', component: 'c', path: 'p', bytes: 10 });
    }
    expect(stream.writes.length).toBe(drawn);
    now += 100;
    bar.listener({ type: 'bytes', component: 'c', path: 'p', bytes: 10 });
    expect(stream.writes.length).toBe(drawn + 1);
    bar.finish();
  });

  it('fits the terminal by cutting the entry path from the left', () => {
    const stream = fakeStream(60);
    const bar = new ProgressBar(stream, { now: () => 0 });
    bar.listener({ type: 'backup-start', backup: 'b', components: ['c'] });
    bar.listener({ type: 'entry-start', component: 'c', path: `${'deep/'.repeat(20)}file.txt` });
    const line = bar.line();
    expect(line.length).toBeLessThanOrEqual(59);
    expect(line).toMatch(/….*file\.txt$/);
    bar.finish();
  });

  it('prints warnings on their own line', () => {
    const stream = fakeStream();
    const bar = new ProgressBar(stream, { now: () => 0 });
    bar.listener({ type: 'warning', message: 'skipped a socket', component: 'etc' });
    expect(stream.writes.join('')).toContain('bk: warning: etc: skipped a socket\n');
    bar.finish();
  });
});

describe('ProgressLog', () => {
  it('prints one line per component and a summary', () => {
    let now = 0;
    const stream = fakeStream();
    const log = new ProgressLog(stream, { now: () => now });
    log.listener({ type: 'backup-start', backup: 'backup_20261121_101500', components: ['etc'] });
    log.listener({ type: 'bytes', component: 'etc', path: 'a', bytes: 10 });
    log.listener({ type: 'component-end', component: 'etc', entries: 1, bytes: 2048 });
    now = 1500;
    log.listener({
      type: 'backup-end',
      backup: 'backup_20261121_101500',
      key: 'k',
      size: 1024,
      sha256: 'x',
      entries: 1,
    });
    expect(stream.writes).toEqual([
      'etc: 1 entry, 2.0 KiB\n',
      'backup backup_20261121_101500: 1 entry, 1.0 KiB archive, 1.5 s\n',
    ]);
  });
});
