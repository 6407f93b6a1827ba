import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, collect, gunzip, MemoryStorage, type Storage } from '@bk/core';
import { FaultyStorage } from '@bk/test-suite';
import { describe, expect, it } from 'vitest';
import { type ArchiverClock, DrArchiver, listArchivedFiles } from '../src/archiver/index.ts';
import { measurementOf, timestampMillisOf } from '../src/archiver/line-scan.ts';

/** A clock whose time moves only with advance(); due timers run in time order. */
class FakeClock implements ArchiverClock {
  private time: number;
  private readonly timers = new Map<number, { at: number; callback: () => void }>();
  private nextId = 1;
  constructor(start: number) {
    this.time = start;
  }
  now(): number {
    return this.time;
  }
  setTimeout(callback: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.set(id, { at: this.time + ms, callback });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }
  get pending(): number {
    return this.timers.size;
  }
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      const due = [...this.timers]
        .filter(([, timer]) => timer.at <= end)
        .sort(([, a], [, b]) => a.at - b.at)[0];
      if (due === undefined) break;
      this.timers.delete(due[0]);
      this.time = Math.max(this.time, due[1].at);
      due[1].callback();
    }
    this.time = end;
  }
}

const T0 = Date.parse('2026-11-21T23:59:00Z');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

async function keys(storage: Storage, prefix = ''): Promise<string[]> {
  const result: string[] = [];
  for await (const object of storage.list(prefix)) result.push(object.key);
  return result.sort();
}

async function text(storage: Storage, key: string): Promise<string> {
  return new TextDecoder().decode(await collect(gunzip(await storage.get(key))));
}

/** Point lines (not annotations) of every stored file. */
async function storedLines(storage: Storage): Promise<string[]> {
  const lines: string[] = [];
  for (const key of await keys(storage)) {
    lines.push(
      ...(await text(storage, key)).split('\n').filter((line) => line !== '' && !line.startsWith('#')),
    );
  }
  return lines;
}

