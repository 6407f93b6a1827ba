import { type ByteStream, IntegrityError, type Storage } from '@bk/core';
import { JsonNumber } from '../line-protocol/query-influx.ts';
import { splitLines } from '../line-protocol/split-lines.ts';

/** A record of a day dump: `time` (RFC 3339 with nanoseconds), tags as strings, fields. Numbers are kept as {@link JsonNumber}. */
export type DumpRecord = { time: string } & Record<string, JsonNumber | string | boolean>;

/**
 * Reads the records of a dump written by `dumpMeasurementDays`, streaming: the file holds one
 * record per line, so memory is one line. Numbers come back as {@link JsonNumber} (their exact
 * text), since int64 fields do not fit a JavaScript `number`. Fails with an `IntegrityError`
 * when the text is not such a dump (not an array, a bad line, or no closing `]`).
 */
export async function* parseDayDump(source: ByteStream): AsyncIterable<DumpRecord> {
  let state: 'start' | 'records' | 'closed' = 'start';
  let index = 0;
  for await (const line of splitLines(source)) {
    index += 1;
    if (state === 'closed') {
      if (line.trim() !== '')
        throw new IntegrityError(`Day dump: text after the closing "]" (line ${index}).`);
      continue;
    }
    if (state === 'start') {
      if (line.trim() === '[]') {
        state = 'closed';
        continue;
      }
      if (line !== '[') throw new IntegrityError('Day dump: does not start with "[".');
      state = 'records';
      continue;
    }
    if (line === ']') {
      state = 'closed';
      continue;
    }
    const text = line.endsWith(',') ? line.slice(0, -1) : line;
    let record: unknown;
    try {
      record = JSON.parse(text, (_key, value, context?: { source?: string }) =>
        typeof value === 'number' ? new JsonNumber(context?.source ?? String(value)) : value,
      );
    } catch (error) {
      throw new IntegrityError(`Day dump: line ${index} is not a JSON record.`, { cause: error });
    }
    if (
      typeof record !== 'object' ||
      record === null ||
      typeof (record as { time?: unknown }).time !== 'string'
    ) {
      throw new IntegrityError(`Day dump: line ${index} is not a record with a "time".`);
    }
    yield record as DumpRecord;
  }
  if (state !== 'closed') throw new IntegrityError('Day dump: ends without its closing "]" (truncated).');
}

/** Reads one dump back from storage; see {@link parseDayDump}. */
export async function* readDayDump(
  storage: Storage,
  key: string,
  options: { signal?: AbortSignal } = {},
): AsyncIterable<DumpRecord> {
  yield* parseDayDump(await storage.get(key, options));
}
