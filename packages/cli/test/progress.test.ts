import { afterEach, describe, expect, it, vi } from 'vitest';
import { formatBytes } from '../src/format-bytes.ts';
import { formatDuration } from '../src/format-duration.ts';
import { JsonEventStream } from '../src/json-event-stream.ts';
import { ProgressBar } from '../src/progress-bar.ts';
import { ProgressLog } from '../src/progress-log.ts';

afterEach(() => {
  vi.useRealTimers();
});

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

describe('formatDuration', () => {
  it('rounds to the second and switches to minutes and hours', () => {
    expect(formatDuration(0)).toBe('0 s');
    expect(formatDuration(4_400)).toBe('4 s');
    expect(formatDuration(125_000)).toBe('2 min 05 s');
    expect(formatDuration(3_720_000)).toBe('1 h 02 min');
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
      'restore  [###-------]   25%  1.0 MiB / 4.0 MiB  1.0 MiB/s  ETA 3 s  etc/haproxy/haproxy.cfg',
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

describe('ProgressLog lines for logs and pipes', () => {
  it('writes a line every interval with component, bytes and rate, and total, percentage and ETA when known', () => {
    vi.useFakeTimers();
    const stream = fakeStream();
    const log = new ProgressLog(stream, { intervalMs: 5000, now: () => Date.now() });
    log.listener({ type: 'restore-start', backup: 'b', components: ['pg'], totalBytes: 100 * 1024 * 1024 });
    log.listener({ type: 'component-start', component: 'pg', kind: 'postgres' });
    log.listener({ type: 'bytes', component: 'pg', path: 'dump', bytes: 10 * 1024 * 1024 });
    vi.advanceTimersByTime(5000);
    log.listener({ type: 'bytes', component: 'pg', path: 'dump', bytes: 40 * 1024 * 1024 });
    vi.advanceTimersByTime(5000);
    expect(stream.writes).toEqual([
      'restore: pg, 10.0 MiB of 100.0 MiB (10%), 2.0 MiB/s, ETA 45 s\n',
      'restore: pg, 50.0 MiB of 100.0 MiB (50%), 8.0 MiB/s, ETA 6 s\n',
    ]);
    log.listener({ type: 'restore-end', backup: 'b', entries: 1, bytes: 50 * 1024 * 1024 });
    vi.advanceTimersByTime(60_000);
    expect(stream.writes).toHaveLength(3);
    expect(stream.writes.at(-1)).toBe('restore b: 1 entry, 50.0 MiB, 10.0 s\n');
  });

  it('keeps writing lines through a silent stretch, and stops on finish', () => {
    vi.useFakeTimers();
    const stream = fakeStream();
    const log = new ProgressLog(stream, { intervalMs: 1000, now: () => Date.now() });
    log.listener({ type: 'backup-start', backup: 'b', components: ['etcd'] });
    log.listener({ type: 'component-start', component: 'etcd', kind: 'etcd' });
    vi.advanceTimersByTime(3000);
    expect(stream.writes).toEqual(Array(3).fill('backup: etcd, 0 B, 0 B/s\n'));
    log.finish();
    vi.advanceTimersByTime(3000);
    expect(stream.writes).toHaveLength(3);
  });

  it('writes no periodic line with an interval of 0', () => {
    vi.useFakeTimers();
    const stream = fakeStream();
    const log = new ProgressLog(stream, { intervalMs: 0 });
    log.listener({ type: 'backup-start', backup: 'b', components: ['etcd'] });
    vi.advanceTimersByTime(60_000);
    expect(stream.writes).toEqual([]);
    log.finish();
  });
});

describe('JsonEventStream', () => {
  it('writes one JSON object per line: run events, periodic progress, the result; entries are summed', () => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2026-11-21T10:15:00Z'));
    const stream = fakeStream();
    const events = new JsonEventStream(stream, { intervalMs: 2000, now: () => Date.now() });
    events.listener({ type: 'backup-start', backup: 'backup_20261121_101500', components: ['etc'] });
    events.listener({ type: 'component-start', component: 'etc', kind: 'files' });
    for (let index = 0; index < 100; index += 1) {
      events.listener({ type: 'entry-start', component: 'etc', path: `f${index}` });
      events.listener({ type: 'bytes', component: 'etc', path: `f${index}`, bytes: 1024 });
      events.listener({ type: 'entry-end', component: 'etc', path: `f${index}`, size: 1024 });
      events.listener({ type: 'archive-bytes', bytes: 10 });
    }
    vi.advanceTimersByTime(2000);
    events.listener({ type: 'warning', component: 'etc', message: 'skipped a socket' });
    events.listener({ type: 'component-end', component: 'etc', entries: 100, bytes: 102_400 });
    events.listener({
      type: 'backup-end',
      backup: 'backup_20261121_101500',
      key: 'backup_20261121_101500.tar.gz',
      size: 2000,
      sha256: 'ab',
      entries: 100,
    });
    events.finish();
    events.write('result', { result: { name: 'backup_20261121_101500' } });
    const lines = stream.writes.join('').split('\n');
    expect(lines.pop()).toBe('');
    const parsed = lines.map((line) => JSON.parse(line));
    expect(parsed.map((event) => event.type)).toEqual([
      'backup-start',
      'component-start',
      'progress',
      'warning',
      'component-end',
      'backup-end',
      'result',
    ]);
    expect(parsed[0]).toEqual({
      type: 'backup-start',
      time: '2026-11-21T10:15:00.000Z',
      backup: 'backup_20261121_101500',
      components: ['etc'],
    });
    expect(parsed[2]).toEqual({
      type: 'progress',
      time: '2026-11-21T10:15:02.000Z',
      phase: 'backup',
      component: 'etc',
      bytes: 102_400,
      bytesPerSecond: 51_200,
    });
  });

  it('gives totalBytes and etaSeconds when the total is known, and scrubs every line', () => {
    vi.useFakeTimers();
    const stream = fakeStream();
    const events = new JsonEventStream(stream, {
      intervalMs: 1000,
      now: () => Date.now(),
      scrub: (line) => line.replaceAll('hunter2', '***'),
    });
    events.listener({ type: 'verify-start', backup: 'b', totalBytes: 3000 });
    events.listener({ type: 'bytes', component: 'c', path: 'p', bytes: 1000 });
    vi.advanceTimersByTime(1000);
    events.listener({ type: 'warning', message: 'retrying https://u:hunter2@host/' });
    events.finish();
    const [, progress, warning] = stream.writes.map((line) => JSON.parse(line));
    expect(progress).toMatchObject({ phase: 'verify', bytes: 1000, totalBytes: 3000, etaSeconds: 2 });
    expect(warning.message).toBe('retrying https://u:***@host/');
  });
});
