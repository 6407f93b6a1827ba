import { availableParallelism } from 'node:os';
import * as zlib from 'node:zlib';
import type { ByteStream } from './contracts.ts';
import { ConfigError, throwIfAborted } from './errors.ts';
import { corruptAsIntegrityError, gzip, transform } from './gzip.ts';
import {
  copyOf,
  gunzipMembers,
  MEMBER_HEADER_LENGTH,
  memberHeader,
  withMemberHeader,
} from './gzip-members.ts';
import { handOver, releaseOwn, releaseWholeHandedOver } from './handover.ts';

/** How an archive is compressed: `.tar.gz` (the default) or `.tar.zst`. */
export type CompressionFormat = 'gzip' | 'zstd';

/** Options of {@link compress}. */
export interface CompressOptions {
  /** Default `gzip`. `zstd` needs a Node with `zlib.zstdCompress` (22.15+). */
  format?: CompressionFormat;
  /** gzip 0–9 (default 6, as `gzip`; 0 stores), zstd 1–19 (default 3, as `zstd`). */
  level?: number;
  /**
   * Blocks compressed at once, each by its own engine on a thread of libuv's pool; default: one
   * more than the available cores, at most 4 and one less than the pool's size
   * (`UV_THREADPOOL_SIZE`, 4), so file reads keep a thread (see {@link defaultWorkers}). `0`
   * compresses in one stream (one gzip member).
   */
  workers?: number;
  /** Uncompressed bytes per block (one gzip member or zstd frame each); default 1 MiB. */
  blockSize?: number;
  signal?: AbortSignal;
}

/**
 * Default uncompressed size of a block: 1 MiB. Half the memory of 2 MiB blocks at the same speed
 * and, on line protocol, the same ratio (40.5 MiB from 256 MiB either way).
 */
export const DEFAULT_BLOCK_SIZE = 1024 * 1024;
const MAX_DEFAULT_WORKERS = 4;

/** Whether this Node can write and read zstd (`zlib.zstdCompress`, Node 22.15+). */
export function zstdAvailable(): boolean {
  return typeof (zlib as { createZstdCompress?: unknown }).createZstdCompress === 'function';
}

/**
 * The default number of blocks compressed at once: one more than the available cores (an engine
 * that finishes a block waits for the main thread to hand it the next; a spare one keeps every
 * core busy meanwhile: 5 % faster on 2 cores), at most 4, and one less than libuv's thread
 * pool (`UV_THREADPOOL_SIZE`, default 4).
 */
export function defaultWorkers(): number {
  const pool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  return Math.max(1, Math.min(availableParallelism() + 1, MAX_DEFAULT_WORKERS, pool - 1));
}

/**
 * Upper bound of the memory {@link compress} holds for blocks, in bytes: up to two blocks per
 * worker in flight, each with its input and its output (a little more than the input at worst),
 * plus the block being filled. About 4 × workers × blockSize (12 MiB with 3 workers and 1 MiB
 * blocks), plus each engine's state (about 256 KiB for gzip, a few MiB for zstd).
 */
export function compressionMemoryCeiling(workers = defaultWorkers(), blockSize = DEFAULT_BLOCK_SIZE): number {
  return (workers * 2 * 2 + 1) * blockSize + workers * 2 * 64 * 1024;
}

/**
 * One long-lived compression engine. Each block becomes one complete gzip member (zstd frame),
 * a gzip member with bk's header recording its length (see gzip-members.ts):
 * the block is written, the engine is flushed with Z_FINISH (ZSTD_e_end) and, for gzip, reset
 * for the next member, so no state is allocated per block. zlib runs the work on libuv's thread
 * pool; several engines compress several blocks at once.
 */
class Engine {
  readonly #engine: zlib.Gzip | zlib.ZstdCompress;
  readonly #end: number;
  readonly #gzip: boolean;
  /** The size of zlib's output buffers. */
  readonly #chunkSize: number;
  #output: Uint8Array[] = [];
  #failure: Error | undefined;
  /** Blocks queued or being compressed. */
  load = 0;
  #queue: Promise<unknown> = Promise.resolve();
  /** Fails the block being compressed. */
  #current: ((error: Error) => void) | undefined;

