import { ConfigError, collect, fromBytes, gunzip, type Storage, throwIfAborted } from '@bk/core';
import { quoteIdentifier } from '../line-protocol/escape.ts';
import { importLineProtocol, type LineProtocolPrecision } from '../line-protocol/import-line-protocol.ts';
import { InfluxQueryError } from '../line-protocol/influx-query-error.ts';
import { type InfluxConnection, JsonNumber, queryInflux } from '../line-protocol/query-influx.ts';
import { splitLines } from '../line-protocol/split-lines.ts';
import { checkSegment, measurementOf, utcDay } from './line-scan.ts';

export interface ReplayOptions extends InfluxConnection {
  storage: Storage;
  /** The `instance` the {@link DrArchiver} wrote with. */
  instance: string;
  /** Only this database's files. */
  database?: string;
  /** Only this retention policy's files. */
  retentionPolicy?: string;
  /** First UTC day to replay (the day part of the date, inclusive). */
  from?: Date;
  /** Last UTC day to replay (inclusive). */
  to?: Date;
  /** Write every file into this database instead of the one it was captured from. */
  targetDatabase?: string;
  /**
   * Precision of the archived lines' timestamps: the archive does not record it, so say what
   * your writers used. Default `ns`.
   */
  precision?: LineProtocolPrecision;
  /** Create missing databases and retention policies (`DURATION INF`). Default true. */
  createDatabase?: boolean;
  /**
   * After importing, count points per database, retention policy and measurement in the target
   * and compare with the lines imported. Exact when the target held none of these points before
   * and no two lines share a series and timestamp (InfluxDB keeps one of them). Default false.
   */
  verify?: boolean;
  /**
   * The number of lines your writers had acknowledged by the archiver (e.g. the sum of their
   * `stats().linesAccepted`, or their own count), for the replayed range. Implies `verify`, and
   * `ok` also requires the lines read from the archive and the points counted in the target to
   * equal it: the archive's own counts cannot show an object that never arrived.
   */
  expectedLines?: number;
  /** Lines per `POST /write`. Default 5 000. */
  batchSize?: number;
  /** Called after each file. */
  onFile?: (file: ReplayedFile) => void;
  signal?: AbortSignal;
}

export interface ReplayedFile {
  key: string;
  database: string;
  retentionPolicy: string;
  /** `YYYYMMDD`. */
  day: string;
  lines: number;
}

export interface ReplayDifference {
  database: string;
  retentionPolicy: string;
  measurement: string;
  /** Lines imported for this measurement. */
  lines: number;
  /** Points counted in the target. */
  points: number;
}

export interface ReplayResult {
  /** Files imported. */
  files: number;
  /** Lines (points) written. */
  lines: number;
  /** Keys under the prefix that are not archiver files (ignored). */
  skipped: string[];
  /** With `verify`: true when every count matched (and `expectedLines`, when given). */
  ok?: boolean;
  differences?: ReplayDifference[];
  /** With `verify`: points counted in the target across the replayed measurements. */
  points?: number;
  /** With `expectedLines`: the count passed, for the report. */
  expectedLines?: number;
}

interface ArchivedFile {
  key: string;
  database: string;
  retentionPolicy: string;
  day: string;
}

const DAY_PATTERN = /^\d{8}$/;
const ALL_TIME = 'time >= -9223372036854775806 AND time <= 9223372036854775806';

/** Lists the archiver's files under `instance`, filtered and sorted by day, database, RP, key. */
export async function listArchivedFiles(
  options: Pick<
    ReplayOptions,
    'storage' | 'instance' | 'database' | 'retentionPolicy' | 'from' | 'to' | 'signal'
  >,
): Promise<{ files: ArchivedFile[]; skipped: string[] }> {
  const { instance, database, retentionPolicy } = options;
  if (typeof instance !== 'string' || instance === '')
    throw new ConfigError('replay: `instance` is required.');
  for (const segment of instance.split('/')) checkSegment('instance segment', segment);
  if (database !== undefined) checkSegment('database', database);
  if (retentionPolicy !== undefined) checkSegment('retention policy', retentionPolicy);
  const fromDay = options.from === undefined ? undefined : utcDay(options.from.getTime());
  const toDay = options.to === undefined ? undefined : utcDay(options.to.getTime());
  let prefix = `${instance}/`;
  if (database !== undefined) {
    prefix += `${database}/`;
    if (retentionPolicy !== undefined) prefix += `${retentionPolicy}/`;
  }
  const files: ArchivedFile[] = [];
  const skipped: string[] = [];
  for await (const object of options.storage.list(prefix, { signal: options.signal })) {
    const parts = object.key.slice(instance.length + 1).split('/');
    const [db, rp, day, name] = parts;
    if (
      !object.key.startsWith(`${instance}/`) ||
      parts.length !== 4 ||
      db === undefined ||
      rp === undefined ||
      day === undefined ||
      name === undefined ||
      !DAY_PATTERN.test(day) ||
      !name.endsWith('.gz')
    ) {
      skipped.push(object.key);
      continue;
    }
    if (database !== undefined && db !== database) continue;
    if (retentionPolicy !== undefined && rp !== retentionPolicy) continue;
    if (fromDay !== undefined && day < fromDay) continue;
    if (toDay !== undefined && day > toDay) continue;
    files.push({ key: object.key, database: db, retentionPolicy: rp, day });
  }
  const order = (file: ArchivedFile) => [file.day, file.database, file.retentionPolicy, file.key];
  files.sort((a, b) => {
    const left = order(a);
    const right = order(b);
    for (let index = 0; index < left.length; index += 1) {
      const compared = (left[index] as string).localeCompare(right[index] as string);
      if (compared !== 0) return compared;
    }
    return 0;
  });
  return { files, skipped: skipped.sort() };
}

