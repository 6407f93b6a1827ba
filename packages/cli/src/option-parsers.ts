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
