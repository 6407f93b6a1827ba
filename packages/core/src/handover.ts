/*
 * Large buffers are freed by V8 only when it next collects them, and one that lived through a
 * couple of minor collections waits for a full one, which V8 starts only after ~64 MiB more
 * external memory has been allocated. A stream of multi-MiB buffers with such lifetimes (ranges
 * downloaded ahead, members waiting to be inflated) therefore keeps up to that much garbage
 * resident. A producer that hands a buffer over whole lets the consumer free it as soon as it has
 * taken what it needs.
 */

/** Each handed-over buffer and the length of the chunk handed over (from its start). */
const handedOver = new WeakMap<ArrayBuffer, number>();
/** Where released memory of a handed-over buffer goes instead of back to the allocator. */
const recyclers = new WeakMap<ArrayBuffer, (memory: ArrayBuffer) => void>();

/**
 * {@link handOver} by a producer that reuses its buffers: when the consumer releases `buffer`,
 * its memory is moved (`ArrayBuffer.prototype.transfer`, no copy) into a new `ArrayBuffer` given
 * to `recycle`, and every view of the old one becomes empty as with a plain release. A producer
 * of buffers of one size thus cycles through a few of them instead of leaving the allocator a
 * trail of MiB-sized holes.
 */
export function handOverForReuse<T extends Uint8Array>(buffer: T, recycle: (memory: ArrayBuffer) => void): T {
  handOver(buffer);
  recyclers.set(buffer.buffer as ArrayBuffer, recycle);
  return buffer;
}

/**
 * Marks `buffer` (from `Buffer.allocUnsafeSlow` or `new Uint8Array(n)`: it must span its whole
 * `ArrayBuffer`) as handed over: the producer keeps no reference, so the stream's consumer may
 * free it with {@link releaseHandedOver} once it has copied what it needs. A consumer that passes
 * such chunks on to other readers must copy them instead.
 *
 * @throws {RangeError} When `buffer` is a view of a larger or shared `ArrayBuffer`.
 */
export function handOver<T extends Uint8Array>(buffer: T): T {
  const backing = buffer.buffer;
  if (
    !(backing instanceof ArrayBuffer) ||
    buffer.byteOffset !== 0 ||
    buffer.byteLength !== backing.byteLength
  )
    throw new RangeError('Only a buffer that spans its whole ArrayBuffer can be handed over.');
  handedOver.set(backing, buffer.byteLength);
  return buffer;
}

/**
 * {@link handOver} for the start of a buffer that no one else holds, as zlib leaves its output
 * buffer when it is done: a few bytes past the chunk are unused. Never for a slice of Node's
 * shared pool (refused: the buffer must be larger than the pool).
 */
export function handOverStart<T extends Uint8Array>(chunk: T): T {
  const backing = chunk.buffer;
  if (!(backing instanceof ArrayBuffer) || chunk.byteOffset !== 0 || backing.byteLength <= Buffer.poolSize)
    throw new RangeError('Only the start of a buffer of its own can be handed over.');
  handedOver.set(backing, chunk.byteLength);
  return chunk;
}

/** A handed-over buffer cut into views by a reader, and how many of them (and the reader) hold it. */
interface Shared {
  backing: ArrayBuffer;
  holders: number;
  recycle: ((memory: ArrayBuffer) => void) | undefined;
}
/** Each view a {@link Sharing} cut, with the buffer it shares. */
const shares = new WeakMap<Uint8Array, Shared>();

/** A handed-over buffer a reader passes on in pieces (see {@link shareHandedOver}). */
export interface Sharing {
  /** Bytes `start` to `end` as a view of their own: released alone with {@link releaseHandedOver}. */
  slice(start: number, end: number): Uint8Array;
  /** The reader cuts no more views: the memory is freed once every view cut is released. */
  done(): void;
}

/** Forgets that `backing` was handed over; returns where its memory is to be recycled, if anywhere. */
function endHandOver(backing: ArrayBuffer): ((memory: ArrayBuffer) => void) | undefined {
  handedOver.delete(backing);
  const recycle = recyclers.get(backing);
  recyclers.delete(backing);
  return recycle;
}

