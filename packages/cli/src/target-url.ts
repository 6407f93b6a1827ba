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
    throw new ConfigError(`${where} "${redactUrl(value)}" is not a valid URL.`, { cause: error });
  }
}