describe('DrArchiver layout and rotation (memory storage, fake clock)', () => {
  it('stores instance/db/rp/YYYYMMDD/<uuid v4>.gz with the influx -import header, flushed on close', async () => {
    const storage = new MemoryStorage();
    const clock = new FakeClock(T0);
    const archiver = new DrArchiver({ spool: false, storage, instance: 'prod/influx-1', clock });
    await archiver.write('metrics', 'autogen', 'cpu,host=a value=1 1795305540000000000');
    await archiver.write('metrics', 'autogen', ['cpu,host=b value=2 1795305541000000000', '']);
    await archiver.write('other', 'week', new TextEncoder().encode('mem free=3i\r\nmem free=4i\n\n'));
    expect(archiver.stats()).toMatchObject({ linesAccepted: 4, openFiles: 2, filesUploaded: 0 });
    expect(await keys(storage)).toEqual([]);
    await archiver.close();
    expect(clock.pending).toBe(0);
    const stored = await keys(storage);
    expect(stored).toHaveLength(2);
    const [metrics, other] = stored as [string, string];
    expect(metrics).toMatch(/^prod\/influx-1\/metrics\/autogen\/20261121\/[^/]+\.gz$/);
    expect(metrics.split('/')[5]?.slice(0, -3)).toMatch(UUID);
    expect(other).toMatch(/^prod\/influx-1\/other\/week\/20261121\/[^/]+\.gz$/);
    expect(await text(storage, metrics)).toBe(
      '# DML\n# CONTEXT-DATABASE: metrics\n# CONTEXT-RETENTION-POLICY: autogen\n' +
        'cpu,host=a value=1 1795305540000000000\ncpu,host=b value=2 1795305541000000000\n',
    );
    expect(await text(storage, other)).toBe(
      '# DML\n# CONTEXT-DATABASE: other\n# CONTEXT-RETENTION-POLICY: week\nmem free=3i\nmem free=4i\n',
    );
    expect(archiver.stats()).toMatchObject({
      filesUploaded: 2,
      linesUploaded: 4,
      pendingFiles: 0,
      bufferedBytes: 0,
    });
    await expect(archiver.write('metrics', 'autogen', 'cpu value=1')).rejects.toBeInstanceOf(ConfigError);
  });

  it('names files by arrival day (UTC) by default, by the point timestamp with dayOf: timestamp', async () => {
    const storage = new MemoryStorage();
    const clock = new FakeClock(T0);
    const archiver = new DrArchiver({ spool: false, storage, instance: 'i', clock, idFactory: () => 'x' });
    await archiver.write('db', 'rp', 'cpu value=1 0');
    clock.advance(60_000); // 2026-11-22T00:00:00Z; the first file ages out now
    await archiver.write('db', 'rp', 'cpu value=2 0');
    await archiver.close();
    expect(await keys(storage)).toEqual(['i/db/rp/20261121/x.gz', 'i/db/rp/20261122/x.gz']);

    const byTime = new MemoryStorage();
    let id = 0;
    const stamped = new DrArchiver({
      spool: false,
      storage: byTime,
      instance: 'i',
      clock: new FakeClock(T0),
      dayOf: 'timestamp',
      precision: 's',
      idFactory: () => `f${++id}`,
    });
    await stamped.write('db', 'rp', [
      'cpu,host=a\\ b note="a b 1",v=1 1795132800', // 2026-11-20
      'cpu note="x" 1795305600', // 2026-11-22
      'cpu v=3', // no timestamp: arrival day
    ]);
    await stamped.close();
    expect(await keys(byTime)).toEqual([
      'i/db/rp/20261120/f1.gz',
      'i/db/rp/20261121/f2.gz',
      'i/db/rp/20261122/f3.gz',
    ]);
  });

  it('rotates by size before a file would exceed maxFileBytes, and by age', async () => {
    const storage = new MemoryStorage();
    const clock = new FakeClock(T0 - 3_600_000);
    const events: string[] = [];
    const archiver = new DrArchiver({
      spool: false,
      storage,
      instance: 'i',
      clock,
      maxFileBytes: 200,
      maxFileAgeMs: 10_000,
      onEvent: (event) => {
        if (event.type === 'rotated') events.push(`${event.reason}:${event.lines}`);
      },
    });
    const header = '# DML\n# CONTEXT-DATABASE: db\n# CONTEXT-RETENTION-POLICY: rp\n'.length; // 57
    const line = 'm v=1234567890 1'; // 17 bytes with its newline
    for (let index = 0; index < 20; index += 1) await archiver.write('db', 'rp', line);
    // (200 - 57) / 17 = 8 lines fit a file.
    expect(events).toEqual(['size:8', 'size:8']);
    await waitFor(() => archiver.stats().filesUploaded === 2, 'two uploads');
    for (const key of await keys(storage)) {
      const body = await text(storage, key);
      expect(body.length).toBe(header + 8 * 17);
      expect(body.length).toBeLessThanOrEqual(200);
    }
    clock.advance(9_999);
    expect(archiver.stats().openFiles).toBe(1);
    clock.advance(1);
    expect(events).toEqual(['size:8', 'size:8', 'age:4']);
    await waitFor(() => archiver.stats().filesUploaded === 3, 'the aged file');
    expect(archiver.stats()).toMatchObject({
      openFiles: 0,
      pendingFiles: 0,
      linesUploaded: 20,
      bufferedBytes: 0,
    });
    expect(clock.pending).toBe(0);
    expect(await storedLines(storage)).toHaveLength(20);
    await archiver.close();
  });

  it('refuses unsafe names and lines, keeping nothing of a refused call', async () => {
    const storage = new MemoryStorage();
    expect(() => new DrArchiver({ spool: false, storage, instance: '' })).toThrow(ConfigError);
    expect(() => new DrArchiver({ spool: false, storage, instance: 'a//b' })).toThrow(ConfigError);
    expect(() => new DrArchiver({ spool: false, storage, instance: '../x' })).toThrow(ConfigError);
    const archiver = new DrArchiver({ spool: false, storage, instance: 'i', clock: new FakeClock(T0) });
    for (const [db, rp] of [
      ['', 'rp'],
      ['db', ''],
      ['..', 'rp'],
      ['.', 'rp'],
      ['a/b', 'rp'],
      ['db', 'a\\b'],
      ['db\n', 'rp'],
      [' db', 'rp'],
    ] as const) {
      await expect(archiver.write(db, rp, 'm v=1')).rejects.toBeInstanceOf(ConfigError);
    }
    await expect(archiver.write('db', 'rp', ['m v=1', 'm v=2\nm v=3'])).rejects.toThrow(/line break/);
    await expect(archiver.write('db', 'rp', 'm v=1\r')).rejects.toThrow(/line break/);
    await expect(archiver.write('db', 'rp', ['m v=1', '# DDL'])).rejects.toThrow(/starts with "#"/);
    await expect(archiver.write('db', 'rp', new TextEncoder().encode('m v=1\n# DDL\n'))).rejects.toThrow(
      /"#"/,
    );
    await expect(archiver.write('db', 'rp', new Uint8Array([0x6d, 0xff]))).rejects.toThrow(/UTF-8/);
    expect(archiver.stats().linesAccepted).toBe(0);
    await archiver.close();
    expect(await keys(storage)).toEqual([]);
  });

  it('reads measurements and timestamps past escapes and quoted strings', () => {
    expect(measurementOf('cpu\\ load,host=a v=1 5')).toBe('cpu load');
    expect(measurementOf('a\\,b v=1')).toBe('a,b');
    expect(timestampMillisOf('m s="x y z 7" 1795305600', 's')).toBe(1_795_305_600_000);
    expect(timestampMillisOf('m s="x \\" 9"', 's')).toBeUndefined();
    expect(timestampMillisOf('m,t=a\\ b v=1 1795305600123456789', 'ns')).toBe(1_795_305_600_123);
    expect(timestampMillisOf('m v=1', 'ns')).toBeUndefined();
  });
});

