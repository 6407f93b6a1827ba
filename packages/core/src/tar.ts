import { type Header, extract as tarExtract } from 'tar-stream';

type Headers = Partial<Header> & Pick<Header, 'name'>;
type TarEntry = AsyncIterable<Uint8Array> & { header: Header; resume(): unknown };

import type { ByteStream, EntryType } from './contracts.ts';
import { IntegrityError } from './errors.ts';
import { type FeedTarget, feed } from './streams.ts';

/** One record to write into a tar stream. Files need `size` up front: tar stores it first. */
export interface TarRecordInput {
  name: string;
  type: EntryType;
  size: number;
  mode?: number;
  mtime?: Date;
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
  linkTarget?: string;
  body: ByteStream;
}

const BLOCK = 512;
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
 * ASCII, or the size needs more than 11 octal digits (the size field is then base-256 too).
 */
export function tarHeader(record: TarRecordInput): Buffer {
  const size = record.type === 'file' ? record.size : 0;
  const mode = record.mode ?? (record.type === 'directory' ? 0o755 : 0o644);
  const mtime = record.mtime ?? new Date();
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
  if (pax === '') return block;
  const records = Buffer.from(pax, 'utf8');
  const padding = (BLOCK - (records.byteLength % BLOCK)) % BLOCK;
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

/**
 * Writes records as a POSIX tar stream (ustar, with pax headers for long or non-ASCII names and
 * link targets and sizes of 8 GiB and more). Pull-based and unbuffered: a record is read only
 * when the stream is read, and each body chunk is passed on as it came (not copied), so what the
 * consumer does with a chunk it is done with (see `handOver`) reaches the body's producer. A body
 * that yields more or fewer bytes than its `size` fails with an `IntegrityError` naming the
 * record. Stopping early releases `records` and the body being read.
 */
export async function* packTar(records: AsyncIterable<TarRecordInput>): ByteStream {
  for await (const record of records) {
    yield tarHeader(record);
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
    const tail = record.size % BLOCK;
    if (tail > 0) yield ZEROS.subarray(0, BLOCK - tail);
  }
  yield ZEROS;
}

function recordType(type: Headers['type']): TarRecord['type'] {
  if (type === 'file' || type === 'directory' || type === 'symlink') return type;
  return type === 'contiguous-file' ? 'file' : 'other';
}

/**
 * Reads a tar stream as records. Each record's body must be consumed (or left: it is skipped)
 * before the next is requested. Truncated input fails with `IntegrityError`.
 */
export async function* unpackTar(source: ByteStream): AsyncIterable<TarRecord> {
  const extract = tarExtract();
  const stop = new AbortController();
  const feeding = feed(source, extract as unknown as FeedTarget, stop.signal);
  // The first error the extractor saw explains later "Stream was destroyed" errors of entries.
  let extractError: unknown;
  (extract as unknown as NodeJS.EventEmitter).on('error', (error: unknown) => {
    extractError ??= error;
  });
  const explain = (error: unknown): unknown => {
    const cause = extractError ?? error;
    if ((cause as Error | undefined)?.message === 'Unexpected end of data') {
      return new IntegrityError('The archive is truncated: it ends in the middle of a tar record.', {
        cause,
      });
    }
    return cause;
  };
  const iterator = (extract as unknown as AsyncIterable<TarEntry>)[Symbol.asyncIterator]();
  try {
    while (true) {
      let next: IteratorResult<TarEntry>;
      try {
        next = await iterator.next();
      } catch (error) {
        if ((error as Error).message === 'Unexpected end of data') {
          throw new IntegrityError('The archive is truncated: it ends in the middle of a tar record.', {
            cause: error,
          });
        }
        throw error;
      }
      if (next.done) return;
      const entry = next.value;
      const { header } = entry;
      let consumed = false;
      const body = (async function* () {
        consumed = true;
        try {
          for await (const chunk of entry as AsyncIterable<Uint8Array>) yield chunk;
        } catch (error) {
          throw explain(error);
        }
      })();
      yield {
        name: header.name,
        type: recordType(header.type),
        size: header.size ?? 0,
        mode: header.mode ?? 0o644,
        mtime: header.mtime ?? new Date(0),
        ...(header.linkname ? { linkTarget: header.linkname } : {}),
        body,
      };
      if (!consumed) entry.resume();
    }
  } finally {
    stop.abort();
    await iterator.return?.();
    await feeding;
  }
}
