import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AbortedError,
  type ByteStream,
  backup,
  type CompressionFormat,
  ConfigError,
  collect,
  compress,
  compressionMemoryCeiling,
  decompress,
  gunzipMembers,
  IntegrityError,
  list,
  looksIncompressible,
  MemoryStorage,
  type Restorer,
  restore,
  type Source,
  storedGzipMember,
  verify,
  zstdAvailable,
} from '../src/index.ts';

const run = promisify(execFile);
const KiB = 1024;

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'bk-compress-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** Text and random bytes interleaved, in uneven chunks. */
function sample(size: number): Uint8Array {
  const data = new Uint8Array(size);
  const text = new TextEncoder().encode('cpu,host=edge-1 usage=0.5,count=3i 1763700000000000000\n');
  for (let offset = 0; offset < size; offset += text.length)
    data.set(text.subarray(0, size - offset), offset);
  data.set(randomBytes(Math.floor(size / 5)), Math.floor(size / 3));
  return data;
}

async function* chunks(data: Uint8Array, sizes = [1, 7_000, 65_536, 300_001]): ByteStream {
  let offset = 0;
  for (let index = 0; offset < data.byteLength; index += 1) {
    const size = sizes[index % sizes.length]!;
    yield data.slice(offset, offset + size);
    offset += size;
  }
}

async function compressed(
  data: Uint8Array,
  format: CompressionFormat,
  workers: number,
  blockSize = 64 * KiB,
) {
  return collect(compress(chunks(data), { format, workers, blockSize }), 256 * 1024 * 1024);
}

async function tool(command: string, args: string[], bytes: Uint8Array): Promise<Buffer> {
  const file = join(scratch, `input-${Math.random().toString(36).slice(2)}`);
  await writeFile(file, bytes);
  const { stdout } = await run(command, [...args, file], { encoding: 'buffer', maxBuffer: 1 << 30 });
  return stdout;
}

