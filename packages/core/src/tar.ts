import type { ByteStream, EntryType } from './contracts.ts';
import { IntegrityError } from './errors.ts';
import { releaseWholeHandedOver, type Sharing, shareHandedOver } from './handover.ts';
import { formatPaxMtime, mtimeDate, mtimeNanoseconds, parsePaxMtime } from './mtime.ts';

/** One record to write into a tar stream. Files need `size` up front: tar stores it first. */
export interface TarRecordInput {
  name: string;
  type: EntryType;
  size: number;
  mode?: number;
  mtime?: Date;
  /** The mtime to the nanosecond, when known more precisely than `mtime` (which it overrides). */
  mtimeNs?: bigint;
  /**
   * Write a fraction of a second of the mtime as a pax `mtime` record; default `true`. `false`
   * keeps the header's whole seconds only, as GNU tar's default format does: the pax header
   * is 1 KiB of tar per record, which doubles the tar of a tiny file.
   */
  paxMtime?: boolean;
  linkTarget?: string;
  body?: ByteStream | Uint8Array;
}

/** One record read from a tar stream. Read or skip its body before asking for the next record. */
export interface TarRecord {
  name: string;
  type: EntryType | 'other';
  size: number;
  mode: number;
  mtime: Date;
  /** The mtime in nanoseconds: exact when a pax `mtime` gave it, else the header's whole seconds. */
  mtimeNs: bigint;
  /** Whether a pax `mtime` record gave the mtime (possibly with a fraction of a second). */
  paxMtime: boolean;
  /** The header's typeflag byte, which says what an `other` record is (see {@link describeTypeflag}). */
  typeflag: number;
  linkTarget?: string;
  body: ByteStream;
}

const TYPEFLAG_WORDS: Record<number, string> = {
  49: 'a hard link',
  51: 'a character device',
  52: 'a block device',
  54: 'a FIFO',
};

/** What a tar record's typeflag stands for, in words: `a hard link`, `a FIFO`, … */
export function describeTypeflag(typeflag: number): string {
  if (typeflag === 0x30 || typeflag === 0 || typeflag === 0x37) return 'a file';
  if (typeflag === 0x32) return 'a symbolic link';
  if (typeflag === 0x35) return 'a directory';
  return TYPEFLAG_WORDS[typeflag] ?? `a record of tar type "${String.fromCharCode(typeflag)}"`;
}

const BLOCK = 512;
/** The zero bytes that pad `size` bytes of data to whole 512-byte blocks. */
const paddingOf = (size: number): number => (BLOCK - (size % BLOCK)) % BLOCK;
/** Padding and the end-of-archive marker (two zero blocks); never written to. */
const ZEROS = new Uint8Array(2 * BLOCK);
/** The largest number an 11-digit octal field holds (as a size: 8 GiB − 1). */
const MAX_OCTAL_11 = 0o77777777777;

const TYPEFLAGS = { file: 0x30, symlink: 0x32, directory: 0x35, pax: 0x78 } as const;

/** Whether every character is ASCII (one UTF-8 byte each). */
const isAscii = (text: string): boolean => Buffer.byteLength(text) === text.length;

/** `value` as `digits` octal digits and a NUL, at `offset`. */
function writeOctal(header: Buffer, offset: number, digits: number, value: number): void {
  header.write(`${value.toString(8).padStart(digits, '0')}\0`, offset, 'ascii');
}

/**
 * A name split into ustar's `prefix` (at most 155 bytes) and `name` (at most 100) at a slash, or
 * `undefined` when it does not fit or is not ASCII: it then travels in a pax header.
 */
export function splitUstarName(name: string): { prefix: string; name: string } | undefined {
  if (!isAscii(name)) return undefined;
  if (name.length <= 100) return { prefix: '', name };
  // The first slash that leaves at most 100 bytes after it gives the shortest prefix.
  const slash = name.indexOf('/', Math.max(1, name.length - 101));
  if (slash < 0 || slash > 155 || slash === name.length - 1) return undefined;
  return { prefix: name.slice(0, slash), name: name.slice(slash + 1) };
}

/** One pax extended-header record: `"<length> <key>=<value>\n"`, the length counting itself. */
function paxRecord(key: string, value: string): string {
  const rest = Buffer.byteLength(` ${key}=${value}\n`);
  let length = rest + String(rest).length;
  if (String(length).length > String(rest).length) length += 1;
  return `${length} ${key}=${value}\n`;
}

interface UstarFields {
  name: string;
  prefix: string;
  typeflag: number;
  size: number;
  mode: number;
  mtime: Date;
  linkname: string;
}

