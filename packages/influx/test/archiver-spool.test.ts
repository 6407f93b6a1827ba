import { copyFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BkError, ConfigError, MemoryStorage, type Storage, StorageError } from '@bk/core';
import { FaultyStorage } from '@bk/test-suite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ArchiverEvent, DrArchiver } from '../src/archiver/index.ts';
import { decodeSegment } from '../src/archiver/spool-file.ts';
import { stored } from './archiver-kill.ts';

let sandbox: string;
let counter = 0;

beforeAll(async () => {
  sandbox = await mkdtemp(join(tmpdir(), 'bk-dr-spool-'));
});

afterAll(async () => {
  if (sandbox !== undefined) await rm(sandbox, { recursive: true, force: true });
});

function scratch(): string {
  counter += 1;
  return join(sandbox, `case-${counter}`);
}

async function segmentsIn(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.endsWith('.spool')).sort();
}

describe('DrArchiver with a spool', () => {
  it('requires an explicit choice between a spool and memory', () => {
    const storage = new MemoryStorage();
    expect(() => new DrArchiver({ storage, instance: 'i' } as never)).toThrow(/spool/);
    expect(() => new DrArchiver({ storage, instance: 'i', spool: { dir: '' } })).toThrow(ConfigError);
  });

  it('has each line on disk, checksummed, when write() resolves, and a restart uploads it once', async () => {
    const dir = scratch();
    const storage = new MemoryStorage();
    const first = new DrArchiver({ storage, instance: 'i', spool: { dir }, maxFileAgeMs: 60_000 });
    await Promise.all([
      first.write('db', 'rp', ['a v=1 1', 'a v=2 2']),
      first.write('db', 'rp2', 'b v=1 1'),
      first.write('other', 'rp', 'c v=1 1'),
    ]);
    // Nothing uploaded yet (the segment is open), but the lines are on disk.
    const [segment] = await segmentsIn(dir);
    expect(segment).toBeDefined();
    const { records, droppedBytes } = decodeSegment(await readFile(join(dir, segment as string)));
    expect(droppedBytes).toBe(0);
    expect(records.flatMap((record) => record.lines).sort()).toEqual([
      'a v=1 1',
      'a v=2 2',
      'b v=1 1',
      'c v=1 1',
    ]);
    expect((await stored(storage, 'i')).length).toBe(0);

    // As after a crash: the first archiver is never closed. A second one on the same spool
    // uploads what it holds.
    const events: ArchiverEvent[] = [];
    const second = new DrArchiver({
      storage,
      instance: 'i',
      spool: { dir },
      onEvent: (event) => events.push(event),
    });
    await second.close();
    expect(events.some((event) => event.type === 'recovered')).toBe(true);
    const lines = await stored(storage, 'i');
    expect(lines.map(({ line }) => line).sort()).toEqual(['a v=1 1', 'a v=2 2', 'b v=1 1', 'c v=1 1']);
    // One object per database, retention policy and day, all named after the segment.
    const id = (segment as string).slice(13, -'.spool'.length);
    expect(new Set(lines.map(({ key }) => key.split('/').pop()))).toEqual(new Set([`${id}.gz`]));
    expect(await segmentsIn(dir)).toEqual([]);
    await first.close().catch(() => {});
  });

  it('drops a torn tail record and keeps every whole one', async () => {
    const dir = scratch();
    const storage = new MemoryStorage();
    const first = new DrArchiver({ storage, instance: 'i', spool: { dir } });
    await first.write('db', 'rp', ['m v=1 1', 'm v=2 2']);
    await first.write('db', 'rp', 'm v=3 3');
    const [segment] = await segmentsIn(dir);
    const path = join(dir, segment as string);
    const whole = await readFile(path);
    // A crash mid-append: the header of a next record and half its payload.
    const torn = Buffer.alloc(20);
    torn.writeUInt32LE(200, 0);
    await writeFile(path, Buffer.concat([whole, torn]));
    const events: ArchiverEvent[] = [];
    const second = new DrArchiver({
      storage,
      instance: 'i',
      spool: { dir },
      onEvent: (event) => events.push(event),
    });
    await second.close();
    expect(events).toContainEqual({ type: 'torn-tail', segment: path, droppedBytes: 20 });
    expect((await stored(storage, 'i')).map(({ line }) => line)).toEqual(['m v=1 1', 'm v=2 2', 'm v=3 3']);
    // A corrupted record (a flipped byte) ends the segment as well.
    const flipped = Buffer.from(whole);
    flipped[flipped.length - 2] ^= 0xff;
    expect(decodeSegment(flipped).records.flatMap((record) => record.lines)).toEqual(['m v=1 1', 'm v=2 2']);
    await first.close().catch(() => {});
  });

  it('uploads a segment again after a crash between upload and deletion into the same objects', async () => {
    const dir = scratch();
    const storage = new MemoryStorage();
    const first = new DrArchiver({ storage, instance: 'i', spool: { dir } });
    await first.write('db', 'rp', ['m v=1 1', 'm v=2 2']);
    await first.write('db2', 'rp', 'n v=1 1');
    const [segment] = await segmentsIn(dir);
    await copyFile(join(dir, segment as string), join(sandbox, 'kept.spool'));
    await first.close();
    const before = (await stored(storage, 'i')).map(({ key, line }) => `${key} ${line}`).sort();
    expect(before).toHaveLength(3);
    // The segment comes back, as if the process died before it deleted it.
    await copyFile(join(sandbox, 'kept.spool'), join(dir, segment as string));
    const second = new DrArchiver({ storage, instance: 'i', spool: { dir } });
    await second.close();
    expect((await stored(storage, 'i')).map(({ key, line }) => `${key} ${line}`).sort()).toEqual(before);
    expect(await segmentsIn(dir)).toEqual([]);
  });

  it('shares one fsync among concurrent writes (group commit) and rotates by size', async () => {
    const dir = scratch();
    const storage = new MemoryStorage();
    const events: ArchiverEvent[] = [];
    const archiver = new DrArchiver({
      storage,
      instance: 'i',
      spool: { dir },
      maxFileBytes: 4_000,
      onEvent: (event) => events.push(event),
    });
    const writes: Promise<void>[] = [];
    for (let index = 0; index < 400; index += 1)
      writes.push(archiver.write('db', 'rp', `m v=${index}i ${index}`));
    await Promise.all(writes);
    expect(archiver.stats().spoolCommits).toBeLessThan(100);
    await archiver.close();
    const rotated = events.filter((event) => event.type === 'rotated');
    expect(rotated.length).toBeGreaterThan(2);
    expect(
      rotated.filter((event) => event.type === 'rotated' && event.reason === 'size').length,
    ).toBeGreaterThan(1);
    const lines = (await stored(storage, 'i')).map(({ line }) => line);
    expect(lines).toHaveLength(400);
    expect(new Set(lines).size).toBe(400);
  });

  it('holds write() back while the spool is full and the storage down, then uploads everything', async () => {
    const dir = scratch();
    const inner = new MemoryStorage();
    let down = true;
    const storage = new FaultyStorage(inner, { failOn: (method) => method === 'put' && down });
    const archiver = new DrArchiver({
      storage,
      instance: 'i',
      spool: { dir, maxBytes: 8_000 },
      maxFileBytes: 2_000,
      retryBaseMs: 5,
      retryMaxMs: 20,
    });
    let written = 0;
    let blocked = false;
    const writes: Promise<void>[] = [];
    for (let batch = 0; batch < 200 && !blocked; batch += 1) {
      const lines = Array.from(
        { length: 10 },
        (_, index) => `m,b=${batch} v=${index}i ${batch * 100 + index}`,
      );
      written += lines.length;
      const write = archiver.write('db', 'rp', lines);
      writes.push(write);
      blocked = (await Promise.race([write.then(() => false), sleep(200).then(() => true)])) === true;
    }
    expect(blocked).toBe(true);
    expect(archiver.stats().spooledBytes).toBeGreaterThan(8_000);
    expect(archiver.stats().waitingWrites).toBe(1);
    down = false;
    await Promise.all(writes);
    await archiver.close();
    expect(archiver.stats()).toMatchObject({
      linesAccepted: written,
      linesUploaded: written,
      spooledBytes: 0,
    });
    expect(await stored(inner, 'i')).toHaveLength(written);
  });

  it('stops uploading when close() gives up waiting, and leaves the segment for the next start', async () => {
    const dir = scratch();
    const inner = new MemoryStorage();
    let puts = 0;
    const storage = new FaultyStorage(inner, {
      failOn: (method) => {
        if (method === 'put') puts += 1;
        return method === 'put';
      },
    });
    const archiver = new DrArchiver({
      storage,
      instance: 'i',
      spool: { dir },
      retryBaseMs: 2,
      retryMaxMs: 5,
    });
    await archiver.write('db', 'rp', 'm v=1 1');
    await expect(archiver.close({ signal: AbortSignal.timeout(100) })).rejects.toMatchObject({
      code: 'BK_ABORTED',
    });
    const after = puts;
    await sleep(100);
    expect(puts).toBe(after);
    expect(await segmentsIn(dir)).toHaveLength(1);
    const next = new DrArchiver({ storage: inner, instance: 'i', spool: { dir } });
    await next.close();
    expect((await stored(inner, 'i')).map(({ line }) => line)).toEqual(['m v=1 1']);
  });

  it('refuses a spool another live process holds', async () => {
    const dir = scratch();
    const first = new DrArchiver({ storage: new MemoryStorage(), instance: 'i', spool: { dir } });
    await first.flush();
    await first.close();
    await writeFile(join(dir, 'lock'), `${process.ppid}\n`);
    const second = new DrArchiver({ storage: new MemoryStorage(), instance: 'i', spool: { dir } });
    await expect(second.write('db', 'rp', 'm v=1 1')).rejects.toThrow(/in use by process/);
    await second.close().catch(() => {});
    await rm(join(dir, 'lock'));
  });
});

