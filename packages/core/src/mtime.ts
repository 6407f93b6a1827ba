/**
 * Modification times to the nanosecond, as file systems keep them. The manifest stores one as an
 * ISO 8601 UTC string with up to nine fraction digits, a pax header as decimal seconds; both are
 * read back exactly. `Date` holds milliseconds only, so an {@link Entry} may carry `mtimeNs`.
 */

const NS_PER_MS = 1_000_000n;
const NS_PER_SECOND = 1_000_000_000n;
const ISO_MTIME = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z$/;
const PAX_MTIME = /^(-?)(\d{1,15})(?:\.(\d{1,9})\d*)?$/;

/** Floor division, so instants before 1970 split into seconds and a non-negative fraction. */
function split(ns: bigint, unit: bigint): [bigint, bigint] {
  let whole = ns / unit;
  let rest = ns % unit;
  if (rest < 0n) {
    whole -= 1n;
    rest += unit;
  }
  return [whole, rest];
}

/** The nanoseconds of a `Date`, or of `mtimeNs` when it is given (it is the more precise). */
export function mtimeNanoseconds(mtime: Date, mtimeNs?: bigint): bigint {
  if (mtimeNs !== undefined) return mtimeNs;
  const ms = mtime.getTime();
  return Number.isFinite(ms) ? BigInt(ms) * NS_PER_MS : 0n;
}

/** The `Date` of an instant in nanoseconds (truncated to the millisecond below). */
export function mtimeDate(ns: bigint): Date {
  return new Date(Number(split(ns, NS_PER_MS)[0]));
}

/**
 * An instant as the manifest stores it: `toISOString()` when it falls on a whole millisecond
 * (what every earlier bk wrote), else nine fraction digits.
 */
export function formatMtime(ns: bigint): string {
  const [ms, subMs] = split(ns, NS_PER_MS);
  const iso = new Date(Number(ms)).toISOString();
  if (subMs === 0n) return iso;
  const [, fraction] = split(ns, NS_PER_SECOND);
  return `${iso.slice(0, -5)}.${fraction.toString().padStart(9, '0')}Z`;
}

/**
 * Parses a manifest mtime strictly: `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (UTC, up to nine digits),
 * a real calendar date and time. Returns the instant in nanoseconds, `undefined` when invalid.
 */
export function parseMtime(text: string): bigint | undefined {
  // Restore and verify parse each entry's mtime a few times in a row, and the entries of a tree
  // share their seconds often: the last answer and the last whole second are kept.
  if (text === lastParsed.text) return lastParsed.value;
  const match = ISO_MTIME.exec(text);
  let value: bigint | undefined;
  if (match) {
    const seconds = match[1] === lastSeconds.text ? lastSeconds.value : validSeconds(match[1]!);
    lastSeconds = { text: match[1]!, value: seconds };
    if (seconds !== undefined) value = seconds + BigInt((match[2] ?? '').padEnd(9, '0'));
  }
  lastParsed = { text, value };
  return value;
}

let lastParsed: { text: string; value: bigint | undefined } = { text: '', value: undefined };
let lastSeconds: { text: string; value: bigint | undefined } = { text: '', value: undefined };

/** `YYYY-MM-DDTHH:MM:SS` (UTC) in nanoseconds, `undefined` when it is no real date and time. */
function validSeconds(text: string): bigint | undefined {
  const seconds = Date.parse(`${text}Z`);
  // Date.parse rolls 2026-02-31 over to March: only a date it prints back the same is real.
  if (Number.isNaN(seconds) || new Date(seconds).toISOString().slice(0, 19) !== text) return undefined;
  return BigInt(seconds) * NS_PER_MS;
}

/** An instant as a pax `mtime` value: decimal seconds, with only the fraction digits it needs. */
export function formatPaxMtime(ns: bigint): string {
  const [seconds, fraction] = split(ns, NS_PER_SECOND);
  if (fraction === 0n) return seconds.toString();
  return `${seconds}.${fraction.toString().padStart(9, '0').replace(/0+$/, '')}`;
}

/**
 * Parses a pax `mtime` value (decimal seconds, digits past the nanosecond ignored) to
 * nanoseconds; `undefined` when it is not a number.
 */
export function parsePaxMtime(text: string): bigint | undefined {
  const match = PAX_MTIME.exec(text);
  if (!match) return undefined;
  const magnitude = BigInt(match[2]!) * NS_PER_SECOND + BigInt((match[3] ?? '').padEnd(9, '0'));
  return match[1] === '-' ? -magnitude : magnitude;
}

/**
 * An instant as the seconds `fs.utimes` and friends take. They pass a double on to the system,
 * which keeps microseconds (libuv truncates to them) and ~0.24 µs of precision today: the value
 * is the microsecond below the instant plus half a microsecond, so the microsecond that arrives is
 * the instant's own and never rounds into the next second.
 */
export function utimesSeconds(ns: bigint): number {
  const [seconds, fraction] = split(ns, NS_PER_SECOND);
  const micros = fraction / 1000n;
  return Number(seconds) + (Number(micros) * 1000 + 500) / 1e9;
}
