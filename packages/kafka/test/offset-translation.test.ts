import { deepStrictEqual, strictEqual, throws } from 'node:assert/strict';
import { describe, it } from 'vitest';
import { decodeRecord, encodeRecord, linesOf, OffsetTranslation } from '../src/index.ts';

describe('OffsetTranslation', () => {
  it('maps a committed offset to the first restored record at or after it, and past the last record to the new end', () => {
    // Source offsets 10, 11, 14, 15 (12 and 13 compacted away), restored at 100…103.
    const translation = new OffsetTranslation([3n, 10n, 12n, 15n, 16n, 40n]);
    for (const [index, old] of [10n, 11n, 14n, 15n].entries()) translation.add(old, 100n + BigInt(index));
    translation.finish(104n);
    deepStrictEqual(
      [3n, 10n, 12n, 15n, 16n, 40n].map((offset) => translation.translate(offset)),
      [100n, 100n, 102n, 103n, 104n, 104n],
    );
    deepStrictEqual(translation.runs, [
      ['10', '100', 2],
      ['14', '102', 2],
    ]);
    strictEqual(translation.records, 4);
    throws(() => translation.translate(11n));
  });

  it('translates every offset of a partition without records to its end, and caps the runs it keeps', () => {
    const empty = new OffsetTranslation([0n, 5n]);
    empty.finish(7n);
    deepStrictEqual([empty.translate(0n), empty.translate(5n)], [7n, 7n]);
    const gappy = new OffsetTranslation([], 2);
    for (const old of [0n, 2n, 4n, 6n]) gappy.add(old, old / 2n);
    deepStrictEqual(gappy.runs, [
      ['0', '0', 1],
      ['2', '1', 1],
    ]);
    strictEqual(gappy.runsTruncated, true);
  });
});

describe('record chunks', () => {
  it('round-trips null and empty keys and values, binary bytes and repeated headers through one NDJSON line', async () => {
    const record = {
      offset: 9_007_199_254_740_993n,
      timestamp: -1n,
      timestampType: 'LogAppendTime' as const,
      key: null,
      value: Buffer.from([0, 10, 255]),
      headers: [
        [Buffer.from('a'), Buffer.alloc(0)],
        [Buffer.from('a'), null],
      ] as [Buffer, Buffer | null][],
    };
    const line = encodeRecord(record);
    strictEqual(line.endsWith('\n') && !line.slice(0, -1).includes('\n'), true);
    deepStrictEqual(decodeRecord(line, 'test', 'kafka'), record);
    const lines: string[] = [];
    const bytes = Buffer.from(line + encodeRecord({ ...record, key: Buffer.alloc(0) }));
    for await (const text of linesOf(
      (async function* () {
        for (let at = 0; at < bytes.length; at += 7) yield bytes.subarray(at, at + 7);
      })(),
    ))
      lines.push(text);
    strictEqual(lines.length, 2);
    deepStrictEqual(decodeRecord(lines[1]!, 'test', 'kafka').key, Buffer.alloc(0));
    throws(
      () => decodeRecord('{"offset":"x"}', 'chunk line 1', 'kafka'),
      /chunk line 1 is not a stored Kafka record/,
    );
  });
});
