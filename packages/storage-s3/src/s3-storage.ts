import { createHash, randomBytes } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  type ListMultipartUploadsCommandOutput,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  ListPartsCommand,
  type ListPartsCommandOutput,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import {
  AlreadyExistsError,
  type BkError,
  BodyReader,
  type ByteStream,
  type CleanupIncompleteOptions,
  type CleanupIncompleteResult,
  ConfigError,
  checkRange,
  checkStorageKey,
  type GetOptions,
  handOver,
  type IncompleteUpload,
  IntegrityError,
  NotFoundError,
  type ObjectInfo,
  type PutOptions,
  type Storage,
  type StorageCapabilities,
  StorageError,
  spansWholeBuffer,
  throwIfAborted,
  toAbortedError,
} from '@bk/core';
import { errorName, errorStatus, toStorageError } from './s3-error.ts';

const MIB = 1024 * 1024;
/** S3's smallest part (except the last). */
export const MIN_PART_BYTES = 5 * MIB;
/** S3's largest part. */
export const MAX_PART_BYTES = 5 * 1024 * MIB;
/** S3's most parts per upload. */
export const MAX_PARTS = 10_000;
/** The part size doubles after every this many parts (see {@link partSize}). */
export const PARTS_PER_SIZE_STEP = 1_000;
/** 6 MiB: 10 MiB less memory per upload than 8 MiB at the same speed, and growth from it still reaches 5 TiB. */
const DEFAULT_PART_BYTES = 6 * MIB;
/** The part size growth starts from (see {@link partSize}). */
const GROWTH_BASE_BYTES = 6 * MIB;
const DEFAULT_CONCURRENCY = 4;
const DEFAULT_MAX_ATTEMPTS = 5;
/** Keys under this prefix hold the short-lived objects of the conditional-create probe. */
const PROBE_PREFIX = '.bk-probe/';
/** Clean-up calls (abort an upload, delete a probe) run even after the caller aborted, this long at most. */
const CLEANUP_TIMEOUT_MS = 30_000;

/**
 * How `put(..., { ifNoneMatch: true })` makes sure it creates rather than replaces:
 * - `'if-none-match'`: the server honours `If-None-Match: *` on PutObject and
 *   CompleteMultipartUpload (AWS S3 since 2024, recent MinIO and Ceph): atomic.
 * - `'check'`: a HEAD just before publishing. Racy: two writers that both pass the check both
 *   publish, the last one wins. `capabilities.conditionalCreate` is then `false`.
 * - `'auto'` (default): the first create-if-absent put, or {@link S3Storage.probeCapabilities},
 *   writes a probe object twice (the second time with `If-None-Match: *`) and deletes it: a 412
 *   means `'if-none-match'`, anything else `'check'`. The answer is cached per instance.
 */
export type ConditionalCreateMode = 'auto' | 'if-none-match' | 'check';

/** Options of {@link S3Storage}. */
export interface S3StorageOptions {
  /** The bucket; it must exist. */
  bucket: string;
  /** Prepended to every key, e.g. `"nightly"` (a `/` is added). Default: the bucket's root. */
  prefix?: string;
  /**
   * A client to use instead of building one; `region`, `endpoint`, `forcePathStyle`,
   * `credentials` and `maxAttempts` are then ignored. Configure it with
   * `requestChecksumCalculation: 'WHEN_REQUIRED'` and `responseChecksumValidation: 'WHEN_REQUIRED'`
   * for S3-compatible servers (see the README).
   */
  client?: S3Client;
  /** Default: the AWS default chain (`AWS_REGION`, the profile). */
  region?: string;
  /** An S3-compatible server, e.g. `http://127.0.0.1:9000`. Default: AWS. */
  endpoint?: string;
  /** Bucket in the path rather than the host name. Default: `true` when `endpoint` is set. */
  forcePathStyle?: boolean;
  /** Default: the AWS default chain (environment, profile, SSO, instance role…). */
  credentials?: S3ClientConfig['credentials'];
  /**
   * The size of the first parts, in bytes: default 6 MiB, at least 5 MiB, at most 5 GiB. A body
   * that fits in one part is stored with one PutObject. The size doubles after every 1,000
   * parts, so 10,000 parts of 6 MiB × (1, 2, … 512) hold 6,000 MiB × 1,023 ≈ 5.9 TiB, more than
   * S3's 5 TiB object limit, without a size hint (5 MiB first parts grow from 6 MiB too). With
   * `sizeHint`, the first size is raised to `sizeHint / 10,000` when that is larger.
   */
  partSize?: number;
  /**
   * Parts uploaded at once; default 4. Memory ceiling of one `put`: `concurrency` parts in
   * flight plus one being filled, i.e. `(concurrency + 1) × part size` — 30 MiB with the
   * defaults, growing with the part size only for bodies past 1,000 parts (≈ 5.9 GiB).
   */
  concurrency?: number;
  /** See {@link ConditionalCreateMode}; default `'auto'`. */
  conditionalCreate?: ConditionalCreateMode;
  /**
   * Compare each ETag the server returns with the MD5 of what was sent (a plain-MD5 ETag per
   * part and single put; `md5(part md5s)-N` or the whole body's MD5 after a multipart upload).
   * Default `true`; turn off for SSE-KMS or SSE-C buckets, whose ETags are not MD5s. The
   * `Content-MD5` header is sent either way, and the server checks it.
   */
  verifyEtags?: boolean;
  /** Attempts per request, with the SDK's exponential backoff and jitter; default 5. */
  maxAttempts?: number;
  /**
   * Milliseconds a request may go without a byte moving — connecting, waiting for the answer, or
   * mid-way through an upload or a download — before the attempt fails (a retryable
   * `StorageError` naming the endpoint, retried up to `maxAttempts`). Default 60,000; `0` waits
   * for ever. Ignored with `client` (configure its `requestHandler` instead).
   */
  requestTimeout?: number;
}

