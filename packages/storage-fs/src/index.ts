import { fileURLToPath } from 'node:url';
import { ConfigError } from '@bk/core';
import { FsStorage, type FsStorageOptions } from './fs-storage.ts';

export { FsStorage, type FsStorageOptions };

/**
 * Creates an {@link FsStorage} from a `file:///absolute/path` URL, the form a CLI flag or a
 * config file carries. Query strings, fragments and hosts other than `localhost` are refused
 * rather than ignored, so a typo never writes somewhere unexpected.
 *
 * @param url A `file:` URL of the root directory, as a string or `URL`.
 * @throws {ConfigError} When `url` is not a valid `file:///absolute/path` URL.
 * @example
 * const storage = fsStorageFromUrl('file:///var/backups/bk');
 * console.log(storage.root); // /var/backups/bk
 */
export function fsStorageFromUrl(url: string | URL): FsStorage {
  const text = String(url);
  const fail = (reason: string, cause?: unknown) =>
    new ConfigError(`Invalid storage URL "${text}": ${reason}. Expected file:///absolute/path.`, { cause });
  let parsed: URL;
  try {
    parsed = typeof url === 'string' ? new URL(url) : url;
  } catch (error) {
    throw fail('it is not a URL', error);
  }
  if (parsed.protocol !== 'file:') throw fail(`the scheme is "${parsed.protocol}", not "file:"`);
  if (parsed.search !== '' || parsed.hash !== '') throw fail('it has a query or a fragment');
  if (typeof url === 'string' && !/^file:\/\/(localhost)?\//i.test(url))
    throw fail('the path must be absolute, after "file://"');
  let root: string;
  try {
    root = fileURLToPath(parsed);
  } catch (error) {
    throw fail(error instanceof Error ? error.message : 'the path cannot be read', error);
  }
  return new FsStorage({ root });
}

/**
 * Same as {@link fsStorageFromUrl}, under the name every storage package exports, so that
 * `openStorage` (and each component package's `backup(target)`) opens `file:` targets like any
 * other scheme. `env` is not read: a directory needs no credentials.
 */
export function storageFromUrl(url: URL, _env?: NodeJS.ProcessEnv): FsStorage {
  return fsStorageFromUrl(url);
}
