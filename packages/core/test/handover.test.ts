import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { handOverForReuse, handOverStart, shareHandedOver } from '../src/handover.ts';
import {
  BodyReader,
  type ByteStream,
  collect,
  compress,
  decompress,
  getInParallel,
  gunzipMembers,
  handOver,
  MemoryStorage,
  releaseHandedOver,
  releaseWholeHandedOver,
  sha256Hex,
  zstdAvailable,
} from '../src/index.ts';

const KiB = 1024;

/** Line protocol with a stretch of random bytes: both deflated and stored members. */
function sample(size: number): Buffer {
  const line = Buffer.from('cpu,host=edge-1 usage=0.5,count=3i 1763700000000000000\n');
  const data = Buffer.alloc(size);
  for (let offset = 0; offset < size; offset += line.length) line.copy(data, offset);
  randomBytes(size >> 2).copy(data, size >> 1);
  return data;
}

/** `data` as fresh chunks of `size` bytes, handed over or not. */
function chunksOf(data: Uint8Array, size: number, handed: boolean): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let offset = 0; offset < data.byteLength; offset += size) {
    const chunk = Buffer.allocUnsafeSlow(Math.min(size, data.byteLength - offset));
    chunk.set(data.subarray(offset, offset + chunk.byteLength));
    out.push(handed ? handOver(chunk) : chunk);
  }
  return out;
}

async function* stream(chunks: Uint8Array[]): ByteStream {
  yield* chunks;
}

describe('handOver and releaseHandedOver', () => {
  it('frees a handed-over buffer once and leaves every other chunk alone', () => {
    const buffer = handOver(Buffer.allocUnsafeSlow(64 * KiB).fill(7));
    const view = buffer.subarray(100, 200);
    expect(releaseHandedOver(view)).toBe(true);
    expect(buffer.byteLength).toBe(0);
    expect(view.byteLength).toBe(0);
    expect(releaseHandedOver(buffer)).toBe(false);

    const kept = Buffer.allocUnsafeSlow(1000).fill(1);
    expect(releaseHandedOver(kept)).toBe(false);
    expect(kept.byteLength).toBe(1000);
  });

  it('frees through releaseWholeHandedOver only a chunk that spans its whole buffer', () => {
    const buffer = handOver(Buffer.allocUnsafeSlow(1000));
    expect(releaseWholeHandedOver(buffer.subarray(0, 500))).toBe(false);
    expect(buffer.byteLength).toBe(1000);
    expect(releaseWholeHandedOver(buffer)).toBe(true);
    expect(buffer.byteLength).toBe(0);
  });

  it('hands over the start of a buffer of its own, never a slice of the shared pool', () => {
    const own = Buffer.allocUnsafeSlow(64 * KiB + 64);
    const start = handOverStart(own.subarray(0, 64 * KiB));
    expect(releaseWholeHandedOver(start.subarray(0, KiB))).toBe(false);
    expect(releaseWholeHandedOver(start)).toBe(true);
    expect(own.byteLength).toBe(0);
    expect(() => handOverStart(Buffer.from('pooled'))).toThrow(RangeError);
    expect(() => handOverStart(Buffer.allocUnsafeSlow(64 * KiB).subarray(1))).toThrow(RangeError);
  });

  it('refuses views of a larger or pooled buffer', () => {
    expect(() => handOver(Buffer.allocUnsafeSlow(100).subarray(10))).toThrow(RangeError);
    expect(() => handOver(Buffer.from('pooled'))).toThrow(RangeError);
  });
});

describe('handOverForReuse', () => {
  it('moves a released buffer into a new one for its producer, emptying every old view', () => {
    const recycled: ArrayBuffer[] = [];
    const buffer = handOverForReuse(Buffer.allocUnsafeSlow(4 * KiB).fill(5), (memory) =>
      recycled.push(memory),
    );
    const view = buffer.subarray(10);
    expect(releaseHandedOver(buffer)).toBe(true);
    expect(buffer.byteLength).toBe(0);
    expect(view.byteLength).toBe(0);
    expect(recycled).toHaveLength(1);
    expect(Buffer.from(recycled[0]!).equals(Buffer.alloc(4 * KiB, 5))).toBe(true);
    expect(releaseHandedOver(buffer)).toBe(false);
  });
});

