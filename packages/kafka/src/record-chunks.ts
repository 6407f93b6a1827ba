import { ComponentError } from '@bk/core';

/** How a record's timestamp was set: by the producer, or by the broker when it appended the batch. */
export type TimestampType = 'CreateTime' | 'LogAppendTime';

/**
 * One record as a chunk stores it: one JSON object per line (NDJSON). Offsets and timestamps are
 * decimal strings (they are int64); key, value and every header key and value are base64, or
 * `null` for a null key or value (distinct from an empty one, `""`). Headers keep their order and
 * may repeat a key.
 *
 * @example
 * {"offset":"42","timestamp":"1764000000000","timestampType":"CreateTime","key":"dXNlci0x","value":"e30=","headers":[["dHJhY2U=","YWJj"]]}
 */
export interface StoredRecord {
  offset: string;
  timestamp: string;
  timestampType: TimestampType;
  key: string | null;
  value: string | null;
  headers: [string, string | null][];
}

/** A record as read from or written to Kafka. */
export interface PartitionRecord {
  offset: bigint;
  timestamp: bigint;
  timestampType: TimestampType;
  key: Buffer | null;
  value: Buffer | null;
  headers: [Buffer, Buffer | null][];
}

/** The NDJSON line (with its newline) of one record. */
export function encodeRecord(record: PartitionRecord): string {
  const stored: StoredRecord = {
    offset: record.offset.toString(),
    timestamp: record.timestamp.toString(),
    timestampType: record.timestampType,
    key: record.key === null ? null : record.key.toString('base64'),
    value: record.value === null ? null : record.value.toString('base64'),
    headers: record.headers.map(([key, value]) => [
      key.toString('base64'),
      value === null ? null : value.toString('base64'),
    ]),
  };
  return `${JSON.stringify(stored)}\n`;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const INTEGER = /^-?\d{1,19}$/;

function bytesOf(value: unknown, what: string, where: string, component: string): Buffer | null {
  if (value === null) return null;
  if (typeof value !== 'string' || !BASE64.test(value))
    throw new ComponentError(component, `${where}: ${what} is not base64 or null.`);
  return Buffer.from(value, 'base64');
}

/** Parses one NDJSON line; `where` names the entry and line for the error. */
export function decodeRecord(line: string, where: string, component: string): PartitionRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch (error) {
    throw new ComponentError(component, `${where} is not valid JSON: ${(error as Error).message}`);
  }
  const stored = parsed as Partial<StoredRecord>;
  if (
    typeof stored !== 'object' ||
    stored === null ||
    typeof stored.offset !== 'string' ||
    !INTEGER.test(stored.offset) ||
    typeof stored.timestamp !== 'string' ||
    !INTEGER.test(stored.timestamp) ||
    (stored.timestampType !== 'CreateTime' && stored.timestampType !== 'LogAppendTime') ||
    !Array.isArray(stored.headers)
  ) {
    throw new ComponentError(component, `${where} is not a stored Kafka record.`);
  }
  return {
    offset: BigInt(stored.offset),
    timestamp: BigInt(stored.timestamp),
    timestampType: stored.timestampType,
    key: bytesOf(stored.key, 'the key', where, component),
    value: bytesOf(stored.value, 'the value', where, component),
    headers: stored.headers.map((header, index) => {
      if (!Array.isArray(header) || header.length !== 2)
        throw new ComponentError(component, `${where}: header ${index} is not a [key, value] pair.`);
      return [
        bytesOf(header[0], `header ${index}'s key`, where, component) ?? Buffer.alloc(0),
        bytesOf(header[1], `header ${index}'s value`, where, component),
      ];
    }),
  };
}

/** Splits a byte stream into lines (without the newline), holding at most one partial line. */
export async function* linesOf(body: AsyncIterable<Uint8Array>): AsyncIterable<string> {
  let rest = '';
  const decoder = new TextDecoder('utf-8', { fatal: true });
  for await (const chunk of body) {
    rest += decoder.decode(chunk, { stream: true });
    let newline = rest.indexOf('\n');
    while (newline >= 0) {
      const line = rest.slice(0, newline);
      rest = rest.slice(newline + 1);
      if (line !== '') yield line;
      newline = rest.indexOf('\n');
    }
  }
  rest += decoder.decode();
  if (rest !== '') yield rest;
}
