import { createHash } from 'node:crypto';
import { type ByteStream, IntegrityError } from '@bk/core';

/** Length of the sha256 trailer etcd appends to a snapshot (the bbolt db followed by its hash). */
export const SNAPSHOT_HASH_LENGTH = 32;

/**
 * Passes a snapshot stream through unchanged while checking its trailer: the last 32 bytes must
 * be the sha256 of everything before them. The trailer is held back until it is checked, so a
 * corrupt snapshot throws `IntegrityError` before the body ends.
 *
 * @throws {IntegrityError} when the trailer does not match, or the stream is shorter than it.
 */
export async function* verifySnapshot(source: ByteStream, entry = 'snapshot.db'): AsyncGenerator<Uint8Array> {
  const hash = createHash('sha256');
  let tail: Buffer = Buffer.alloc(0);
  for await (const chunk of source) {
    const joined = tail.length === 0 ? Buffer.from(chunk) : Buffer.concat([tail, chunk]);
    if (joined.length <= SNAPSHOT_HASH_LENGTH) {
      tail = joined;
      continue;
    }
    const out = joined.subarray(0, joined.length - SNAPSHOT_HASH_LENGTH);
    tail = Buffer.from(joined.subarray(joined.length - SNAPSHOT_HASH_LENGTH));
    hash.update(out);
    yield out;
  }
  if (tail.length < SNAPSHOT_HASH_LENGTH) {
    throw new IntegrityError(`etcd snapshot is ${tail.length} bytes long, shorter than its sha256 trailer.`, {
      entry,
    });
  }
  const actual = hash.digest();
  if (!actual.equals(tail)) {
    throw new IntegrityError(
      `etcd snapshot sha256 mismatch: the trailer says ${tail.toString('hex')}, the data hashes to ${actual.toString('hex')}.`,
      { entry },
    );
  }
  yield tail;
}