describe('shareHandedOver', () => {
  it('frees the buffer once the reader is done and every view it cut is released', () => {
    const buffer = handOver(Buffer.allocUnsafeSlow(4 * KiB).fill(3));
    const sharing = shareHandedOver(buffer);
    expect(sharing).toBeDefined();
    // Taken over: the whole buffer is no longer the consumer's to free.
    expect(releaseHandedOver(buffer)).toBe(false);
    const first = sharing!.slice(0, 1000);
    const second = sharing!.slice(1000, 4 * KiB);
    sharing!.done();
    expect(releaseWholeHandedOver(first.subarray(1))).toBe(false);
    expect(releaseWholeHandedOver(first)).toBe(true);
    expect(releaseHandedOver(first)).toBe(false);
    expect(second.byteLength).toBe(4 * KiB - 1000);
    expect(second.every((byte) => byte === 3)).toBe(true);
    expect(releaseWholeHandedOver(second)).toBe(true);
    expect(buffer.byteLength).toBe(0);
    expect(second.byteLength).toBe(0);
  });

  it('keeps the buffer while the reader may cut more, and recycles it with the last release', () => {
    const recycled: ArrayBuffer[] = [];
    const buffer = handOverForReuse(Buffer.allocUnsafeSlow(2 * KiB), (memory) => recycled.push(memory));
    const sharing = shareHandedOver(buffer)!;
    const view = sharing.slice(0, KiB);
    expect(releaseHandedOver(view)).toBe(true);
    expect(buffer.byteLength).toBe(2 * KiB);
    sharing.done();
    sharing.done();
    expect(buffer.byteLength).toBe(0);
    expect(recycled.map((memory) => memory.byteLength)).toEqual([2 * KiB]);
  });

  it('leaves a buffer with a view that is never released to the collector', () => {
    const buffer = handOver(Buffer.allocUnsafeSlow(KiB));
    const sharing = shareHandedOver(buffer)!;
    sharing.slice(0, 10);
    const released = sharing.slice(10, 20);
    sharing.done();
    releaseHandedOver(released);
    expect(buffer.byteLength).toBe(KiB);
  });

  it('takes over only a chunk that is exactly what was handed over', () => {
    expect(shareHandedOver(Buffer.allocUnsafeSlow(KiB))).toBeUndefined();
    expect(shareHandedOver(handOver(Buffer.allocUnsafeSlow(KiB)).subarray(1))).toBeUndefined();
  });
});

describe('getInParallel', () => {
  it('reuses released ranges for later ones, every byte overwritten', async () => {
    const storage = new MemoryStorage();
    const data = randomBytes(1_000_000);
    await storage.put('object', data);
    const copies: Buffer[] = [];
    for await (const range of getInParallel(storage, 'object', {
      size: data.byteLength,
      partSize: 64 * KiB,
    })) {
      copies.push(Buffer.from(range));
      expect(releaseHandedOver(range)).toBe(true);
    }
    expect(sha256Hex(Buffer.concat(copies))).toBe(sha256Hex(data));
  });

  it('yields every range as one buffer of its own, handed over', async () => {
    const storage = new MemoryStorage();
    const data = randomBytes(100_000);
    await storage.put('object', data);
    const ranges: Uint8Array[] = [];
    for await (const range of getInParallel(storage, 'object', { size: data.byteLength, partSize: 30_000 }))
      ranges.push(range);
    expect(ranges.map((range) => range.byteLength)).toEqual([30_000, 30_000, 30_000, 10_000]);
    expect(sha256Hex(Buffer.concat(ranges))).toBe(sha256Hex(data));
    // Copies: freeing them leaves the stored object whole.
    for (const range of ranges) expect(releaseHandedOver(range)).toBe(true);
    expect(sha256Hex(await collect(await storage.get('object')))).toBe(sha256Hex(data));
  });

  it("frees the store's chunks it was handed once they are copied into a range", async () => {
    const storage = new MemoryStorage();
    const data = randomBytes(100_000);
    await storage.put('object', data);
    const given: Uint8Array[] = [];
    const handing = Object.create(storage) as MemoryStorage;
    handing.get = async (key, options) =>
      (async function* () {
        for await (const chunk of await storage.get(key, options)) {
          const own = handOver(Buffer.allocUnsafeSlow(chunk.byteLength));
          own.set(chunk);
          given.push(own);
          yield own;
        }
      })();
    const ranges: Uint8Array[] = [];
    for await (const range of getInParallel(handing, 'object', { size: data.byteLength, partSize: 30_000 }))
      ranges.push(Buffer.from(range));
    expect(sha256Hex(Buffer.concat(ranges))).toBe(sha256Hex(data));
    expect(given.length).toBeGreaterThan(0);
    expect(given.every((chunk) => chunk.byteLength === 0)).toBe(true);
  });
});

