import type { Transform } from 'node:stream';
import { createGunzip, createGzip, type ZlibOptions } from 'node:zlib';
import type { ByteStream } from './contracts.ts';
import { IntegrityError } from './errors.ts';
import { handOver, releaseWholeHandedOver, spansWholeBuffer } from './handover.ts';
import { feed } from './streams.ts';

export interface GzipOptions {
  /** 1 (fastest) to 9 (smallest); default 6, as `gzip`. */
  level?: number;
}

/** Options of {@link transform}. */
export interface TransformOptions {
  /**
   * Free each whole handed-over input chunk (see `handOver`) once zlib has processed it, and
   * hand over each output chunk that fills one of zlib's output buffers (zlib then starts a new
   * one and never writes into it again), so the consumer can free it in turn.
   */
  handOver?: boolean;
}

/** Pipes a stream through a zlib (or zstd) transform and yields what comes out. */
export function transform(source: ByteStream, zlib: Transform, options: TransformOptions = {}): ByteStream {
  return (async function* () {
    const stop = new AbortController();
    // A source error destroys zlib, which makes the read below reject with that error.
    const feeding = feed(source, zlib, stop.signal, options.handOver ? releaseWholeHandedOver : undefined);
    try {
      for await (const chunk of zlib as AsyncIterable<Uint8Array>)
        yield options.handOver && chunk.byteLength > 0 && spansWholeBuffer(chunk) ? handOver(chunk) : chunk;
    } finally {
      stop.abort();
      zlib.destroy();
      await feeding;
    }
  })();
}

/** Compresses a stream as standard gzip. Memory: zlib's window and 64 KiB of output at a time. */
export function gzip(source: ByteStream, options: GzipOptions = {}): ByteStream {
  const zlibOptions: ZlibOptions = { level: options.level ?? 6, chunkSize: 64 * 1024 };
  return transform(source, createGzip(zlibOptions));
}

/**
 * Decompresses gzip, including multi-member files (independent members concatenated, as
 * `pigz` and bk's parallel compressor write). Corrupt or truncated input fails with an
 * `IntegrityError`. `chunkSize`: the size of the pieces it yields, default 1 MiB.
 */
export function gunzip(source: ByteStream, options: { chunkSize?: number } = {}): ByteStream {
  return corruptAsIntegrityError(
    transform(source, createGunzip({ chunkSize: options.chunkSize ?? 1024 * 1024 })),
    'gzip',
  );
}

/**
 * Passes a decompressed stream through, turning the decompressor's own errors (codes `Z_…`,
 * `ZSTD_…`) into an `IntegrityError`: the archive is corrupt or truncated.
 */
export function corruptAsIntegrityError(inner: ByteStream, format: string): ByteStream {
  return (async function* () {
    try {
      yield* inner;
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (typeof code === 'string' && (code.startsWith('Z_') || code.startsWith('ZSTD_'))) {
        throw new IntegrityError(
          `The archive is corrupt: ${format} data cannot be decompressed (${(error as Error).message}).`,
          { cause: error },
        );
      }
      throw error;
    }
  })();
}
