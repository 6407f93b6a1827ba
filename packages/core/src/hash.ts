import { createHash } from 'node:crypto';
import type { ByteStream } from './contracts.ts';

/** The running size and sha256 of the bytes that passed through {@link digest}. */
export interface DigestResult {
  size: number;
  /** Lower-case hex; set once the stream has ended. */
  sha256: string;
}

/**
 * Passes bytes through unchanged while computing their size and sha256. The returned `result`
 * is filled in when the stream ends.
 *
 * @example
 * const { stream, result } = digest(body);
 * await storage.put(key, stream);
 * console.log(result.size, result.sha256);
 */
export function digest(source: ByteStream): { stream: ByteStream; result: DigestResult } {
  const result: DigestResult = { size: 0, sha256: '' };
  const stream = (async function* () {
    const hash = createHash('sha256');
    for await (const chunk of source) {
      hash.update(chunk);
      result.size += chunk.byteLength;
      yield chunk;
    }
    result.sha256 = hash.digest('hex');
  })();
  return { stream, result };
}

/** sha256 of a buffer, hex. */
export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}