/** The default of {@link S3StorageOptions.requestTimeout}. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;

/**
 * The size of part `partNumber` (from 1) when the first parts have `firstPartSize` bytes:
 * doubled after every {@link PARTS_PER_SIZE_STEP} parts (from at least 6 MiB), at most
 * {@link MAX_PART_BYTES}. Any first part size therefore covers more than 5 TiB in 10,000 parts.
 *
 * @example
 * partSize(1, 8 * 1024 * 1024); // 8 MiB
 * partSize(1_001, 8 * 1024 * 1024); // 16 MiB
 */
export function partSize(partNumber: number, firstPartSize: number): number {
  const step = Math.floor((partNumber - 1) / PARTS_PER_SIZE_STEP);
  if (step === 0) return firstPartSize;
  // Growth starts from at least 6 MiB, so even 5 MiB first parts reach 5 TiB in 10,000 parts.
  return Math.min(Math.max(firstPartSize, GROWTH_BASE_BYTES) * 2 ** step, MAX_PART_BYTES);
}

/** The `Storage` contract's key rules, plus one of its own: the probe's prefix is reserved. */
function checkKey(key: string): void {
  checkStorageKey(key);
  if (key.startsWith(PROBE_PREFIX))
    throw new ConfigError(`Invalid storage key "${key}": keys starting with "${PROBE_PREFIX}" are reserved.`);
}

function checkInteger(name: string, value: number, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > max)
    throw new ConfigError(`S3Storage option ${name} must be an integer from ${min} to ${max}, got ${value}.`);
  return value;
}

