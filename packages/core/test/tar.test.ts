import { execFile } from 'node:child_process';
import { lstat, mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  collect,
  handOver,
  IntegrityError,
  packTar,
  releaseWholeHandedOver,
  type TarRecordInput,
  unpackTar,
} from '../src/index.ts';
import { splitUstarName, tarHeader } from '../src/tar.ts';

const run = promisify(execFile);

async function* listOf<T>(...items: T[]): AsyncIterable<T> {
  yield* items;
}

const mtime = new Date('2026-01-02T03:04:05Z');
const long = `${'a-rather-deep-directory/'.repeat(5)}file.txt`; // 128 bytes: prefix + name
const veryLong = `${'x'.repeat(120)}/${'y'.repeat(120)}.txt`; // fits neither: pax path
const accented = 'données/été.txt';
const target = `${'../'.repeat(10)}${'t'.repeat(90)}`; // 120 bytes: pax linkpath

const records = (): TarRecordInput[] => [
  { name: 'dir', type: 'directory', size: 0, mode: 0o750, mtime },
  { name: 'dir/empty', type: 'file', size: 0, mtime, body: new Uint8Array(0) },
  { name: 'dir/odd', type: 'file', size: 513, mode: 0o600, mtime, body: Buffer.alloc(513, 0x61) },
  { name: long, type: 'file', size: 5, mtime, body: listOf(Buffer.from('he'), Buffer.from('llo')) },
  { name: veryLong, type: 'file', size: 4, mtime, body: Buffer.from('long') },
  { name: accented, type: 'file', size: 5, mtime, body: Buffer.from('été') },
  { name: 'dir/link', type: 'symlink', size: 0, mtime, linkTarget: target },
];

describe('packTar', () => {
  let dir: string;
  let archive: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bk-tar-'));
    archive = join(dir, 'a.tar');
    await writeFile(archive, await collect(packTar(listOf(...records()))));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes an archive GNU tar lists and extracts, long and non-ASCII names included', async () => {
    const { stdout } = await run('tar', ['-tvf', archive, '--utc', '--numeric-owner']);
    const lines = stdout.trim().split('\n');
    expect(lines.map((line) => line.split(/\s+/).slice(5).join(' '))).toEqual([
      'dir',
      'dir/empty',
      'dir/odd',
      long,
      veryLong,
      accented,
      `dir/link -> ${target}`,
    ]);
    expect(lines[0]).toMatch(/^drwxr-x--- 0\/0 +0 2026-01-02 03:04 /);
    expect(lines[2]).toMatch(/^-rw------- 0\/0 +513 /);
    const out = join(dir, 'out');
    await run('mkdir', [out]);
    await run('tar', ['-xf', archive, '-C', out]);
    expect((await readFile(join(out, 'dir/odd'))).equals(Buffer.alloc(513, 0x61))).toBe(true);
    expect(await readFile(join(out, long), 'utf8')).toBe('hello');
    expect(await readFile(join(out, veryLong), 'utf8')).toBe('long');
    expect(await readFile(join(out, accented), 'utf8')).toBe('été');
    expect(await readlink(join(out, 'dir/link'))).toBe(target);
    expect((await lstat(join(out, 'dir/empty'))).size).toBe(0);
  });

  it('reads back what it wrote through unpackTar', async () => {
    const seen: Array<[string, string, number, string]> = [];
    for await (const record of unpackTar(listOf(await readFile(archive)))) {
      const body = Buffer.from(await collect(record.body)).toString('utf8');
      seen.push([record.name, record.type, record.mode, record.linkTarget ?? body.slice(0, 8)]);
    }
    expect(seen).toEqual([
      ['dir', 'directory', 0o750, ''],
      ['dir/empty', 'file', 0o644, ''],
      ['dir/odd', 'file', 0o600, 'aaaaaaaa'],
      [long, 'file', 0o644, 'hello'],
      [veryLong, 'file', 0o644, 'long'],
      [accented, 'file', 0o644, 'été'],
      ['dir/link', 'symlink', 0o644, target],
    ]);
  });

  it('passes body chunks on as they came, without copying them', async () => {
    const chunks = [Buffer.alloc(1000, 1), Buffer.alloc(24, 2)];
    const out: Uint8Array[] = [];
    for await (const chunk of packTar(
      listOf({ name: 'f', type: 'file', size: 1024, body: listOf(...chunks) }),
    ))
      out.push(chunk);
    expect(out[1]).toBe(chunks[0]);
    expect(out[2]).toBe(chunks[1]);
    expect(out.reduce((sum, chunk) => sum + chunk.byteLength, 0)).toBe(512 + 1024 + 1024);
  });

  it('records a size of 8 GiB or more in pax and base-256, which GNU tar reads', async () => {
    const size = 8 * 1024 ** 3 + 5;
    const header = tarHeader({ name: 'big', type: 'file', size, mtime });
    expect(header.byteLength).toBe(3 * 512);
    expect(header.subarray(512, 1024).toString('utf8')).toContain(`size=${size}\n`);
    expect(header[1024 + 124]).toBe(0x80);
    const truncated = join(dir, 'big.tar');
    await writeFile(truncated, Buffer.concat([header, Buffer.alloc(512)]));
    const listed = await run('tar', ['-tvf', truncated]).catch((error: { stdout: string }) => error);
    expect(listed.stdout).toContain(` ${size} `);
  });

  it('splits names into ustar prefix and name only at a slash that fits', () => {
    expect(splitUstarName('short')).toEqual({ prefix: '', name: 'short' });
    expect(splitUstarName(long)).toEqual({
      prefix: long.slice(0, long.indexOf('/', long.length - 101)),
      name: long.slice(long.indexOf('/', long.length - 101) + 1),
    });
    expect(splitUstarName(veryLong)).toBeUndefined();
    expect(splitUstarName(`${'z'.repeat(101)}`)).toBeUndefined();
    expect(splitUstarName(`${'p'.repeat(156)}/name`)).toBeUndefined();
    expect(splitUstarName(accented)).toBeUndefined();
  });
});

