import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError } from '@bk/core';
import { redactUrl } from './redact-url.ts';

/** A scheme of two or more characters, so that `C:\backups` is read as a path, not a URL. */
const SCHEME = /^[a-z][a-z0-9+.-]+:/i;

/**
 * Reads a backup target: a URL (`file:///var/backups/bk`, `s3://bucket/prefix`), or as a
 * convenience a plain filesystem path, absolute or relative to `baseDirectory`, which becomes a
 * `file:` URL. `where` names the setting in error messages.
 *
 * @throws {ConfigError} when the value is empty or not a valid URL.
 * @example
 * toTargetUrl('backups', '/etc/bk', 'target').href; // 'file:///etc/bk/backups'
 */
export function toTargetUrl(value: string, baseDirectory: string, where: string): URL {
  if (value.trim() === '')
    throw new ConfigError(`${where} is empty; expected a URL such as file:///var/backups/bk.`);
  if (!SCHEME.test(value)) return pathToFileURL(resolve(baseDirectory, value));
  try {
    return new URL(value);
  } catch (error) {
    throw new ConfigError(`${where} "${redactUrl(value)}" ${whyNotAUrl(value)}`, { cause: error });
  }
}

/** Why `value`, which has a scheme, is not a URL, in words that say what to write instead. */
function whyNotAUrl(value: string): string {
  // WHATWG URLs refuse credentials in file: URLs; say so rather than "not a valid URL".
  if (/^file:\/\/[^/]*@/i.test(value)) {
    return 'carries a user name or password, which a file: URL cannot hold: a file: target is a local directory, written as file:///absolute/path.';
  }
  return 'is not a valid URL.';
}
