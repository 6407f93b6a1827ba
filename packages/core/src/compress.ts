import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import * as zlib from 'node:zlib';
import type { ByteStream } from './contracts.ts';
import { ConfigError, IntegrityError, throwIfAborted } from './errors.ts';
import { gunzip, gzip } from './gzip.ts';
import { feed } from './streams.ts';

/** How an archive is compressed: `.tar.gz` (the default) or `.tar.zst`. */
export type CompressionFormat = 'gzip' | 'zstd';

/** Options of {@link compress}. */
export interface CompressOptions {
  /** Default `gzip`. `zstd` needs a Node with `zlib.zstdCompress` (22.15+). */
  format?: CompressionFormat;
  /** gzip 0–9 (default 6, as `gzip`; 0 stores), zstd 1–19 (default 3, as `zstd`). */
  level?: number;
  /**
   * Worker threads compressing blocks in parallel; default: the available cores, at most 4.
   * `0` compresses in one stream on libuv's thread pool (one gzip member, no workers).
   */
  workers?: number;
  /** Uncompressed bytes per block (one gzip member or zstd frame each); default 2 MiB. */
  blockSize?: number;
  signal?: AbortSignal;
}

/** Default uncompressed size of a block. */
export const DEFAULT_BLOCK_SIZE = 2 * 1024 * 1024;
const MAX_DEFAULT_WORKERS = 4;

/** Whether this Node can write and read zstd (`zlib.zstdCompress`, Node 22.15+). */
export function zstdAvailable(): boolean {
  return typeof (zlib as { createZstdCompress?: unknown }).createZstdCompress === 'function';
}

/** The default number of compression workers: the available cores, at most 4. */
export function defaultWorkers(): number {
  return Math.max(1, Math.min(availableParallelism(), MAX_DEFAULT_WORKERS));
}

/**
 * Upper bound of the memory {@link compress} holds for blocks, in bytes: every worker has up to
 * two blocks queued, each with its input and its output (at most a little larger than the input),
 * plus the block being filled.
 */
export function compressionMemoryCeiling(workers = defaultWorkers(), blockSize = DEFAULT_BLOCK_SIZE): number {
  return (workers * 2 * 2 + 1) * blockSize;
}

// The worker is plain JavaScript evaluated from a string, so the same code runs from the
// TypeScript sources, the bundled build and any bundler that inlines @bk/core.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const zlib = require('node:zlib');
// One long-lived engine per worker: a member (frame) ends with Z_FINISH (ZSTD_e_end) and the
// engine is reused for the next, so no compression state is allocated per block.
const zstd = workerData.format === 'zstd';
const engine = zstd
  ? zlib.createZstdCompress({ params: { [zlib.constants.ZSTD_c_compressionLevel]: workerData.level }, chunkSize: 256 * 1024 })
  : zlib.createGzip({ level: workerData.level, chunkSize: 256 * 1024 });
