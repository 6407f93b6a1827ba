/** `backup_YYYYMMDD_HHMMSS` with an optional `_N` collision suffix. */
const NAME_PATTERN = /^backup_(\d{4})(\d{2})(\d{2})_(\d{2})(\d{2})(\d{2})(?:_(\d+))?$/;

/** The file name suffix of a gzip archive (the default). */
export const ARCHIVE_SUFFIX = '.tar.gz';
/** The file name suffix of a zstd archive. */
export const ZSTD_ARCHIVE_SUFFIX = '.tar.zst';

/** The archive suffix for a compression format. */
export function archiveSuffix(compression: 'gzip' | 'zstd'): string {
  return compression === 'zstd' ? ZSTD_ARCHIVE_SUFFIX : ARCHIVE_SUFFIX;
}
/** The sidecar manifest, written after the archive: its presence marks a backup complete. */
export const SIDECAR_SUFFIX = '.manifest.json';
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
