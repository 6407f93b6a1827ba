import { once } from 'node:events';
import { type Header, type Pack, extract as tarExtract, pack as tarPack } from 'tar-stream';

type Headers = Partial<Header> & Pick<Header, 'name'>;
type TarEntry = AsyncIterable<Uint8Array> & { header: Header; resume(): unknown };

import type { ByteStream, EntryType } from './contracts.ts';
import { IntegrityError } from './errors.ts';
import { asBuffer, type FeedTarget, feed } from './streams.ts';

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

type TarSink = ReturnType<Pack['entry']>;

async function writeRecord(pack: Pack, record: TarRecordInput, signal: AbortSignal): Promise<void> {
  const header: Headers = {
    name: record.name,
    type: record.type,
    size: record.type === 'file' ? record.size : 0,
    mode: record.mode ?? (record.type === 'directory' ? 0o755 : 0o644),
    mtime: record.mtime ?? new Date(),
  };
  if (record.type === 'symlink') header.linkname = record.linkTarget ?? '';
  let sink!: TarSink;
  const written = new Promise<void>((resolve, reject) => {
    sink = pack.entry(header, (error) => (error ? reject(error) : resolve()));
  });
  written.catch(() => {});
  // Errors reach us through the entry callback; without a listener streamx would rethrow them.
  (sink as unknown as NodeJS.EventEmitter).on('error', () => {});
  if (record.type === 'file' && record.body) {
    const body = record.body instanceof Uint8Array ? [record.body] : record.body;
    let total = 0;
    for await (const chunk of body) {
      total += chunk.byteLength;
      if (total > record.size) {
        throw new IntegrityError(
          `"${record.name}" grew while it was read: more than the ${record.size} bytes announced.`,
          {
            entry: record.name,
          },
        );
      }
      if (!sink.write(asBuffer(chunk)))
        await once(sink as unknown as NodeJS.EventEmitter, 'drain', { signal });
    }
    if (total !== record.size) {
      throw new IntegrityError(
        `"${record.name}" ended after ${total} of the ${record.size} bytes announced (truncated or shrank while read).`,
        {
          entry: record.name,
        },
      );
    }
  }
  sink.end(undefined);
  await written;
}

/**
 * Writes records as a POSIX tar stream (ustar, with pax headers for long names). Pull-based:
 * records are read only as fast as the returned stream is consumed. A body that yields more or
 * fewer bytes than its `size` fails with an `IntegrityError` naming the record. Stopping early
 * releases `records`.
 */
export function packTar(records: AsyncIterable<TarRecordInput>): ByteStream {
  const pack = tarPack();
  const stop = new AbortController();
  const feeding = (async () => {
    try {
      for await (const record of records) {
        if (stop.signal.aborted) return;
        await writeRecord(pack, record, stop.signal);
      }
      pack.finalize();
    } catch (error) {
      if (!stop.signal.aborted) pack.destroy(error as Error);
    }
  })();
  return (async function* () {
    try {
      for await (const chunk of pack as AsyncIterable<Uint8Array>) yield chunk;
    } finally {
      stop.abort();
      pack.destroy(undefined);
      await feeding;
    }
  })();
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