  constructor(format: CompressionFormat, level: number, blockSize: number) {
    this.#gzip = format === 'gzip';
    // One output buffer large enough for a whole block: one thread-pool job per block.
    const chunkSize = blockSize + (blockSize >> 7) + 64 * 1024;
    this.#chunkSize = chunkSize;
    if (this.#gzip) {
      this.#engine = zlib.createGzip({ level, chunkSize });
      this.#end = zlib.constants.Z_FINISH;
    } else {
      this.#engine = zlib.createZstdCompress({
        params: { [zlib.constants.ZSTD_c_compressionLevel]: level },
        chunkSize,
      });
      this.#end = zlib.constants.ZSTD_e_end;
    }
    this.#engine.on('data', (chunk: Uint8Array) => this.#output.push(chunk));
    this.#engine.on('error', (error: Error) => {
      this.#failure ??= error;
      this.#current?.(error);
    });
  }

  /** Compresses one block into one member; resolves with its bytes, one handed-over chunk. */
  compress(block: Uint8Array): Promise<Uint8Array[]> {
    this.load += 1;
    const job = this.#queue.then(
      () =>
        new Promise<Uint8Array[]>((resolve, reject) => {
          if (this.#failure) return reject(this.#failure);
          this.#current = reject;
          this.#engine.write(block);
          this.#engine.flush(this.#end, () => {
            this.load -= 1;
            if (this.#failure) return reject(this.#failure);
            // Gzip has reset() (the next member follows); @types/node lists it only for Deflate.
            if (this.#gzip) (this.#engine as zlib.Gzip & zlib.ZlibReset).reset();
            const raw = this.#output;
            this.#output = [];
            const output = this.#gzip ? withMemberHeader(raw) : raw;
            // Copied out of zlib's output buffer (shared with the next members) into one of its
            // own, handed over: the upload frees it once it has copied it into a part.
            const length = output.reduce((sum, chunk) => sum + chunk.byteLength, 0);
            resolve(length === 0 ? [] : [handOver(copyOf(output, length))]);
            // zlib hands out views of one output buffer until it is full, then starts a new one
            // and never writes into the old again (its bytes are handed out). Once the view that
            // fills it is copied, every view of it has been: free it now instead of at V8's next
            // full collection.
            for (const chunk of raw)
              if (
                chunk.buffer.byteLength === this.#chunkSize &&
                chunk.byteOffset + chunk.byteLength === this.#chunkSize
              )
                releaseOwn(chunk);
          });
        }),
    );
    this.#queue = job.catch(() => {});
    return job;
  }

  /** Waits for the block in progress (the thread pool cannot be interrupted), then frees the engine. */
  async close(): Promise<void> {
    await this.#queue;
    this.#engine.destroy();
  }
}

const SAMPLE = 16 * 1024;

/**
 * Whether deflate would gain next to nothing on `block` (already compressed or encrypted
 * data): each of three 16 KiB samples (start, middle, end) compressed at level 1 keeps more than
 * 97 % of its size. Costs about 0.1 ms per compressible block (the first sample decides),
 * 0.3 ms per incompressible one.
 */
export function looksIncompressible(block: Uint8Array): boolean {
  if (block.byteLength < 4 * SAMPLE) return false;
  const middle = (block.byteLength >> 1) - (SAMPLE >> 1);
  for (const start of [0, middle, block.byteLength - SAMPLE]) {
    // Any sample that compresses decides: most blocks cost one sample.
    const sample = block.subarray(start, start + SAMPLE);
    if (zlib.deflateRawSync(sample, { level: 1 }).byteLength <= SAMPLE * 0.97) return false;
  }
  return true;
}

const STORED_MAX = 65_535;

