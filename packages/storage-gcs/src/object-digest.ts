import { createHash, type Hash } from 'node:crypto';
import { CRC32C } from '@google-cloud/storage';
import type { UploadedObject } from './resumable-session.ts';

/**
 * Which checksum `put` computes while the bytes stream and compares with what GCS stored:
 * `md5` (native, fast; GCS keeps it for every non-composite object) or `crc32c` (what GCS
 * recommends and keeps for composite objects too, computed in JavaScript at about 60 MB/s).
 */
export type GcsChecksum = 'md5' | 'crc32c';

/** The checksum of an upload, computed as its chunks pass, in the base64 form GCS uses. */
export class ObjectDigest {
  readonly kind: GcsChecksum;
  private readonly md5: Hash | undefined;
  private readonly crc32c: CRC32C | undefined;
  private value: string | undefined;

  constructor(kind: GcsChecksum) {
    this.kind = kind;
    if (kind === 'md5') this.md5 = createHash('md5');
    else this.crc32c = new CRC32C();
  }

  update(bytes: Uint8Array): void {
    if (bytes.byteLength === 0) return;
    const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.md5?.update(buffer);
    this.crc32c?.update(buffer);
  }

  /** The base64 digest; call once every byte has passed. */
  digest(): string {
    this.value ??= this.md5 ? this.md5.digest('base64') : (this.crc32c as CRC32C).toString();
    return this.value;
  }

  /** The `X-Goog-Hash` value, e.g. `md5=XUFAKrxLKna5cZ2REBfFkg==`, that makes GCS check the bytes. */
  header(): string {
    return `${this.kind}=${this.digest()}`;
  }

  /** The object-resource field that makes a single-request upload check the bytes. */
  metadata(): { md5Hash: string } | { crc32c: string } {
    return this.kind === 'md5' ? { md5Hash: this.digest() } : { crc32c: this.digest() };
  }

  /** What is wrong with the stored object's checksum, or `undefined` when it matches. */
  mismatch(object: UploadedObject): string | undefined {
    const stored = this.kind === 'md5' ? object.md5Hash : object.crc32c;
    if (stored === undefined)
      return `no ${this.kind} to compare (GCS omits md5Hash for composite objects; use checksum "crc32c")`;
    return stored === this.digest() ? undefined : `${this.kind} ${stored}, but ${this.digest()} was sent`;
  }
}
