import {
  AlreadyExistsError,
  BodyReader,
  type ByteStream,
  type CleanupIncompleteOptions,
  type CleanupIncompleteResult,
  ConfigError,
  checkRange,
  checkStorageKey,
  DEFAULT_REQUEST_TIMEOUT_MS,
  fetchWithDeadline,
  type GetOptions,
  NotFoundError,
  type ObjectInfo,
  ProgressDeadline,
  type PutOptions,
  type Storage,
  type StorageCapabilities,
  StorageError,
  throwIfAborted,
  toAbortedError,
} from '@bk/core';
import {
  type Bucket,
  type File,
  type FileMetadata,
  Storage as GoogleStorage,
  IdempotencyStrategy,
  type StorageOptions,
} from '@google-cloud/storage';
import { httpStatus, toBkError } from './gcs-error.ts';
import { type GcsChecksum, ObjectDigest } from './object-digest.ts';
import { type ChunkRetryPolicy, ResumableSession, type UploadedObject } from './resumable-session.ts';

/** Resumable uploads send chunks in multiples of this (a GCS rule). */
export const CHUNK_GRANULARITY = 256 * 1024;
/** Default chunk size of resumable uploads, and the largest body sent in a single request. */
export const DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024;

/**
 * The retry settings `GcsStorage` gives the client it creates: up to 5 retries with exponential
 * backoff (1 s, 2 s, 4 s, … at most 64 s, the library adds up to 1 s of jitter), 10 minutes in
 * all, and only for operations that are idempotent or guarded by a precondition.
 */
export const DEFAULT_RETRY_OPTIONS: NonNullable<StorageOptions['retryOptions']> = {
  autoRetry: true,
  maxRetries: 5,
  retryDelayMultiplier: 2,
  maxRetryDelay: 64,
  totalTimeout: 600,
  idempotencyStrategy: IdempotencyStrategy.RetryConditional,
};

/** Options of {@link GcsStorage}. */
export interface GcsStorageOptions {
  /** The bucket; it must exist (bk never creates buckets). */
  bucket: string;
  /** Prepended to every key, e.g. `nightly` or `nightly/` (a `/` is added). Default none. */
  prefix?: string;
  /**
   * A configured client, e.g. with explicit credentials or retry settings; used as given.
   * Default: a client with Application Default Credentials and {@link DEFAULT_RETRY_OPTIONS}.
   */
  storage?: GoogleStorage;
  /** For the default client; default from the credentials or `GOOGLE_CLOUD_PROJECT`. */
  projectId?: string;
  /** For the default client, e.g. a private endpoint; `STORAGE_EMULATOR_HOST` wins when set. */
  apiEndpoint?: string;
  /**
   * Bytes per request of a resumable upload, a multiple of 256 KiB; default 16 MiB. This is the
   * memory ceiling of one `put` (one chunk plus one chunk of the body's producer), and bodies up
   * to this size go in a single request. GCS has no limit on the number of chunks, so the
   * largest object (5 TiB) needs no larger chunk; larger chunks mean fewer round trips.
   */
  chunkSize?: number;
  /**
   * `'auto'` (default): bodies up to `chunkSize` in one request, larger ones through a
   * resumable session. `true`: always a resumable session. `false`: always one request; a body
   * larger than `chunkSize` is refused with `ConfigError` and nothing is stored.
   */
  resumable?: 'auto' | boolean;
  /** The checksum compared with the stored object's; default `md5`. See {@link GcsChecksum}. */
  checksum?: GcsChecksum;
  /**
   * Milliseconds a request may go without a byte moving — waiting for an answer, sending a
   * resumable chunk, or between two chunks of a download — before it fails with a retryable
   * `StorageError` naming the endpoint. A one-request upload (at most `chunkSize`) must finish
   * within it. Default 60,000; `0` waits for ever. Also the default client's `timeout`.
   */
  requestTimeout?: number;
}

/** GCS bucket names: 3–222 characters of lower-case letters, digits, `-`, `_` and `.`. */
const BUCKET_NAME = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;
/** GCS object names are at most 1024 bytes of UTF-8. */
const MAX_NAME_BYTES = 1024;

/** The origin of the client's API endpoint, for messages. */
function originOf(endpoint: string | undefined): string {
  try {
    return new URL(endpoint ?? '').origin;
  } catch {
    return endpoint ?? 'GCS';
  }
}