describe('DrArchiver while the storage is down', () => {
  it('retries with backoff, applies back-pressure past maxBufferedBytes, then uploads every line', async () => {
    const inner = new MemoryStorage();
    let down = true;
    const storage = new FaultyStorage(inner, { failOn: (method) => method === 'put' && down });
    const retries: number[] = [];
    const archiver = new DrArchiver({
      spool: false,
      storage,
      instance: 'i',
      maxFileBytes: 4_000,
      maxBufferedBytes: 20_000,
      retryBaseMs: 5,
      retryMaxMs: 20,
      onEvent: (event) => {
        if (event.type === 'retry') retries.push(event.delayMs);
      },
    });
    let written = 0;
    let resolved = 0;
    const writes: Promise<void>[] = [];
    let blocked = false;
    for (let batch = 0; batch < 500 && !blocked; batch += 1) {
      const lines: string[] = [];
      for (let index = 0; index < 50; index += 1) {
        lines.push(`m,host=h${batch} v=${Math.random()},id="${crypto.randomUUID()}" ${batch * 1000 + index}`);
      }
      written += lines.length;
      const write = archiver.write('db', 'rp', lines).then(() => {
        resolved += lines.length;
      });
      writes.push(write);
      blocked = (await Promise.race([write.then(() => false), sleep(100).then(() => true)])) === true;
    }
    expect(blocked).toBe(true);
    const stalled = archiver.stats();
    expect(stalled.bufferedBytes).toBeGreaterThan(20_000);
    expect(stalled.waitingWrites).toBe(1);
    expect(stalled.filesUploaded).toBe(0);
    expect(resolved).toBeLessThan(written);
    // More writes queue behind the blocked one, in order.
    const late = archiver.write('db', 'rp', 'late v=1 1');
    written += 1;
    await sleep(50);
    expect(archiver.stats().waitingWrites).toBe(2);
    await waitFor(() => archiver.stats().retries > 5, 'retries');

    down = false;
    await Promise.all([...writes, late]);
    await archiver.close();
    const stats = archiver.stats();
    expect(stats).toMatchObject({ pendingFiles: 0, openFiles: 0, bufferedBytes: 0, waitingWrites: 0 });
    expect(stats.linesAccepted).toBe(written);
    expect(stats.linesUploaded).toBe(written);
    expect(stats.retries).toBe(retries.length);
    for (const delay of retries) expect(delay).toBeLessThanOrEqual(20);
    const lines = await storedLines(inner);
    expect(lines).toHaveLength(written);
    expect(new Set(lines).size).toBe(written);
    // Write-only: the write path never lists, reads or deletes.
    expect(new Set(storage.calls.map((call) => call.method))).toEqual(new Set(['put']));
    const listed = await listArchivedFiles({ storage: inner, instance: 'i' });
    expect(listed.files.length).toBe(stats.filesUploaded);
  });

  it('treats "already exists" on a retry as stored and takes a new name on a first-attempt collision', async () => {
    const inner = new MemoryStorage();
    await inner.put('i/db/rp/20261121/taken.gz', new Uint8Array([1]));
    const names = ['taken', 'fresh'];
    const archiver = new DrArchiver({
      spool: false,
      storage: inner,
      instance: 'i',
      clock: new FakeClock(T0),
      idFactory: () => names.shift() ?? 'later',
    });
    await archiver.write('db', 'rp', 'm v=1 1');
    await archiver.close();
    expect(await keys(inner)).toEqual(['i/db/rp/20261121/fresh.gz', 'i/db/rp/20261121/taken.gz']);

    // A put that stored the object but reported a failure: the retry's AlreadyExists means done.
    const memory = new MemoryStorage();
    let calls = 0;
    const flaky: Storage = Object.create(memory) as Storage;
    flaky.put = async (key, body, options) => {
      calls += 1;
      const info = await memory.put(key, body, options);
      if (calls === 1) throw new Error('connection reset after upload');
      return info;
    };
    const again = new DrArchiver({
      spool: false,
      storage: flaky,
      instance: 'i',
      retryBaseMs: 1,
      idFactory: () => 'once',
    });
    await again.write('db', 'rp', 'm v=1 1');
    await again.close();
    expect(calls).toBe(2);
    expect(again.stats()).toMatchObject({ filesUploaded: 1, retries: 1 });
    expect(await storedLines(memory)).toEqual(['m v=1 1']);
  });
});