describe('compress', () => {
  const data = sample(3 * 1024 * KiB + 12_345);

  it('writes multi-member gzip that gzip, its own gunzip and zlib read back in order', async () => {
    const gz = await compressed(data, 'gzip', 2);
    // Blocks of 64 KiB: one member each.
    let members = 0;
    for (let index = 0; index + 3 < gz.byteLength; index += 1)
      if (gz[index] === 0x1f && gz[index + 1] === 0x8b && gz[index + 2] === 8) members += 1;
    expect(members).toBeGreaterThanOrEqual(Math.ceil(data.byteLength / (64 * KiB)));
    await tool('gzip', ['-t'], gz);
    expect(Buffer.compare(await tool('gzip', ['-dc'], gz), data)).toBe(0);
    expect(Buffer.compare(Buffer.from(await collect(decompress(chunks(gz)), 1 << 30)), data)).toBe(0);
  });

  it('gives the same bytes with one worker, four workers and none', async () => {
    for (const workers of [0, 1, 4]) {
      const gz = await compressed(data, 'gzip', workers);
      expect(Buffer.compare(await tool('gzip', ['-dc'], gz), data)).toBe(0);
    }
  });

  it('stores incompressible blocks without deflate, still as gzip every tool reads', async () => {
    const random = new Uint8Array(randomBytes(1024 * KiB + 777));
    const mixed = Buffer.concat([random, data.subarray(0, 512 * KiB)]);
    expect(looksIncompressible(random.subarray(0, 256 * KiB))).toBe(true);
    expect(looksIncompressible(data.subarray(0, 256 * KiB))).toBe(false);
    const gz = await compressed(mixed, 'gzip', 2, 256 * KiB);
    // The random part is stored: its size plus a few bytes per 64 KiB; the text part compresses.
    expect(gz.byteLength).toBeGreaterThan(random.byteLength);
    expect(gz.byteLength).toBeLessThan(random.byteLength + 64 * KiB);
    await tool('gzip', ['-t'], gz);
    expect(Buffer.compare(await tool('gzip', ['-dc'], gz), mixed)).toBe(0);
    expect(Buffer.compare(Buffer.from(await collect(decompress(chunks(gz)), 1 << 30)), mixed)).toBe(0);
    for (const size of [0, 1, 65_535, 65_536, 200_000]) {
      const block = new Uint8Array(randomBytes(size));
      const member = storedGzipMember(block);
      expect(Buffer.compare(gunzipSync(member), block)).toBe(0);
    }
  });

  it('makes a valid empty member from empty input', async () => {
    const gz = await collect(compress((async function* () {})(), { workers: 2 }));
    expect(gz.byteLength).toBeGreaterThan(0);
    expect((await tool('gzip', ['-dc'], gz)).byteLength).toBe(0);
  });

  it.runIf(zstdAvailable())('writes multi-frame zstd that zstd and decompress read back', async () => {
    const zst = await compressed(data, 'zstd', 2);
    await tool('zstd', ['-q', '-t'], zst);
    expect(Buffer.compare(await tool('zstd', ['-q', '-dc'], zst), data)).toBe(0);
    expect(Buffer.compare(Buffer.from(await collect(decompress(chunks(zst), 'zstd'), 1 << 30)), data)).toBe(
      0,
    );
    const single = await compressed(data, 'zstd', 0);
    expect(Buffer.compare(await tool('zstd', ['-q', '-dc'], single), data)).toBe(0);
  });

  it('reads the source only as fast as the output is consumed', async () => {
    let pulled = 0;
    const blockSize = 64 * KiB;
    const source = (async function* () {
      for (let index = 0; index < 1_000; index += 1) {
        pulled += blockSize;
        yield randomBytes(blockSize);
      }
    })();
    const output = compress(source, { workers: 2, blockSize })[Symbol.asyncIterator]();
    await output.next();
    await new Promise((resolve) => setTimeout(resolve, 200));
    // Two blocks per worker in flight, one being filled, and the one just handed out.
    expect(pulled).toBeLessThanOrEqual((2 * 2 + 2) * blockSize);
    expect(pulled).toBeLessThanOrEqual(compressionMemoryCeiling(2, blockSize) + blockSize);
    await output.return?.();
  });

  it('stops with an AbortedError and releases the source when aborted', async () => {
    const controller = new AbortController();
    let released = false;
    const source = (async function* () {
      try {
        for (;;) yield randomBytes(64 * KiB);
      } finally {
        released = true;
      }
    })();
    const reading = (async () => {
      let count = 0;
      for await (const _ of compress(source, {
        workers: 2,
        blockSize: 64 * KiB,
        signal: controller.signal,
      })) {
        count += 1;
        if (count === 3) controller.abort();
      }
    })();
    await expect(reading).rejects.toBeInstanceOf(AbortedError);
    expect(released).toBe(true);
  });

  it('passes a source error through and releases the workers', async () => {
    const source = (async function* () {
      yield randomBytes(200 * KiB);
      throw new Error('disk gone');
    })();
    await expect(collect(compress(source, { workers: 2, blockSize: 64 * KiB }))).rejects.toThrow('disk gone');
  });

  it('refuses bad options with a ConfigError', () => {
    expect(() => compress(chunks(data), { level: 10 })).toThrow(ConfigError);
    expect(() => compress(chunks(data), { format: 'zstd', level: 20 })).toThrow(ConfigError);
    expect(() => compress(chunks(data), { workers: -1 })).toThrow(ConfigError);
    expect(() => compress(chunks(data), { blockSize: 10 })).toThrow(ConfigError);
    expect(() => compress(chunks(data), { format: 'lz4' as CompressionFormat })).toThrow(ConfigError);
  });
});

function component(data: Uint8Array): Source & Restorer & { restored?: Uint8Array } {
  const self: Source & Restorer & { restored?: Uint8Array } = {
    kind: 'test',
    name: 'blob',
    async describe() {
      return {};
    },
    async *backup() {
      yield { path: 'data.bin', size: data.byteLength, body: chunks(data) };
      yield { path: 'stream.bin', body: chunks(data.subarray(0, 100_000)) };
    },
    async restore(entries) {
      let count = 0;
      for await (const entry of entries) {
        const body = await collect(entry.body!, 1 << 30);
        if (entry.path === 'data.bin') self.restored = body;
        count += 1;
      }
      return { entries: count, bytes: 0 };
    },
  };
  return self;
}