const end = zstd ? zlib.constants.ZSTD_e_end : zlib.constants.Z_FINISH;
// Output chunks are Buffers outside the heap: V8 collects them only once ~64 MiB of them pile
// up, per worker. A minor GC after each block (cheap: the heap holds next to nothing) keeps a
// worker's memory at about one block. 'gc' is reachable only with --expose-gc; setting the flag
// at run time exposes it to new contexts.
let collect = () => {};
try {
  require('node:v8').setFlagsFromString('--expose-gc');
  const gc = require('node:vm').runInNewContext('gc');
  collect = () => gc({ type: 'minor' });
} catch {}
let output = [];
engine.on('data', (chunk) => output.push(chunk));
engine.on('error', (error) => parentPort.postMessage({ id: -1, error: String(error && error.message || error) }));
const queue = [];
let busy = false;
function next() {
  const job = queue.shift();
  if (!job) { busy = false; return; }
  busy = true;
  engine.write(new Uint8Array(job.data));
  engine.flush(end, () => {
    if (!zstd) engine.reset();
    const data = output.length === 1 && output[0].byteOffset === 0 && output[0].buffer.byteLength === output[0].byteLength
      ? output[0] : new Uint8Array(Buffer.concat(output));
    output = [];
    // The input goes back too, for the next block.
    parentPort.postMessage({ id: job.id, data: data.buffer, input: job.data }, [data.buffer, job.data]);
    collect();
    next();
  });
}
parentPort.on('message', (job) => { queue.push(job); if (!busy) next(); });
`;

interface Job {
  resolve(data: Uint8Array): void;
  input(buffer: ArrayBuffer): void;
  reject(error: Error): void;
}

/** A fixed set of worker threads; each runs one job at a time, queued round-robin by least load. */
class WorkerPool {
  readonly #workers: { worker: Worker; jobs: Map<number, Job> }[] = [];
  #nextId = 0;
  #failure: Error | undefined;

  constructor(size: number, format: CompressionFormat, level: number) {
    for (let index = 0; index < size; index += 1) {
      // Small heaps: a worker holds one block at a time, the blocks live outside its heap.
      const worker = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { format, level },
        resourceLimits: { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 32 },
      });
      const slot = { worker, jobs: new Map<number, Job>() };
      const fail = (error: Error) => {
        this.#failure ??= error;
        for (const job of slot.jobs.values()) job.reject(error);
        slot.jobs.clear();
      };
      worker.on(
        'message',
        (message: { id: number; data?: ArrayBuffer; input?: ArrayBuffer; error?: string }) => {
          if (message.id === -1) return fail(new Error(message.error ?? 'compression failed'));
          const job = slot.jobs.get(message.id);
          if (!job) return;
          slot.jobs.delete(message.id);
          if (message.input) job.input(message.input);
          if (message.error !== undefined || !message.data)
            job.reject(new Error(message.error ?? 'no output'));
          else job.resolve(new Uint8Array(message.data));
        },
      );
      worker.on('error', fail);
      worker.on('exit', (code) => {
        if (slot.jobs.size > 0) fail(new Error(`A compression worker exited with code ${code}.`));
      });
      this.#workers.push(slot);
    }
  }

  /** Compresses `block`; its buffer is transferred to the worker and handed back to `spare`. */
  run(block: Uint8Array, spare: (buffer: ArrayBuffer) => void): Promise<Uint8Array> {
    if (this.#failure) return Promise.reject(this.#failure);
    let slot = this.#workers[0]!;
    for (const candidate of this.#workers) if (candidate.jobs.size < slot.jobs.size) slot = candidate;
    const id = this.#nextId++;
    return new Promise<Uint8Array>((resolve, reject) => {
      slot.jobs.set(id, { resolve, reject, input: spare });
      slot.worker.postMessage({ id, data: block.buffer }, [block.buffer as ArrayBuffer]);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map(({ worker }) => worker.terminate()));
  }
}

/**
 * Cuts a stream into blocks of exactly `size` bytes (the last may be shorter), each in its own
 * `ArrayBuffer` so that it can be handed to a worker without copying again. Buffers the workers
 * hand back in `spare` are reused.
 */
async function* blocks(source: ByteStream, size: number, spare: ArrayBuffer[]): AsyncGenerator<Uint8Array> {
  const fresh = () => new Uint8Array(spare.pop() ?? new ArrayBuffer(size));
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
  }
  if (filled > 0) yield new Uint8Array(block.buffer.slice(0, filled));
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
 * Compresses a stream in parallel: the input is cut into blocks, worker threads compress them
 * as independent gzip members (or zstd frames), and the output keeps the input's order. The
 * result is a standard multi-member `.gz` (`gzip -d`, `tar -xzf`, `pigz -d` and {@link gunzip}
 * read it) or a multi-frame `.zst`.
 *
 * Backpressure reaches the source: a block is read only when fewer than two per worker are in
 * flight. Memory: at most {@link compressionMemoryCeiling} bytes of blocks plus each worker's
 * own heap (about 5 MiB).
 *
 * @example
 * await storage.put(key, compress(packTar(records), { level: 6 }));
 */
export function compress(source: ByteStream, options: CompressOptions = {}): ByteStream {
  const { format, level, workers, blockSize } = resolveCompressOptions(options);
  if (workers === 0) {
    if (format === 'gzip') return gzip(source, { level });
    return zstdStream(source, level);
  }
  const { signal } = options;
  return (async function* () {
    throwIfAborted(signal);
    const pool = new WorkerPool(workers, format, level);
    const spare: ArrayBuffer[] = [];
    const input = blocks(source, blockSize, spare);
    const recycle = (buffer: ArrayBuffer) => {
      if (buffer.byteLength === blockSize && spare.length <= workers) spare.push(buffer);
    };
    const pending: Promise<Uint8Array>[] = [];
    const limit = workers * 2;
    try {
      let ended = false;
      let sent = 0;
      for (;;) {
        while (!ended && pending.length < limit) {
          const next = await input.next();
          throwIfAborted(signal);
          if (next.done) {
            ended = true;
            // Empty input still makes a valid (empty) member or frame.
            if (sent === 0) pending.push(pool.run(new Uint8Array(0), () => {}));
          } else {
            sent += 1;
            const job = pool.run(next.value, recycle);
            job.catch(() => {}); // observed when it reaches the head of the queue
            pending.push(job);
          }
        }
        const head = pending.shift();
        if (!head) break;
        yield await head;
        throwIfAborted(signal);
      }
    } finally {
      await input.return(undefined);
      await pool.close();
    }
  })();
}

function zstdStream(source: ByteStream, level: number): ByteStream {
  const z = zlib as unknown as {
    createZstdCompress(options: object): import('node:stream').Transform;
  };
  return pipeThrough(
    source,
    z.createZstdCompress({
      params: { [(zlib.constants as Record<string, number>).ZSTD_c_compressionLevel!]: level },
    }),
  );
}

async function* pipeThrough(source: ByteStream, transform: import('node:stream').Transform): ByteStream {
  const stop = new AbortController();
  const feeding = feed(source, transform, stop.signal);
  try {
    for await (const chunk of transform as AsyncIterable<Uint8Array>) yield chunk;
  } finally {
    stop.abort();
    transform.destroy();
    await feeding;
  }
}

/**
 * Decompresses what {@link compress} (or any gzip / zstd tool) wrote, including multi-member
 * gzip and multi-frame zstd. Corrupt or truncated input fails with an `IntegrityError`.
 */
export function decompress(source: ByteStream, format: CompressionFormat = 'gzip'): ByteStream {
  if (format === 'gzip') return gunzip(source);
  if (!zstdAvailable())
    throw new ConfigError(
      `This archive is zstd-compressed, which needs Node 22.15 or later (this is ${process.version}).`,
    );
  const z = zlib as unknown as { createZstdDecompress(options: object): import('node:stream').Transform };
  const inner = pipeThrough(source, z.createZstdDecompress({ chunkSize: 64 * 1024 }));
  return (async function* () {
    try {
      yield* inner;
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (typeof code === 'string' && (code.startsWith('Z_') || code.startsWith('ZSTD_'))) {
        throw new IntegrityError(
          `The archive is corrupt: zstd data cannot be decompressed (${(error as Error).message}).`,
          { cause: error },
        );
      }
      throw error;
    }
  })();
}