function unquote(etag: string | undefined): string | undefined {
  return etag?.replace(/^W\//, '').replace(/^"|"$/g, '');
}

const MD5_HEX = /^[0-9a-f]{32}$/;

/** One part, read from the body, waiting for a worker. */
interface Part {
  number: number;
  bytes: Buffer;
}

/** An `AbortSignal` that aborts with `parent` and can also be aborted on its own. */
function childController(parent: AbortSignal | undefined): {
  controller: AbortController;
  release: () => void;
} {
  const controller = new AbortController();
  if (!parent) return { controller, release: () => {} };
  const onAbort = () => controller.abort(parent.reason);
  parent.addEventListener('abort', onAbort, { once: true });
  return { controller, release: () => parent.removeEventListener('abort', onAbort) };
}

/**
 * A storage in an Amazon S3 bucket or an S3-compatible store (Ceph RGW, MinIO, Exoscale SOS,
 * OpenStack Swift with s3api). Each key is an object `<prefix>/<key>` in the bucket.
 *
 * `put` reads the body one part at a time. A body that fits in one part (6 MiB by default) is
 * stored with one PutObject; a larger one with a multipart upload whose parts `concurrency`
 * workers upload in parallel, each with `Content-MD5`. The object appears only when the upload
 * completes, so readers see all of it or nothing; on error or abort the upload is aborted.
 * Memory: `(concurrency + 1) × part size` per `put` (30 MiB by default).
 *
 * @example
 * const storage = new S3Storage({ bucket: 'backups', prefix: 'nightly' });
 * await storage.put('hello.txt', new TextEncoder().encode('hello'), { ifNoneMatch: true });
 * for await (const chunk of await storage.get('hello.txt')) process.stdout.write(chunk);
 */
export class S3Storage implements Storage {
  /** `s3://bucket/prefix`; never contains the endpoint's credentials. */
  readonly description: string;
  /**
   * Atomic publish, ranged reads and multipart uploads always; `conditionalCreate` is `true`
   * only once the server is known to honour `If-None-Match: *` (the option, or the probe).
   */
  readonly capabilities: StorageCapabilities;
  /** The SDK client every request goes through. */
  readonly client: S3Client;
  readonly bucket: string;
  /** `""` or a prefix ending in `/`. */
  readonly prefix: string;
  private readonly firstPartSize: number;
  private readonly concurrency: number;
  private readonly verifyEtags: boolean;
  /** Where requests go, for error messages: the endpoint, or `AWS S3`. */
  private readonly endpointName: string;
  private readonly requestTimeout: number | undefined;
  private conditionalMode: ConditionalCreateMode;
  private probing: Promise<'if-none-match' | 'check'> | undefined;

  /**
   * @throws {ConfigError} When the bucket is missing or a number is out of range.
   * @example
   * const minio = new S3Storage({
   *   bucket: 'backups',
   *   endpoint: 'http://127.0.0.1:9000',
   *   region: 'us-east-1',
   *   credentials: { accessKeyId: 'minio', secretAccessKey: process.env.MINIO_SECRET! },
   * });
   */
  constructor(options: S3StorageOptions) {
    const { bucket, endpoint } = options;
    if (typeof bucket !== 'string' || bucket === '' || bucket.includes('/'))
      throw new ConfigError('S3Storage needs a bucket name, e.g. new S3Storage({ bucket: "backups" }).');
    this.bucket = bucket;
    const prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    if (prefix !== '') checkKey(prefix);
    this.prefix = prefix === '' ? '' : `${prefix}/`;
    this.firstPartSize = checkInteger(
      'partSize',
      options.partSize ?? DEFAULT_PART_BYTES,
      MIN_PART_BYTES,
      MAX_PART_BYTES,
    );
    this.concurrency = checkInteger('concurrency', options.concurrency ?? DEFAULT_CONCURRENCY, 1, 64);
    this.verifyEtags = options.verifyEtags ?? true;
    this.conditionalMode = options.conditionalCreate ?? 'auto';
    if (!['auto', 'if-none-match', 'check'].includes(this.conditionalMode))
      throw new ConfigError(
        `S3Storage option conditionalCreate must be "auto", "if-none-match" or "check", got "${this.conditionalMode}".`,
      );
    this.requestTimeout = options.client
      ? undefined
      : checkInteger('requestTimeout', options.requestTimeout ?? DEFAULT_REQUEST_TIMEOUT_MS, 0, 2 ** 31 - 1);
    this.endpointName = endpoint === undefined ? 'AWS S3' : new URL(endpoint).origin;
    this.client = options.client ?? S3Storage.#createClient(options, endpoint, this.requestTimeout ?? 0);
    this.description = `s3://${bucket}/${this.prefix}`;

    this.capabilities = {
      atomicPublish: true,
      conditionalCreate: this.conditionalMode === 'if-none-match',
      rangeRead: true,
      multipart: true,
    };
  }

  /**
   * The client bk builds when none is given. Uploads are signed with `UNSIGNED-PAYLOAD`: the
   * SDK would otherwise hash every part with sha256 for the signature on top of the MD5 that
   * `Content-MD5` carries, and the server checks that MD5 anyway.
   */
  static #createClient(
    options: S3StorageOptions,
    endpoint: string | undefined,
    requestTimeout: number,
  ): S3Client {
    const client = new S3Client({
      // `socketTimeout` is an inactivity deadline on the socket: it fires on a server that never
      // answers and on a stream that stalls mid-way, but not on a long transfer that moves.
      requestHandler:
        requestTimeout > 0 ? { connectionTimeout: requestTimeout, socketTimeout: requestTimeout } : {},
      region: options.region,
      endpoint,
      forcePathStyle: options.forcePathStyle ?? endpoint !== undefined,
      credentials: options.credentials,
      maxAttempts: options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
      retryMode: 'standard',
      // The SDK's default (a CRC32 trailer with aws-chunked encoding on every upload) is
      // stored as object data by some servers (s3rver) and refused by others (Swift s3api:
      // 501). Parts and single puts carry Content-MD5 instead, and ETags are checked.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    client.middlewareStack.add(
      (next) => async (args) => {
        const request = args.request as { method?: string; headers?: Record<string, string> };
        if ((request.method === 'PUT' || request.method === 'POST') && request.headers)
          request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
        return next(args);
      },
      { step: 'build', name: 'bkUnsignedPayload' },
    );
    return client;
  }

  /**
   * Finds out, once per instance, whether the server honours `If-None-Match: *` (see
   * {@link ConditionalCreateMode}), and returns the capabilities that follow. Needs permission
   * to put and delete objects under the prefix; writes and deletes one empty object under
   * `<prefix>/.bk-probe/`. Without it, `capabilities.conditionalCreate` stays `false` until
   * the first create-if-absent `put`.
   *
   * @throws {StorageError} When the probe's requests fail.
   * @example
   * const { conditionalCreate } = await storage.probeCapabilities();
   */
  async probeCapabilities(options: { signal?: AbortSignal } = {}): Promise<StorageCapabilities> {
    await this.conditionalCreateMode(options.signal);
    return this.capabilities;
  }

  /**
   * Stores `body` under `key`; see the class for how. Without `ifNoneMatch` an existing object
   * is replaced when the upload completes.
   *
   * @throws {ConfigError} When the key is invalid.
   * @throws {AlreadyExistsError} When `ifNoneMatch` is set and the key exists (412 from the
   *   server, or the HEAD check).
   * @throws {AbortedError} When `signal` aborts.
   * @throws {IntegrityError} When an ETag does not match the MD5 of what was sent; an object
   *   published with a wrong ETag is deleted again.
   * @throws {StorageError} When a request fails after its retries (`retryable` for 5xx,
   *   throttling and resets). The error the body throws is rethrown unchanged. In every case no
   *   object appears and an open multipart upload is aborted.
   * @example
   * const info = await storage.put('nightly/backup.tar.gz', stream, { ifNoneMatch: true, signal });
   */
  async put(key: string, body: ByteStream | Uint8Array, options: PutOptions = {}): Promise<ObjectInfo> {
    const { signal, ifNoneMatch = false } = options;
    const { controller, release } = childController(signal);
    const reader = new BodyReader(body, controller.signal);
    try {
      checkKey(key);
      throwIfAborted(signal);
      const mode = ifNoneMatch ? await this.conditionalCreateMode(controller.signal) : undefined;
      const hint = options.sizeHint;
      const first =
        hint !== undefined && Number.isFinite(hint) && hint > 0
          ? Math.min(MAX_PART_BYTES, Math.max(this.firstPartSize, Math.ceil(hint / MAX_PARTS)))
          : this.firstPartSize;
      // Held in an object the upload empties, so the first part is not pinned for the whole upload.
      const firstPart: { bytes?: Buffer } = { bytes: await reader.read(first) };
      if (!(await reader.hasMore()))
        return await this.putSingle(key, firstPart.bytes!, mode, options.contentType, controller.signal);
      return await this.putMultipart(key, firstPart, reader, first, mode, options.contentType, controller);
    } catch (error) {
      if (signal?.aborted) throw toAbortedError(signal);
      throw error;
    } finally {
      release();
      await reader.release();
    }
  }

  /**
   * Opens an object for reading, from `range.start` (default 0) to `range.end` (exclusive,
   * default the end), with one GetObject and a `Range: bytes=` header. The request is made
   * before this resolves, so a missing object rejects here. Aborting `signal` ends the stream
   * with the signal's reason; a body shorter than its `Content-Length` fails with
   * `StorageError` (retryable).
   *
   * @throws {ConfigError} When the key or range is invalid.
   * @throws {NotFoundError} When no object has this key.
   * @throws {AbortedError} When `signal` aborts.
   * @throws {StorageError} When the request fails after its retries.
   * @example
   * const tail = await storage.get('big.bin', { range: { start: 1024 } });
   */
  async get(key: string, options: GetOptions = {}): Promise<ByteStream> {
    const { signal } = options;
    checkKey(key);
    const { start, end } = checkRange(options.range);
    throwIfAborted(signal);
    const emptyIfExists = async (): Promise<ByteStream> => {
      if (!(await this.stat(key, { signal })))
        throw new NotFoundError(`No object "${key}" in ${this.description}.`);
      return (async function* () {})();
    };
    if (end !== undefined && end <= start) return emptyIfExists();
    const range =
      start === 0 && end === undefined ? undefined : `bytes=${start}-${end === undefined ? '' : end - 1}`;
    let response: GetObjectCommandOutput;
    try {
      response = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.prefix + key, Range: range }),
        { abortSignal: signal },
      );
    } catch (error) {
      if (errorStatus(error) === 416 || errorName(error) === 'InvalidRange') return emptyIfExists();
      throw this.error(`read "${key}"`, error, signal, { notFound: true });
    }
    const stream = response.Body as
      | (AsyncIterable<Uint8Array> & { destroy?: (error?: Error) => void })
      | undefined;
    if (!stream) return (async function* () {})();
    const expected = response.ContentLength;
    const { description, endpointName, requestTimeout } = this;
    return (async function* () {
      const onAbort = () => stream.destroy?.(toAbortedError(signal!));
      signal?.addEventListener('abort', onAbort, { once: true });
      let received = 0;
      try {
        for await (const chunk of stream) {
          received += chunk.byteLength;
          // A socket read that holds only body bytes is a buffer no one else holds: handed over,
          // the reader frees it once copied (see handOver) instead of leaving it to the collector.
          yield chunk.byteLength > 0 && spansWholeBuffer(chunk) ? handOver(chunk) : chunk;
        }
      } catch (error) {
        if (signal?.aborted) throw toAbortedError(signal);
        const stalled = errorName(error) === 'TimeoutError';
        throw new StorageError(
          stalled
            ? `Reading "${key}" from ${description} stalled: ${endpointName} sent nothing for ${requestTimeout} ms (requestTimeout).`
            : `Reading "${key}" from ${description} failed mid-way.`,
          { cause: error, retryable: true },
        );
      } finally {
        signal?.removeEventListener('abort', onAbort);
        stream.destroy?.();
      }
      if (expected !== undefined && received !== expected)
        throw new StorageError(
          `Reading "${key}" from ${description} ended after ${received} of ${expected} bytes.`,
          { retryable: true },
        );
    })();
  }

  /**
   * The object's size, ETag and modification time, from HeadObject.
   *
   * @throws {ConfigError} When the key is invalid.
   * @throws {StorageError} When the request fails after its retries.
   * @example
   * const info = await storage.stat('nightly/backup.tar.gz');
   */
  async stat(key: string, options: { signal?: AbortSignal } = {}): Promise<ObjectInfo | undefined> {
    checkKey(key);
    throwIfAborted(options.signal);
    try {
      const head = await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }),
        {
          abortSignal: options.signal,
        },
      );
      return {
        key,
        size: head.ContentLength ?? 0,
        lastModified: head.LastModified,
        etag: unquote(head.ETag),
      };
    } catch (error) {
      if (errorStatus(error) === 404) return undefined;
      throw this.error(`stat "${key}"`, error, options.signal);
    }
  }

  /**
   * Every object whose key starts with `prefix`, from ListObjectsV2, 1,000 per page.
   *
   * @throws {StorageError} When a page cannot be listed after its retries.
   * @example
   * for await (const object of storage.list('nightly/')) console.log(object.key, object.size);
   */
  async *list(prefix: string, options: { signal?: AbortSignal } = {}): AsyncIterable<ObjectInfo> {
    const { signal } = options;
    let continuationToken: string | undefined;
    do {
      throwIfAborted(signal);
      let page: ListObjectsV2CommandOutput;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.prefix + prefix,
            ContinuationToken: continuationToken,
          }),
          { abortSignal: signal },
        );
      } catch (error) {
        throw this.error(`list "${prefix}"`, error, signal);
      }
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined || !object.Key.startsWith(this.prefix)) continue;
        const key = object.Key.slice(this.prefix.length);
        if (key.startsWith(PROBE_PREFIX)) continue;
        yield { key, size: object.Size ?? 0, lastModified: object.LastModified, etag: unquote(object.ETag) };
      }
      continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuationToken !== undefined);
  }

  /**
   * Deletes an object with DeleteObject; a missing object is not an error.
   *
   * @throws {ConfigError} When the key is invalid.
   * @throws {StorageError} When the request fails after its retries.
   * @example
   * await storage.delete('nightly/backup_20261121_101500.lock');
   */
  async delete(key: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    checkKey(key);
    throwIfAborted(options.signal);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }), {
        abortSignal: options.signal,
      });
    } catch (error) {
      if (errorStatus(error) === 404) return;
      throw this.error(`delete "${key}"`, error, options.signal);
    }
  }

  /**
   * Aborts (with `dryRun`: only lists) the multipart uploads that killed runs left open under the
   * storage's prefix (and `prefix`), from ListMultipartUploads: their parts are billed but never
   * become an object. An upload counts as left over when it started at least `olderThanMs` ago
   * and no part has been uploaded since (ListParts), so a long upload still running is never
   * aborted. Also deletes the empty objects a killed conditional-create probe left under
   * `.bk-probe/`. A server that does not implement ListMultipartUploads (s3rver) gets a note
   * instead: set a lifecycle rule (`AbortIncompleteMultipartUpload`) there.
   *
   * @throws {AbortedError} When `signal` aborts.
   * @throws {StorageError} When listing or aborting fails after its retries.
   * @example
   * const { removed } = await storage.cleanupIncomplete({ olderThanMs: 86_400_000, dryRun: true });
   */
  async cleanupIncomplete(options: CleanupIncompleteOptions): Promise<CleanupIncompleteResult> {
    const { olderThanMs, dryRun = false, signal } = options;
    throwIfAborted(signal);
    const cutoff = Date.now() - olderThanMs;
    const removed: IncompleteUpload[] = [];
    const notes: string[] = [];
    const prefix = this.prefix + (options.prefix ?? '');
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      throwIfAborted(signal);
      let page: ListMultipartUploadsCommandOutput;
      try {
        page = await this.client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.bucket,
            Prefix: prefix,
            KeyMarker: keyMarker,
            UploadIdMarker: uploadIdMarker,
          }),
          { abortSignal: signal },
        );
      } catch (error) {
        const status = errorStatus(error);
        if (!signal?.aborted && (status === 501 || status === 405 || errorName(error) === 'NotImplemented')) {
          notes.push(
            `${this.description}: the server does not implement ListMultipartUploads, so the multipart uploads of killed runs cannot be found or aborted from here; their parts stay until the server removes them (on AWS and most S3-compatible stores, a lifecycle rule with AbortIncompleteMultipartUpload does).`,
          );
          break;
        }
        throw this.error('list open multipart uploads', error, signal);
      }
      for (const upload of page.Uploads ?? []) {
        const { Key: objectKey, UploadId: uploadId, Initiated: initiated } = upload;
        if (objectKey === undefined || uploadId === undefined || !objectKey.startsWith(prefix)) continue;
        if (initiated !== undefined && initiated.getTime() > cutoff) continue;
        const parts = await this.uploadedParts(objectKey, uploadId, signal);
        if (parts === undefined) continue;
        const lastModified = parts.newest ?? initiated;
        if (lastModified !== undefined && lastModified.getTime() > cutoff) continue;
        if (!dryRun) {
          try {
            await this.client.send(
              new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey, UploadId: uploadId }),
              { abortSignal: signal },
            );
          } catch (error) {
            if (errorStatus(error) === 404) continue;
            throw this.error(`abort the multipart upload ${uploadId} of "${objectKey}"`, error, signal);
          }
        }
        const key = objectKey.slice(this.prefix.length);
        removed.push({
          kind: 'multipart upload',
          location: `s3://${this.bucket}/${objectKey} (upload ${uploadId})`,
          key,
          size: parts.bytes,
          ...(lastModified ? { lastModified } : {}),
        });
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (keyMarker !== undefined);
    for await (const probe of this.rawList(this.prefix + PROBE_PREFIX, signal)) {
      if (probe.lastModified !== undefined && probe.lastModified.getTime() > cutoff) continue;
      if (!dryRun) await this.deleteRaw(probe.key, signal);
      removed.push({
        kind: 'probe object',
        location: `s3://${this.bucket}/${probe.key}`,
        size: probe.size,
        ...(probe.lastModified ? { lastModified: probe.lastModified } : {}),
      });
    }
    return { removed, notes };
  }

  /** The bytes and newest part of an open upload, or `undefined` when it is gone meanwhile. */
  private async uploadedParts(
    objectKey: string,
    uploadId: string,
    signal: AbortSignal | undefined,
  ): Promise<{ bytes: number; newest?: Date } | undefined> {
    let bytes = 0;
    let newest: Date | undefined;
    let marker: string | undefined;
    do {
      let page: ListPartsCommandOutput;
      try {
        page = await this.client.send(
          new ListPartsCommand({
            Bucket: this.bucket,
            Key: objectKey,
            UploadId: uploadId,
            PartNumberMarker: marker,
          }),
          { abortSignal: signal },
        );
      } catch (error) {
        if (errorStatus(error) === 404) return undefined;
        throw this.error(`list the parts of upload ${uploadId} of "${objectKey}"`, error, signal);
      }
      for (const part of page.Parts ?? []) {
        bytes += part.Size ?? 0;
        if (part.LastModified && (!newest || part.LastModified > newest)) newest = part.LastModified;
      }
      marker = page.IsTruncated ? page.NextPartNumberMarker : undefined;
    } while (marker !== undefined);
    return { bytes, ...(newest ? { newest } : {}) };
  }

  /** Objects under a raw bucket key prefix, reserved ones included. */
  private async *rawList(prefix: string, signal: AbortSignal | undefined): AsyncIterable<ObjectInfo> {
    let continuationToken: string | undefined;
    do {
      throwIfAborted(signal);
      let page: ListObjectsV2CommandOutput;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            ContinuationToken: continuationToken,
          }),
          { abortSignal: signal },
        );
      } catch (error) {
        throw this.error(`list "${prefix}"`, error, signal);
      }
      for (const object of page.Contents ?? [])
        if (object.Key !== undefined)
          yield { key: object.Key, size: object.Size ?? 0, lastModified: object.LastModified };
      continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuationToken !== undefined);
  }

  private async deleteRaw(objectKey: string, signal: AbortSignal | undefined): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: objectKey }), {
        abortSignal: signal,
      });
    } catch (error) {
      if (errorStatus(error) !== 404) throw this.error(`delete "${objectKey}"`, error, signal);
    }
  }

  private error(
    action: string,
    error: unknown,
    signal: AbortSignal | undefined,
    mapping: { notFound?: boolean; alreadyExists?: string } = {},
  ): BkError {
    if (signal?.aborted) return toAbortedError(signal);
    if (errorName(error) === 'TimeoutError' || errorName(error) === 'ETIMEDOUT')
      return new StorageError(
        `Could not ${action} in ${this.description}: ${this.endpointName} sent nothing for ${this.requestTimeout ?? '(the client’s)'} ms` +
          `${this.requestTimeout === undefined ? '' : ' (requestTimeout)'}, after every retry. Check that the endpoint is an S3 server and reachable, or raise requestTimeout.`,
        { cause: error, retryable: true },
      );
    return toStorageError(`${action} in ${this.description}`, error, mapping);
  }

  /** Resolves `'auto'` by probing once; concurrent callers share the probe. */
  private async conditionalCreateMode(signal: AbortSignal | undefined): Promise<'if-none-match' | 'check'> {
    if (this.conditionalMode !== 'auto') return this.conditionalMode;
    this.probing ??= this.probeIfNoneMatch(signal).then(
      (mode) => {
        this.conditionalMode = mode;
        this.capabilities.conditionalCreate = mode === 'if-none-match';
        return mode;
      },
      (error: unknown) => {
        this.probing = undefined;
        throw error;
      },
    );
    return this.probing;
  }

  private async probeIfNoneMatch(signal: AbortSignal | undefined): Promise<'if-none-match' | 'check'> {
    const probeKey = `${this.prefix}${PROBE_PREFIX}${randomBytes(8).toString('hex')}`;
    const put = (ifNoneMatch: boolean) =>
      this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: probeKey,
          Body: new Uint8Array(0),
          IfNoneMatch: ifNoneMatch ? '*' : undefined,
        }),
        { abortSignal: signal },
      );
    try {
      await put(false);
    } catch (error) {
      throw this.error('probe create-if-absent support', error, signal);
    }
    try {
      await put(true);
      return 'check';
    } catch (error) {
      if (errorStatus(error) === 412) return 'if-none-match';
      const status = errorStatus(error);
      if (status === 400 || status === 501 || errorName(error) === 'NotImplemented') return 'check';
      throw this.error('probe create-if-absent support', error, signal);
    } finally {
      await this.client
        .send(new DeleteObjectCommand({ Bucket: this.bucket, Key: probeKey }), {
          abortSignal: AbortSignal.timeout(CLEANUP_TIMEOUT_MS),
        })
        .catch(() => {});
    }
  }

  /** The racy fallback of create-if-absent: fail when the key exists now. */
  private async checkAbsent(key: string, signal: AbortSignal): Promise<void> {
    if (await this.stat(key, { signal })) throw new AlreadyExistsError(key);
  }

  private async putSingle(
    key: string,
    bytes: Buffer,
    mode: 'if-none-match' | 'check' | undefined,
    contentType: string | undefined,
    signal: AbortSignal,
  ): Promise<ObjectInfo> {
    if (mode === 'check') await this.checkAbsent(key, signal);
    const md5 = createHash('md5').update(bytes).digest();
    let etag: string | undefined;
    try {
      const response = await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.prefix + key,
          Body: bytes,
          ContentLength: bytes.byteLength,
          ContentMD5: md5.toString('base64'),
          ContentType: contentType,
          IfNoneMatch: mode === 'if-none-match' ? '*' : undefined,
        }),
        { abortSignal: signal },
      );
      etag = unquote(response.ETag);
    } catch (error) {
      throw this.error(`store "${key}"`, error, signal, { alreadyExists: key });
    }
    if (this.verifyEtags && etag !== undefined && MD5_HEX.test(etag) && etag !== md5.toString('hex'))
      await this.discardCorrupt(
        key,
        `its ETag ${etag} is not the MD5 ${md5.toString('hex')} of the bytes sent`,
      );
    return { key, size: bytes.byteLength, etag };
  }

  /**
   * The multipart upload: `concurrency` workers pull parts from one generator, so at most
   * `concurrency` parts are in flight and one more is being filled. On the first failure the
   * others are cancelled, all are awaited, and the upload is aborted before the error is
   * rethrown.
   */
  private async putMultipart(
    key: string,
    firstPart: { bytes?: Buffer },
    reader: BodyReader,
    firstPartSize: number,
    mode: 'if-none-match' | 'check' | undefined,
    contentType: string | undefined,
    controller: AbortController,
  ): Promise<ObjectInfo> {
    const { signal } = controller;
    const objectKey = this.prefix + key;
    // Fail before uploading gigabytes to a name that is taken; checked again at completion.
    if (mode !== undefined) await this.checkAbsent(key, signal);
    let uploadId: string | undefined;
    const createStarted = Date.now();
    try {
      const created = await this.client.send(
        new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey, ContentType: contentType }),
        { abortSignal: signal },
      );
      uploadId = created.UploadId;
      if ((created.$metadata.attempts ?? 1) > 1 && uploadId !== undefined)
        await this.abortLostUploads(objectKey, { kept: uploadId, elapsedMs: Date.now() - createStarted });
    } catch (error) {
      // Attempts whose answer was lost may have started uploads no one knows the id of.
      if (((error as { $metadata?: { attempts?: number } }).$metadata?.attempts ?? 1) > 1 || signal.aborted)
        await this.abortLostUploads(objectKey, { since: createStarted });
      throw this.error(`start uploading "${key}"`, error, signal);
    }
    if (uploadId === undefined)
      throw new StorageError(`${this.description} returned no UploadId for "${key}".`);

    let size = 0;
    async function* parts(): AsyncGenerator<Part> {
      let part: Part = { number: 1, bytes: firstPart.bytes! };
      firstPart.bytes = undefined;
      for (;;) {
        size += part.bytes.byteLength;
        yield part;
        if (!(await reader.hasMore())) return;
        const number = part.number + 1;
        if (number > MAX_PARTS)
          throw new StorageError(
            `"${key}" is larger than ${MAX_PARTS} parts; pass sizeHint or a larger partSize.`,
          );
        part = { number, bytes: await reader.read(partSize(number, firstPartSize)) };
      }
    }
    const queue = parts();
    const completed: CompletedPart[] = [];
    const partMd5s: Buffer[] = [];
    let failure: { error: unknown } | undefined;
    const worker = async (): Promise<void> => {
      for (;;) {
        if (signal.aborted) return;
        const next = await queue.next();
        if (next.done) return;
        const { number, bytes } = next.value;
        const md5 = createHash('md5').update(bytes).digest();
        let etag: string | undefined;
        try {
          const response = await this.client.send(
            new UploadPartCommand({
              Bucket: this.bucket,
              Key: objectKey,
              UploadId: uploadId,
              PartNumber: number,
              Body: bytes,
              ContentLength: bytes.byteLength,
              ContentMD5: md5.toString('base64'),
            }),
            { abortSignal: signal },
          );
          etag = response.ETag;
        } catch (error) {
          throw this.error(`upload part ${number} of "${key}"`, error, signal);
        }
        if (etag === undefined)
          throw new StorageError(`${this.description} returned no ETag for part ${number} of "${key}".`);
        const plain = unquote(etag)!;
        if (this.verifyEtags && MD5_HEX.test(plain) && plain !== md5.toString('hex'))
          throw new IntegrityError(
            `Part ${number} of "${key}" was stored with ETag ${plain}, not the MD5 ${md5.toString('hex')} of the bytes sent.`,
          );
        completed[number - 1] = { PartNumber: number, ETag: etag };
        partMd5s[number - 1] = md5;
        reader.recycle(bytes);
      }
    };

    try {
      await Promise.all(
        Array.from({ length: this.concurrency }, () =>
          worker().catch((error: unknown) => {
            failure ??= { error };
            controller.abort(error);
          }),
        ),
      );
      if (failure) throw failure.error;
      throwIfAborted(signal);
      if (mode === 'check') await this.checkAbsent(key, signal);
      let etag: string | undefined;
      try {
        const response = await this.client.send(
          new CompleteMultipartUploadCommand({
            Bucket: this.bucket,
            Key: objectKey,
            UploadId: uploadId,
            MultipartUpload: { Parts: completed },
            IfNoneMatch: mode === 'if-none-match' ? '*' : undefined,
          }),
          { abortSignal: signal },
        );
        etag = unquote(response.ETag);
      } catch (error) {
        throw this.error(`complete the upload of "${key}"`, error, signal, { alreadyExists: key });
      }
      uploadId = undefined;
      if (this.verifyEtags && etag !== undefined) {
        const multipart = `${createHash('md5').update(Buffer.concat(partMd5s)).digest('hex')}-${completed.length}`;
        // S3, Swift, Ceph and MinIO answer md5(part MD5s)-N, checked here; s3rver answers the
        // whole body's MD5, not computed (a hash pass over every byte): each part's ETag was
        // already checked against its MD5.
        if (etag !== multipart && /^[0-9a-f]{32}-\d+$/.test(etag))
          await this.discardCorrupt(key, `its ETag ${etag} is not ${multipart}`);
      }
      return { key, size, etag };
    } catch (error) {
      controller.abort(error);
      await queue.return(undefined).catch(() => {});
      if (uploadId !== undefined) await this.abortUpload(objectKey, uploadId);
      throw error;
    }
  }

  /**
   * Aborts the multipart uploads of `objectKey` that this `put` started but never learnt the id
   * of: when CreateMultipartUpload's answer is lost, the SDK retries and the first upload would
   * stay open, holding its parts, until a lifecycle rule removes it. They are the uploads of this
   * exact key, other than `kept`, initiated from `elapsedMs` before `kept` was (both times by the
   * server's clock) — or, when no upload was created, within a minute of `since` by this host's
   * clock. bk's name claim makes each archive key one run's, so no other writer's upload is in
   * that window. Best effort: a server without ListMultipartUploads (s3rver) keeps them.
   */
  private async abortLostUploads(
    objectKey: string,
    window: { kept: string; elapsedMs: number } | { since: number },
  ): Promise<void> {
    const signal = AbortSignal.timeout(CLEANUP_TIMEOUT_MS);
    try {
      const page = await this.client.send(
        new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: objectKey }),
        { abortSignal: signal },
      );
      const uploads = (page.Uploads ?? []).filter(
        (upload) => upload.Key === objectKey && upload.UploadId !== undefined,
      );
      let from: number;
      let to: number;
      if ('kept' in window) {
        const kept = uploads.find((upload) => upload.UploadId === window.kept)?.Initiated;
        if (kept === undefined) return;
        // Initiated has whole-second precision on several servers.
        from = kept.getTime() - window.elapsedMs - 2_000;
        to = kept.getTime() + 1_000;
      } else {
        from = window.since - 60_000;
        to = Date.now() + 60_000;
      }
      for (const upload of uploads) {
        if (upload.UploadId === ('kept' in window ? window.kept : undefined)) continue;
        const initiated = upload.Initiated?.getTime();
        if (initiated === undefined || initiated < from || initiated > to) continue;
        await this.abortUpload(objectKey, upload.UploadId!);
      }
    } catch {
      // Left for a lifecycle rule or bk prune.
    }
  }

  /**
   * Best effort: an upload that cannot be aborted (s3rver answers 405; a network failure) keeps
   * its parts until a lifecycle rule (`AbortIncompleteMultipartUpload`) removes them. They are
   * never visible as an object.
   */
  private async abortUpload(objectKey: string, uploadId: string): Promise<void> {
    await this.client
      .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey, UploadId: uploadId }), {
        abortSignal: AbortSignal.timeout(CLEANUP_TIMEOUT_MS),
      })
      .catch(() => {});
  }

  private async discardCorrupt(key: string, reason: string): Promise<never> {
    await this.client
      .send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }), {
        abortSignal: AbortSignal.timeout(CLEANUP_TIMEOUT_MS),
      })
      .catch(() => {});
    throw new IntegrityError(
      `"${key}" was stored in ${this.description}, but ${reason}; it was deleted again.`,
    );
  }
}