describe('gunzipMembers', () => {
  const data = sample(2 * 1024 * KiB + 4_321);
  const random = new Uint8Array(randomBytes(600 * KiB + 3));
  const mixed = Buffer.concat([data.subarray(0, 700 * KiB), random, data.subarray(700 * KiB)]);
  const read = (gz: Uint8Array, sizes?: number[], workers = 2) =>
    collect(gunzipMembers(chunks(gz, sizes), { workers }), 1 << 30).then((bytes) => Buffer.from(bytes));

  it('splits bk members by their length field and inflates them in order, in any chunking', async () => {
    const gz = await compressed(mixed, 'gzip', 2);
    // Every member carries the "BK" extra field.
    expect(gz[3]).toBe(4);
    expect(Buffer.from(gz.subarray(12, 14)).toString('latin1')).toBe('BK');
    for (const sizes of [[1, 19, 20, 21], [65_536], [3_000_000], undefined]) {
      for (const workers of [1, 3]) expect(Buffer.compare(await read(gz, sizes, workers), mixed)).toBe(0);
    }
    expect(Buffer.compare(await tool('pigz', ['-dc'], gz), mixed)).toBe(0);
  });

  it('reads gzip from other writers, also after bk members', async () => {
    const theirs = gzipSync(data);
    expect(Buffer.compare(await read(theirs), data)).toBe(0);
    const ours = await compressed(random, 'gzip', 2);
    const both = Buffer.concat([ours, theirs]);
    expect(Buffer.compare(await read(both, [5_000]), Buffer.concat([random, data]))).toBe(0);
    expect((await read(new Uint8Array(0))).byteLength).toBe(0);
  });

  it('fails damaged, truncated or lengthened input with an IntegrityError', async () => {
    const gz = Buffer.from(await compressed(mixed, 'gzip', 2));
    const damaged = async (change: (bytes: Buffer) => Buffer) =>
      read(change(Buffer.from(gz))).then(
        () => 'read',
        (error: unknown) => (error instanceof IntegrityError ? 'integrity' : String(error)),
      );
    const flip = (at: (bytes: Buffer) => number, bit: number) => (bytes: Buffer) => {
      bytes[at(bytes)]! ^= bit;
      return bytes;
    };
    const recordLength = (delta: number) => (bytes: Buffer) => {
      bytes.writeUInt32LE(bytes.readUInt32LE(16) + delta, 16);
      return bytes;
    };
    // A byte of deflate data, a byte of a stored member's data, the last byte (a trailer).
    expect(await damaged(flip(() => 200, 0x10))).toBe('integrity');
    const storedAt = gz.indexOf(Buffer.from(random.subarray(1_000, 1_032)));
    expect(storedAt).toBeGreaterThan(0);
    expect(await damaged(flip(() => storedAt, 0x01))).toBe('integrity');
    expect(await damaged(flip((bytes) => bytes.length - 1, 0x01))).toBe('integrity');
    // A member's recorded length one byte too long or short, the stream cut short.
    expect(await damaged(recordLength(1))).toBe('integrity');
    expect(await damaged(recordLength(-1))).toBe('integrity');
    expect(await damaged((bytes) => bytes.subarray(0, bytes.length - 100))).toBe('integrity');
  });
});

describe('backup with parallel compression', () => {
  const data = sample(5 * 1024 * KiB);

  it('stores a gzip archive that gzip -t and GNU tar read', async () => {
    const storage = new MemoryStorage();
    const result = await backup({ storage, components: [component(data)], compressionWorkers: 2 });
    expect(result.key).toMatch(/\.tar\.gz$/);
    const archive = await collect(await storage.get(result.key), 1 << 30);
    await tool('gzip', ['-t'], archive);
    const listing = (await tool('tar', ['-tzf'], archive)).toString();
    expect(listing).toContain('blob/data.bin');
    expect(listing).toContain('manifest.json');
  });

  it.runIf(zstdAvailable())(
    'writes .tar.zst with compression zstd and restores and verifies it',
    async () => {
      const storage = new MemoryStorage();
      const source = component(data);
      const result = await backup({ storage, components: [source], compression: 'zstd' });
      expect(result.key).toMatch(/^backup_\d{8}_\d{6}\.tar\.zst$/);
      expect(result.manifest.compression).toBe('zstd');
      const [summary] = await list({ storage });
      expect(summary!.key).toBe(result.key);
      await tool('zstd', ['-q', '-t'], await collect(await storage.get(result.key), 1 << 30));
      await verify({ storage, name: result.name });
      await restore({ storage, name: result.name, restorers: [source] });
      expect(Buffer.compare(Buffer.from(source.restored!), data)).toBe(0);
    },
  );
});
