import { ComponentError } from '@bk/core';

export { ComponentError, IntegrityError, throwIfAborted } from '@bk/core';

/** A `Buffer` view of the same bytes (no copy). */
export function asBufferView(chunk: Uint8Array): Buffer {
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/** A `ComponentError` of the influx component. */
export function influxError(
  message: string,
  options?: ConstructorParameters<typeof ComponentError>[2],
): ComponentError {
  return new ComponentError('influx', message, options);
}
