import { ConfigError } from '@bk/core';
import { type ConditionalCreateMode, S3Storage, type S3StorageOptions } from './s3-storage.ts';

const QUERY_KEYS = new Set([
  'endpoint',
  'region',
  'forcePathStyle',
  'partSize',
  'concurrency',
  'conditionalCreate',
  'requestTimeout',
]);

function parseBoolean(name: string, value: string): boolean {
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new ConfigError(`The s3: target's ${name} must be true or false, got "${value}".`);
}

function parseInteger(name: string, value: string): number {
  if (!/^\d+$/.test(value))
    throw new ConfigError(`The s3: target's ${name} must be a whole number, got "${value}".`);
  return Number(value);
}

/**
 * Opens an {@link S3Storage} for `s3://bucket/prefix`; the CLI calls this for `--target s3://…`.
 *
 * Query parameters: `endpoint`, `region`, `forcePathStyle` (`true`/`false`), `partSize` (bytes),
 * `concurrency`, `conditionalCreate` (`auto`/`if-none-match`/`check`), `requestTimeout` (ms without
 * a byte moving before a request fails; default 60000). Environment, used when
 * the URL does not say: `S3_REGION_ENDPOINT` (endpoint), `S3_REGION` (region), and
 * `S3_ACCESS_KEY` with `S3_SECRET_KEY` (credentials). Without them the AWS default chain applies
 * (`AWS_ACCESS_KEY_ID`, `AWS_PROFILE`, SSO, instance roles, `AWS_REGION`…). With an endpoint and
 * no region anywhere, the region is `us-east-1`, which S3-compatible servers accept.
 *
 * @param env The environment to read; default `process.env`.
 * @throws {ConfigError} When the URL is not `s3://bucket[/prefix]`, carries credentials, or has
 *   an unknown or invalid parameter.
 * @example
 * const storage = storageFromUrl(new URL('s3://backups/nightly?endpoint=http://127.0.0.1:9000'));
 */
export function storageFromUrl(url: URL, env: NodeJS.ProcessEnv = process.env): S3Storage {
  if (url.protocol !== 's3:') throw new ConfigError(`Expected an s3:// target, got "${url.protocol}".`);
  if (url.username !== '' || url.password !== '')
    throw new ConfigError(
      'An s3:// target must not carry credentials; set S3_ACCESS_KEY and S3_SECRET_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) instead.',
    );
  const bucket = decodeURIComponent(url.hostname);
  if (bucket === '' || url.port !== '')
    throw new ConfigError('An s3:// target needs a bucket and no port, e.g. s3://backups/nightly.');
  if (url.hash !== '') throw new ConfigError('An s3:// target must not have a #fragment.');
  for (const name of url.searchParams.keys())
    if (!QUERY_KEYS.has(name))
      throw new ConfigError(
        `Unknown s3:// target parameter "${name}"; known: ${[...QUERY_KEYS].join(', ')}.`,
      );
  const query = (name: string) => url.searchParams.get(name) ?? undefined;
  const endpoint = query('endpoint') ?? (env.S3_REGION_ENDPOINT || undefined);
  const region =
    query('region') ??
    (env.S3_REGION || env.AWS_REGION || env.AWS_DEFAULT_REGION || (endpoint ? 'us-east-1' : undefined));
  const accessKeyId = env.S3_ACCESS_KEY || undefined;
  const secretAccessKey = env.S3_SECRET_KEY || undefined;
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined))
    throw new ConfigError(
      'Set both S3_ACCESS_KEY and S3_SECRET_KEY, or neither (to use the AWS default chain).',
    );
  const options: S3StorageOptions = {
    bucket,
    prefix: decodeURIComponent(url.pathname),
    endpoint,
    region,
    credentials: accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey } : undefined,
  };
  const forcePathStyle = query('forcePathStyle');
  if (forcePathStyle !== undefined) options.forcePathStyle = parseBoolean('forcePathStyle', forcePathStyle);
  const partSize = query('partSize');
  if (partSize !== undefined) options.partSize = parseInteger('partSize', partSize);
  const concurrency = query('concurrency');
  if (concurrency !== undefined) options.concurrency = parseInteger('concurrency', concurrency);
  const requestTimeout = query('requestTimeout');
  if (requestTimeout !== undefined) options.requestTimeout = parseInteger('requestTimeout', requestTimeout);
  const conditionalCreate = query('conditionalCreate');
  if (conditionalCreate !== undefined) options.conditionalCreate = conditionalCreate as ConditionalCreateMode;
  return new S3Storage(options);
}
