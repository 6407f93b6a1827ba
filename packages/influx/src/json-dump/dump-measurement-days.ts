import { type ByteStream, ConfigError, type Storage, throwIfAborted } from '@bk/core';
import { quoteIdentifier, quoteLiteral } from '../line-protocol/escape.ts';
import {
  type InfluxConnection,
  type InfluxSeries,
  JsonNumber,
  queryInflux,
} from '../line-protocol/query-influx.ts';

const DAY_MS = 86_400_000;

export interface DumpMeasurementDaysOptions extends InfluxConnection {
  database: string;
  /** Read from this retention policy; default the database's default one. */
  retentionPolicy?: string;
  /** The measurement to dump; it names the files, so it must not contain `/`, `\` or NUL. */
  measurement: string;
  /** Start of the range; rounded down to 00:00 UTC of its day. */
  from: Date;
  /** End of the range, exclusive; rounded up to the next 00:00 UTC unless it is one already. */
  to: Date;
  storage: Storage;
  /** Put every file under this key prefix, e.g. `dumps/` (joined as is: include the `/`). */
  prefix?: string;
  /**
   * Records per page: the query's `chunk_size` and the unit in which the JSON text is handed to
   * `storage.put`. Memory ceiling: about one page of records plus one response chunk. Default 1 000.
   */
  pageSize?: number;
  signal?: AbortSignal;
}

/** One file written by {@link dumpMeasurementDays}. */
export interface DayDump {
  /** The storage key, prefix included. */
  key: string;
  /** Records (points) in the file. */
  records: number;
}

function pad(value: number): string {
  return String(value).padStart(2, '0');
}

/** `YYYY-MM-DD-00:00:00` of a UTC midnight. */
function dayStamp(day: Date): string {
  return `${day.getUTCFullYear()}-${pad(day.getUTCMonth() + 1)}-${pad(day.getUTCDate())}-00:00:00`;
}

/** The file name of one day: `<measurement>_YYYY-MM-DD-00:00:00_YYYY-MM-DD-00:00:00.json` (start day, next day). */
export function dayDumpName(measurement: string, day: Date): string {
  const start = new Date(Math.floor(day.getTime() / DAY_MS) * DAY_MS);
  return `${measurement}_${dayStamp(start)}_${dayStamp(new Date(start.getTime() + DAY_MS))}.json`;
}

const NAME = /^(.*)_(\d{4})-(\d{2})-(\d{2})-00:00:00_(\d{4})-(\d{2})-(\d{2})-00:00:00\.json$/;

/** Reads a day-dump file name (the last `/` segment of a key) back; `undefined` when it is not one. */
export function parseDayDumpName(key: string): { measurement: string; from: Date; to: Date } | undefined {
  const match = NAME.exec(key.slice(key.lastIndexOf('/') + 1));
  if (match === null) return undefined;
  const [, measurement, y1, m1, d1, y2, m2, d2] = match as unknown as string[];
  const from = new Date(`${y1}-${m1}-${d1}T00:00:00Z`);
  const to = new Date(`${y2}-${m2}-${d2}T00:00:00Z`);
  if (Number.isNaN(from.getTime()) || to.getTime() - from.getTime() !== DAY_MS) return undefined;
  return { measurement: measurement!, from, to };
}

/**
 * RFC 3339 UTC with nanoseconds, trailing zeros of the fraction dropped (InfluxDB's own
 * `RFC3339Nano` form, e.g. `2026-11-18T00:00:00.000000001Z`).
 */
export function nanosToRfc3339(nanos: bigint): string {
  let seconds = nanos / 1_000_000_000n;
  let fraction = nanos % 1_000_000_000n;
  if (fraction < 0n) {
    fraction += 1_000_000_000n;
    seconds -= 1n;
  }
  const whole = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  const digits = fraction.toString().padStart(9, '0').replace(/0+$/, '');
  return `${whole}${digits === '' ? '' : `.${digits}`}Z`;
}

function jsonValue(value: unknown): string {
  return value instanceof JsonNumber ? value.text : JSON.stringify(value);
}

/**
 * One record as one line of JSON: `time` first (RFC 3339, nanoseconds), then the series' tags
 * (empty tag values, i.e. tags the point does not have, are left out), then the fields that are
 * not null. Numbers are written exactly as InfluxDB printed them (int64 stays exact).
 */
function recordLine(series: InfluxSeries, values: unknown[], timeIndex: number): string {
  const parts: string[] = [];
  const time = values[timeIndex];
  const timeText = time instanceof JsonNumber ? nanosToRfc3339(BigInt(time.text)) : String(time ?? '');
  parts.push(`"time":${JSON.stringify(timeText)}`);
  const seen = new Set(['time']);
  for (const [key, value] of Object.entries(series.tags)) {
    if (value === '' || seen.has(key)) continue;
    seen.add(key);
    parts.push(`${JSON.stringify(key)}:${JSON.stringify(value)}`);
  }
  series.columns.forEach((column, index) => {
    const value = values[index];
    if (index === timeIndex || value === null || value === undefined || seen.has(column)) return;
    seen.add(column);
    parts.push(`${JSON.stringify(column)}:${jsonValue(value)}`);
  });
  return `{${parts.join(',')}}`;
}

