import { InvalidArgumentError } from 'commander';

/** Parses `a,b,c` into names, appending to earlier uses of the flag. */
export function parseNameList(value: string, previous: string[] = []): string[] {
  const names = value
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '');
  if (names.length === 0) throw new InvalidArgumentError('expected one or more names separated by commas.');
  return [...previous, ...names];
}

/** Collects a repeatable flag's values. */
export function collectValues(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Collects repeatable `key=value` flags into a record. */
export function parseLabel(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const separator = value.indexOf('=');
  if (separator <= 0) throw new InvalidArgumentError(`expected key=value, got "${value}".`);
  return { ...previous, [value.slice(0, separator)]: value.slice(separator + 1) };
}

/** Parses a non-negative integer flag. */
export function parseCount(value: string): number {
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value)))
    throw new InvalidArgumentError('expected a non-negative integer.');
  return Number(value);
}

/** Parses `--level`: 1–9 for gzip, 1–19 for zstd (the format checks its own range). */
export function parseLevel(value: string): number {
  if (!/^(?:[1-9]|1[0-9])$/.test(value))
    throw new InvalidArgumentError('expected a level from 1 to 9 (gzip) or 1 to 19 (zstd).');
  return Number(value);
}

/** Parses `--read-concurrency`: ranged requests in flight, 1 to 16. */
export function parseReadConcurrency(value: string): number {
  if (!/^(?:[1-9]|1[0-6])$/.test(value)) throw new InvalidArgumentError('expected a number from 1 to 16.');
  return Number(value);
}

/** Parses `--compression`: `gzip` or `zstd`. */
export function parseCompression(value: string): 'gzip' | 'zstd' {
  if (value !== 'gzip' && value !== 'zstd') throw new InvalidArgumentError('expected gzip or zstd.');
  return value;
}

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses a duration such as `0s`, `90m`, `24h` or `7d` into milliseconds. */
export function parseDuration(value: string): number {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(value.trim());
  const milliseconds = match ? Number(match[1]) * DURATION_UNITS_MS[match[2]!]! : Number.NaN;
  if (!Number.isSafeInteger(milliseconds))
    throw new InvalidArgumentError('expected a duration: a whole number with ms, s, m, h or d, e.g. 24h.');
  return milliseconds;
}
