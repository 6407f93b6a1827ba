import type { PreflightResult } from './contracts.ts';

/** A version as components report it, reduced to its numbers: `"v3.4.30"` → `[3, 4, 30]`. */
export interface ParsedVersion {
  major: number;
  minor: number;
  patch: number;
}

/**
 * The first `major[.minor[.patch]]` in `text` (`"15.18 (Debian 15.18-1)"`, `"v3.4.30"`,
 * `"1.6.7~rc0"`), missing parts as 0; `undefined` when `text` holds no number.
 */
export function parseVersion(text: string | undefined): ParsedVersion | undefined {
  const match = /(\d+)(?:\.(\d+))?(?:\.(\d+))?/.exec(text ?? '');
  if (!match) return undefined;
  return { major: Number(match[1]), minor: Number(match[2] ?? 0), patch: Number(match[3] ?? 0) };
}

/** Negative when `a` is older than `b`, 0 when equal, positive when newer (patch included). */
export function compareVersions(a: ParsedVersion, b: ParsedVersion): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

/**
 * The refusal of a restore from `product` `backupVersion` into `targetVersion` when their major
 * versions differ; `undefined` when they agree, or when either version is unknown (a backup that
 * recorded none cannot be judged). `forceable` defaults to true.
 *
 * @example
 * refuseOtherMajor('InfluxDB', '2.7.1', '1.6.7') // { reason: 'InfluxDB 2 backups restore only into InfluxDB 2.x …', forceable: true }
 */
export function refuseOtherMajor(
  product: string,
  backupVersion: string | undefined,
  targetVersion: string | undefined,
  forceable = true,
): PreflightResult['refusal'] {
  const backup = parseVersion(backupVersion);
  const target = parseVersion(targetVersion);
  if (!backup || !target || backup.major === target.major) return undefined;
  return {
    reason: `${product} ${backup.major} backups restore only into ${product} ${backup.major}.x; restore into a ${product} ${backup.major}.x server, or migrate the data with ${product}'s own upgrade path after restoring there`,
    forceable,
  };
}

/**
 * The refusal of a restore into a target older than the backup at the given precision
 * (`'major'`: 16 into 15; `'minor'`: 3.5 into 3.4); `undefined` when the target is as new or newer,
 * or when either version is unknown.
 */
export function refuseOlderTarget(
  product: string,
  backupVersion: string | undefined,
  targetVersion: string | undefined,
  precision: 'major' | 'minor',
  forceable = true,
): PreflightResult['refusal'] {
  const backup = parseVersion(backupVersion);
  const target = parseVersion(targetVersion);
  if (!backup || !target) return undefined;
  const older =
    precision === 'major'
      ? target.major < backup.major
      : target.major < backup.major || (target.major === backup.major && target.minor < backup.minor);
  if (!older) return undefined;
  const wanted = precision === 'major' ? `${backup.major}` : `${backup.major}.${backup.minor}`;
  return {
    reason: `${product} does not take data from a newer ${precision === 'major' ? 'major ' : ''}version; restore into ${product} ${wanted} or newer`,
    forceable,
  };
}