/**
 * Replays what a {@link DrArchiver} captured into an InfluxDB 1.x server: lists
 * `<instance>/[<db>/[<rp>/]]`, keeps the files of the `from`…`to` UTC days and imports them in day
 * order with {@link importLineProtocol} (gzip detected, annotations honoured; `targetDatabase`
 * overrides the captured database). Reads the storage with `list` and `get` only.
 *
 * @example
 * const { files, lines, ok } = await replay({ storage, instance: 'influx-prod-1', httpUrl: 'http://dr:8086',
 *   from: new Date('2026-11-20'), to: new Date('2026-11-21'), precision: 'ns', verify: true });
 */
export async function replay(options: ReplayOptions): Promise<ReplayResult> {
  throwIfAborted(options.signal);
  if (options.targetDatabase !== undefined) checkSegment('target database', options.targetDatabase);
  const { expectedLines } = options;
  if (expectedLines !== undefined && (!Number.isSafeInteger(expectedLines) || expectedLines < 0))
    throw new ConfigError('replay: `expectedLines` must be a whole number ≥ 0.');
  const verify = options.verify === true || expectedLines !== undefined;
  const { files, skipped } = await listArchivedFiles(options);
  const expected = new Map<
    string,
    { database: string; retentionPolicy: string; measurement: string; lines: number }
  >();
  const result: ReplayResult = { files: 0, lines: 0, skipped };
  for (const file of files) {
    throwIfAborted(options.signal);
    const database = options.targetDatabase ?? file.database;
    const importOptions = {
      httpUrl: options.httpUrl,
      username: options.username,
      password: options.password,
      database,
      retentionPolicy: file.retentionPolicy,
      precision: options.precision ?? 'ns',
      createDatabase: options.createDatabase ?? true,
      batchSize: options.batchSize,
      signal: options.signal,
    };
    let lines: number;
    if (verify) {
      // Files are bounded by the archiver's maxFileBytes: read once, count, then import.
      const bytes = await collect(await options.storage.get(file.key, { signal: options.signal }), 2 ** 32);
      for await (const line of splitLines(gunzip(fromBytes(bytes)))) {
        if (line.startsWith('#') || line.trim() === '') continue;
        const measurement = measurementOf(line);
        const place = `${database}\u0000${file.retentionPolicy}\u0000${measurement}`;
        const entry = expected.get(place) ?? {
          database,
          retentionPolicy: file.retentionPolicy,
          measurement,
          lines: 0,
        };
        entry.lines += 1;
        expected.set(place, entry);
      }
      ({ lines } = await importLineProtocol(fromBytes(bytes), importOptions));
    } else {
      ({ lines } = await importLineProtocol(
        await options.storage.get(file.key, { signal: options.signal }),
        importOptions,
      ));
    }
    result.files += 1;
    result.lines += lines;
    options.onFile?.({ ...file, lines });
  }
  if (verify) {
    const differences: ReplayDifference[] = [];
    let total = 0;
    for (const entry of expected.values()) {
      const points = await countPoints(options, entry.database, entry.retentionPolicy, entry.measurement);
      total += points;
      if (points !== entry.lines) differences.push({ ...entry, points });
    }
    result.ok = differences.length === 0;
    result.differences = differences;
    result.points = total;
    if (expectedLines !== undefined) {
      result.expectedLines = expectedLines;
      result.ok = result.ok && result.lines === expectedLines && total === expectedLines;
    }
  }
  return result;
}

/** Points of one measurement: per series, the largest field count (as verifyCounts counts). */
async function countPoints(
  connection: ReplayOptions,
  database: string,
  retentionPolicy: string,
  measurement: string,
): Promise<number> {
  const query = `SELECT count(*) FROM ${quoteIdentifier(retentionPolicy)}.${quoteIdentifier(measurement)} WHERE ${ALL_TIME} GROUP BY *`;
  let total = 0;
  try {
    for await (const series of queryInflux({
      httpUrl: connection.httpUrl,
      username: connection.username,
      password: connection.password,
      database,
      query,
      signal: connection.signal,
    })) {
      const timeIndex = series.columns.indexOf('time');
      for (const row of series.values) {
        let points = 0;
        row.forEach((value, index) => {
          if (index !== timeIndex && value instanceof JsonNumber)
            points = Math.max(points, Number(value.text));
        });
        total += points;
      }
    }
  } catch (error) {
    if (error instanceof InfluxQueryError && /not found/i.test(error.message)) return 0;
    throw error;
  }
  return total;
}