/**
 * A gzip member holding `block` in stored (uncompressed) deflate blocks, as `gzip` itself
 * writes data that does not compress: every gunzip reads it. Costs a copy and a CRC-32
 * (several GB/s), where deflate at level 6 spends ~20 ms per MiB of random bytes for nothing.
 * The member is handed over (see `handOver`).
 */
export function storedGzipMember(block: Uint8Array): Uint8Array {
  const pieces = Math.max(1, Math.ceil(block.byteLength / STORED_MAX));
  const total = MEMBER_HEADER_LENGTH + block.byteLength + pieces * 5 + 8;
  const member = handOver(Buffer.allocUnsafeSlow(total));
  member.set(memberHeader(total), 0);
  let at = MEMBER_HEADER_LENGTH;
  for (let piece = 0; piece < pieces; piece += 1) {
    const start = piece * STORED_MAX;
    const length = Math.min(STORED_MAX, block.byteLength - start);
    member[at] = piece === pieces - 1 ? 1 : 0; // BFINAL, BTYPE 00 (stored)
    member.writeUInt16LE(length, at + 1);
    member.writeUInt16LE(~length & 0xffff, at + 3);
    member.set(block.subarray(start, start + length), at + 5);
    at += 5 + length;
  }
  member.writeUInt32LE(zlib.crc32(block) >>> 0, at);
  member.writeUInt32LE(block.byteLength >>> 0, at + 4);
  return member;
}

/**
 * Cuts a stream into blocks of exactly `size` bytes (the last may be shorter). A block is a
 * buffer of its own (blocks are handed to zlib while the next is filled); buffers given back
 * through `spare` are reused. A whole handed-over input chunk (a file's read buffer) is freed as
 * soon as it is copied.
 */
async function* blocks(source: ByteStream, size: number, spare: Uint8Array[]): AsyncGenerator<Uint8Array> {
  const fresh = () => spare.pop() ?? Buffer.allocUnsafeSlow(size);
  let block = fresh();
  let filled = 0;
  for await (const chunk of source) {
    let offset = 0;
    while (offset < chunk.byteLength) {
      const take = Math.min(size - filled, chunk.byteLength - offset);
      block.set(chunk.subarray(offset, offset + take), filled);
      filled += take;
      offset += take;
      if (filled === size) {
        yield block;
        block = fresh();
        filled = 0;
      }
    }
    releaseWholeHandedOver(chunk);
  }
  if (filled > 0) yield block.subarray(0, filled);
}

/**
 * Fills in {@link compress}'s defaults and checks every option.
 *
 * @throws {ConfigError} for an unknown format, a level out of range, zstd on a Node without it,
 *   or a worker count or block size out of range.
 */
export function resolveCompressOptions(
  options: CompressOptions = {},
): Required<Omit<CompressOptions, 'signal'>> {
  const format = options.format ?? 'gzip';
  if (format !== 'gzip' && format !== 'zstd')
    throw new ConfigError(`The compression must be "gzip" or "zstd"; got "${String(format)}".`);
  const level = options.level ?? (format === 'zstd' ? 3 : 6);
  const workers = options.workers ?? defaultWorkers();
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
  const [min, max] = format === 'zstd' ? [1, 19] : [0, 9];
  if (!Number.isInteger(level) || level < min || level > max)
    throw new ConfigError(`The ${format} level must be an integer from ${min} to ${max}; got ${level}.`);
  if (format === 'zstd' && !zstdAvailable())
    throw new ConfigError(`zstd needs Node 22.15 or later (this is ${process.version}); use gzip.`);
  if (!Number.isInteger(workers) || workers < 0 || workers > 64)
    throw new ConfigError(`The compression workers must be an integer from 0 to 64; got ${workers}.`);
  if (!Number.isInteger(blockSize) || blockSize < 64 * 1024 || blockSize > 64 * 1024 * 1024)
    throw new ConfigError(`The compression block size must be from 64 KiB to 64 MiB; got ${blockSize}.`);
  return { format, level, workers, blockSize };
}

