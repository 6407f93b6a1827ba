import type {
  ByteStream,
  GetOptions,
  ObjectInfo,
  PutOptions,
  Storage,
  StorageCapabilities,
} from './contracts.ts';
import { AlreadyExistsError, ConfigError, NotFoundError, throwIfAborted } from './errors.ts';
import { sha256Hex } from './hash.ts';
import { checkRange } from './paths.ts';
import { collect, toByteStream } from './streams.ts';

interface StoredObject {
  bytes: Uint8Array;
  lastModified: Date;
}

/**
 * A storage that keeps objects in memory: for tests and examples. Publishes atomically (the
 * object appears only when its body has been read to the end) and creates-if-absent exactly.
 * Holds whole objects in memory, so it is not for large backups.
 */
export class MemoryStorage implements Storage {
  readonly description = 'memory://';
  readonly capabilities: StorageCapabilities = {
    atomicPublish: true,
    conditionalCreate: true,
    rangeRead: true,
    multipart: false,
  };
  private readonly objects = new Map<string, StoredObject>();

  private checkKey(key: string): void {
    if (
      key === '' ||
      key.startsWith('/') ||
      key.split('/').some((part) => part === '..' || part === '.' || part === '')
    ) {
      throw new ConfigError(`Invalid storage key "${key}".`);
    }
  }

  async put(key: string, body: ByteStream | Uint8Array, options: PutOptions = {}): Promise<ObjectInfo> {
    this.checkKey(key);
    throwIfAborted(options.signal);
    if (options.ifNoneMatch && this.objects.has(key)) throw new AlreadyExistsError(key);
    const bytes = await collect(toByteStream(body), Number.MAX_SAFE_INTEGER);
    throwIfAborted(options.signal);
    if (options.ifNoneMatch && this.objects.has(key)) throw new AlreadyExistsError(key);
    const object = { bytes, lastModified: new Date() };
    this.objects.set(key, object);
    return { key, size: bytes.byteLength, lastModified: object.lastModified, etag: sha256Hex(bytes) };
  }

  async get(key: string, options: GetOptions = {}): Promise<ByteStream> {
    this.checkKey(key);
    throwIfAborted(options.signal);
    const object = this.objects.get(key);
    if (!object) throw new NotFoundError(`No object "${key}" in memory storage.`);
    const { start, end = object.bytes.byteLength } = checkRange(options.range);
    const bytes = object.bytes.subarray(start, Math.max(start, Math.min(end, object.bytes.byteLength)));
    return (async function* () {
      for (let offset = 0; offset < bytes.byteLength; offset += 64 * 1024)
        yield bytes.subarray(offset, offset + 64 * 1024);
    })();
  }

  async stat(key: string, options: { signal?: AbortSignal } = {}): Promise<ObjectInfo | undefined> {
    this.checkKey(key);
    throwIfAborted(options.signal);
    const object = this.objects.get(key);
    return (
      object && {
        key,
        size: object.bytes.byteLength,
        lastModified: object.lastModified,
        etag: sha256Hex(object.bytes),
      }
    );
  }

  async *list(prefix: string, options: { signal?: AbortSignal } = {}): AsyncIterable<ObjectInfo> {
    throwIfAborted(options.signal);
    for (const [key, object] of [...this.objects]) {
      if (key.startsWith(prefix))
        yield { key, size: object.bytes.byteLength, lastModified: object.lastModified };
    }
  }

  async delete(key: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    this.checkKey(key);
    throwIfAborted(options.signal);
    this.objects.delete(key);
  }

  /** Replaces the bytes of an object in place: for corruption tests. */
  corrupt(key: string, mutate: (bytes: Uint8Array) => void): void {
    const object = this.objects.get(key);
    if (!object) throw new NotFoundError(`No object "${key}" in memory storage.`);
    mutate(object.bytes);
  }
}