/** One 512-byte ustar header block (uid, gid, user and group names left empty: 0 and ""). */
function ustarBlock(fields: UstarFields): Buffer {
  const header = Buffer.alloc(BLOCK);
  header.write(fields.name, 0, 100, 'utf8');
  writeOctal(header, 100, 7, fields.mode & 0o7777);
  writeOctal(header, 108, 7, 0);
  writeOctal(header, 116, 7, 0);
  if (fields.size <= MAX_OCTAL_11) writeOctal(header, 124, 11, fields.size);
  else {
    // Base-256 (GNU, star, libarchive): a set high bit, then the size big-endian.
    header[124] = 0x80;
    let size = fields.size;
    for (let at = 135; at > 124; at -= 1) {
      header[at] = size % 256;
      size = Math.floor(size / 256);
    }
  }
  const seconds = Math.floor(fields.mtime.getTime() / 1000);
  writeOctal(header, 136, 11, Number.isFinite(seconds) ? Math.min(Math.max(seconds, 0), MAX_OCTAL_11) : 0);
  header.fill(0x20, 148, 156); // the checksum counts its own field as spaces
  header[156] = fields.typeflag;
  header.write(fields.linkname, 157, 100, 'utf8');
  header.write('ustar\x0000', 257, 'ascii');
  writeOctal(header, 329, 7, 0);
  writeOctal(header, 337, 7, 0);
  header.write(fields.prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return header;
}

/**
 * The header of one record: a ustar block, preceded by a pax extended header when the name
 * does not fit ustar's fields or is not ASCII, the link target is longer than 100 bytes or not
 * ASCII, the size needs more than 11 octal digits (the size field is then base-256 too), or the
 * mtime has a fraction of a second (pax `mtime`, to the nanosecond; not with `paxMtime: false`).
 */
export function tarHeader(record: TarRecordInput): Buffer {
  const size = record.type === 'file' ? record.size : 0;
  const mode = record.mode ?? (record.type === 'directory' ? 0o755 : 0o644);
  const mtimeNs =
    record.mtime === undefined && record.mtimeNs === undefined
      ? BigInt(Math.floor(Date.now() / 1000)) * 1_000_000_000n
      : mtimeNanoseconds(record.mtime ?? new Date(0), record.mtimeNs);
  const mtime = mtimeDate(mtimeNs);
  const linkname = record.type === 'symlink' ? (record.linkTarget ?? '') : '';
  const split = splitUstarName(record.name);
  const linkFits = isAscii(linkname) && linkname.length <= 100;
  const block = ustarBlock({
    // What a reader without pax support sees: the name's last 100 characters, printable ASCII.
    ...(split ?? { prefix: '', name: record.name.replace(/[^ -~]/g, '_').slice(-100) }),
    typeflag: TYPEFLAGS[record.type],
    size,
    mode,
    mtime,
    linkname: linkFits ? linkname : '',
  });
  let pax = '';
  if (!split) pax += paxRecord('path', record.name);
  if (!linkFits) pax += paxRecord('linkpath', linkname);
  if (size > MAX_OCTAL_11) pax += paxRecord('size', String(size));
  // Sub-second mtimes travel in pax, unless the caller keeps them elsewhere.
  if (record.paxMtime !== false && mtimeNs % 1_000_000_000n !== 0n)
    pax += paxRecord('mtime', formatPaxMtime(mtimeNs));
  if (pax === '') return block;
  const records = Buffer.from(pax, 'utf8');
  const padding = paddingOf(records.byteLength);
  const paxHeader = ustarBlock({
    name: 'PaxHeader',
    prefix: '',
    typeflag: TYPEFLAGS.pax,
    size: records.byteLength,
    mode: 0o644,
    mtime,
    linkname: '',
  });
  return Buffer.concat([paxHeader, records, ZEROS.subarray(0, padding), block]);
}

/** Records with no body or a body in memory of at most this many bytes are copied into batches. */
const SMALL_RECORD = 16 * 1024;
/** The size of a batch of small records: one chunk downstream instead of three per record. */
const BATCH = 64 * 1024;

/**
 * Writes records as a POSIX tar stream (ustar, with pax headers for long or non-ASCII names and
 * link targets and sizes of 8 GiB and more). Pull-based: a record is read only when the stream
 * is read. Records without a body, or with a body of up to 16 KiB given as one buffer, are copied
 * into 64 KiB batches (a buffer handed over is released once copied): one chunk for a few dozen
 * small files instead of three each. Other bodies are passed on chunk by chunk as they came (not
 * copied), so what the consumer does with a chunk it is done with (see `handOver`) reaches the
 * body's producer. A body that yields more or fewer bytes than its `size` fails with an
 * `IntegrityError` naming the record. Stopping early releases `records` and the body being read.
 */
export async function* packTar(records: AsyncIterable<TarRecordInput>): ByteStream {
  let batch = Buffer.allocUnsafe(BATCH);
  let used = 0;
  for await (const record of records) {
    const header = tarHeader(record);
    const inMemory =
      record.type !== 'file'
        ? EMPTY
        : record.body instanceof Uint8Array && record.body.byteLength === record.size
          ? record.body
          : undefined;
    if (inMemory !== undefined && inMemory.byteLength <= SMALL_RECORD) {
      const padding = paddingOf(inMemory.byteLength);
      const length = header.byteLength + inMemory.byteLength + padding;
      if (used + length > batch.byteLength) {
        if (used > 0) yield batch.subarray(0, used);
        batch = Buffer.allocUnsafe(Math.max(BATCH, length));
        used = 0;
      }
      batch.set(header, used);
      used += header.byteLength;
      if (inMemory.byteLength > 0) {
        batch.set(inMemory, used);
        used += inMemory.byteLength;
        releaseWholeHandedOver(inMemory);
      }
      batch.fill(0, used, used + padding);
      used += padding;
      continue;
    }
    if (used > 0) {
      yield batch.subarray(0, used);
      batch = Buffer.allocUnsafe(BATCH);
      used = 0;
    }
    yield header;
    if (record.type !== 'file') continue;
    let total = 0;
    const body = record.body instanceof Uint8Array ? [record.body] : (record.body ?? []);
    for await (const chunk of body) {
      total += chunk.byteLength;
      if (total > record.size) {
        throw new IntegrityError(
          `"${record.name}" grew while it was read: more than the ${record.size} bytes announced.`,
          { entry: record.name },
        );
      }
      if (chunk.byteLength > 0) yield chunk;
    }
    if (total !== record.size) {
      throw new IntegrityError(
        `"${record.name}" ended after ${total} of the ${record.size} bytes announced (truncated or shrank while read).`,
        { entry: record.name },
      );
    }
    const padding = paddingOf(record.size);
    if (padding > 0) yield ZEROS.subarray(0, padding);
  }
  if (used > 0) yield batch.subarray(0, used);
  yield ZEROS;
}

/** Typeflags whose records carry no data whatever their size field says (POSIX ustar). */
const NO_DATA = new Set([0x31, 0x32, 0x33, 0x34, 0x35, 0x36]);
/** Typeflags of headers that describe the next record: pax extended and global, GNU long names. */
const META = { pax: 0x78, global: 0x67, longName: 0x4c, longLink: 0x4b } as const;
const META_TYPES = new Set<number>(Object.values(META));
/** The largest pax or GNU long-name header read (they are held in memory). */
const MAX_META = 1024 * 1024;
const EMPTY = new Uint8Array(0);

/** Reads a stream of chunks as tar needs it: headers copied out, bodies as views of the chunks. */
class TarInput {
  readonly #source: AsyncIterator<Uint8Array>;
  #chunk: Uint8Array = EMPTY;
  #offset = 0;
  #sharing: Sharing | undefined;
  #ended = false;
  /** Bytes read (or skipped) so far. */
  position = 0;

  constructor(source: ByteStream) {
    this.#source = source[Symbol.asyncIterator]();
  }

  /** Makes the current chunk hold unread bytes; `false` at the end of the source. */
  async #fill(): Promise<boolean> {
    while (this.#offset === this.#chunk.byteLength) {
      this.#sharing?.done();
      this.#sharing = undefined;
      this.#chunk = EMPTY;
      this.#offset = 0;
      if (this.#ended) return false;
      const next = await this.#source.next();
      if (next.done) {
        this.#ended = true;
        return false;
      }
      this.#chunk = next.value;
      this.#sharing = shareHandedOver(next.value);
    }
    return true;
  }

  /** Moves past up to `max` bytes of the current chunk (filled first); how many, 0 at the end. */
  async #advance(max: number): Promise<number> {
    if (!(await this.#fill())) return 0;
    const taken = Math.min(this.#chunk.byteLength - this.#offset, max);
    this.#offset += taken;
    this.position += taken;
    return taken;
  }

  /**
   * Up to `max` bytes as a view of the current chunk, `undefined` at the end. The view of a
   * handed-over chunk is handed over on its own (see `shareHandedOver`).
   */
  async view(max: number): Promise<Uint8Array | undefined> {
    const taken = await this.#advance(max);
    if (taken === 0) return undefined;
    const start = this.#offset - taken;
    return this.#sharing
      ? this.#sharing.slice(start, this.#offset)
      : this.#chunk.subarray(start, this.#offset);
  }

  /** `length` bytes copied into a buffer of their own; fewer when the source ends first. */
  async read(length: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length);
    let filled = 0;
    for (let taken = 1; filled < length && taken > 0; filled += taken) {
      taken = await this.#advance(length - filled);
      out.set(this.#chunk.subarray(this.#offset - taken, this.#offset), filled);
    }
    return out.subarray(0, filled);
  }

  /** Skips `length` bytes; returns how many there were. */
  async skip(length: number): Promise<number> {
    let skipped = 0;
    for (let taken = 1; skipped < length && taken > 0; skipped += taken)
      taken = await this.#advance(length - skipped);
    return skipped;
  }

  async close(): Promise<void> {
    this.#sharing?.done();
    this.#sharing = undefined;
    this.#chunk = EMPTY;
    if (!this.#ended) await this.#source.return?.();
  }
}

const truncated = (): IntegrityError =>
  new IntegrityError('The archive is truncated: it ends in the middle of a tar record.');

const damaged = (at: number, what: string): IntegrityError =>
  new IntegrityError(`The tar header at byte ${at} of the archive's tar stream is damaged: ${what}.`);

/** The bytes up to the first NUL, as UTF-8. */
function cString(bytes: Uint8Array, start = 0, length = bytes.byteLength - start): string {
  const field = bytes.subarray(start, start + length);
  const end = field.indexOf(0);
  return Buffer.from(field.buffer, field.byteOffset, end < 0 ? field.byteLength : end).toString('utf8');
}

/** A numeric field: octal digits (spaces and NULs around them), or base-256 with the high bit set. */
function numberField(block: Uint8Array, start: number, length: number): number {
  if (block[start]! & 0x80) {
    if (block[start] !== 0x80) return Number.NaN; // a negative base-256 number
    let value = 0;
    for (let at = start + 1; at < start + length; at += 1) value = value * 256 + block[at]!;
    return value;
  }
  // Spaces and NULs may lead; the digits end at the first space or NUL (what follows is ignored).
  let from = start;
  const end = start + length;
  while (from < end && (block[from] === 0x20 || block[from] === 0)) from += 1;
  let to = from;
  while (to < end && block[to] !== 0x20 && block[to] !== 0) to += 1;
  if (to === from) return 0;
  const text = Buffer.from(block.buffer, block.byteOffset + from, to - from).toString('latin1');
  return /^[0-7]+$/.test(text) ? Number.parseInt(text, 8) : Number.NaN;
}

/** Whether the header's checksum matches (summed unsigned, or signed as some old writers did). */
function checksumMatches(block: Uint8Array): boolean {
  const stored = numberField(block, 148, 8);
  let unsigned = 8 * 0x20;
  let signed = 8 * 0x20;
  for (let at = 0; at < BLOCK; at += 1) {
    if (at >= 148 && at < 156) continue;
    const byte = block[at]!;
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  return stored === unsigned || stored === signed;
}

/** The records of a pax extended header: `"<length> <key>=<value>\n"` each. */
function paxRecords(data: Uint8Array, at: number): Record<string, string> {
  const fields: Record<string, string> = {};
  let offset = 0;
  while (offset < data.byteLength) {
    if (data[offset] === 0) break; // padding
    const space = data.indexOf(0x20, offset);
    const length =
      space < 0 ? Number.NaN : Number(Buffer.from(data.subarray(offset, space)).toString('latin1'));
    if (!Number.isInteger(length) || length <= space - offset + 1 || offset + length > data.byteLength) {
      throw damaged(at, 'its pax extended header is malformed');
    }
    const record = Buffer.from(data.subarray(space + 1, offset + length - 1)).toString('utf8');
    const equals = record.indexOf('=');
    if (equals <= 0) throw damaged(at, 'its pax extended header is malformed');
    fields[record.slice(0, equals)] = record.slice(equals + 1);
    offset += length;
  }
  return fields;
}

/** Whether a 512-byte block is all zeros (the end-of-archive marker, or padding after it). */
function isZeroBlock(block: Uint8Array): boolean {
  for (let at = 0; at < BLOCK; at += 1) if (block[at] !== 0) return false;
  return true;
}

function recordType(typeflag: number, name: string): TarRecord['type'] {
  if (typeflag === 0x30 || typeflag === 0 || typeflag === 0x37)
    return name.endsWith('/') ? 'directory' : 'file';
  if (typeflag === 0x35) return 'directory';
  if (typeflag === 0x32) return 'symlink';
  return 'other';
}

/**
 * Reads a tar stream as records: ustar, pax (per record and global: `path`, `linkpath`, `size`,
 * `mtime`), GNU long names and link targets, base-256 sizes. Each record's body must be read
 * (or left: it is skipped) before the next record is requested. Bodies are views of the input
 * chunks (no copy); a chunk its producer handed over is passed on as views that are each handed
 * over (see `shareHandedOver`), so a consumer that releases what it has written frees the chunk
 * once the last view of it is released, even when it holds the end of one file and the start of
 * the next. A damaged header (bad checksum or fields) or truncated input fails with an
 * `IntegrityError`. Stopping early releases `source`.
 */
export async function* unpackTar(source: ByteStream): AsyncIterable<TarRecord> {
  const input = new TarInput(source);
  let global: Record<string, string> = {};
  let next: Record<string, string> = {};
  try {
    while (true) {
      const at = input.position;
      const block = await input.read(BLOCK);
      if (block.byteLength === 0) {
        if (Object.keys(next).length > 0) throw truncated();
        return;
      }
      if (block.byteLength < BLOCK) throw truncated();
      if (isZeroBlock(block)) continue;
      if (!checksumMatches(block)) throw damaged(at, 'its checksum does not match');
      const typeflag = block[156]!;
      let size = numberField(block, 124, 12);
      if (!Number.isSafeInteger(size) || size < 0) throw damaged(at, 'its size is not a number');
      if (META_TYPES.has(typeflag)) {
        const padding = paddingOf(size);
        if (size > MAX_META) throw damaged(at, `its ${size}-byte extended header is larger than ${MAX_META}`);
        const data = await input.read(size);
        if (data.byteLength < size || (await input.skip(padding)) < padding) throw truncated();
        if (typeflag === META.pax) next = { ...next, ...paxRecords(data, at) };
        else if (typeflag === META.global) global = { ...global, ...paxRecords(data, at) };
        else next = { ...next, [typeflag === META.longName ? 'path' : 'linkpath']: cString(data) };
        continue;
      }

      const fields = { ...global, ...next };
      next = {};
      const magic = Buffer.from(block.buffer, block.byteOffset + 257, 6).toString('latin1');
      const prefix = magic === 'ustar\0' ? cString(block, 345, 155) : '';
      const name = fields.path ?? (prefix ? `${prefix}/${cString(block, 0, 100)}` : cString(block, 0, 100));
      const linkTarget = fields.linkpath ?? cString(block, 157, 100);
      if (fields.size !== undefined) {
        size = /^\d+$/.test(fields.size) ? Number(fields.size) : Number.NaN;
        if (!Number.isSafeInteger(size)) throw damaged(at, 'its pax size is not a number');
      }
      const paxMtime = fields.mtime === undefined ? undefined : parsePaxMtime(fields.mtime);
      if (fields.mtime !== undefined && paxMtime === undefined)
        throw damaged(at, 'its pax mtime is not a number');
      const headerSeconds = numberField(block, 136, 12);
      const mtimeNs =
        paxMtime ?? (Number.isSafeInteger(headerSeconds) ? BigInt(headerSeconds) * 1_000_000_000n : 0n);
      const mode = numberField(block, 100, 8);
      const type = recordType(typeflag, name);
      const dataSize = NO_DATA.has(typeflag) || type === 'directory' ? 0 : size;

      let remaining = dataSize;
      let current = true;
      const body = (async function* () {
        while (true) {
          if (!current) throw new Error("A tar record's body was read after the next record was requested.");
          if (remaining === 0) return;
          const view = await input.view(remaining);
          if (!view) throw truncated();
          remaining -= view.byteLength;
          yield view;
        }
      })();
      yield {
        name,
        type,
        size: dataSize,
        mode: Number.isFinite(mode) ? mode : 0o644,
        mtime: mtimeDate(mtimeNs),
        mtimeNs,
        paxMtime: paxMtime !== undefined,
        typeflag,
        ...(linkTarget ? { linkTarget } : {}),
        body,
      };
      current = false;
      const rest = remaining + paddingOf(dataSize);
      if ((await input.skip(rest)) < rest) throw truncated();
    }
  } finally {
    await input.close();
  }
}
