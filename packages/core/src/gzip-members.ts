import * as zlib from 'node:zlib';
import type { ByteStream } from './contracts.ts';
import { IntegrityError, throwIfAborted } from './errors.ts';
import { corruptAsIntegrityError, gunzip } from './gzip.ts';
import { handOverForReuse, handOverStart, releaseHandedOver } from './handover.ts';

/*
 * bk's gzip members carry their own length, so a reader can split the stream into members
 * without inflating it and inflate several at once. The length is an extra field (RFC 1952,
 * FLG.FEXTRA) with the subfield ID "BK", as BGZF does with "BC" (whose 16-bit size cannot hold
 * a 2 MiB block): every gunzip skips it, so the file stays a plain multi-member .gz.
 *
 *   1f 8b 08 04 | mtime 0 | XFL 0 | OS 3 | XLEN 8 | 'B' 'K' | LEN 4 | member length (u32 LE)
 */
const FEXTRA = 0x04;
/** Length of bk's member header, extra field included. */
export const MEMBER_HEADER_LENGTH = 20;
/** zlib's own gzip header: 10 bytes, no flags. */
const ZLIB_HEADER_LENGTH = 10;
const TRAILER_LENGTH = 8;
/** Members larger than this are not bk's (its blocks are at most 64 MiB before compression). */
const MAX_MEMBER = 80 * 1024 * 1024;

/** bk's header for a member of `length` bytes in all (header and trailer included). */
export function memberHeader(length: number): Buffer {
  const header = Buffer.alloc(MEMBER_HEADER_LENGTH);
  header.set([0x1f, 0x8b, 8, FEXTRA, 0, 0, 0, 0, 0, 3], 0);
  header.writeUInt16LE(8, 10); // XLEN
  header.write('BK', 12, 'latin1');
  header.writeUInt16LE(4, 14); // LEN
  header.writeUInt32LE(length, 16);
  return header;
}

/**
 * Gives a member zlib wrote (10-byte header, deflate data, trailer) bk's header instead, which
 * records the member's length. Zero-copy: the header is a new chunk, the rest are views.
 */
export function withMemberHeader(member: Uint8Array[]): Uint8Array[] {
  const zlibLength = member.reduce((sum, chunk) => sum + chunk.byteLength, 0);
  const out: Uint8Array[] = [memberHeader(zlibLength - ZLIB_HEADER_LENGTH + MEMBER_HEADER_LENGTH)];
  let skip = ZLIB_HEADER_LENGTH;
  for (const chunk of member) {
    if (skip >= chunk.byteLength) {
      skip -= chunk.byteLength;
      continue;
    }
    out.push(skip > 0 ? chunk.subarray(skip) : chunk);
    skip = 0;
  }
  return out;
}

/** The length bk's header records, or `undefined` when `header` is not bk's. */
function recordedLength(header: Uint8Array): number | undefined {
  if (header.byteLength < MEMBER_HEADER_LENGTH) return undefined;
  const view = Buffer.from(header.buffer, header.byteOffset, MEMBER_HEADER_LENGTH);
  if (view[0] !== 0x1f || view[1] !== 0x8b || view[2] !== 8 || view[3] !== FEXTRA) return undefined;
  if (view.readUInt16LE(10) !== 8 || view[12] !== 0x42 || view[13] !== 0x4b || view.readUInt16LE(14) !== 4)
    return undefined;
  const length = view.readUInt32LE(16);
  if (length < MEMBER_HEADER_LENGTH + TRAILER_LENGTH + 2 || length > MAX_MEMBER) return undefined;
  return length;
}

/** Bytes received and not yet consumed, as the chunks they came in. */
class Pending {
  chunks: Uint8Array[] = [];
  length = 0;
  /** Chunks `take` has used up, until {@link releaseConsumed}. */
  #consumed: Uint8Array[] = [];

  push(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.byteLength;
  }

  /** The first `length` bytes as one buffer (copied only when they span chunks). */
  peek(length: number): Uint8Array {
    return new Cursor(this.chunks).readBytes(length)!;
  }

  /** Removes and returns the first `length` bytes, as views of the chunks they are in. */
  take(length: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    let left = length;
    while (left > 0) {
      const chunk = this.chunks[0]!;
      if (chunk.byteLength <= left) {
        out.push(chunk);
        this.#consumed.push(chunk);
        this.chunks.shift();
        left -= chunk.byteLength;
      } else {
        out.push(chunk.subarray(0, left));
        this.chunks[0] = chunk.subarray(left);
        left = 0;
      }
    }
    this.length -= length;
    return out;
  }

  /**
   * Frees the used-up chunks their producer handed over (see `handOver`), once what `take`
   * returned has been copied.
   */
  releaseConsumed(): void {
    for (const chunk of this.#consumed) releaseHandedOver(chunk);
    this.#consumed = [];
  }
}

/**
 * Buffers given back for reuse by one `gunzipMembers` call: members cycle through a few of them
 * instead of leaving the allocator a trail of MiB-sized holes.
 */
class Spares {
  #free: ArrayBuffer[] = [];
  constructor(private readonly limit: number) {}