/**
 * The JSON text of one day, page by page: the first page starts with `[\n`, later pages with
 * `,\n`, records are separated by `,\n` (one record per line), and the last page ends with `\n]\n`.
 * Yields nothing at all when the query returns no rows.
 */
async function* dayPages(
  options: DumpMeasurementDaysOptions,
  query: string,
  pageSize: number,
  counter: { records: number },
): ByteStream {
  const encoder = new TextEncoder();
  let page: string[] = [];
  let pages = 0;
  const flush = (last: boolean): Uint8Array => {
    const text = `${pages === 0 ? '[\n' : ',\n'}${page.join(',\n')}${last ? '\n]\n' : ''}`;
    pages += 1;
    page = [];
    return encoder.encode(text);
  };
  for await (const series of queryInflux({
    httpUrl: options.httpUrl,
    username: options.username,
    password: options.password,
    database: options.database,
    query,
    chunkSize: pageSize,
    signal: options.signal,
  })) {
    const timeIndex = series.columns.indexOf('time');
    for (const values of series.values) {
      if (page.length === pageSize) yield flush(false);
      page.push(recordLine(series, values, timeIndex));
      counter.records += 1;
    }
  }
  if (page.length > 0) yield flush(true);
}

/**
 * Dumps one measurement as one JSON file per UTC day: for each day D in the range it runs
 * `SELECT * FROM "<m>" WHERE time >= D AND time < D+1 GROUP BY *` as a chunked query (streamed,
 * never cut at `max-row-limit`; a response that stays `"partial"` fails) and puts
 * `<measurement>_YYYY-MM-DD-00:00:00_YYYY-MM-DD-00:00:00.json` (the day and the next day).
 *
 * The file is a JSON array of records `{ "time": "<RFC 3339 ns>", <tag>: "<value>"…, <field>: <value>… }`,
 * one record per line, ordered by series then time (the order of `GROUP BY *`). It is streamed
 * to `storage.put` one page of `pageSize` records at a time, so memory stays at one page. A day
 * without points writes no object.
 *
 * Days are dumped one after another. On a failure ({@link InfluxQueryError} for a query error,
 * `IntegrityError` for a truncated or unreadable response, or the storage's error), the failing
 * day's object is not written (`put` publishes nothing when its body throws) and later days are
 * not tried; files of earlier days stay, complete.
 *
 * @returns The objects written, in day order.
 */
export async function dumpMeasurementDays(options: DumpMeasurementDaysOptions): Promise<DayDump[]> {
  const { measurement, storage, signal } = options;
  const pageSize = options.pageSize ?? 1_000;
  if (!Number.isInteger(pageSize) || pageSize < 1) {
    throw new ConfigError(`dumpMeasurementDays: pageSize must be a positive integer, got ${pageSize}.`);
  }
  if (measurement === '' || /[/\\\0]/.test(measurement)) {
    throw new ConfigError(
      `dumpMeasurementDays: measurement "${measurement}" cannot name a file (empty, or contains "/", "\\" or NUL).`,
    );
  }
  const fromMs = options.from.getTime();
  const toMs = options.to.getTime();
  if (Number.isNaN(fromMs) || Number.isNaN(toMs)) {
    throw new ConfigError('dumpMeasurementDays: from and to must be valid dates.');
  }
  const source =
    options.retentionPolicy === undefined
      ? quoteIdentifier(measurement)
      : `${quoteIdentifier(options.retentionPolicy)}.${quoteIdentifier(measurement)}`;
  const written: DayDump[] = [];
  for (let day = Math.floor(fromMs / DAY_MS) * DAY_MS; day < toMs; day += DAY_MS) {
    throwIfAborted(signal);
    const start = new Date(day);
    const end = new Date(day + DAY_MS);
    const query = `SELECT * FROM ${source} WHERE time >= ${quoteLiteral(start.toISOString())} AND time < ${quoteLiteral(end.toISOString())} GROUP BY *`;
    const key = `${options.prefix ?? ''}${dayDumpName(measurement, start)}`;
    const counter = { records: 0 };
    const iterator = dayPages(options, query, pageSize, counter)[Symbol.asyncIterator]();
    try {
      // Read the first page before calling put: an empty day must not create an object.
      const first = await iterator.next();
      if (first.done) continue;
      const body: ByteStream = {
        [Symbol.asyncIterator]: () => {
          let sentFirst = false;
          return {
            next: async () => {
              if (!sentFirst) {
                sentFirst = true;
                return first;
              }
              return iterator.next();
            },
            return: async () => (await iterator.return?.()) ?? { done: true, value: undefined },
          };
        },
      };
      await storage.put(key, body, { contentType: 'application/json', signal });
    } finally {
      await iterator.return?.();
    }
    written.push({ key, records: counter.records });
  }
  return written;
}
