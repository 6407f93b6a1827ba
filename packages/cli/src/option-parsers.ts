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

/** Parses `--level`: a gzip level from 1 to 9. */
export function parseLevel(value: string): number {
  if (!/^[1-9]$/.test(value)) throw new InvalidArgumentError('expected a gzip level from 1 to 9.');
  return Number(value);
}
