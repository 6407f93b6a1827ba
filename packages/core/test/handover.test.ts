import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  type ByteStream,
  collect,
  compress,
  getInParallel,
  gunzipMembers,
  handOver,
  MemoryStorage,
  releaseHandedOver,
  sha256Hex,
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

  it('refuses views of a larger or pooled buffer', () => {
    expect(() => handOver(Buffer.allocUnsafeSlow(100).subarray(10))).toThrow(RangeError);
    expect(() => handOver(Buffer.from('pooled'))).toThrow(RangeError);
  });
});

describe('getInParallel', () => {
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