describe('unpackTar', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bk-untar-'));
    const tree = join(dir, 'tree');
    await run('mkdir', ['-p', join(tree, 'd'), join(tree, veryLong.split('/')[0]!)]);
    await writeFile(join(tree, 'd/odd'), Buffer.alloc(513, 0x61));
    await writeFile(join(tree, long.split('/').pop()!), 'hello');
    await writeFile(join(tree, veryLong), 'long');
    await writeFile(join(tree, 'd/empty'), '');
    await run('ln', ['-s', target, join(tree, 'd/link')]);
    for (const format of ['gnu', 'pax', 'ustar']) {
      const tar = run('tar', [
        `--format=${format}`,
        '-cf',
        join(dir, `${format}.tar`),
        '-C',
        tree,
        '--sort=name',
        '.',
      ]);
      // ustar cannot hold the 241-byte name or the 120-byte link target: GNU tar leaves them out and says so.
      await (format === 'ustar' ? tar.catch(() => undefined) : tar);
    }
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Every record as [name, type, size, body or link target]. */
  async function list(source: AsyncIterable<Uint8Array>) {
    const seen: Array<[string, string, number, string]> = [];
    for await (const record of unpackTar(source)) {
      const body = Buffer.from(await collect(record.body)).toString('utf8');
      seen.push([record.name.replace(/\/$/, ''), record.type, record.size, record.linkTarget ?? body]);
    }
    return seen;
  }

  /** `data` as chunks of `size` bytes. */
  function* piecesOf(data: Uint8Array, size: number) {
    for (let offset = 0; offset < data.byteLength; offset += size) yield data.subarray(offset, offset + size);
  }

  it('reads GNU, pax and ustar archives GNU tar wrote, at any chunking', async () => {
    const expected = await list(listOf(await readFile(join(dir, 'pax.tar'))));
    expect(expected.map(([name, type]) => `${type} ${name}`)).toEqual([
      'directory .',
      'directory ./d',
      'file ./d/empty',
      `symlink ./d/link`,
      'file ./d/odd',
      'file ./file.txt',
      `directory ./${veryLong.split('/')[0]}`,
      `file ./${veryLong}`,
    ]);
    expect(expected[3]![3]).toBe(target);
    expect(expected[4]![3]).toBe('a'.repeat(513));
    expect(await list(listOf(await readFile(join(dir, 'gnu.tar'))))).toEqual(expected);
    const bytes = await readFile(join(dir, 'gnu.tar'));
    for (const size of [1, 511, 700]) expect(await list(listOf(...piecesOf(bytes, size)))).toEqual(expected);
    const ustar = await list(listOf(await readFile(join(dir, 'ustar.tar'))));
    expect(ustar.map(([name]) => name)).toContain('./d/odd');
    expect(ustar.find(([name]) => name === './d/odd')).toEqual(expected[4]);
  });

  it('skips bodies left unread, and refuses a body read after the next record was asked for', async () => {
    const names: string[] = [];
    let stale: AsyncIterable<Uint8Array> | undefined;
    for await (const record of unpackTar(listOf(await readFile(join(dir, 'pax.tar'))))) {
      names.push(record.name);
      if (record.name === './d/odd') stale = record.body;
    }
    expect(names).toHaveLength(8);
    await expect(collect(stale!)).rejects.toThrow(/after the next record/);
  });

  it('passes on a handed-over chunk as views, freed once the last of them is released', async () => {
    const tar = Buffer.from(await readFile(join(dir, 'pax.tar')));
    const whole = handOver(Buffer.allocUnsafeSlow(tar.byteLength));
    whole.set(tar);
    const bodies: Uint8Array[] = [];
    for await (const record of unpackTar(listOf(whole))) {
      for await (const chunk of record.body) bodies.push(chunk);
    }
    expect(bodies.map((body) => body.byteLength)).toEqual([513, 5, 4]);
    expect(whole.byteLength).toBe(tar.byteLength);
    expect(releaseWholeHandedOver(bodies[0]!)).toBe(true);
    expect(releaseWholeHandedOver(bodies[1]!)).toBe(true);
    expect(whole.byteLength).toBe(tar.byteLength);
    expect(Buffer.from(bodies[2]!).toString()).toBe('long');
    expect(releaseWholeHandedOver(bodies[2]!)).toBe(true);
    expect(whole.byteLength).toBe(0);
  });

  it('reports a size of 8 GiB or more from pax and base-256', async () => {
    const size = 8 * 1024 ** 3 + 5;
    const records = unpackTar(listOf(tarHeader({ name: 'big', type: 'file', size, mtime })));
    for await (const record of records) {
      expect([record.name, record.size, record.mtime.getTime()]).toEqual(['big', size, mtime.getTime()]);
      await expect(collect(record.body)).rejects.toThrow(/truncated/);
      break;
    }
  });

  it('reads numeric fields with leading spaces or NULs and anything after their terminator', async () => {
    const header = tarHeader({ name: 'f', type: 'file', size: 3, mode: 0o600, mtime });
    header.write(' 640 \0xx', 100, 'latin1');
    header.write('\0\0\0\x000000000003\0', 124 - 3, 'latin1');
    header.write('        ', 148, 'latin1');
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    for await (const record of unpackTar(listOf(header, Buffer.from('abc'), Buffer.alloc(509 + 1024)))) {
      expect([record.mode, record.size, Buffer.from(await collect(record.body)).toString()]).toEqual([
        0o640,
        3,
        'abc',
      ]);
    }
  });

  it('fails a damaged header or a partial block with an IntegrityError', async () => {
    const tar = Buffer.from(await readFile(join(dir, 'pax.tar')));
    const damagedTar = Buffer.from(tar);
    damagedTar[2] ^= 0xff;
    await expect(list(listOf(damagedTar))).rejects.toThrow(/byte 0 .* damaged: its checksum does not match/);
    await expect(list(listOf(damagedTar))).rejects.toBeInstanceOf(IntegrityError);
    await expect(list(listOf(tar.subarray(0, 700)))).rejects.toThrow(/truncated/);
    await expect(list(listOf(tar, Buffer.from('x')))).rejects.toThrow(/truncated/);
  });
});