/**
 * Compresses a stream in parallel: the input is cut into blocks, several engines compress them
 * at once on libuv's thread pool as independent gzip members (or zstd frames), and the output
 * keeps the input's order. The result is a standard multi-member `.gz` (`gzip -d`, `tar -xzf`,
 * `pigz -d` and {@link gunzip} read it) or a multi-frame `.zst`. A gzip block that does not
 * compress (see {@link looksIncompressible}) is stored as it is, without running deflate.
 *
 * Backpressure reaches the source: a block is read only when fewer than two per worker are in
 * flight. Memory: at most {@link compressionMemoryCeiling} bytes of blocks plus each engine's
 * state.
 *
 * @example
 * await storage.put(key, compress(packTar(records), { level: 6 }));
 */
export function compress(source: ByteStream, options: CompressOptions = {}): ByteStream {
  const { format, level, workers, blockSize } = resolveCompressOptions(options);
  if (workers === 0) {
    if (format === 'gzip') return gzip(source, { level });
    return transform(
      source,
      zlib.createZstdCompress({ params: { [zlib.constants.ZSTD_c_compressionLevel]: level } }),
    );
  }
  const { signal } = options;
  return (async function* () {
    throwIfAborted(signal);
    const engines = Array.from({ length: workers }, () => new Engine(format, level, blockSize));
    const spare: Uint8Array[] = [];
    const input = blocks(source, blockSize, spare);
    const pending: Promise<Uint8Array[]>[] = [];
    const limit = workers * 2;
    // zstd notices incompressible input by itself; deflate does not.
    const storeIncompressible = format === 'gzip' && level > 0 && typeof zlib.crc32 === 'function';
    try {
      let ended = false;
      let sent = 0;
      for (;;) {
        while (!ended && pending.length < limit) {
          const next = await input.next();
          throwIfAborted(signal);
          let block: Uint8Array;
          if (next.done) {
            ended = true;
            if (sent > 0) break;
            block = new Uint8Array(0); // empty input still makes a valid (empty) member or frame
          } else block = next.value;
          sent += 1;
          const recycle = <T>(output: T): T => {
            // Enough spares for every block in flight and the one being filled: none is allocated twice.
            if (block.byteLength === blockSize && spare.length <= limit) spare.push(block);
            return output;
          };
          let job: Promise<Uint8Array[]>;
          if (storeIncompressible && looksIncompressible(block)) {
            job = Promise.resolve(recycle([storedGzipMember(block)]));
          } else {
            let engine = engines[0]!;
            for (const candidate of engines) if (candidate.load < engine.load) engine = candidate;
            job = engine.compress(block).then(recycle);
          }
          job.catch(() => {}); // observed when it reaches the head of the queue
          pending.push(job);
        }
        const head = pending.shift();
        if (!head) break;
        for (const chunk of await head) yield chunk;
        throwIfAborted(signal);
      }
    } finally {
      await input.return(undefined);
      await Promise.all(engines.map((engine) => engine.close()));
    }
  })();
}

/**
 * Decompresses what {@link compress} (or any gzip / zstd tool) wrote, including multi-member
 * gzip and multi-frame zstd. The gzip members compress() wrote are inflated `workers` at once
 * (default {@link defaultWorkers}; see {@link gunzipMembers}). Corrupt or truncated input fails
 * with an `IntegrityError`.
 */
export function decompress(
  source: ByteStream,
  format: CompressionFormat = 'gzip',
  options: { workers?: number } = {},
): ByteStream {
  if (format === 'gzip') return gunzipMembers(source, { workers: options.workers ?? defaultWorkers() });
  if (!zstdAvailable())
    throw new ConfigError(
      `This archive is zstd-compressed, which needs Node 22.15 or later (this is ${process.version}).`,
    );
  // 64 KiB: Node 22's zstd decompressor loses data across frame boundaries with larger output
  // chunks (seen with 256 KiB and 1 MiB on 22.23, frames of 64 KiB–2 MiB, uneven input).
  return corruptAsIntegrityError(
    transform(source, zlib.createZstdDecompress({ chunkSize: 64 * 1024 }), { handOver: true }),
    'zstd',
  );
}
