import { describe, expect, it } from 'vitest';
import {
  collect,
  fromBytes,
  gunzip,
  gzip,
  IntegrityError,
  packTar,
  rechunk,
  sha256Hex,
  unpackTar,
} from '../src/index.ts';

async function* pieces(...parts: string[]) {
  for (const part of parts) yield new TextEncoder().encode(part);
}

describe('streams', () => {
  it('rechunks to exact sizes', async () => {
    const sizes: number[] = [];
    for await (const chunk of rechunk(pieces('abc', 'defgh', 'ij'), 4)) sizes.push(chunk.byteLength);
    expect(sizes).toEqual([4, 4, 2]);
  });

  it('gzip and gunzip round-trip, including multi-member input', async () => {
    const text = 'line protocol,host=a value=1 1\n'.repeat(10_000);
    const one = await collect(gzip(fromBytes(text)));
    const two = await collect(gzip(fromBytes(text), { level: 1 }));
    const joined = Buffer.concat([one, two]);
    expect(new TextDecoder().decode(await collect(gunzip(fromBytes(joined))))).toBe(text + text);
  });

  it('fails loudly on truncated gzip', async () => {
    const packed = await collect(gzip(fromBytes('x'.repeat(100_000))));
    await expect(
      collect(gunzip(fromBytes(packed.subarray(0, packed.byteLength - 10)))),
    ).rejects.toBeInstanceOf(IntegrityError);
  });

  it('packs and unpacks tar records, long names included', async () => {
    const longName = `${'deep/'.repeat(60)}file.txt`;
    const tar = await collect(
      packTar(
        (async function* () {
          yield { name: 'dir', type: 'directory' as const, size: 0 };
          yield { name: longName, type: 'file' as const, size: 5, body: pieces('he', 'llo') };
          yield { name: 'link', type: 'symlink' as const, size: 0, linkTarget: 'dir' };
        })(),
      ),
    );
    const seen: Array<[string, string, string]> = [];
    for await (const record of unpackTar(fromBytes(tar))) {
      seen.push([
        record.name.replace(/\/$/, ''),
        record.type,
        new TextDecoder().decode(await collect(record.body)),
      ]);
    }
    expect(seen).toEqual([
      ['dir', 'directory', ''],
      [longName, 'file', 'hello'],
      ['link', 'symlink', ''],
    ]);
  });

  it('refuses a body longer or shorter than announced, naming the record', async () => {
    const write = (size: number) =>
      collect(
        packTar(
          (async function* () {
            yield { name: 'f', type: 'file' as const, size, body: pieces('abc') };
          })(),
        ),
      );
    await expect(write(2)).rejects.toThrow(/"f" grew/);
    await expect(write(5)).rejects.toThrow(/"f" ended after 3/);
  });

  it('detects a truncated tar stream', async () => {
    const tar = await collect(
      packTar(
        (async function* () {
          yield { name: 'f', type: 'file' as const, size: 2000, body: fromBytes('x'.repeat(2000)) };
        })(),
      ),
    );
    const truncated = (async () => {
      for await (const record of unpackTar(fromBytes(tar.subarray(0, 1024)))) await collect(record.body);
    })();
    await expect(truncated).rejects.toBeInstanceOf(IntegrityError);
    expect(sha256Hex('')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });
});