  /** A buffer of exactly `length` bytes, spanning its whole memory (one that can be handed over). */
  exact(length: number): Buffer {
    const index = this.#free.findIndex((memory) => memory.byteLength === length);
    return index < 0 ? Buffer.allocUnsafeSlow(length) : Buffer.from(this.#free.splice(index, 1)[0]!);
  }

  /** `length` bytes at the start of a spare that is large enough, or of a new buffer. */
  atLeast(length: number): Buffer {
    const index = this.#free.findIndex((memory) => memory.byteLength >= length);
    if (index >= 0) return Buffer.from(this.#free.splice(index, 1)[0]!, 0, length);
    // Rounded up, so members of slightly different sizes fit the same buffers later.
    return Buffer.from(new ArrayBuffer(Math.ceil(length / 65_536) * 65_536), 0, length);
  }

  give = (memory: ArrayBuffer): void => {
    if (this.#free.length < this.limit) this.#free.push(memory);
  };
}

/** `pieces` copied into one buffer of their own (`length` bytes in all), or into `into`. */
export function copyOf(pieces: Uint8Array[], length: number, into?: Buffer): Buffer {
  const out = into ?? Buffer.allocUnsafeSlow(length);
  let offset = 0;
  for (const piece of pieces) {
    out.set(piece, offset);
    offset += piece.byteLength;
  }
  return out;
}

/** Reads `length` bytes at `offset` of a member held as chunks, copying only across chunks. */
class Cursor {
  readonly chunks: Uint8Array[];
  #chunk = 0;
  #offset = 0;
  constructor(chunks: Uint8Array[]) {
    this.chunks = chunks;
  }

  /** Views of the next `length` bytes; `undefined` when fewer are left. */
  read(length: number): Uint8Array[] | undefined {
    const out: Uint8Array[] = [];
    let left = length;
    while (left > 0) {
      const chunk = this.chunks[this.#chunk];
      if (!chunk) return undefined;
      const take = Math.min(chunk.byteLength - this.#offset, left);
      out.push(chunk.subarray(this.#offset, this.#offset + take));
      this.#offset += take;
      left -= take;
      if (this.#offset === chunk.byteLength) {
        this.#chunk += 1;
        this.#offset = 0;
      }
    }
    return out;
  }

  readBytes(length: number): Uint8Array | undefined {
    const pieces = this.read(length);
    if (!pieces) return undefined;
    return pieces.length === 1 ? pieces[0] : Buffer.concat(pieces);
  }
}

function corrupt(detail: string): IntegrityError {
  return new IntegrityError(`The archive is corrupt: a gzip member ${detail}.`);
}

/** A member's data, and for stored members the trailer to check it against as it is read. */
interface MemberData {
  pieces: Uint8Array[];
  trailer?: { crc: number; size: number };
}

/**
 * The data of a member whose deflate blocks are all stored (what bk writes for incompressible
 * data), copied out of the member's chunks (no inflate); `undefined` when a block is compressed. The CRC-32 is checked as the data is handed out (see {@link checkedPieces}), as a
 * streaming gunzip would: a damaged entry is then named by its own sha256 check.
 */
function storedData(member: Uint8Array[], memberLength: number, spares: Spares): MemberData | undefined {
  const cursor = new Cursor(member);
  cursor.read(MEMBER_HEADER_LENGTH);
  const pieces: Uint8Array[] = [];
  let consumed = MEMBER_HEADER_LENGTH;
  let dataLength = 0;
  for (;;) {
    const head = cursor.readBytes(5);
    if (!head) return undefined;
    // A block header at a byte boundary: BFINAL in bit 0, BTYPE in bits 1–2 (00 = stored), then
    // padding to the byte; LEN and its complement NLEN follow.
    if ((head[0]! & 0b110) !== 0) return undefined;
    const length = head[1]! | (head[2]! << 8);
    if ((length ^ (head[3]! | (head[4]! << 8))) !== 0xffff)
      throw corrupt('has a stored block whose length is damaged');
    consumed += 5 + length;
    dataLength += length;
    if (consumed + TRAILER_LENGTH > memberLength) throw corrupt('is longer than its header says');
    pieces.push(...cursor.read(length)!);
    if (head[0]! & 1) break;
  }
  if (consumed + TRAILER_LENGTH !== memberLength) throw corrupt('is longer than its deflate data');
  const trailer = Buffer.from(cursor.readBytes(TRAILER_LENGTH)!);
  const data =
    dataLength > 0
      ? handOverForReuse(copyOf(pieces, dataLength, spares.exact(dataLength)), spares.give)
      : Buffer.alloc(0);
  return { pieces: [data], trailer: { crc: trailer.readUInt32LE(0), size: trailer.readUInt32LE(4) } };
}

/** Hands out a member's data, checking a stored member's CRC-32 and length after its last byte. */
function* checkedPieces(data: MemberData): Generator<Uint8Array> {
  if (!data.trailer) return yield* data.pieces;
  let crc = 0;
  let size = 0;
  for (const piece of data.pieces) {
    crc = zlib.crc32(piece, crc);
    size += piece.byteLength;
    yield piece;
  }
  if (crc >>> 0 !== data.trailer.crc) throw corrupt('fails its CRC-32 check');
  if (size >>> 0 !== data.trailer.size) throw corrupt('holds a different length than its trailer says');
}

/**
 * Inflates one whole member on libuv's thread pool (zlib checks its CRC-32 and length). The
 * member is copied first (so its chunks can be freed at once) and the copy freed when zlib is done.
 * The data comes out as the start of zlib's one output buffer, handed over (see `handOver`), so
 * whoever writes it out can free it at once.
 */
function inflateMember(member: Uint8Array[], memberLength: number, spares: Spares): Promise<MemberData> {
  const bytes = copyOf(member, memberLength, spares.atLeast(memberLength));
  const isize = bytes.readUInt32LE(memberLength - 4);
  // One output buffer for the whole member when its recorded size is plausible, a little larger
  // than the data: a full one would make zlib start another just for the trailer.
  const chunkSize = isize <= MAX_MEMBER ? Math.max(64, isize + 64) : 1024 * 1024;
  return new Promise((resolve, reject) => {
    zlib.gunzip(bytes, { chunkSize }, (error, result) => {
      if (error) return reject(error);
      spares.give(bytes.buffer as ArrayBuffer); // zlib has read it all
      // zlib's only output buffer, which it has let go of (not a concatenation of several).
      const own =
        result.byteOffset === 0 && result.buffer.byteLength === chunkSize && chunkSize > Buffer.poolSize;
      resolve({ pieces: [own ? handOverStart(result) : result] });
    });
  });
}

export interface GunzipOptions {
  /** Members inflated at once on libuv's thread pool; default 2. One more is read ahead. */
  workers?: number;
  signal?: AbortSignal;
}

/**
 * Decompresses gzip. Members that carry bk's length field (what {@link compress} writes) are
 * split without inflating and inflated `workers` at once on libuv's thread pool, output in
 * order; members of stored blocks are copied out without inflating, their CRC-32 checked as
 * they are handed on. Input chunks handed over (see `handOver`, e.g. by `getInParallel`) are
 * freed as soon as their members are copied. From the first member without the field on (any other gzip writer), the rest is read
 * by one streaming gunzip. Corrupt or truncated input fails with an `IntegrityError`.
 *
 * Memory: up to `workers + 1` members (a block each, 1 MiB by default, compressed and inflated) besides
 * the chunks the source delivers.
 */
export function gunzipMembers(source: ByteStream, options: GunzipOptions = {}): ByteStream {
  const workers = Math.max(1, options.workers ?? 2);
  const { signal } = options;
  if (typeof zlib.crc32 !== 'function') return gunzip(source);
  return corruptAsIntegrityError(
    (async function* () {
      const input = source[Symbol.asyncIterator]();
      const pending = new Pending();
      let ended = false;
      const fill = async (length: number): Promise<boolean> => {
        while (!ended && pending.length < length) {
          const next = await input.next();
          if (next.done) ended = true;
          else pending.push(next.value);
        }
        return pending.length >= length;
      };
      const inFlight: Promise<MemberData>[] = [];
      // One for each member in flight (its copy, or its stored data a consumer gives back) and one more.
      const spares = new Spares(workers + 2);
      let foreign = false;
      try {
        for (;;) {
          // Read ahead: split members and start them until one more than `workers` are queued.
          while (!foreign && inFlight.length <= workers) {
            if (!(await fill(MEMBER_HEADER_LENGTH))) {
              if (pending.length > 0) foreign = true; // too short to be ours: let gunzip judge
              break;
            }
            const length = recordedLength(pending.peek(MEMBER_HEADER_LENGTH));
            if (length === undefined) {
              foreign = true;
              break;
            }
            if (!(await fill(length))) {
              throw new IntegrityError(
                'The archive is corrupt: it ends inside a gzip member (the archive is truncated).',
              );
            }
            const member = pending.take(length);
            const stored = storedData(member, length, spares);
            const job = stored ? Promise.resolve(stored) : inflateMember(member, length, spares);
            pending.releaseConsumed(); // the member was copied
            job.catch(() => {}); // observed when it reaches the head of the queue
            inFlight.push(job);
          }
          const head = inFlight.shift();
          if (!head) break;
          yield* checkedPieces(await head);
          throwIfAborted(signal);
        }
        if (foreign) {
          const rest = (async function* () {
            yield* pending.chunks;
            pending.chunks = [];
            for (let next = await input.next(); !next.done; next = await input.next()) yield next.value;
          })();
          yield* gunzip(rest);
        }
      } finally {
        await Promise.allSettled(inFlight);
        await input.return?.(undefined);
      }
    })(),
    'gzip',
  );
}
