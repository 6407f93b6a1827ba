import { StorageSharedKeyCredential } from '@azure/storage-blob';
import { ConfigError } from '@bk/core';
import { AzureStorage } from './azure-storage.ts';

/**
 * Opens an {@link AzureStorage} for `az://<container>/<prefix>`, the form the `bk` command's
 * `--target` takes. Credentials never come from the URL; they come from the environment:
 *
 * - `AZURE_STORAGE_CONNECTION_STRING`, or
 * - `AZURE_STORAGE_ACCOUNT` and `AZURE_STORAGE_KEY`, with `AZURE_STORAGE_BLOB_ENDPOINT` for
 *   anything but `https://<account>.blob.core.windows.net` (Azurite, sovereign clouds).
 *
 * @param url `az://container` or `az://container/some/prefix`, optionally with `?requestTimeout=`
 *   (milliseconds without a byte moving before a request fails; default 60000).
 * @param env Where to read the variables; default `process.env`.
 * @throws {ConfigError} When the URL is not `az://container[/prefix]` (a port, user, unknown
 *   query parameter or fragment is refused rather than ignored), or when the environment lacks credentials; the
 *   message names the variables, never their values.
 * @example
 * // AZURE_STORAGE_CONNECTION_STRING=… bk backup --target az://backups/nightly
 * const storage = storageFromUrl(new URL('az://backups/nightly'));
 */
export function storageFromUrl(url: URL, env: NodeJS.ProcessEnv = process.env): AzureStorage {
  const shown = `az://${url.hostname}${url.pathname}`;
  const fail = (reason: string) =>
    new ConfigError(`Invalid Azure target "${shown}": ${reason}. Expected az://container/prefix.`);
  if (url.protocol !== 'az:') throw fail(`the scheme is "${url.protocol}", not "az:"`);
  if (url.username !== '' || url.password !== '')
    throw fail(
      'it carries credentials; set AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY instead',
    );
  if (url.port !== '' || url.hash !== '') throw fail('it has a port or a fragment');
  let requestTimeout: number | undefined;
  for (const [name, value] of url.searchParams) {
    if (name !== 'requestTimeout')
      throw fail(`it has an unknown query parameter "${name}" (known: requestTimeout)`);
    if (!/^\d+$/.test(value)) throw fail(`its requestTimeout "${value}" is not a number of milliseconds`);
    requestTimeout = Number(value);
  }
  const container = url.hostname;
  if (container === '') throw fail('it names no container');
  let prefix: string;
  try {
    prefix = decodeURIComponent(url.pathname);
  } catch {
    throw fail('its path is not valid percent-encoding');
  }
  const common = { container, prefix, ...(requestTimeout === undefined ? {} : { requestTimeout }) };
  const connectionString = env.AZURE_STORAGE_CONNECTION_STRING;
  if (connectionString) return new AzureStorage({ ...common, connectionString });
  const account = env.AZURE_STORAGE_ACCOUNT;
  const key = env.AZURE_STORAGE_KEY;
  if (!account || !key) {
    const missing =
      !account && !key
        ? 'AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY'
        : !account
          ? 'AZURE_STORAGE_ACCOUNT'
          : 'AZURE_STORAGE_KEY';
    throw new ConfigError(
      `${shown} needs Azure credentials: set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY (missing: ${missing}).`,
    );
  }
  let credential: StorageSharedKeyCredential;
  try {
    credential = new StorageSharedKeyCredential(account, key);
  } catch {
    throw new ConfigError('AZURE_STORAGE_KEY is not a valid account key (expected base64).');
  }
  const accountUrl = env.AZURE_STORAGE_BLOB_ENDPOINT || `https://${account}.blob.core.windows.net`;
  return new AzureStorage({ ...common, accountUrl, credential });
}
