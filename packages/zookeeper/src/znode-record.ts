import { ComponentError, ConfigError, isRecord } from '@bk/core';
import { type Acl, longOf, type Znode } from './zookeeper-client.ts';

/** The archive entry holding the znodes, one JSON object per line, parents before children. */
export const ZNODES_ENTRY = 'znodes.jsonl';

/**
 * One line of `znodes.jsonl`. `path`, `data` and `acl` are restored; the stat fields are kept
 * for comparison only (the server assigns new ones on restore).
 */
export interface ZnodeRecord {
  /** Absolute znode path, e.g. `/app/config`. */
  path: string;
  /** The data, base64; `null` for a znode created without data (which differs from empty data). */
  data: string | null;
  /** The ACL as read from the server; digest ids carry password hashes. */
  acl: Acl[];
  version: number;
  cversion: number;
  aversion: number;
  /** Creation time, ms since the epoch. */
  ctime: number;
  /** Last modification time, ms since the epoch. */
  mtime: number;
  /** 64-bit zxids as decimal strings. */
  czxid: string;
  mzxid: string;
  pzxid: string;
  /** Always `"0"`: ephemeral znodes are not backed up. */
  ephemeralOwner: string;
  /** Children on the server when the znode was read (ephemeral ones included). */
  numChildren: number;
}

/** The record of a znode read from the server. */
export function toRecord(path: string, znode: Znode): ZnodeRecord {
  const { stat } = znode;
  return {
    path,
    data: znode.data === undefined ? null : znode.data.toString('base64'),
    acl: znode.acl,
    version: stat.version,
    cversion: stat.cversion,
    aversion: stat.aversion,
    ctime: Number(stat.ctime.readBigInt64BE(0)),
    mtime: Number(stat.mtime.readBigInt64BE(0)),
    czxid: longOf(stat.czxid),
    mzxid: longOf(stat.mzxid),
    pzxid: longOf(stat.pzxid),
    ephemeralOwner: longOf(stat.ephemeralOwner),
    numChildren: stat.numChildren,
  };
}

/**
 * Whether `path` is a znode path bk accepts: absolute, no trailing `/` (except the root), no
 * empty, `.` or `..` segment, no NUL or control character.
 */
export function isZnodePath(path: unknown): path is string {
  if (typeof path !== 'string' || !path.startsWith('/')) return false;
  if (path === '/') return true;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(path)) return false;
  return path
    .slice(1)
    .split('/')
    .every((segment) => segment !== '' && segment !== '.' && segment !== '..');
}

/** Whether `path` is `/zookeeper` or below it (ZooKeeper's own quota and config nodes). */
export function isSystemPath(path: string): boolean {
  return path === '/zookeeper' || path.startsWith('/zookeeper/');
}

/** Whether `path` is `root` or inside it. */
export function isWithin(path: string, root: string): boolean {
  return root === '/' || path === root || path.startsWith(`${root}/`);
}

/** The parent of a non-root path (`/` for a top-level znode). */
export function parentOf(path: string): string {
  const index = path.lastIndexOf('/');
  return index <= 0 ? '/' : path.slice(0, index);
}

/** `child` under `parent`. */
export function joinPath(parent: string, child: string): string {
  return parent === '/' ? `/${child}` : `${parent}/${child}`;
}

/**
 * Checks and normalises a selection of znode paths: sorted, deduplicated, paths inside another
 * selected path dropped.
 *
 * @throws {ConfigError} for a path that is not a valid znode path or lies in `/zookeeper`.
 */
export function normalisePaths(paths: unknown, where: string): string[] {
  if (!Array.isArray(paths) || paths.length === 0) {
    throw new ConfigError(`${where}: "paths" must be a non-empty array of absolute znode paths.`);
  }
  for (const path of paths) {
    if (!isZnodePath(path)) {
      throw new ConfigError(
        `${where}: "paths" holds ${JSON.stringify(path)}; each must be an absolute znode path such as "/app" (no trailing "/", no empty, "." or ".." segment).`,
      );
    }
    if (isSystemPath(path)) {
      throw new ConfigError(
        `${where}: "paths" holds "${path}"; /zookeeper is ZooKeeper's own and never backed up.`,
      );
    }
  }
  const sorted = [...new Set(paths as string[])].sort();
  return sorted.filter((path) => !sorted.some((other) => other !== path && isWithin(path, other)));
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Parses and checks one line of `znodes.jsonl`.
 *
 * @throws {ComponentError} naming the line when it is not a valid record.
 */
export function parseRecord(line: string, lineNumber: number, component: string): ZnodeRecord {
  const fail = (reason: string): never => {
    throw new ComponentError(component, `${ZNODES_ENTRY} line ${lineNumber}: ${reason}`);
  };
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return fail('not valid JSON.');
  }
  if (!isRecord(value)) return fail('not a JSON object.');
  if (!isZnodePath(value.path) || value.path === '/')
    return fail(`invalid znode path ${JSON.stringify(value.path)}.`);
  if (
    value.data !== null &&
    (typeof value.data !== 'string' || value.data.length % 4 !== 0 || !BASE64.test(value.data))
  ) {
    return fail(`"data" of "${value.path}" must be base64 or null.`);
  }
  if (!Array.isArray(value.acl) || value.acl.length === 0)
    return fail(`"acl" of "${value.path}" must be a non-empty array.`);
  for (const entry of value.acl) {
    if (
      !isRecord(entry) ||
      !Number.isInteger(entry.perms) ||
      (entry.perms as number) < 1 ||
      (entry.perms as number) > 31 ||
      typeof entry.scheme !== 'string' ||
      entry.scheme === '' ||
      typeof entry.id !== 'string'
    ) {
      // The entry itself is not quoted: a digest id holds a password hash.
      return fail(`"acl" of "${value.path}" holds an entry that is not {perms: 1–31, scheme, id}.`);
    }
  }
  if (!Number.isInteger(value.numChildren) || (value.numChildren as number) < 0) {
    return fail(`"numChildren" of "${value.path}" must be a non-negative integer.`);
  }
  return value as unknown as ZnodeRecord;
}

/** The ACL entries as they are written back (only the three fields). */
export function aclOf(record: ZnodeRecord): Acl[] {
  return record.acl.map(({ perms, scheme, id }) => ({ perms, scheme, id }));
}

/** The data as it is written back: `undefined` for `null` (a znode without data). */
export function dataOf(record: ZnodeRecord): Buffer | undefined {
  return record.data === null ? undefined : Buffer.from(record.data, 'base64');
}
