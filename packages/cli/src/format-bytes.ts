const UNITS = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/**
 * A byte count for people: `512 B`, `12.3 MiB`.
 *
 * @example
 * formatBytes(12_897_484); // '12.3 MiB'
 */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || Math.abs(bytes) < 1024) return `${Math.round(bytes)} B`;
  let value = bytes;
  let unit = -1;
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${UNITS[unit]}`;
}
