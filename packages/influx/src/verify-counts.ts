import { throwIfAborted } from '@bk/core';
import { quoteIdentifier } from './line-protocol/escape.ts';
import { listMeasurements, listRetentionPolicies } from './line-protocol/export-line-protocol.ts';
import { InfluxQueryError } from './line-protocol/influx-query-error.ts';
import { type InfluxConnection, JsonNumber, queryInflux } from './line-protocol/query-influx.ts';

/** One database to count points in. */
export interface CountedDatabase extends InfluxConnection {
  database: string;
}

export interface VerifyCountsOptions {
  source: CountedDatabase;
  target: CountedDatabase;
  /** Only this retention policy; default every retention policy found on either side. */
  retentionPolicy?: string;
  /** Count per UTC day as well as per measurement. Default false. */
  groupByDay?: boolean;
  /** Only these measurements; default every measurement found on either side. */
  measurements?: string[];
  signal?: AbortSignal;
}

export interface CountDifference {
  measurement: string;
  retentionPolicy: string;
  /** `YYYY-MM-DD` (UTC) when counting per day. */
  day?: string;
  /**
   * Set when the point counts agree but this field's count of values does not (a point lost one
   * field); `source` and `target` are then that field's counts.
   */
  field?: string;
  source: number;
  target: number;
}

export interface VerifyCountsResult {
  ok: boolean;
  differences: CountDifference[];
}

interface Tally {
  points: number;
  fields: Map<string, number>;
}

/** Brackets every representable timestamp: GROUP BY time() would otherwise stop at now(). */
const ALL_TIME = 'time >= -9223372036854775806 AND time <= 9223372036854775806';

function isMissing(error: unknown): boolean {
  return (
    error instanceof InfluxQueryError &&
    /database not found|retention policy not found|not found: retention policy/i.test(error.message)
  );
}

async function orEmpty<T>(promise: Promise<T[]>): Promise<T[]> {
  try {
    return await promise;
  } catch (error) {
    if (isMissing(error)) return [];
    throw error;
  }
}

/** Points and per-field value counts per day key ('' without days) of one measurement in one RP. */
async function tally(
  side: CountedDatabase,
  retentionPolicy: string,
  measurement: string,
  groupByDay: boolean,
  signal: AbortSignal | undefined,
): Promise<Map<string, Tally>> {
  const tallies = new Map<string, Tally>();
  const query =
    `SELECT count(*) FROM ${quoteIdentifier(retentionPolicy)}.${quoteIdentifier(measurement)} WHERE ${ALL_TIME} ` +
    `GROUP BY *${groupByDay ? ', time(1d) fill(none)' : ''}`;
  try {
    for await (const series of queryInflux({ ...side, query, signal })) {
      const timeIndex = series.columns.indexOf('time');
      for (const row of series.values) {
        const time = row[timeIndex];
        const day =
          groupByDay && time instanceof JsonNumber
            ? new Date(Number(BigInt(time.text) / 1_000_000n)).toISOString().slice(0, 10)
            : '';
        let entry = tallies.get(day);
        if (entry === undefined) {
          entry = { points: 0, fields: new Map() };
          tallies.set(day, entry);
        }
        let points = 0;
        series.columns.forEach((column, index) => {
          const value = row[index];
          if (index === timeIndex || !(value instanceof JsonNumber)) return;
          const count = Number(value.text);
          const field = column.startsWith('count_') ? column.slice('count_'.length) : column;
          entry.fields.set(field, (entry.fields.get(field) ?? 0) + count);
          points = Math.max(points, count);
        });
        entry.points += points;
      }
    }
  } catch (error) {
    if (isMissing(error)) return tallies;
    throw error;
  }
  return tallies;
}

/**
 * Compares point counts of two databases per retention policy and measurement (and per UTC day
 * with `groupByDay`), e.g. after a restore or an import. Every difference is reported; a
 * measurement, retention policy or database missing on one side counts as zero points there.
 *
 * How points are counted: InfluxDB's `count(*)` counts values per field, not points. So each side
 * runs `SELECT count(*) … GROUP BY *` (per series, and per `time(1d)` with `groupByDay`); a
 * series' points are the largest of its field counts, summed over the series. That is exact
 * whenever every point of a series carries the series' most frequent field (the usual case) and a
 * lower bound otherwise. Both sides are counted the same way, and when the point counts agree the
 * per-field totals are compared too, so a point that lost a field is reported (with `field`).
 *
 * @example
 * const { ok, differences } = await verifyCounts({ source: { httpUrl, database: 'metrics' }, target: { httpUrl, database: 'metrics_copy' } });
 */
export async function verifyCounts(options: VerifyCountsOptions): Promise<VerifyCountsResult> {
  const { source, target, signal } = options;
  throwIfAborted(signal);
  const groupByDay = options.groupByDay ?? false;
  const retentionPolicies =
    options.retentionPolicy === undefined
      ? union(
          await orEmpty(listRetentionPolicies({ ...source, signal })),
          await orEmpty(listRetentionPolicies({ ...target, signal })),
        )
      : [options.retentionPolicy];
  const measurements =
    options.measurements ??
    union(
      await orEmpty(listMeasurements({ ...source, signal })),
      await orEmpty(listMeasurements({ ...target, signal })),
    );
  const differences: CountDifference[] = [];
  for (const retentionPolicy of retentionPolicies) {
    for (const measurement of measurements) {
      const [sourceTallies, targetTallies] = await Promise.all([
        tally(source, retentionPolicy, measurement, groupByDay, signal),
        tally(target, retentionPolicy, measurement, groupByDay, signal),
      ]);
      for (const day of union([...sourceTallies.keys()], [...targetTallies.keys()])) {
        const at = { measurement, retentionPolicy, ...(groupByDay ? { day } : {}) };
        const fromSource = sourceTallies.get(day);
        const fromTarget = targetTallies.get(day);
        const sourcePoints = fromSource?.points ?? 0;
        const targetPoints = fromTarget?.points ?? 0;
        if (sourcePoints !== targetPoints) {
          differences.push({ ...at, source: sourcePoints, target: targetPoints });
          continue;
        }
        const fields = union([...(fromSource?.fields.keys() ?? [])], [...(fromTarget?.fields.keys() ?? [])]);
        for (const field of fields) {
          const sourceCount = fromSource?.fields.get(field) ?? 0;
          const targetCount = fromTarget?.fields.get(field) ?? 0;
          if (sourceCount !== targetCount) {
            differences.push({ ...at, field, source: sourceCount, target: targetCount });
          }
        }
      }
    }
  }
  return { ok: differences.length === 0, differences };
}

function union(left: string[], right: string[]): string[] {
  return [...new Set([...left, ...right])].sort();
}
