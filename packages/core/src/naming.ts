import { randomInt } from 'node:crypto';

/**
 * `backup_YYYYMMDD_HHMMSS` with an optional `_N` suffix: `_1`, `_2`, … after a collision on a
 * store that creates atomically, or a 16-digit run number on one that cannot (see
 * {@link uniqueRunSequence}).
 */
const NAME_PATTERN = /^backup_(\d{4})(\d{2})(\d{2})_(\d{2})(\d{2})(\d{2})(?:_(\d+))?$/;

/** The file name suffix of a gzip archive (the default). */
export const ARCHIVE_SUFFIX = '.tar.gz';
/** The file name suffix of a zstd archive. */
export const ZSTD_ARCHIVE_SUFFIX = '.tar.zst';

/** Appended to the archive's suffix when it is encrypted: `.tar.gz.age`, an age file. */
export const AGE_SUFFIX = '.age';

/** The archive suffix for a compression format, with `.age` when the archive is encrypted. */
export function archiveSuffix(compression: 'gzip' | 'zstd', encrypted = false): string {
  return (compression === 'zstd' ? ZSTD_ARCHIVE_SUFFIX : ARCHIVE_SUFFIX) + (encrypted ? AGE_SUFFIX : '');
}
/** The sidecar manifest, written after the archive: its presence marks a backup complete. */
export const SIDECAR_SUFFIX = '.manifest.json';
/**
 * The entry index of a format-2 backup (gzip NDJSON, one line per entry), written while the
 * archive is; the sidecar names it and is written after both.
 */
export const ENTRY_INDEX_SUFFIX = '.entries.ndjson.gz';
/** The claim on a name, held while a backup is written. */
export const LOCK_SUFFIX = '.lock';

export interface BackupName {
  name: string;
  /** The UTC second in the name. */
  time: Date;
  /** 0 for the plain name, N for `_N`. */
  sequence: number;
}

function pad(value: number, width = 2): string {
  return String(value).padStart(width, '0');
}

/** The smallest sequence {@link uniqueRunSequence} returns: 16 digits starting with `1`. */
export const UNIQUE_SEQUENCE_BASE = 1_000_000_000_000_000;
const RANDOM_DIGITS_RANGE = 1_000_000_000_000;

/**
 * The `_N` suffix a run takes on a store that cannot create an object only if it is absent
 * (Swift's s3api and several S3-compatible servers ignore `If-None-Match`): `1`, the start's
 * millisecond (3 digits), then 12 random digits, e.g. `backup_20261121_101500_1123048193756204`.
 * Two runs never share a name there (one chance in 10^12 when they start in the same
 * millisecond), so neither can overwrite the other's archive or sidecar. Such names order after
 * `_1`, `_2`, … and among themselves by millisecond, and parse as any other `_N`.
 *
 * @example
 * formatBackupName(start, uniqueRunSequence(start)); // backup_20261121_101500_1123…
 */
export function uniqueRunSequence(time: Date): number {
  return (
    UNIQUE_SEQUENCE_BASE + time.getUTCMilliseconds() * RANDOM_DIGITS_RANGE + randomInt(RANDOM_DIGITS_RANGE)
  );
}

/** `backup_YYYYMMDD_HHMMSS` for `time` in UTC, with `_N` when `sequence` > 0. */
export function formatBackupName(time: Date, sequence = 0): string {
  const base =
    `backup_${time.getUTCFullYear()}${pad(time.getUTCMonth() + 1)}${pad(time.getUTCDate())}` +
    `_${pad(time.getUTCHours())}${pad(time.getUTCMinutes())}${pad(time.getUTCSeconds())}`;
  return sequence > 0 ? `${base}_${sequence}` : base;
}

/** Parses a backup name; `undefined` when it is not one. */
export function parseBackupName(name: string): BackupName | undefined {
  const match = NAME_PATTERN.exec(name);
  if (!match) return undefined;
  const [, year, month, day, hour, minute, second, sequence] = match;
  const time = new Date(Date.UTC(+year!, +month! - 1, +day!, +hour!, +minute!, +second!));
  const parsed = { name, time, sequence: sequence === undefined ? 0 : Number(sequence) };
  // Round-tripping rejects impossible dates (20261399) and non-canonical suffixes (_0, _01).
  return formatBackupName(parsed.time, parsed.sequence) === name ? parsed : undefined;
}

/** Orders names oldest first: by time, then by suffix (`_1` after the plain name). */
export function compareBackupNames(a: BackupName, b: BackupName): number {
  return a.time.getTime() - b.time.getTime() || a.sequence - b.sequence;
}

/** Joins a storage prefix and a name: `prefix/name` or `name`. */
export function joinKey(prefix: string | undefined, name: string): string {
  const clean = (prefix ?? '').replace(/^\/+|\/+$/g, '');
  return clean ? `${clean}/${name}` : name;
}