describe('gunzipMembers with handed-over input', () => {
  it('frees each input chunk once its members are copied, and its output stays whole', async () => {
    const data = sample(3 * 1024 * KiB + 11);
    const gz = await collect(compress(stream([data]), { workers: 2, blockSize: 256 * KiB }), 1 << 30);
    for (const size of [1_000, 100 * KiB, 1024 * KiB]) {
      const input = chunksOf(gz, size, true);
      const output: Uint8Array[] = [];
      for await (const piece of gunzipMembers(stream(input), { workers: 2 })) output.push(piece);
      expect(sha256Hex(Buffer.concat(output))).toBe(sha256Hex(data));
      // Every input chunk was freed...
      expect(input.every((chunk) => chunk.byteLength === 0)).toBe(true);
      // ...and nothing handed on was a view of them.
      expect(output.every((piece) => piece.byteLength > 0)).toBe(true);
      // Each member's data, inflated or stored, is one buffer of its own, handed over (all but
      // the last, 11-byte member, which zlib's least output buffer of 64 bytes holds).
      expect(
        output.filter((piece) => piece.byteLength >= 64).every((piece) => releaseHandedOver(piece)),
      ).toBe(true);
    }
  });

  it('leaves input that was not handed over untouched', async () => {
    const data = sample(600 * KiB);
    const gz = await collect(compress(stream([data]), { workers: 2, blockSize: 128 * KiB }), 1 << 30);
    const input = chunksOf(gz, 50 * KiB, false);
    const output = await collect(gunzipMembers(stream(input), { workers: 3 }), 1 << 30);
    expect(sha256Hex(output)).toBe(sha256Hex(data));
    expect(Buffer.concat(input).equals(gz)).toBe(true);
  });
});

describe('compress with handed-over input', () => {
  for (const format of ['gzip', 'zstd'] as const) {
    it.skipIf(format === 'zstd' && !zstdAvailable())(
      `${format}: frees whole input chunks once copied into blocks and hands over every output chunk`,
      async () => {
        const data = sample(2 * 1024 * KiB + 7);
        const input = chunksOf(data, 100 * KiB, true);
        // A slice of a handed-over buffer (what a re-chunker passes on) is never freed.
        const sliced = handOver(Buffer.allocUnsafeSlow(3000).fill(9));
        const output: Uint8Array[] = [];
        for await (const chunk of compress(stream([...input, sliced.subarray(0, 1000)]), {
          format,
          workers: 2,
          blockSize: 256 * KiB,
        }))
          output.push(chunk);
        expect(input.every((chunk) => chunk.byteLength === 0)).toBe(true);
        expect(sliced.byteLength).toBe(3000);
        const archive = Buffer.concat(output);
        expect(output.every((chunk) => releaseHandedOver(chunk))).toBe(true);
        const restored = await collect(decompress(stream([archive]), format), 1 << 30);
        expect(sha256Hex(restored)).toBe(sha256Hex(Buffer.concat([data, Buffer.alloc(1000, 9)])));
      },
    );
  }
});

describe('BodyReader.read with handed-over chunks', () => {
  it('frees each whole chunk once copied to its end, a split one after its tail', async () => {
    const data = randomBytes(500 * KiB);
    const input = chunksOf(data, 96 * KiB, true);
    const kept = Buffer.from(randomBytes(10 * KiB));
    const reader = new BodyReader(stream([...input, kept]));
    const ends = input.map((_, index) => Math.min(data.byteLength, (index + 1) * 96 * KiB));
    const parts: Buffer[] = [];
    for (let part = await reader.read(64 * KiB); part.byteLength > 0; part = await reader.read(64 * KiB)) {
      parts.push(Buffer.from(part));
      // Only chunks read to their end are gone: the one being split is still whole.
      const freed = input.filter((chunk) => chunk.byteLength === 0).length;
      const read = parts.reduce((sum, copy) => sum + copy.byteLength, 0);
      expect(freed).toBe(ends.filter((end) => end <= read).length);
    }
    expect(Buffer.concat(parts).equals(Buffer.concat([data, kept]))).toBe(true);
    expect(input.every((chunk) => chunk.byteLength === 0)).toBe(true);
    expect(kept.byteLength).toBe(10 * KiB);
  });

  it('frees a chunk hasMore() looked ahead at once read() copied it', async () => {
    const chunk = handOver(Buffer.allocUnsafeSlow(1000).fill(3));
    const reader = new BodyReader(stream([chunk]));
    expect(await reader.hasMore()).toBe(true);
    expect(Buffer.from(await reader.read(4000)).equals(Buffer.alloc(1000, 3))).toBe(true);
    expect(chunk.byteLength).toBe(0);
  });
});

describe.skipIf(!zstdAvailable())('zstd decompress with handed-over input', () => {
  it('frees its input once zstd has read it and hands over every full output buffer', async () => {
    const data = sample(1024 * KiB);
    const zst = await collect(compress(stream([data]), { format: 'zstd', workers: 2, blockSize: 256 * KiB }));
    const input = chunksOf(zst, 20 * KiB, true);
    const output: Uint8Array[] = [];
    for await (const chunk of decompress(stream(input), 'zstd')) output.push(chunk);
    expect(sha256Hex(Buffer.concat(output))).toBe(sha256Hex(data));
    expect(input.every((chunk) => chunk.byteLength === 0)).toBe(true);
    const full = output.filter((chunk) => chunk.byteLength === 64 * KiB);
    expect(full.length).toBeGreaterThan(0);
    expect(full.every((chunk) => releaseHandedOver(chunk))).toBe(true);
  });
});
