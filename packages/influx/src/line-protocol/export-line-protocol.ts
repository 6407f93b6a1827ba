import { throwIfAborted } from '@bk/core';
import { escapeKey, escapeMeasurement, quoteIdentifier, quoteLiteral, quoteStringField } from './escape.ts';
import {
  type InfluxConnection,
  type InfluxValue,
  JsonNumber,
  queryInflux,
  queryRows,
} from './query-influx.ts';

/** A time bound: a `Date`, an RFC 3339 string, or nanoseconds since the epoch as a `bigint`. */
export type TimeBound = Date | string | bigint;

export interface ExportLineProtocolOptions extends InfluxConnection {
  database: string;
  /** Only this retention policy; default every retention policy of the database. */
  retentionPolicy?: string;
  /** Only these measurements; default every measurement (`SHOW MEASUREMENTS`). */
  measurements?: string[];
  /** Inclusive lower time bound. */
  start?: TimeBound;
  /** Exclusive upper time bound. */
  end?: TimeBound;
  /**
   * Rows per chunked response document (`chunk_size`). Memory ceiling: about one document, i.e.
   * `chunkSize` rows and their line protocol. Default 10 000.
   */
  chunkSize?: number;
  signal?: AbortSignal;
}

type FieldType = 'float' | 'integer' | 'string' | 'boolean';

function timeLiteral(bound: TimeBound): string {
  if (typeof bound === 'bigint') return bound.toString();
  return quoteLiteral(bound instanceof Date ? bound.toISOString() : bound);
}

/** `WHERE …` for the time range, or an empty string. */
export function timeCondition(start: TimeBound | undefined, end: TimeBound | undefined): string {
  const parts: string[] = [];
  if (start !== undefined) parts.push(`time >= ${timeLiteral(start)}`);
  if (end !== undefined) parts.push(`time < ${timeLiteral(end)}`);
  return parts.length === 0 ? '' : ` WHERE ${parts.join(' AND ')}`;
}

/** The retention policies of `database`, as `SHOW RETENTION POLICIES` lists them. */
export async function listRetentionPolicies(
  connection: InfluxConnection & { database: string; signal?: AbortSignal },
): Promise<string[]> {
  const rows = await queryRows({
    ...connection,
    query: `SHOW RETENTION POLICIES ON ${quoteIdentifier(connection.database)}`,
  });
  return rows.map((row) => String(row.name));
}

/** The measurements of `database` (across every retention policy). */
export async function listMeasurements(
  connection: InfluxConnection & { database: string; signal?: AbortSignal },
): Promise<string[]> {
  const rows = await queryRows({ ...connection, query: 'SHOW MEASUREMENTS' });
  return rows.map((row) => String(row.name));
}

/**
 * Field types of one measurement in one retention policy. A field stored as integer in one shard
 * and float in another is exported as float (no `i`), since no single suffix fits both.
 */
async function fieldTypes(
  connection: InfluxConnection & { database: string; signal?: AbortSignal },
  retentionPolicy: string,
  measurement: string,
): Promise<Map<string, FieldType>> {
  const rows = await queryRows({
    ...connection,
    query: `SHOW FIELD KEYS FROM ${quoteIdentifier(retentionPolicy)}.${quoteIdentifier(measurement)}`,
  });
  const types = new Map<string, FieldType>();
  for (const row of rows) {
    const key = String(row.fieldKey);
    const type = String(row.fieldType) as FieldType;
    const known = types.get(key);
    types.set(key, known === undefined || known === type ? type : 'float');
  }
  return types;
}

function formatField(value: InfluxValue, type: FieldType | undefined): string | undefined {
  if (value === null) return undefined;
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'string') return quoteStringField(value);
  return type === 'integer' ? `${value.text}i` : value.text;
}

/**
 * Exports a database as annotated line protocol, exactly as `influx -import` reads it:
 * `# DML`, `# CONTEXT-DATABASE: <db>`, then per retention policy
 * `# CONTEXT-RETENTION-POLICY: <rp>` and its points with nanosecond timestamps.
 *
 * Each measurement is read with one chunked `SELECT * … GROUP BY *` (never cut at
 * `max-row-limit`); tags come from the series, field types from `SHOW FIELD KEYS` (integers get
 * `i`). Pull-based: nothing is queried until the consumer reads, and memory stays around one
 * response document (`chunkSize` rows). A truncated or failed response throws (`IntegrityError`,
 * `InfluxQueryError`) rather than ending the stream early.
 *
 * Not representable in line protocol, hence not exported faithfully: measurement names starting
 * with `#`, and tag or string values containing a newline (`influx -import` reads line by line).
 *
 * @example
 * await pipeline(Readable.from(gzip(exportLineProtocol({ httpUrl, database: 'metrics' }))), createWriteStream('m.lp.gz'));
 */
export async function* exportLineProtocol(options: ExportLineProtocolOptions): AsyncIterable<Uint8Array> {
  const { database, signal } = options;
  throwIfAborted(signal);
  const connection = { ...options, database };
  const encoder = new TextEncoder();
  const retentionPolicies =
    options.retentionPolicy === undefined
      ? await listRetentionPolicies(connection)
      : [options.retentionPolicy];
  const measurements = options.measurements ?? (await listMeasurements(connection));
  yield encoder.encode(`# DML\n# CONTEXT-DATABASE: ${database}\n`);
  const where = timeCondition(options.start, options.end);
  for (const retentionPolicy of retentionPolicies) {
    yield encoder.encode(`# CONTEXT-RETENTION-POLICY: ${retentionPolicy}\n`);
    for (const measurement of measurements) {
      const types = await fieldTypes(connection, retentionPolicy, measurement);
      if (types.size === 0) continue;
      const query = `SELECT * FROM ${quoteIdentifier(retentionPolicy)}.${quoteIdentifier(measurement)}${where} GROUP BY *`;
      for await (const series of queryInflux({ ...connection, query, chunkSize: options.chunkSize })) {
        const text = seriesLines(series.name, series.tags, series.columns, series.values, types);
        if (text.length > 0) yield encoder.encode(text);
      }
    }
  }
}

function seriesLines(
  name: string,
  tags: Record<string, string>,
  columns: string[],
  rows: InfluxValue[][],
  types: Map<string, FieldType>,
): string {
  let key = escapeMeasurement(name);
  for (const tag of Object.keys(tags).sort()) {
    const value = tags[tag];
    // GROUP BY * reports every tag key of the measurement; "" means the series lacks that tag.
    if (value !== undefined && value !== '') key += `,${escapeKey(tag)}=${escapeKey(value)}`;
  }
  const timeIndex = columns.indexOf('time');
  const fieldKeys = columns.map((column) => escapeKey(column));
  let text = '';
  for (const row of rows) {
    const fields: string[] = [];
    for (let index = 0; index < columns.length; index += 1) {
      if (index === timeIndex) continue;
      const formatted = formatField(row[index] ?? null, types.get(columns[index]!));
      if (formatted !== undefined) fields.push(`${fieldKeys[index]}=${formatted}`);
    }
    const time = row[timeIndex];
    if (fields.length === 0 || !(time instanceof JsonNumber)) continue;
    text += `${key} ${fields.join(',')} ${time.text}\n`;
  }
  return text;
}
