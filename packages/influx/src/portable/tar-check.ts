import { IntegrityError } from './support.ts';

/**
 * Passes a tar stream through unchanged while walking its 512-byte headers, and fails when it
 * ends inside a record or without the end-of-archive marker (two zero blocks). `influxd backup`
 * saves whatever arrives; a shard export with tombstones, for one, breaks off mid-record.
 * `onEnd` receives the byte count once the stream is complete.
 */
export async function* checkTar(
  source: AsyncIterable<Uint8Array>,
  what: string,
  onEnd: (bytes: number) => void,
): AsyncIterable<Uint8Array> {
  let total = 0;
  /** Absolute offset of the next header block. */
  let nextHeader = 0;
  let zeroBlocks = 0;
  let ended = false;
  const header = Buffer.alloc(512);
  let headerFill = 0;
  for await (const chunk of source) {
    let position = 0;
    while (position < chunk.byteLength && !ended) {
      const absolute = total + position;
      if (absolute < nextHeader) {
        position += Math.min(chunk.byteLength - position, nextHeader - absolute);
        continue;
      }
      const take = Math.min(512 - headerFill, chunk.byteLength - position);
      header.set(chunk.subarray(position, position + take), headerFill);
      headerFill += take;
      position += take;
      if (headerFill < 512) continue;
      headerFill = 0;
      if (header.every((byte) => byte === 0)) {
        zeroBlocks += 1;
        nextHeader += 512;
        if (zeroBlocks === 2) ended = true;
        continue;
      }
      if (zeroBlocks > 0) throw new IntegrityError(`${what}: a tar header follows a zero block.`);
      const size = headerSize(header, what);
      nextHeader += 512 + Math.ceil(size / 512) * 512;
    }
    total += chunk.byteLength;
    yield chunk;
  }
  if (!ended) {
    throw new IntegrityError(
      `${what} is truncated: the tar stream ended after ${total} bytes without its end-of-archive marker (see the InfluxDB log).`,
    );
  }
  onEnd(total);
}

function headerSize(header: Buffer, what: string): number {
  const field = header.subarray(124, 136);
  if ((field[0]! & 0x80) !== 0) {
    // Base-256 (GNU) for sizes above 8 GiB.
    let size = 0;
    for (let index = 1; index < 12; index += 1) size = size * 256 + field[index]!;
    return size;
  }
  const text = field
    .toString('latin1')
    .replace(/[\0 ]+$/, '')
    .trim();
  const size = text === '' ? 0 : Number.parseInt(text, 8);
  if (!Number.isSafeInteger(size) || size < 0)
    throw new IntegrityError(`${what}: a tar header has an invalid size.`);
  return size;
}
