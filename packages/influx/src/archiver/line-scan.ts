import { ConfigError } from '@bk/core';

/** Where a line-protocol line's sections end: measurement+tags, fields, optional timestamp. */
interface Sections {
  /** End (exclusive) of the measurement name. */
  measurementEnd: number;
  /** Start of the timestamp, or -1 when the line has none. */
  timestampStart: number;
}

/**
 * Splits one line-protocol line at its unescaped, unquoted spaces. Backslash escapes anything
 * outside string fields; inside a `"…"` field value, `\"` and `\\` are escapes.
 */
function scan(line: string): Sections {
  let measurementEnd = -1;
  let section = 0;
  let timestampStart = -1;
  let quoted = false;
  for (let index = 0; index < line.length; index += 1) {
    const char = line[index];
    if (char === '\\') {
      index += 1;
      continue;
    }
    if (section === 1 && char === '"') {
      quoted = !quoted;
      continue;
    }
    if (quoted) continue;
    if (section === 0 && measurementEnd === -1 && char === ',') measurementEnd = index;
    if (char === ' ') {
      if (section === 0 && measurementEnd === -1) measurementEnd = index;
      section += 1;
      // Extra spaces between sections are tolerated by InfluxDB's parser.
      while (line[index + 1] === ' ') index += 1;
      if (section === 2) {
        timestampStart = index + 1;
        break;
      }
    }
  }
  if (measurementEnd === -1) measurementEnd = line.length;
  if (timestampStart >= line.length) timestampStart = -1;
  return { measurementEnd, timestampStart };
}

/** The measurement of a line, unescaped (`cpu\ load` → `cpu load`). */
export function measurementOf(line: string): string {
  const { measurementEnd } = scan(line);
  return line.slice(0, measurementEnd).replace(/\\([, ])/g, '$1');
}

const NANOS_PER_UNIT: Record<string, bigint> = {
  ns: 1n,
  u: 1_000n,
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};

/**
 * The UTC epoch milliseconds of a line's timestamp, read in `precision`; `undefined` when the
 * line has no (integer) timestamp.
 */
export function timestampMillisOf(line: string, precision: string): number | undefined {
  const { timestampStart } = scan(line);
  if (timestampStart === -1) return undefined;
  const text = line.slice(timestampStart).trimEnd();
  if (!/^-?\d+$/.test(text)) return undefined;
  const nanos = BigInt(text) * (NANOS_PER_UNIT[precision] ?? 1n);
  return Number(nanos / 1_000_000n);
}

/** `YYYYMMDD` of a UTC instant. */
export function utcDay(millis: number): string {
  const date = new Date(millis);
  if (Number.isNaN(date.getTime())) throw new ConfigError(`Timestamp out of range: ${millis} ms.`);
  return date.toISOString().slice(0, 10).replaceAll('-', '');
}

/**
 * Refuses a database or retention-policy name that cannot be one storage-key segment and one
 * `# CONTEXT-…:` annotation: empty, `.`/`..`, `/`, `\`, NUL, line breaks, or surrounding
 * whitespace (`influx -import` trims it away).
 */
export function checkSegment(what: string, value: string): string {
  const reason =
    typeof value !== 'string' || value === ''
      ? 'it is empty'
      : value === '.' || value === '..'
        ? `it is "${value}"`
        : /[/\\\0\r\n]/.test(value)
          ? 'it contains "/", "\\", a NUL byte or a line break'
          : value.trim() !== value
            ? 'it starts or ends with whitespace'
            : undefined;
  if (reason !== undefined)
    throw new ConfigError(`DrArchiver: invalid ${what} ${JSON.stringify(value)}: ${reason}.`);
  return value;
}
