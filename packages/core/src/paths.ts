import { ConfigError, UnsafePathError } from './errors.ts';

const COMPONENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * Checks a component name: one path segment of letters, digits, `.`, `_` and `-` (up to 128),
 * starting with a letter or digit, and neither `manifest.json` nor `manifest.entries` (the
 * archive's own manifest and entry-index sections). The archive stores a component's
 * entries under `<name>/`, so a name must never be a path.
 */
export function checkComponentName(name: string): string {
  if (!COMPONENT_NAME.test(name) || name === 'manifest.json' || name === 'manifest.entries') {
    throw new ConfigError(
      `Invalid component name "${name}": use letters, digits, ".", "_" and "-", starting with a letter or digit.`,
    );
  }
  return name;
}

/**
 * Checks a storage key against the rules of the `Storage` contract, which every adapter
 * applies before it touches its backend: a key is `/`-separated and relative, and must not
 * escape a root or prefix. Adapters add their backend's own rules after this one.
 *
 * @returns `key`, unchanged.
 * @throws {ConfigError} When the key is empty (or not a string), absolute (starts with `/`),
 *   contains a backslash or a NUL byte, or has an empty, `.` or `..` segment.
 * @example
 * checkStorageKey('nightly/backup_20261121_101500.tar.gz'); // returned as is
 * checkStorageKey('a/../b'); // throws ConfigError
 */
export function checkStorageKey(key: string): string {
  const reason =
    typeof key !== 'string' || key === ''
      ? 'it is empty'
      : key.startsWith('/')
        ? 'it is absolute'
        : key.includes('\\')
          ? 'it contains a backslash'
          : key.includes('\0')
            ? 'it contains a NUL byte'
            : key.split('/').some((part) => part === '' || part === '.' || part === '..')
              ? 'it has an empty, "." or ".." segment'
              : undefined;
  if (reason !== undefined) throw new ConfigError(`Invalid storage key "${key}": ${reason}.`);
  return key;
}

/**
 * Checks that `path` is a safe relative entry path and returns it normalised: `/`-separated,
 * no leading `/`, no drive letter, no empty, `.` or `..` segments, no NUL.
 * Throws {@link UnsafePathError} otherwise.
 */
export function safeEntryPath(path: string): string {
  if (path.length === 0) throw new UnsafePathError(path, 'the path is empty');
  if (path.includes('\0')) throw new UnsafePathError(path, 'the path contains a NUL byte');
  // A backslash is a separator somewhere; refusing it keeps one path meaning one place everywhere.
  if (path.includes('\\')) throw new UnsafePathError(path, 'backslashes are not allowed');
  const slashed = path;
  if (slashed.startsWith('/') || /^[A-Za-z]:/.test(slashed)) {
    throw new UnsafePathError(path, 'absolute paths are not allowed');
  }
  const segments = slashed.split('/').filter((segment) => segment !== '' && segment !== '.');
  if (segments.includes('..')) throw new UnsafePathError(path, '".." segments are not allowed');
  if (segments.length === 0) throw new UnsafePathError(path, 'the path names no file');
  return segments.join('/');
}

/**
 * Whether a symbolic link stored at `linkPath` (relative, safe) pointing at `target` stays inside
 * the tree it is restored into. Absolute targets always escape. Only leading `..` segments are
 * allowed: `m/..` is refused because `m` may itself be a link, and the operating system resolves
 * `..` after following it. With every link in a tree obeying this rule, no chain of links leaves
 * the tree.
 *
 * @deprecated bk no longer refuses a link by where it points: a link is restored as it was
 * (`/etc/localtime -> /usr/share/zoneinfo/UTC` must come back) and safety rests on never
 * writing through one. Kept for callers that want the lexical test.
 */
export function linkStaysInside(linkPath: string, target: string): boolean {
  if (
    target === '' ||
    target.startsWith('/') ||
    target.includes('\0') ||
    target.includes('\\') ||
    /^[A-Za-z]:/.test(target)
  ) {
    return false;
  }
  const parts = linkPath.split('/').slice(0, -1);
  let descended = false;
  for (const segment of target.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      if (descended || parts.length === 0) return false;
      parts.pop();
    } else {
      descended = true;
      parts.push(segment);
    }
  }
  return true;
}

/**
 * Checks a `get` range: `start` (default 0) and `end` (exclusive, default the object's end) must
 * be non-negative safe integers. An `end` at or before `start` reads nothing. Every storage
 * adapter applies the same rule.
 *
 * @throws {ConfigError} When either bound is negative or not an integer.
 */
export function checkRange(range: { start: number; end?: number } | undefined): {
  start: number;
  end?: number;
} {
  const { start = 0, end } = range ?? {};
  if (
    !Number.isSafeInteger(start) ||
    start < 0 ||
    (end !== undefined && (!Number.isSafeInteger(end) || end < 0))
  ) {
    throw new ConfigError(
      `Invalid range { start: ${start}, end: ${end} }: both must be non-negative integers.`,
    );
  }
  return end === undefined ? { start } : { start, end };
}
