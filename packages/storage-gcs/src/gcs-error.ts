import { AlreadyExistsError, BkError, NotFoundError, StorageError } from '@bk/core';

/** Network failures worth another attempt: the request may never have reached GCS. */
const RETRYABLE_NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENOTFOUND',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

/** The HTTP status of a client-library or fetch error, when it carries one. */
export function httpStatus(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { code, status, response } = error as {
    code?: unknown;
    status?: unknown;
    response?: { status?: unknown };
  };
  if (typeof code === 'number') return code;
  if (typeof status === 'number') return status;
  if (typeof response?.status === 'number') return response.status;
  return undefined;
}

/** Whether GCS asks to try again: 408, 429, 5xx, or a connection that broke. */
export function isRetryableStatus(status: number | undefined): boolean {
  return status === 408 || status === 429 || (status !== undefined && status >= 500 && status < 600);
}

function isRetryableNetworkError(error: unknown): boolean {
  for (let current: unknown = error, depth = 0; current !== undefined && depth < 4; depth += 1) {
    if (typeof current !== 'object' || current === null) return false;
    const { code } = current as { code?: unknown };
    if (typeof code === 'string' && RETRYABLE_NETWORK_CODES.has(code)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return error instanceof TypeError && error.message === 'fetch failed';
}

/** Whether `error` (a GCS answer or a network failure) may go away when the request is repeated. */
export function isRetryable(error: unknown): boolean {
  return isRetryableStatus(httpStatus(error)) || isRetryableNetworkError(error);
}

/**
 * Turns a client-library or HTTP failure into a bk error: 404 → `NotFoundError`, 412 (a failed
 * `ifGenerationMatch: 0`) → `AlreadyExistsError`, 408/429/5xx and connection resets →
 * retryable `StorageError`, anything else → `StorageError`. Bk errors pass through unchanged.
 * The message names the action and the `gs://` location, never a session URI or a token.
 */
export function toBkError(error: unknown, action: string, key: string): BkError {
  if (BkError.isInstance(error)) return error;
  const status = httpStatus(error);
  const detail = error instanceof Error ? error.message : String(error);
  if (status === 404)
    return new NotFoundError(`Could not ${action}: not found (${detail}).`, { cause: error });
  if (status === 412) return new AlreadyExistsError(key, { cause: error });
  const retryable = isRetryable(error);
  const what =
    status === undefined
      ? retryable
        ? 'the connection failed'
        : 'unexpected error'
      : `GCS answered ${status}`;
  return new StorageError(`Could not ${action}: ${what} (${detail}).`, { cause: error, retryable });
}
