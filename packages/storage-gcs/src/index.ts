import { ConfigError } from '@bk/core';
import { CHUNK_GRANULARITY, GcsStorage, type GcsStorageOptions } from './gcs-storage.ts';

export {
  CHUNK_GRANULARITY,
  DEFAULT_CHUNK_SIZE,
  DEFAULT_RETRY_OPTIONS,
  GcsStorage,
  type GcsStorageOptions,
} from './gcs-storage.ts';
export type { GcsChecksum } from './object-digest.ts';

/** Query parameters `storageFromUrl` reads; any other is refused, so a typo never goes unnoticed. */
const QUERY_PARAMETERS = new Set(['chunkSize', 'resumable', 'checksum', 'requestTimeout']);

/**
 * Creates a {@link GcsStorage} from `gs://bucket/prefix`, the form the `bk` command's
 * `--target` takes. Credentials come from Application Default Credentials
 * (`GOOGLE_APPLICATION_CREDENTIALS`, `gcloud auth application-default login`, or the metadata
 * server); `STORAGE_EMULATOR_HOST` points the client at an emulator. Query parameters:
 * `chunkSize` (bytes, a multiple of 256 KiB, or with a `KiB`/`MiB` suffix), `resumable`
 * (`auto`, `true`, `false`), `checksum` (`md5`, `crc32c`) and `requestTimeout` (milliseconds
 * without a byte moving before a request fails; default 60000).
 *
 * @throws {ConfigError} When the URL is not `gs://bucket[/prefix]`, carries credentials or a
 *   fragment, or has an unknown or invalid query parameter.
 * @example
 * const storage = storageFromUrl(new URL('gs://acme-backups/nightly?chunkSize=32MiB'));
 * console.log(storage.description); // gs://acme-backups/nightly/
 */
export function storageFromUrl(url: URL): GcsStorage {
  const shown = `gs://${url.host}${url.pathname}`;
  const fail = (reason: string) =>
    new ConfigError(`Invalid GCS target "${shown}": ${reason}. Expected gs://bucket/prefix.`);
  if (url.protocol !== 'gs:') throw fail(`the scheme is "${url.protocol}", not "gs:"`);
  if (url.username !== '' || url.password !== '')
    throw fail(
      'it carries credentials; use Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS)',
    );
  if (url.hash !== '') throw fail('it has a fragment');
  if (url.port !== '') throw fail('a bucket has no port');
  for (const name of url.searchParams.keys())
    if (!QUERY_PARAMETERS.has(name))
      throw fail(`unknown query parameter "${name}" (known: ${[...QUERY_PARAMETERS].join(', ')})`);
  const options: GcsStorageOptions = { bucket: url.hostname, prefix: decodeURIComponent(url.pathname) };
  const chunkSize = url.searchParams.get('chunkSize');
  if (chunkSize !== null) options.chunkSize = parseSize(chunkSize, fail);
  const resumable = url.searchParams.get('resumable');
  if (resumable !== null) {
    if (resumable === 'auto') options.resumable = 'auto';
    else if (resumable === 'true' || resumable === 'false') options.resumable = resumable === 'true';
    else throw fail(`resumable must be auto, true or false, not "${resumable}"`);
  }
  const checksum = url.searchParams.get('checksum');
  if (checksum !== null) {
    if (checksum !== 'md5' && checksum !== 'crc32c')
      throw fail(`checksum must be md5 or crc32c, not "${checksum}"`);
    options.checksum = checksum;
  }
  const requestTimeout = url.searchParams.get('requestTimeout');
  if (requestTimeout !== null) {
    if (!/^\d+$/.test(requestTimeout))
      throw fail(`requestTimeout must be a number of milliseconds, not "${requestTimeout}"`);
    options.requestTimeout = Number(requestTimeout);
  }
  return new GcsStorage(options);
}

function parseSize(text: string, fail: (reason: string) => ConfigError): number {
  const match = /^(\d+)(KiB|MiB|GiB)?$/.exec(text);
  if (!match) throw fail(`chunkSize must be a number of bytes, KiB or MiB, not "${text}"`);
  const unit = { KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }[match[2] ?? ''] ?? 1;
  const size = Number(match[1]) * unit;
  if (size % CHUNK_GRANULARITY !== 0 || size === 0)
    throw fail(`chunkSize must be a positive multiple of 256 KiB, not ${text}`);
  return size;
}
