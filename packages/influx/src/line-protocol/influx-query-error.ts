import { ComponentError } from '@bk/core';

/**
 * InfluxDB refused or failed a query or write: an HTTP error status, an `"error"` in a response
 * document, or a connection failure. `status` is the HTTP status when there was one;
 * `retryable` is set for 5xx, timeouts and connection failures, never for 4xx.
 */
export class InfluxQueryError extends ComponentError {
  readonly status: number | undefined;
  /** The InfluxQL statement or write target that failed. */
  readonly query: string;

  constructor(
    message: string,
    options: { query: string; status?: number; retryable?: boolean; cause?: unknown },
  ) {
    super('influx', message, { retryable: options.retryable ?? false, cause: options.cause });
    this.name = 'InfluxQueryError';
    this.status = options.status;
    this.query = options.query;
  }
}
