/**
 * An entry count for people: `1 entry`, `12 entries`.
 *
 * @example
 * formatEntries(1); // '1 entry'
 */
export function formatEntries(count: number): string {
  return count === 1 ? '1 entry' : `${count} entries`;
}
