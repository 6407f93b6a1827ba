import * as nodeCrypto from 'node:crypto';
import { Worker } from 'node:worker_threads';

/**
 * Seals or opens a run of age STREAM chunks (ChaCha20-Poly1305, 64 KiB each, nonce = 11-byte
 * big-endian counter + last-chunk flag). One function, run as the source of a worker thread and
 * in the calling thread alike, so both paths are the same code. Plain JavaScript in a string:
 * a worker started from a string needs no separate built file, in the TypeScript sources (tests)
 * as in the bundle.
 *
 * `data` holds whole chunks, except when `last`: then its last chunk may be short and carries
 * the last-chunk flag. Returns the output, or the counter of the chunk that fails
 * authentication (opening only).
 */
const CHUNK_SOURCE = `
function processChunks(crypto, key, mode, counter, data, last) {
  const CHUNK = 65536, TAG = 16, SEALED = CHUNK + TAG;
  const step = mode === 'open' ? SEALED : CHUNK;
  const count = last ? Math.max(1, Math.ceil(data.length / step)) : data.length / step;
  const size = mode === 'open' ? data.length - count * TAG : data.length + count * TAG;
  if (size < 0) return { failed: counter };
  const out = Buffer.allocUnsafeSlow(size);
  let written = 0;
  for (let index = 0; index < count; index += 1) {
    const nonce = Buffer.alloc(12);
    nonce.writeUIntBE(counter + index, 5, 6);
    nonce[11] = last && index === count - 1 ? 1 : 0;
    const piece = data.subarray(index * step, Math.min(data.length, (index + 1) * step));
    if (mode === 'seal') {
      const cipher = crypto.createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG });
      written += cipher.update(piece).copy(out, written);
      written += cipher.final().copy(out, written);
      written += cipher.getAuthTag().copy(out, written);
    } else {
      if (piece.length < TAG) return { failed: counter + index };
      // Only the last chunk of an empty payload may be empty.
      if (nonce[11] === 1 && piece.length === TAG && counter + index > 0) return { failed: counter + index };
      const decipher = crypto.createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG });
      decipher.setAuthTag(piece.subarray(piece.length - TAG));
      written += decipher.update(piece.subarray(0, piece.length - TAG)).copy(out, written);
      try {
        written += decipher.final().copy(out, written);
      } catch {
        return { failed: counter + index };
      }
    }
  }
  return { out };
}
`;

const WORKER_SOURCE = `
const crypto = require('node:crypto');
const { parentPort, workerData } = require('node:worker_threads');
${CHUNK_SOURCE}
const key = Buffer.from(workerData.key);
parentPort.on('message', ({ id, counter, data, last }) => {
  const result = processChunks(crypto, key, workerData.mode, counter, Buffer.from(data.buffer, data.byteOffset, data.byteLength), last);
  if (result.out) parentPort.postMessage({ id, out: result.out }, [result.out.buffer]);
  else parentPort.postMessage({ id, failed: result.failed });
});
`;

type ProcessChunks = (
  crypto: typeof import('node:crypto'),
  key: Uint8Array,
  mode: 'seal' | 'open',
  counter: number,
  data: Buffer,
  last: boolean,
) => { out: Buffer; failed?: undefined } | { out?: undefined; failed: number };

const processChunks = new Function(`${CHUNK_SOURCE}\nreturn processChunks;`)() as ProcessChunks;

/** A run of chunks failed authentication at `counter`. */
export class ChunkAuthenticationError extends Error {
  readonly counter: number;
  constructor(counter: number) {
    super(`age STREAM chunk ${counter} fails authentication`);
    this.counter = counter;
  }
}

/**
 * Seals (`'seal'`) or opens (`'open'`) batches of age STREAM chunks under one payload key, in
 * order. With `thread: true` the work runs on one worker thread, so that the main thread goes on
 * reading, hashing and writing while a batch is en- or decrypted; otherwise in the calling thread.
 * A batch's buffer is handed to the worker (transferred when it owns its memory): the caller must
 * not use it after `run`. `close()` ends the worker.
 */
export class AgeChunkCipher {
  readonly #key: Buffer;
  readonly #mode: 'seal' | 'open';
  readonly #worker: Worker | undefined;
  readonly #waiting = new Map<number, { resolve: (out: Buffer) => void; reject: (error: Error) => void }>();
  #nextId = 0;
  #failure: Error | undefined;

  constructor(key: Uint8Array, mode: 'seal' | 'open', thread: boolean) {
    this.#key = Buffer.from(key);
    this.#mode = mode;
    if (!thread) return;
    this.#worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { key: this.#key, mode } });
    this.#worker.unref();
    this.#worker.on('message', (message: { id: number; out?: Uint8Array; failed?: number }) => {
      const waiting = this.#waiting.get(message.id);
      this.#waiting.delete(message.id);
      if (message.out)
        waiting?.resolve(Buffer.from(message.out.buffer, message.out.byteOffset, message.out.byteLength));
      else waiting?.reject(new ChunkAuthenticationError(message.failed ?? -1));
    });
    this.#worker.on('error', (error) => this.#failAll(error));
    this.#worker.on('exit', (code) =>
      this.#failAll(new Error(`the age worker thread exited with code ${code}`)),
    );
  }

  #failAll(error: Error): void {
    this.#failure ??= error;
    for (const waiting of this.#waiting.values()) waiting.reject(error);
    this.#waiting.clear();
  }

  /** Seals or opens `data` (whole chunks; the last one may be short when `last`), first chunk `counter`. */
  run(counter: number, data: Buffer, last: boolean): Promise<Buffer> {
    if (!this.#worker) {
      const result = processChunks(nodeCrypto, this.#key, this.#mode, counter, data, last);
      return result.out
        ? Promise.resolve(result.out)
        : Promise.reject(new ChunkAuthenticationError(result.failed));
    }
    if (this.#failure) return Promise.reject(this.#failure);
    const id = this.#nextId++;
    const owned = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
    // A small Buffer can be a slice of Node's shared pool, which must not be transferred.
    const sent = owned ? data : Buffer.allocUnsafeSlow(data.byteLength);
    if (sent !== data) data.copy(sent);
    const promise = new Promise<Buffer>((resolve, reject) => this.#waiting.set(id, { resolve, reject }));
    this.#worker.postMessage({ id, counter, data: sent, last }, [sent.buffer as ArrayBuffer]);
    return promise;
  }

  async close(): Promise<void> {
    if (!this.#worker) return;
    this.#worker.removeAllListeners('exit');
    this.#waiting.clear();
    await this.#worker.terminate();
  }
}