/** One holder of a shared buffer lets go; the last one frees (or recycles) its memory. */
function letGo(shared: Shared): boolean {
  shared.holders -= 1;
  return shared.holders > 0 || free(shared.backing, shared.recycle);
}

/** Frees `backing`'s memory, or moves it to `recycle`; `false` when it cannot be detached. */
function free(backing: ArrayBuffer, recycle: ((memory: ArrayBuffer) => void) | undefined): boolean {
  if (!recycle) return transfer(backing, 0) !== undefined;
  const moved = transfer(backing);
  if (moved) recycle(moved);
  return moved !== undefined;
}

/**
 * Takes over a chunk that is exactly what its producer handed over, for a reader that passes it
 * on as several views (a tar reader: the end of one entry and the start of the next). Each view
 * counts as handed over on its own; the memory is freed when the reader is `done()` and every
 * view has been released, and is left to the collector while any is not. `undefined` for any
 * other chunk: the reader then cuts plain views.
 */
export function shareHandedOver(chunk: Uint8Array): Sharing | undefined {
  if (!isWholeHandedOver(chunk)) return undefined;
  const backing = chunk.buffer as ArrayBuffer;
  const shared: Shared = { backing, holders: 1, recycle: endHandOver(backing) };
  let done = false;
  return {
    slice(start, end) {
      const view = chunk.subarray(start, end);
      shared.holders += 1;
      shares.set(view, shared);
      return view;
    },
    done() {
      if (done) return;
      done = true;
      letGo(shared);
    },
  };
}

/**
 * Whether `chunk` is exactly what its producer handed over: no view cut from it by someone in
 * between (a re-chunker passes a slice on and keeps the rest), or a view a {@link Sharing} cut.
 */
export function isWholeHandedOver(chunk: Uint8Array): boolean {
  if (shares.has(chunk)) return true;
  const backing = chunk.buffer;
  return (
    backing instanceof ArrayBuffer && chunk.byteOffset === 0 && handedOver.get(backing) === chunk.byteLength
  );
}

/**
 * Frees the memory of a handed-over chunk now (every view of it becomes empty) and returns
 * `true`; any other chunk is left alone (`false`). A view a {@link Sharing} cut is released on
 * its own: the memory is freed with the last of them.
 */
export function releaseHandedOver(chunk: Uint8Array): boolean {
  const shared = shares.get(chunk);
  if (shared) {
    shares.delete(chunk);
    return letGo(shared);
  }
  const backing = chunk.buffer;
  if (!(backing instanceof ArrayBuffer) || !handedOver.has(backing)) return false;
  return free(backing, endHandOver(backing));
}

/** Whether `chunk` spans its whole `ArrayBuffer` (no other view can hold a different part of it). */
export function spansWholeBuffer(chunk: Uint8Array): boolean {
  return chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength;
}

/**
 * {@link releaseHandedOver} for a consumer that may receive views cut by someone in between (a
 * re-chunker passes a slice on and keeps the rest): only a chunk that is exactly what was handed
 * over is freed.
 */
export function releaseWholeHandedOver(chunk: Uint8Array): boolean {
  return isWholeHandedOver(chunk) && releaseHandedOver(chunk);
}

/** Frees the whole `ArrayBuffer` under `buffer` (every view of it): one this code owns and no one else holds. */
export function releaseOwn(buffer: Uint8Array): void {
  if (buffer.buffer instanceof ArrayBuffer) transfer(buffer.buffer, 0);
}

/**
 * `ArrayBuffer.prototype.transfer`: `backing`'s memory moved into a new `ArrayBuffer` (no copy;
 * with `length` 0, freed), every view of the old one empty; `undefined` when it cannot be
 * detached (an embedder's own buffer, a runtime without it): left to the collector.
 */
function transfer(backing: ArrayBuffer, length?: number): ArrayBuffer | undefined {
  const move = (backing as { transfer?: (length?: number) => ArrayBuffer }).transfer;
  if (typeof move !== 'function') return undefined;
  try {
    return move.call(backing, length);
  } catch {
    return undefined;
  }
}