/** Resolves `promise`, or rejects with the signal's reason as soon as `signal` aborts. */
async function withSignal<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  throwIfAborted(signal);
  let onAbort = (): void => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(toAbortedError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
  });
  // The losing request still settles later; nobody waits for it, so it must not be unhandled.
  promise.catch(() => {});
  try {
    return await Promise.race([promise, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/**
 * Chunk requests are idempotent by protocol, so they follow the client's limits, not its
 * idempotency strategy. Read once, when the storage is made: the library switches the shared
 * `autoRetry` off and on around some calls.
 */
function chunkRetryPolicy(client: GoogleStorage): ChunkRetryPolicy {
  const retry = client.retryOptions ?? {};
  const off = retry.autoRetry === false || retry.idempotencyStrategy === IdempotencyStrategy.RetryNever;
  return {
    maxRetries: off ? 0 : (retry.maxRetries ?? 3),
    retryDelayMultiplier: retry.retryDelayMultiplier ?? 2,
    maxRetryDelay: retry.maxRetryDelay ?? 64,
  };
}

function toInfo(key: string, metadata: FileMetadata | UploadedObject): ObjectInfo {
  const info: ObjectInfo = { key, size: Number(metadata.size ?? 0) };
  if (metadata.updated) info.lastModified = new Date(metadata.updated);
  if (metadata.etag) info.etag = metadata.etag;
  return info;
}

/**
 * A bk storage in a Google Cloud Storage bucket, under an optional prefix: the key
 * `nightly/backup_20261121_101500.tar.gz` is the object `<prefix>nightly/backup_…`.
 *
 * `put` sends a body of up to `chunkSize` bytes in one request; a larger body goes through a
 * resumable upload session, one `chunkSize` chunk at a time, and the object appears only when
 * the last chunk finalises it. On error or abort the session is cancelled, so nothing is
 * visible and nothing remains. `ifNoneMatch` uploads with `ifGenerationMatch=0`, which GCS
 * checks when the object is created, so of several racing writers exactly one wins. Every
 * upload is checked: GCS is given the checksum (md5 by default) to verify, and the stored
 * object's checksum and size are compared with what was sent; on a mismatch the object is
 * deleted and `put` rejects.
 *
 * @example
 * const storage = new GcsStorage({ bucket: 'acme-backups', prefix: 'nightly' });
 * await storage.put('hello.txt', new TextEncoder().encode('hello'), { ifNoneMatch: true });
 * for await (const chunk of await storage.get('hello.txt')) process.stdout.write(chunk);
 */
export class GcsStorage implements Storage {
  /** `gs://bucket/prefix`, e.g. `gs://acme-backups/nightly/`; never holds credentials. */
  readonly description: string;
  /**
   * Atomic publish (an object appears only when its upload finalises), create-if-absent
   * (`ifGenerationMatch=0`), ranged reads, and chunked resumable uploads for large bodies.
   */
  readonly capabilities: StorageCapabilities = {
    atomicPublish: true,
    conditionalCreate: true,
    rangeRead: true,
    multipart: true,
  };
  /** The bucket name. */
  readonly bucketName: string;
  /** The prefix every object name starts with: empty, or ending in `/`. */
  readonly prefix: string;
  /** Bytes per resumable-upload request; the memory ceiling of one `put`. */
  readonly chunkSize: number;
  /** The client, as given or as created. */
  readonly client: GoogleStorage;
  private readonly bucket: Bucket;
  private readonly resumable: 'auto' | boolean;
  private readonly checksum: GcsChecksum;
  private readonly requestTimeout: number;
  /** The API's origin, for messages. */
  private readonly endpoint: string;
  /** The `fetch` resumable chunks go through, with the progress deadline. */
  private readonly chunkFetch: typeof fetch;
  private readonly chunkRetry: ChunkRetryPolicy;

  /**
   * @throws {ConfigError} When the bucket name, prefix, chunk size or another option is invalid.
   * @example
   * const storage = new GcsStorage({ bucket: 'acme-backups', chunkSize: 32 * 1024 * 1024 });
   */
  constructor(options: GcsStorageOptions) {
    const {
      bucket,
      prefix = '',
      chunkSize = DEFAULT_CHUNK_SIZE,
      resumable = 'auto',
      checksum = 'md5',
    } = options;
    if (typeof bucket !== 'string' || !BUCKET_NAME.test(bucket))
      throw new ConfigError(
        `Invalid GCS bucket name "${String(bucket)}": use 3–222 lower-case letters, digits, "-", "_" and ".".`,
      );
    const trimmed = prefix.replace(/^\/+/, '').replace(/\/+$/, '');
    if (trimmed !== '') this.checkKey(trimmed, 'prefix');
    if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0 || chunkSize % CHUNK_GRANULARITY !== 0)
      throw new ConfigError(
        `Invalid chunkSize ${chunkSize}: it must be a positive multiple of 256 KiB (${CHUNK_GRANULARITY}), e.g. ${DEFAULT_CHUNK_SIZE}.`,
      );
    if (resumable !== 'auto' && typeof resumable !== 'boolean')
      throw new ConfigError(`Invalid resumable ${String(resumable)}: use "auto", true or false.`);
    if (checksum !== 'md5' && checksum !== 'crc32c')
      throw new ConfigError(`Invalid checksum "${String(checksum)}": use "md5" or "crc32c".`);
    this.bucketName = bucket;
    this.prefix = trimmed === '' ? '' : `${trimmed}/`;
    this.chunkSize = chunkSize;
    this.resumable = resumable;
    this.checksum = checksum;
    this.requestTimeout = options.requestTimeout ?? DEFAULT_REQUEST_TIMEOUT_MS;
    if (!Number.isSafeInteger(this.requestTimeout) || this.requestTimeout < 0)
      throw new ConfigError(`Invalid requestTimeout ${this.requestTimeout}: use milliseconds, 0 or more.`);
    this.client =
      options.storage ??
      new GoogleStorage({
        ...(options.projectId ? { projectId: options.projectId } : {}),
        ...(options.apiEndpoint ? { apiEndpoint: options.apiEndpoint } : {}),
        retryOptions: DEFAULT_RETRY_OPTIONS,
        ...(this.requestTimeout > 0 ? { timeout: this.requestTimeout } : {}),
      });
    this.chunkFetch = fetchWithDeadline(fetch, { idleMs: this.requestTimeout });
    this.endpoint = originOf(this.client.apiEndpoint);
    this.bucket = this.client.bucket(bucket);
    this.chunkRetry = chunkRetryPolicy(this.client);
    this.description = `gs://${bucket}/${this.prefix}`;
  }

  /**
   * Stores `body` under `key`. Bodies up to `chunkSize` bytes go in one request; larger ones in
   * a resumable session, `chunkSize` bytes per request, each request retried (resuming from
   * what GCS kept) on 408/429/5xx and broken connections. The object appears only when the
   * upload finalises; without `ifNoneMatch` it replaces an existing one in one step.
   *
   * @throws {ConfigError} When the key is invalid, or `resumable: false` and the body is larger
   *   than `chunkSize`.
   * @throws {AlreadyExistsError} When `ifNoneMatch` is set and the key exists, checked before the
   *   body is read and again, atomically, by GCS when the object is created.
   * @throws {AbortedError} When `signal` aborts (or the signal's reason, when it is a bk error).
   *   An abort while the last request is in flight waits for its answer, then deletes the new
   *   object.
   * @throws {StorageError} When GCS fails (`retryable` for throttling, 5xx, resets) or the stored
   *   object's size or checksum differs from what was sent (the object is then deleted); the
   *   error the body throws is rethrown unchanged. In every case no object appears and the
   *   upload session is cancelled.
   * @example
   * const info = await storage.put('backup_20261121_101500.tar.gz', archive, { ifNoneMatch: true, signal });
   */
  async put(key: string, body: ByteStream | Uint8Array, options: PutOptions = {}): Promise<ObjectInfo> {
    const { signal, ifNoneMatch = false, contentType = 'application/octet-stream' } = options;
    const reader = new BodyReader(body, signal);
    try {
      const name = this.objectName(key);
      throwIfAborted(signal);
      // Fail fast, before the body is read: a taken name costs no bytes.
      if (ifNoneMatch && (await this.existsIfReadable(key, signal))) throw new AlreadyExistsError(key);
      const digest = new ObjectDigest(this.checksum);
      let first: Buffer | undefined = await reader.read(this.chunkSize);
      digest.update(first);
      let object: UploadedObject;
      let total: number;
      if (!(await reader.hasMore()) && this.resumable !== true) {
        throwIfAborted(signal);
        total = first.byteLength;
        object = await this.uploadInOneRequest(key, name, first, digest, ifNoneMatch, contentType);
      } else if (this.resumable === false) {
        throw new ConfigError(
          `Refusing to store "${key}" in ${this.description}: it is larger than chunkSize (${this.chunkSize} bytes) and resumable is false. Raise chunkSize or allow resumable uploads.`,
        );
      } else {
        // Handed over, not kept: the session drops each chunk once GCS has it.
        const chunks = [first];
        first = undefined;
        ({ object, total } = await this.uploadResumable(
          key,
          name,
          chunks,
          reader,
          digest,
          ifNoneMatch,
          contentType,
          signal,
        ));
      }
      await this.verify(key, name, object, total, digest);
      if (signal?.aborted) {
        await this.deleteGeneration(name, object.generation);
        throw toAbortedError(signal);
      }
      return toInfo(key, object);
    } catch (error) {
      throw signal?.aborted ? toAbortedError(signal) : error;
    } finally {
      await reader.release();
    }
  }

  private async uploadInOneRequest(
    key: string,
    name: string,
    bytes: Buffer,
    digest: ObjectDigest,
    ifNoneMatch: boolean,
    contentType: string,
  ): Promise<UploadedObject> {
    const file = this.bucket.file(name);
    try {
      // Metadata carries the checksum, so GCS refuses the object if the bytes differ.
      await this.timed(undefined, () =>
        file.save(bytes, {
          resumable: false,
          validation: false,
          contentType,
          metadata: { contentType, ...digest.metadata() },
          ...(ifNoneMatch ? { preconditionOpts: { ifGenerationMatch: 0 } } : {}),
        }),
      );
    } catch (error) {
      throw toBkError(error, `store ${this.where(name)}`, key);
    }
    return file.metadata as UploadedObject;
  }

  private async uploadResumable(
    key: string,
    name: string,
    firstChunk: Buffer[],
    reader: BodyReader,
    digest: ObjectDigest,
    ifNoneMatch: boolean,
    contentType: string,
    signal: AbortSignal | undefined,
  ): Promise<{ object: UploadedObject; total: number }> {
    let uri: string;
    try {
      [uri] = await this.timed(signal, () =>
        this.bucket.file(name).createResumableUpload({
          metadata: { contentType },
          ...(ifNoneMatch ? { preconditionOpts: { ifGenerationMatch: 0 } } : {}),
        }),
      );
    } catch (error) {
      throw toBkError(error, `start uploading ${this.where(name)}`, key);
    }
    const session = new ResumableSession(uri, key, this.where(name), this.chunkRetry, this.chunkFetch);
    let offset = 0;
    let chunk: Buffer | undefined = firstChunk.pop()!;
    try {
      while (await reader.hasMore()) {
        await session.putChunk(chunk, offset, signal);
        offset += chunk.byteLength;
        // The sent chunk's buffer is refilled with the next one: one chunk is held at a time.
        reader.recycle(chunk);
        chunk = undefined;
        chunk = await reader.read(this.chunkSize);
        digest.update(chunk);
      }
      throwIfAborted(signal);
      const total = offset + chunk.byteLength;
      return { object: await session.finish(chunk, offset, total, digest.header()), total };
    } catch (error) {
      await session.cancel();
      throw error;
    }
  }

  /** Compares size and checksum; a stored object that differs is deleted. */
  private async verify(
    key: string,
    name: string,
    object: UploadedObject,
    total: number,
    digest: ObjectDigest,
  ): Promise<void> {
    const size = Number(object.size);
    const problem = size !== total ? `${size} bytes, but ${total} were sent` : digest.mismatch(object);
    if (problem === undefined) return;
    await this.deleteGeneration(name, object.generation);
    throw new StorageError(
      `GCS stored ${this.where(name)} with ${problem}; the object was deleted. Storing "${key}" again may succeed.`,
      { retryable: true },
    );
  }

  /** Best effort: deletes exactly the generation this storage wrote, never a newer one. */
  private async deleteGeneration(name: string, generation: string | number): Promise<void> {
    await this.bucket
      .file(name)
      .delete({ ifGenerationMatch: generation, ignoreNotFound: true })
      .catch(() => {});
  }

  /**
   * Opens an object for reading, from `range.start` (default 0) to `range.end` (exclusive,
   * default the end). The first bytes are fetched before this resolves, so a missing object
   * rejects here. A whole-object read is checked against the stored checksum; a ranged read is
   * served by GCS from `start`. Aborting `signal` ends the stream with the signal's reason.
   *
   * @throws {ConfigError} When the key or range is invalid.
   * @throws {NotFoundError} When no object has this key.
   * @throws {AbortedError} When `signal` aborts before the first bytes arrive.
   * @throws {StorageError} When GCS fails.
   * @example
   * const tail = await storage.get('big.bin', { range: { start: 1024 } });
   * for await (const chunk of tail) hash.update(chunk);
   */
  async get(key: string, options: GetOptions = {}): Promise<ByteStream> {
    const { signal } = options;
    const name = this.objectName(key);
    const { start, end } = checkRange(options.range);
    throwIfAborted(signal);
    const notFound = (cause?: unknown) =>
      new NotFoundError(`No object "${key}" in ${this.description}.`, cause === undefined ? {} : { cause });
    if (end !== undefined && end <= start) {
      if (!(await this.stat(key, { signal }))) throw notFound();
      return (async function* () {})();
    }
    const ranged = start > 0 || end !== undefined;
    const stream = this.bucket.file(name).createReadStream({
      // GCS ranges end inclusively.
      ...(ranged
        ? { start, ...(end === undefined ? {} : { end: end - 1 }), validation: false }
        : { validation: this.checksum }),
    });
    // Without a listener an error before anyone reads would crash the process; reading still reports it.
    stream.on('error', () => {});
    // Runs only while a read waits on GCS: every chunk restarts it, the consumer's time pauses it.
    const deadline = this.deadline(signal);
    const onStall = () => stream.destroy(deadline.error);
    deadline.signal.addEventListener('abort', onStall, { once: true });
    stream.once('close', () => {
      deadline.signal.removeEventListener('abort', onStall);
      deadline.done();
    });
    if (signal) {
      const onAbort = () => stream.destroy(toAbortedError(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      stream.once('close', () => signal.removeEventListener('abort', onAbort));
    }
    const iterator: AsyncIterator<Uint8Array> = stream[Symbol.asyncIterator]();
    const fail = (error: unknown) =>
      httpStatus(error) === 404 ? notFound(error) : toBkError(error, `read ${this.where(name)}`, key);
    let first: IteratorResult<Uint8Array>;
    try {
      first = await iterator.next();
    } catch (error) {
      // 416: the range starts at or past the end of an object that exists.
      if (httpStatus(error) === 416) return (async function* () {})();
      throw deadline.expired ? deadline.error : fail(error);
    }
    deadline.pause();
    return (async function* () {
      try {
        if (first.done) return;
        yield first.value;
        for (;;) {
          deadline.touch();
          const next = await iterator.next();
          if (next.done) break;
          deadline.pause();
          yield next.value;
        }
      } catch (error) {
        throw deadline.expired ? deadline.error : fail(error);
      } finally {
        stream.destroy();
      }
    })();
  }

  /**
   * Size, last update and ETag of an object, or `undefined` when there is none.
   *
   * @throws {ConfigError} When the key is invalid.
   * @throws {AbortedError} When `signal` aborts.
   * @throws {StorageError} When GCS fails.
   * @example
   * const info = await storage.stat('nightly/backup_20261121_101500.tar.gz');
   */
  /**
   * Whether `key` exists, for the fail-fast check before a create-if-absent upload. Credentials
   * that may create but not read (`storage.objects.create` only) get 403 here: the upload's
   * `ifGenerationMatch=0` still refuses an existing object, so the check is skipped.
   */
  private async existsIfReadable(key: string, signal: AbortSignal | undefined): Promise<boolean> {
    try {
      return (await this.stat(key, { signal })) !== undefined;
    } catch (error) {
      const status = httpStatus((error as { cause?: unknown }).cause);
      if (status === 401 || status === 403) return false;
      throw error;
    }
  }

  async stat(key: string, options: { signal?: AbortSignal } = {}): Promise<ObjectInfo | undefined> {
    const name = this.objectName(key);
    throwIfAborted(options.signal);
    try {
      const [metadata] = await this.timed(options.signal, () => this.bucket.file(name).getMetadata());
      return toInfo(key, metadata);
    } catch (error) {
      if (httpStatus(error) === 404) return undefined;
      throw toBkError(error, `stat ${this.where(name)}`, key);
    }
  }

  /**
   * Every object whose key starts with `prefix` (a plain string prefix), read page by page
   * (1000 objects per request), so memory stays bounded however many objects there are.
   *
   * @throws {AbortedError} When `signal` aborts.
   * @throws {StorageError} When GCS fails.
   * @example
   * for await (const object of storage.list('nightly/')) console.log(object.key, object.size);
   */
  async *list(prefix: string, options: { signal?: AbortSignal } = {}): AsyncIterable<ObjectInfo> {
    const { signal } = options;
    throwIfAborted(signal);
    let pageToken: string | undefined;
    do {
      let files: File[];
      let next: unknown;
      try {
        [files, next] = await this.timed(signal, () =>
          this.bucket.getFiles({
            prefix: this.prefix + prefix,
            autoPaginate: false,
            maxResults: 1000,
            ...(pageToken === undefined ? {} : { pageToken }),
          }),
        );
      } catch (error) {
        throw toBkError(error, `list ${this.description}${prefix}`, prefix);
      }
      for (const file of files) yield toInfo(file.name.slice(this.prefix.length), file.metadata);
      pageToken = (next as { pageToken?: string } | null | undefined)?.pageToken;
    } while (pageToken);
  }

  /**
   * Removes nothing: GCS offers no way to list resumable upload sessions, and discards those of
   * a killed `put` by itself a week after they were opened (they never become an object).
   * Returns a note that says so, which `bk prune` prints.
   *
   * @throws {AbortedError} When `signal` is already aborted.
   * @example
   * const { notes } = await storage.cleanupIncomplete({ olderThanMs: 86_400_000 });
   */
  async cleanupIncomplete(options: CleanupIncompleteOptions): Promise<CleanupIncompleteResult> {
    throwIfAborted(options.signal);
    return {
      removed: [],
      notes: [
        `${this.description}: GCS cannot list the resumable upload sessions of uploads killed before they finished; it discards them by itself a week after they were opened, and they never become an object, so nothing was removed here.`,
      ],
    };
  }

  /**
   * Deletes an object; a missing object is not an error.
   *
   * @throws {ConfigError} When the key is invalid.
   * @throws {AbortedError} When `signal` aborts.
   * @throws {StorageError} When GCS refuses the deletion.
   * @example
   * await storage.delete('nightly/backup_20261121_101500.lock');
   */
  async delete(key: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    const name = this.objectName(key);
    throwIfAborted(options.signal);
    try {
      await this.timed(options.signal, () => this.bucket.file(name).delete({ ignoreNotFound: true }));
    } catch (error) {
      if (httpStatus(error) === 404) return;
      throw toBkError(error, `delete ${this.where(name)}`, key);
    }
  }

  private where(name: string): string {
    return `gs://${this.bucketName}/${name}`;
  }

  /** The `Storage` contract's key rules, plus GCS's own: no line break in an object name. */
  private checkKey(key: string, what = 'storage key'): void {
    try {
      checkStorageKey(key);
    } catch (error) {
      if (what === 'storage key') throw error;
      throw new ConfigError(`Invalid ${what} "${key}": ${(error as Error).message}`);
    }
    if (/[\r\n]/.test(key)) throw new ConfigError(`Invalid ${what} "${key}": it contains a line break.`);
  }

  /** The object name of `key`, after checking the key. */
  /** A progress deadline of `requestTimeout` for one request (see `ProgressDeadline`). */
  private deadline(signal: AbortSignal | undefined): ProgressDeadline {
    return new ProgressDeadline(
      this.requestTimeout,
      signal,
      (message) => new StorageError(`${this.description}: ${message}`, { retryable: true }),
      this.endpoint,
    );
  }

  /**
   * Runs a client-library call, which takes no signal, against the caller's signal and a
   * deadline of `requestTimeout`: whichever comes first rejects (the call itself settles later,
   * bounded by the client's own `timeout`, and nobody waits for it).
   */
  private async timed<T>(signal: AbortSignal | undefined, call: () => Promise<T>): Promise<T> {
    const deadline = this.deadline(signal);
    try {
      return await withSignal(call(), deadline.signal);
    } catch (error) {
      if (deadline.expired) throw deadline.error;
      if (signal?.aborted) throw toAbortedError(signal);
      throw error;
    } finally {
      deadline.done();
    }
  }

  private objectName(key: string): string {
    this.checkKey(key);
    const name = this.prefix + key;
    if (Buffer.byteLength(name) > MAX_NAME_BYTES)
      throw new ConfigError(
        `Invalid storage key "${key}": with the prefix it is longer than GCS's 1024 bytes.`,
      );
    return name;
  }
}
