import { AlreadyExistsError, BkError, NotFoundError, StorageError } from '@bk/core';

/** The HTTP status of an SDK error, when the server answered. */
export function errorStatus(error: unknown): number | undefined {
  const metadata = (error as { $metadata?: { httpStatusCode?: unknown } } | null)?.$metadata;
  return typeof metadata?.httpStatusCode === 'number' ? metadata.httpStatusCode : undefined;
}

/** The S3 error code (`NoSuchKey`, `SlowDown`, …) or the Node error code (`ECONNRESET`). */
export function errorName(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { Code, code, name } = error as { Code?: unknown; code?: unknown; name?: unknown };
  for (const value of [Code, code, name]) if (typeof value === 'string' && value !== 'Error') return value;
  return undefined;
}

const RETRYABLE_NAMES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'RequestTimeout',
  'RequestTimeTooSkewed',
  'InternalError',
  'ServiceUnavailable',
  'TimeoutError',
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ConditionalRequestConflict',
]);

/**
 * Maps an SDK error (after the SDK's own retries) to a bk error: 404 → `NotFoundError` when
 * `mapping.notFound`, 412 → `AlreadyExistsError` when `mapping.alreadyExists` names the key,
 * anything else → `StorageError`, `retryable` for 5xx, throttling, timeouts and resets.
 */
export function toStorageError(
  action: string,
  error: unknown,
  mapping: { notFound?: boolean; alreadyExists?: string } = {},
): BkError {
  if (BkError.isInstance(error)) return error;
  const status = errorStatus(error);
  const name = errorName(error);
  if (mapping.alreadyExists !== undefined && (status === 412 || name === 'PreconditionFailed'))
    return new AlreadyExistsError(mapping.alreadyExists, { cause: error });
  const detail = [name, status === undefined ? undefined : `HTTP ${status}`].filter(Boolean).join(', ');
  const message = error instanceof Error ? error.message : String(error);
  if (mapping.notFound && (status === 404 || name === 'NoSuchKey' || name === 'NotFound'))
    return new NotFoundError(`Could not ${action}: no such object (${detail}).`, { cause: error });
  const retryable =
    (status !== undefined && (status >= 500 || status === 429)) ||
    (name !== undefined && RETRYABLE_NAMES.has(name)) ||
    (error as { $retryable?: unknown } | null)?.$retryable !== undefined;
  const hint =
    name === 'NoSuchBucket'
      ? ' The bucket does not exist: create it first.'
      : status === 403 ||
          name === 'AccessDenied' ||
          name === 'SignatureDoesNotMatch' ||
          name === 'InvalidAccessKeyId'
        ? ' Check the credentials (S3_ACCESS_KEY/S3_SECRET_KEY or the AWS default chain) and the bucket policy.'
        : '';
  return new StorageError(`Could not ${action}: ${message} (${detail || 'no response'}).${hint}`, {
    cause: error,
    retryable,
  });
}
