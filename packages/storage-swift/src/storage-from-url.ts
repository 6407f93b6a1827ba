import { ConfigError } from '@bk/core';
import type { SwiftAuth } from './swift-auth.ts';
import { SwiftStorage, type SwiftStorageOptions } from './swift-storage.ts';

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  k: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
};

function parseSize(name: string, value: string): number {
  const match = /^(\d+)\s*([a-z]*)$/i.exec(value.trim());
  const unit = match ? SIZE_UNITS[match[2]!.toLowerCase()] : undefined;
  if (!match || unit === undefined)
    throw new ConfigError(
      `Invalid ${name} "${value}" in the swift:// URL: use bytes or a KiB/MiB/GiB size, e.g. 64MiB.`,
    );
  return Number(match[1]) * unit;
}

function authFromEnv(env: NodeJS.ProcessEnv): SwiftAuth {
  const need = (name: string): string => {
    const value = env[name];
    if (!value) throw new ConfigError(`A swift:// target needs the environment variable ${name}.`);
    return value;
  };
  if (env.SWIFT_AUTH_URL)
    return { kind: 'v1', authUrl: env.SWIFT_AUTH_URL, user: need('SWIFT_USER'), key: need('SWIFT_KEY') };
  if (env.OS_AUTH_URL) {
    const iface = env.OS_INTERFACE?.replace(/URL$/i, '').toLowerCase();
    if (iface !== undefined && iface !== 'public' && iface !== 'internal' && iface !== 'admin')
      throw new ConfigError(`Invalid OS_INTERFACE "${env.OS_INTERFACE}": use public, internal or admin.`);
    return {
      kind: 'keystone-v3',
      authUrl: env.OS_AUTH_URL,
      username: need('OS_USERNAME'),
      password: need('OS_PASSWORD'),
      projectName: need('OS_PROJECT_NAME'),
      ...(env.OS_USER_DOMAIN_NAME ? { userDomainName: env.OS_USER_DOMAIN_NAME } : {}),
      ...(env.OS_PROJECT_DOMAIN_NAME ? { projectDomainName: env.OS_PROJECT_DOMAIN_NAME } : {}),
      ...(env.OS_REGION_NAME ? { region: env.OS_REGION_NAME } : {}),
      ...(iface ? { interface: iface } : {}),
    };
  }
  if (env.OS_STORAGE_URL && env.OS_AUTH_TOKEN)
    return { kind: 'token', storageUrl: env.OS_STORAGE_URL, token: env.OS_AUTH_TOKEN };
  throw new ConfigError(
    'A swift:// target needs credentials: set SWIFT_AUTH_URL, SWIFT_USER and SWIFT_KEY (TempAuth v1), or OS_AUTH_URL, OS_USERNAME, OS_PASSWORD and OS_PROJECT_NAME (Keystone v3).',
  );
}

/**
 * Opens a {@link SwiftStorage} for `swift://container/prefix`, the form the `bk` CLI passes.
 * Credentials come from the environment, never from the URL:
 *
 * - TempAuth v1: `SWIFT_AUTH_URL`, `SWIFT_USER`, `SWIFT_KEY`;
 * - Keystone v3: `OS_AUTH_URL`, `OS_USERNAME`, `OS_PASSWORD`, `OS_PROJECT_NAME`, and optionally
 *   `OS_USER_DOMAIN_NAME`, `OS_PROJECT_DOMAIN_NAME`, `OS_REGION_NAME`, `OS_INTERFACE`;
 * - a pre-issued token: `OS_STORAGE_URL` and `OS_AUTH_TOKEN`.
 *
 * Query options: `layout=flat|daily`, `segmentSize=64MiB`, `concurrency=4`, `createContainer=false`,
 * `requestTimeout=60000` (ms without a byte moving before a request fails).
 *
 * @param url The target URL.
 * @param env Where to read credentials; default `process.env`.
 * @throws {ConfigError} For another scheme, a missing container, an unknown query option, or a
 *   missing environment variable (named in the message).
 * @example
 * const storage = storageFromUrl(new URL('swift://backups/nightly?layout=daily'));
 */
export function storageFromUrl(url: URL, env: NodeJS.ProcessEnv = process.env): SwiftStorage {
  if (url.protocol !== 'swift:')
    throw new ConfigError(`The URL scheme is "${url.protocol}", not "swift:"; use swift://container/prefix.`);
  if (url.username || url.password)
    throw new ConfigError('A swift:// URL must not carry credentials; set them in the environment.');
  const container = decodeURIComponent(url.host);
  if (!container) throw new ConfigError('A swift:// URL needs a container: swift://container/prefix.');
  const options: SwiftStorageOptions = {
    container,
    prefix: decodeURIComponent(url.pathname).replace(/^\/+|\/+$/g, ''),
    auth: authFromEnv(env),
  };
  for (const [name, value] of url.searchParams) {
    if (name === 'layout') {
      if (value !== 'flat' && value !== 'daily')
        throw new ConfigError(`Invalid layout "${value}" in the swift:// URL: use flat or daily.`);
      options.layout = value;
    } else if (name === 'segmentSize') options.segmentSize = parseSize(name, value);
    else if (name === 'concurrency') options.concurrency = parseSize(name, value);
    else if (name === 'createContainer') options.createContainer = value !== 'false' && value !== '0';
    else if (name === 'requestTimeout') {
      if (!/^\d+$/.test(value))
        throw new ConfigError(
          `Invalid requestTimeout "${value}" in the swift:// URL: use milliseconds, e.g. 60000.`,
        );
      options.requestTimeout = Number(value);
    } else
      throw new ConfigError(
        `Unknown option "${name}" in the swift:// URL; known: layout, segmentSize, concurrency, createContainer, requestTimeout.`,
      );
  }
  return new SwiftStorage(options);
}