describe('DrArchiver with credentials that may not write', () => {
  const denied = () => {
    const inner = new MemoryStorage();
    let calls = 0;
    const storage: Storage = Object.create(inner) as Storage;
    storage.put = async () => {
      calls += 1;
      throw new StorageError('Could not store "x": HTTP 403 (AccessDenied).', {
        cause: Object.assign(new Error('Forbidden'), { status: 403 }),
      });
    };
    return { storage, inner, calls: () => calls };
  };

  it('stops at the first 403 with a StorageError, close() settles, and the spool keeps the lines', async () => {
    const dir = scratch();
    const { storage, calls } = denied();
    const archiver = new DrArchiver({ storage, instance: 'i', spool: { dir }, retryBaseMs: 1 });
    await archiver.write('db', 'rp', 'm v=1 1');
    const closing = archiver.close();
    await expect(closing).rejects.toThrow(StorageError);
    const error = await closing.catch((failure: unknown) => failure);
    expect(BkError.isInstance(error) && error.code).toBe('BK_STORAGE');
    expect(String((error as Error).message)).toMatch(/retrying cannot fix.*spool/);
    expect(calls()).toBe(1);
    expect(archiver.stats().lastError).toMatch(/403/);
    expect((await segmentsIn(dir)).length).toBe(1);
    // A later archiver with working credentials uploads them.
    const storage2 = new MemoryStorage();
    const next = new DrArchiver({ storage: storage2, instance: 'i', spool: { dir } });
    await next.close();
    expect((await stored(storage2, 'i')).map(({ line }) => line)).toEqual(['m v=1 1']);
  });

  it('stops in memory mode too, and rejects later writes', async () => {
    const { storage, calls } = denied();
    const archiver = new DrArchiver({ storage, instance: 'i', spool: false, retryBaseMs: 1 });
    await archiver.write('db', 'rp', 'm v=1 1');
    await expect(archiver.flush()).rejects.toThrow(/retrying cannot fix/);
    await expect(archiver.write('db', 'rp', 'm v=2 2')).rejects.toThrow(StorageError);
    await expect(archiver.close()).rejects.toThrow(StorageError);
    expect(calls()).toBe(1);
  });
});
