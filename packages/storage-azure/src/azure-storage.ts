import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  BlobServiceClient,
  type BlockBlobClient,
  ContainerClient,
  type StorageRetryOptions,
  StorageRetryPolicyType,
  type StorageSharedKeyCredential,
} from '@azure/storage-blob';
import {
  AbortedError,
  AlreadyExistsError,
  BkError,
  BodyReader,
  type ByteStream,
  type CleanupIncompleteOptions,
  type CleanupIncompleteResult,
  ConfigError,
  checkRange,
  checkStorageKey,
  DEFAULT_REQUEST_TIMEOUT_MS,
  type GetOptions,
  IntegrityError,
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

const MIB = 1024 * 1024;
/** Azure's largest block (service version 2019-12-12 and later). */
const MAX_BLOCK_BYTES = 4000 * MIB;
/** Azure's most blocks in one committed blob. */
const MAX_BLOCKS = 50_000;
/** Block sizes double after every this many blocks: see {@link AzureStorageOptions.blockSize}. */
const BLOCKS_PER_SIZE = 5_000;
/** Azure's longest blob name. */
const MAX_NAME_LENGTH = 1024;
/** The metadata key that records which `put` wrote a blob; see `ownEtag`. */
const UPLOAD_METADATA = 'bkupload';
/** Clean-up after a failure runs even when the caller aborted, but never longer than this. */
const CLEANUP_TIMEOUT_MS = 60_000;
/**
 * After a failure or abort, requests already sent get this long to finish before they are
 * cancelled. A cancelled request whose bytes had all been sent may still land at Azure after
 * the clean-up; letting it finish makes the clean-up final.
 */
const DRAIN_TIMEOUT_MS = 10_000;

/**
 * A token credential from `@azure/identity` (`DefaultAzureCredential`, `ManagedIdentityCredential`,
 * …), or anything shaped like one. Declared here so this package does not depend on
 * `@azure/identity`.
 */
export interface TokenCredentialLike {
  getToken(
    scopes: string | string[],
    options?: object,
  ): Promise<{ token: string; expiresOnTimestamp: number } | null>;
}

/** Options of {@link AzureStorage}. Give exactly one of `client`, `connectionString` or `accountUrl`. */
export interface AzureStorageOptions {
  /** The container that holds the objects (3–63 lowercase letters, digits and hyphens). */
  container: string;
  /** A folder inside the container, e.g. `nightly/db1`; keys are stored as `<prefix>/<key>`. */
  prefix?: string;
  /**
   * A client you configured yourself (proxy, custom pipeline, a `ContainerClient` scoped by a
   * SAS). Its pipeline is used as is: `retryOptions` does not apply.
   */
  client?: ContainerClient | BlobServiceClient;
  /** An account connection string (`DefaultEndpointsProtocol=…;AccountName=…;AccountKey=…`). */
  connectionString?: string;
  /** The blob endpoint, e.g. `https://myaccount.blob.core.windows.net`; used with `credential`. */
  accountUrl?: string;
  /** An account key credential or a token credential (Microsoft Entra ID), for `accountUrl`. */
  credential?: StorageSharedKeyCredential | TokenCredentialLike;
  /**
   * Size of the first blocks of a multi-block upload, in bytes; default 8 MiB, at most 4000 MiB.
   * A body that fits in one block is sent with a single `Put Blob`. Azure allows 50,000 blocks
   * per blob, so the block size doubles after every 5,000 blocks (8 MiB blocks for the first
   * ~39 GiB, 16 MiB for the next ~78 GiB, …, capped at 4000 MiB): with the default, 5 TiB fit in
   * 40,000 blocks (and any first size of at least 2 MiB reaches 5 TiB; 1 MiB stops near 4.9 TiB).
   * With `sizeHint`, the first size is raised to `ceil(sizeHint / 50,000)` (rounded up to a MiB)
   * so the whole body fits without growing.
   *
   * Memory ceiling of one `put`: `concurrency × blockSize` in flight plus one block being
   * filled, i.e. 40 MiB with the defaults; a growing block size raises it with the blocks.
   */
  blockSize?: number;
  /** How many blocks upload at once; default 4. See `blockSize` for the memory this costs. */
  concurrency?: number;
  /** Create the container on the first `put` when it does not exist; default `false`. */
  createContainer?: boolean;
  /**
   * Milliseconds a request may go without a byte moving — waiting for the answer, staging a
   * block, or between two chunks of a download — before it fails with a retryable
   * `StorageError` naming the endpoint. The deadline spans the SDK's own retries of that
   * request. Default 60,000; `0` waits for ever.
   */
  requestTimeout?: number;
  /**
   * The SDK's retry policy for clients this class creates. Default: exponential, 5 tries, 1 s
   * doubling to at most 60 s. The SDK retries 500 and 503 (Azure's throttling answer) and
   * connection errors (resets, timeouts, refused); 4xx answers are never retried.
   */
  retryOptions?: StorageRetryOptions;
}

const DEFAULT_RETRY: StorageRetryOptions = {
  retryPolicyType: StorageRetryPolicyType.EXPONENTIAL,
  maxTries: 5,
  retryDelayInMs: 1_000,
  maxRetryDelayInMs: 60_000,
};

/** The parts of a `RestError` (or a Node network error) this adapter reads. */
interface AzureFailure {
  statusCode?: number;
  code?: string;
  details?: { errorCode?: string };
  name?: string;
  message?: string;
}

function failureOf(error: unknown): AzureFailure {
  return typeof error === 'object' && error !== null ? (error as AzureFailure) : {};
}

/** Azure's error code (`BlobNotFound`, …): from the body, or from `x-ms-error-code` for HEAD. */
function errorCodeOf(error: unknown): string | undefined {
  const failure = failureOf(error);
  return failure.details?.errorCode ?? failure.code;
}

/** The key exists (`If-None-Match: *`) or changed (`If-Match`); a HEAD's 412 carries no code. */
function isConflict(error: unknown): boolean {
  const code = errorCodeOf(error);
  return code === 'BlobAlreadyExists' || code === 'ConditionNotMet' || failureOf(error).statusCode === 412;
}

function isNotFound(error: unknown): boolean {
  return failureOf(error).statusCode === 404 && errorCodeOf(error) !== 'ContainerNotFound';
}

const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'REQUEST_SEND_ERROR',
]);

/** The `Storage` contract's key rules, plus what a blob name cannot hold: control characters. */
function checkKey(key: string): void {
  checkStorageKey(key);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\u0000-\u001f\u007f]/.test(key))
    throw new ConfigError(`Invalid storage key "${key}": it contains a control character.`);
}

/** Azure's container naming rule. */
const CONTAINER_NAME = /^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/;

/** `prefix` without leading and trailing slashes, checked like a key. */
function normalizePrefix(prefix: string | undefined): string {
  const trimmed = (prefix ?? '').replace(/^\/+|\/+$/g, '');
  if (trimmed === '') return '';
  try {
    checkKey(trimmed);
  } catch (error) {
    throw new ConfigError(`Invalid AzureStorage prefix "${prefix}": ${(error as Error).message}`);
  }
  return trimmed;
}

function positiveInteger(name: string, value: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < 1 || value > max)
    throw new ConfigError(`AzureStorage ${name} must be an integer from 1 to ${max}, not ${value}.`);
  return value;
}

/** One block of a multi-block upload, as the workers receive it. */
interface Block {
  id: string;
  data: Buffer;
}

/**
 * A storage in an Azure Blob Storage container (or Azurite). Each key is a block blob named
 * `<prefix>/<key>`.
 *
 * `put` sends a body that fits in one block with a single `Put Blob`; a larger one is staged as
 * blocks by `concurrency` workers and published with one `Put Block List`, so a reader sees the
 * whole object or none. Every block carries its MD5, which Azure checks on arrival; the whole
 * body's MD5 is stored as the blob's `Content-MD5`, checked after the commit and again by every
 * full `get`. On an error or abort, reading stops at once, requests already sent get up to 10 s
 * to finish, and the staged blocks are discarded (see the README's "Atomicity and clean-up").
 *
 * @example
 * const storage = new AzureStorage({
 *   container: 'backups',
 *   prefix: 'nightly',
 *   connectionString: process.env.AZURE_STORAGE_CONNECTION_STRING,
 * });
 * await storage.put('hello.txt', new TextEncoder().encode('hello'), { ifNoneMatch: true });
 */
export class AzureStorage implements Storage {
  /** `az://<container>/<prefix>`; never contains credentials. */
  readonly description: string;
  /** Atomic publish and create-if-absent through Azure's block list, ranged reads, parallel blocks. */
  readonly capabilities: StorageCapabilities = {
    atomicPublish: true,
    conditionalCreate: true,
    rangeRead: true,
    multipart: true,
  };
  /** The container client every request goes through. */
  readonly containerClient: ContainerClient;
  /** The normalized prefix, without slashes at either end; `''` for none. */
  readonly prefix: string;
  private readonly blockSize: number;
  private readonly concurrency: number;
  private readonly createContainer: boolean;
  private containerReady: Promise<void> | undefined;
  private readonly requestTimeout: number;
  /** The account's origin, for messages. */
  private readonly endpoint: string;

  /**
   * @param options The container, an optional prefix, how to connect, and upload tuning.
   * @throws {ConfigError} When the container name, prefix, block size or concurrency is invalid,
   *   or when not exactly one of `client`, `connectionString` and `accountUrl` + `credential` is given.
   * @example
   * const storage = new AzureStorage({
   *   container: 'backups',
   *   accountUrl: 'https://myaccount.blob.core.windows.net',
   *   credential: new DefaultAzureCredential(),
   * });
   */
  constructor(options: AzureStorageOptions) {
    const { container, client, connectionString, accountUrl, credential } = options;
    if (typeof container !== 'string' || !CONTAINER_NAME.test(container))
      throw new ConfigError(
        `Invalid Azure container name "${container}": use 3 to 63 lowercase letters, digits and single hyphens.`,
      );
    const ways = [client, connectionString, accountUrl].filter((way) => way !== undefined).length;
    if (ways !== 1)
      throw new ConfigError(
        'AzureStorage needs exactly one of: client, connectionString, or accountUrl with credential.',
      );
    const pipelineOptions = { retryOptions: options.retryOptions ?? DEFAULT_RETRY };
    if (client instanceof ContainerClient || (client !== undefined && !('getContainerClient' in client))) {
      if (client.containerName !== container)
        throw new ConfigError(
          `The ContainerClient is for container "${client.containerName}", not "${container}".`,
        );
      this.containerClient = client;
    } else if (client !== undefined) {
      this.containerClient = client.getContainerClient(container);
    } else if (connectionString !== undefined) {
      let service: BlobServiceClient;
      try {
        service = BlobServiceClient.fromConnectionString(connectionString, pipelineOptions);
      } catch (error) {
        // The SDK's message may quote the string, key included.
        throw new ConfigError(
          'The Azure connection string is malformed; expected DefaultEndpointsProtocol=…;AccountName=…;AccountKey=…;',
          { cause: new Error(error instanceof Error ? error.name : 'Error') },
        );
      }
      this.containerClient = service.getContainerClient(container);
    } else {
      if (credential === undefined) throw new ConfigError('AzureStorage needs a credential with accountUrl.');
      let url: URL;
      try {
        url = new URL(accountUrl!);
      } catch (error) {
        throw new ConfigError(`Invalid Azure accountUrl "${accountUrl}".`, { cause: error });
      }
      if (url.search !== '' || url.username !== '' || url.password !== '')
        throw new ConfigError(
          'The Azure accountUrl must not carry a query (SAS) or credentials; pass a client instead.',
        );
      this.containerClient = new BlobServiceClient(
        url.href,
        credential as StorageSharedKeyCredential,
        pipelineOptions,
      ).getContainerClient(container);
    }
    this.prefix = normalizePrefix(options.prefix);
    this.blockSize = positiveInteger('blockSize', options.blockSize ?? 8 * MIB, MAX_BLOCK_BYTES);
    this.concurrency = positiveInteger('concurrency', options.concurrency ?? 4, 64);
    this.createContainer = options.createContainer ?? false;
    this.requestTimeout = options.requestTimeout ?? DEFAULT_REQUEST_TIMEOUT_MS;
    if (!Number.isSafeInteger(this.requestTimeout) || this.requestTimeout < 0)
      throw new ConfigError(`Invalid requestTimeout ${this.requestTimeout}: use milliseconds, 0 or more.`);
    this.endpoint = new URL(this.containerClient.url).origin;
    this.description = `az://${container}${this.prefix === '' ? '' : `/${this.prefix}`}`;
  }

  /**
   * Stores `body` under `key`. A body of at most one block goes up with one `Put Blob`; a larger
   * one as blocks staged in parallel and committed with one `Put Block List`. With `ifNoneMatch`
   * the publishing request carries `If-None-Match: *`, so of several concurrent puts exactly one
   * wins. Without it an existing object is replaced atomically.
   *
   * @throws {ConfigError} When the key is invalid or the container does not exist (and
   *   `createContainer` is off).
   * @throws {AlreadyExistsError} When `ifNoneMatch` is set and the key exists.
   * @throws {AbortedError} When `signal` aborts (or the signal's reason, when it is a bk error).
   * @throws {IntegrityError} When the committed blob's size or MD5 differ from what was sent.
   * @throws {StorageError} When Azure fails; `retryable` for 5xx, throttling and connection
   *   errors that outlasted the SDK's retries. The error the body throws is rethrown unchanged.
   *   In every case no object appears and staged blocks are discarded where Azure allows it.
   * @example
   * const info = await storage.put('backup_20261121_101500.tar.gz', archive, { ifNoneMatch: true, signal });
   */
  async put(key: string, body: ByteStream | Uint8Array, options: PutOptions = {}): Promise<ObjectInfo> {
    const { signal, ifNoneMatch = false, sizeHint } = options;
    // Aborted by the caller's signal and by a failing block: stops reading and staging at once.
    const controller = new AbortController();
    // Aborted DRAIN_TIMEOUT_MS later: cancels the requests still in flight.
    const requests = new AbortController();
    let drainTimer: NodeJS.Timeout | undefined;
    controller.signal.addEventListener(
      'abort',
      () => {
        drainTimer = setTimeout(() => requests.abort(controller.signal.reason), DRAIN_TIMEOUT_MS);
      },
      { once: true },
    );
    const onAbort = () => controller.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const reader = new BodyReader(body, controller.signal);
    // The error the body itself threw, rethrown unchanged rather than wrapped.
    let bodyError: { error: unknown } | undefined;
    const read = async (size: number): Promise<Buffer> => {
      try {
        return await reader.read(size);
      } catch (error) {
        // With the signal unaborted, only the body can have failed the read.
        if (!controller.signal.aborted) bodyError ??= { error };
        throw error;
      }
    };
    try {
      checkKey(key);
      throwIfAborted(signal);
      const name = this.blobName(key);
      await this.ensureContainer(controller.signal);
      const blob = this.containerClient.getBlockBlobClient(name);
      const upload = {
        key,
        blob,
        id: randomBytes(8).toString('hex'),
        ifNoneMatch,
        contentType: options.contentType,
        signal: controller.signal,
        requestSignal: requests.signal,
        abort: (reason: unknown) => controller.abort(reason),
      };
      const firstSize = this.firstBlockSize(sizeHint);
      // Handed over in an array, not held here: putBlocks drops each block once it is staged.
      const ahead = [await read(firstSize)];
      if (ahead[0]!.byteLength === firstSize) ahead.push(await read(firstSize));
      if (ahead.length === 1 || ahead[1]!.byteLength === 0) return await this.putSingle(upload, ahead[0]!);
      return await this.putBlocks(upload, read, firstSize, ahead, (buffer) => reader.recycle(buffer));
    } catch (error) {
      if (signal?.aborted) throw toAbortedError(signal);
      if (bodyError !== undefined && bodyError.error === error) throw error;
      throw this.toBkError(error, 'store', key);
    } finally {
      clearTimeout(drainTimer);
      signal?.removeEventListener('abort', onAbort);
      await reader.release();
    }
  }

  private async putSingle(upload: Upload, data: Buffer): Promise<ObjectInfo> {
    const md5 = createHash('md5').update(data).digest();
    const etag = await this.publish(upload, (signal) =>
      this.timed(signal, (abortSignal, touch) =>
        upload.blob.upload(data, data.byteLength, {
          transactionalContentMD5: md5,
          blobHTTPHeaders: { blobContentMD5: md5, blobContentType: upload.contentType },
          metadata: { [UPLOAD_METADATA]: upload.id },
          conditions: upload.ifNoneMatch ? { ifNoneMatch: '*' } : undefined,
          abortSignal,
          onProgress: touch,
        }),
      ),
    );
    return { key: upload.key, size: data.byteLength, etag, lastModified: new Date() };
  }

  /**
   * Stages blocks with `concurrency` workers pulling from one generator (so at most
   * `concurrency` blocks are in flight, plus the one the generator is filling), then commits.
   * On any failure every worker is awaited before the staged blocks are discarded, so no block
   * lands after the clean-up.
   */
  private async putBlocks(
    upload: Upload,
    read: (size: number) => Promise<Buffer>,
    firstSize: number,
    ahead: Buffer[],
    recycle: (buffer: Buffer) => void,
  ): Promise<ObjectInfo> {
    const { blob } = upload;
    if (upload.ifNoneMatch && (await this.ownEtag(upload)) !== null)
      // Fail before sending gigabytes: the commit would be refused anyway.
      throw new AlreadyExistsError(upload.key);
    const wholeMd5 = createHash('md5');
    const ids: string[] = [];
    let size = 0;
    async function* blocks(): AsyncGenerator<Block> {
      for (let index = 0; ; index += 1) {
        const data = ahead.shift() ?? (await read(blockSizeAt(firstSize, index)));
        if (data.byteLength === 0) return;
        if (index >= MAX_BLOCKS)
          throw new StorageError(
            `"${upload.key}" is larger than ${MAX_BLOCKS} blocks can hold (${size} bytes so far); pass sizeHint or a larger blockSize.`,
          );
        wholeMd5.update(data);
        size += data.byteLength;
        // Fixed length for every block of the blob, as Azure requires: 16 + 1 + 5 characters.
        const id = Buffer.from(`${upload.id}-${index.toString(36).padStart(5, '0')}`).toString('base64');
        ids.push(id);
        yield { id, data };
      }
    }
    const source = blocks();
    let failure: { error: unknown } | undefined;
    // A request that was sent may have landed even if its caller saw it fail or abort.
    let sent = 0;
    const worker = async (): Promise<void> => {
      try {
        for (let next = await source.next(); !next.done && !failure; next = await source.next()) {
          const { id, data } = next.value;
          sent += 1;
          await this.timed(upload.requestSignal, (abortSignal, touch) =>
            blob.stageBlock(id, data, data.byteLength, {
              transactionalContentMD5: createHash('md5').update(data).digest(),
              abortSignal,
              onProgress: touch,
            }),
          );
          recycle(data);
        }
      } catch (error) {
        failure ??= { error };
        // Stops the other workers' requests and any read the generator is waiting on.
        upload.abort(error);
      }
    };
    await Promise.all(Array.from({ length: this.concurrency }, worker));
    if (failure) {
      if (sent > 0) await this.discardStaged(upload);
      throw failure.error;
    }
    const md5 = wholeMd5.digest();
    let etag: string;
    try {
      etag = await this.publish(upload, (signal) =>
        this.timed(signal, (abortSignal) =>
          blob.commitBlockList(ids, {
            blobHTTPHeaders: { blobContentMD5: md5, blobContentType: upload.contentType },
            metadata: { [UPLOAD_METADATA]: upload.id },
            conditions: upload.ifNoneMatch ? { ifNoneMatch: '*' } : undefined,
            abortSignal,
          }),
        ),
      );
    } catch (error) {
      await this.discardStaged(upload);
      throw error;
    }
    await this.verifyCommitted(upload, etag, size, md5);
    return { key: upload.key, size, etag, lastModified: new Date() };
  }

  /**
   * Sends the request that publishes the blob and settles who owns the key. A failed request may
   * still have published: a conditional create whose reply was lost and that the SDK retried
   * sees its own blob (409). The upload id in the blob's metadata tells: ours is a success.
   * When the caller aborted meanwhile, a blob this upload published is deleted again.
   */
  private async publish(
    upload: Upload,
    send: (abortSignal: AbortSignal) => Promise<{ etag?: string }>,
  ): Promise<string> {
    let etag: string | undefined;
    let failure: { error: unknown } | undefined;
    try {
      etag = (await send(upload.requestSignal)).etag ?? '';
    } catch (error) {
      failure = { error };
    }
    if (failure === undefined && !upload.signal.aborted) return etag ?? '';
    const own =
      failure === undefined
        ? etag
        : await this.ownEtag(upload, AbortSignal.timeout(CLEANUP_TIMEOUT_MS)).catch(() => null);
    if (upload.signal.aborted) {
      if (typeof own === 'string')
        await this.timed(AbortSignal.timeout(CLEANUP_TIMEOUT_MS), (abortSignal) =>
          upload.blob.deleteIfExists({ conditions: { ifMatch: own }, abortSignal }),
        ).catch(() => {});
      throw failure?.error ?? upload.signal.reason;
    }
    const { error } = failure!;
    if (typeof own === 'string') return own;
    if (
      upload.ifNoneMatch &&
      own === undefined &&
      (isConflict(error) || errorCodeOf(error) === 'InvalidBlockList')
    )
      throw new AlreadyExistsError(upload.key, { cause: error });
    throw error;
  }

  /**
   * The etag of the blob when this upload wrote it, `undefined` when another writer's blob is
   * there, `null` when there is no blob.
   */
  private async ownEtag(upload: Upload, signal = upload.signal): Promise<string | undefined | null> {
    try {
      const properties = await this.timed(signal, (abortSignal) =>
        upload.blob.getProperties({ abortSignal }),
      );
      return properties.metadata?.[UPLOAD_METADATA] === upload.id ? properties.etag : undefined;
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  }

  /**
   * Discards the blocks this upload staged. Azure has no call that deletes uncommitted blocks;
   * they vanish when the blob's block list is next committed, when the blob is deleted, or after
   * seven days. When no committed blob exists, an empty block list is committed with
   * `If-None-Match: *` (so a blob another writer published meanwhile is never touched) and the
   * resulting empty blob is deleted with `If-Match` on its etag. When a committed blob exists
   * (a failed overwrite, or a lost create race), it is left alone and Azure collects the blocks.
   * Best effort: runs even after an abort, bounded by a timeout, and never throws.
   */
  private async discardStaged(upload: Upload): Promise<void> {
    const abortSignal = AbortSignal.timeout(CLEANUP_TIMEOUT_MS);
    try {
      const { etag } = await this.timed(abortSignal, (signal) =>
        upload.blob.commitBlockList([], { conditions: { ifNoneMatch: '*' }, abortSignal: signal }),
      );
      await this.timed(abortSignal, (signal) =>
        upload.blob.delete({ conditions: { ifMatch: etag }, abortSignal: signal }),
      );
    } catch {
      // A committed blob is there (409/412), or Azure is unreachable: Azure collects the blocks.
    }
  }

  /**
   * Checks the committed blob against what was sent: its size, and the `Content-MD5` set at
   * commit. A blob another writer replaced meanwhile (412 on `If-Match`) is not ours to check.
   */
  private async verifyCommitted(upload: Upload, etag: string, size: number, md5: Buffer): Promise<void> {
    const abortSignal = AbortSignal.timeout(CLEANUP_TIMEOUT_MS);
    let properties: Awaited<ReturnType<BlockBlobClient['getProperties']>>;
    try {
      properties = await this.timed(abortSignal, (signal) =>
        upload.blob.getProperties({ conditions: { ifMatch: etag }, abortSignal: signal }),
      );
    } catch (error) {
      if (isConflict(error) || isNotFound(error)) return;
      throw error;
    }
    const storedMd5 = properties.contentMD5 === undefined ? undefined : Buffer.from(properties.contentMD5);
    if (properties.contentLength === size && storedMd5?.equals(md5)) return;
    await this.timed(abortSignal, (signal) =>
      upload.blob.deleteIfExists({ conditions: { ifMatch: etag }, abortSignal: signal }),
    ).catch(() => {});
    throw new IntegrityError(
      `Azure committed "${upload.key}" as ${properties.contentLength} bytes with MD5 ${storedMd5?.toString('base64')}, but ${size} bytes with MD5 ${md5.toString('base64')} were sent; the blob was deleted.`,
    );
  }

  /**
   * Opens an object for reading, from `range.start` (default 0) to `range.end` (exclusive,
   * default the end), with one ranged `Get Blob`. The request is made before this resolves, so a
   * missing object rejects here. The SDK resumes a dropped download from where it stopped (up
   * to 5 times, pinned to the blob's etag). A full read is checked against the blob's stored
   * `Content-MD5` and length: a mismatch or a short body throws `IntegrityError` at the end.
   *
   * @throws {ConfigError} When the key or range is invalid, or the container does not exist.
   * @throws {NotFoundError} When no object has this key.
   * @throws {AbortedError} When `signal` aborts, here or while reading.
   * @throws {StorageError} When Azure fails.
   * @example
   * for await (const chunk of await storage.get('big.bin', { range: { start: 1024 } })) hash.update(chunk);
   */
  async get(key: string, options: GetOptions = {}): Promise<ByteStream> {
    const { signal } = options;
    checkKey(key);
    const { start, end } = checkRange(options.range);
    throwIfAborted(signal);
    const blob = this.containerClient.getBlobClient(this.blobName(key));
    const empty = (async function* (): ByteStream {})();
    if (end !== undefined && end <= start) {
      if ((await this.stat(key, { signal })) === undefined) throw this.notFound(key);
      return empty;
    }
    let response: Awaited<ReturnType<typeof blob.download>>;
    // Runs until the body is read: every chunk restarts it.
    const deadline = this.deadline(signal);
    try {
      response = await blob.download(start, end === undefined ? undefined : end - start, {
        abortSignal: deadline.signal,
        maxRetryRequests: 5,
      });
    } catch (error) {
      deadline.done();
      // 416: the range starts at or past the end of an object that exists.
      if (failureOf(error).statusCode === 416) return empty;
      if (signal?.aborted) throw toAbortedError(signal);
      if (deadline.expired) throw deadline.error;
      throw this.toBkError(error, 'read', key);
    }
    const stream = response.readableStreamBody as Readable | undefined;
    if (stream === undefined) {
      deadline.done();
      return empty;
    }
    const fullRead = start === 0 && end === undefined;
    const storedMd5 = response.contentMD5 ?? response.blobContentMD5;
    return this.checkedBody(
      key,
      stream,
      response.contentLength ?? 0,
      fullRead ? storedMd5 : undefined,
      signal,
      deadline,
    );
  }

  private async *checkedBody(
    key: string,
    stream: Readable,
    length: number,
    md5: Uint8Array | undefined,
    signal: AbortSignal | undefined,
    deadline: ProgressDeadline,
  ): ByteStream {
    const hash = md5 === undefined ? undefined : createHash('md5');
    let received = 0;
    const onAbort = () => stream.destroy(toAbortedError(signal!));
    signal?.addEventListener('abort', onAbort, { once: true });
    const onStall = () => stream.destroy(deadline.error);
    deadline.signal.addEventListener('abort', onStall, { once: true });
    try {
      for await (const chunk of stream) {
        // Time spent by the consumer between chunks is not the server's.
        deadline.pause();
        const bytes = chunk as Buffer;
        hash?.update(bytes);
        received += bytes.byteLength;
        yield bytes;
        deadline.touch();
      }
    } catch (error) {
      if (signal?.aborted) throw toAbortedError(signal);
      if (deadline.expired) throw deadline.error;
      throw this.toBkError(error, 'read', key);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      deadline.signal.removeEventListener('abort', onStall);
      deadline.done();
      stream.destroy();
    }
    if (received !== length)
      throw new IntegrityError(
        `Reading "${key}" from ${this.description} ended after ${received} of ${length} bytes.`,
        {
          entry: key,
        },
      );
    if (hash !== undefined && md5 !== undefined && !hash.digest().equals(Buffer.from(md5)))
      throw new IntegrityError(`"${key}" in ${this.description} does not match its stored Content-MD5.`, {
        entry: key,
      });
  }

  /**
   * Size, modification time and etag of an object (one `Get Blob Properties`), or `undefined`
   * when there is none.
   *
   * @throws {ConfigError} When the key is invalid or the container does not exist.
   * @throws {AbortedError} When `signal` aborts.
   * @throws {StorageError} When Azure fails.
   * @example
   * const info = await storage.stat('nightly/backup_20261121_101500.tar.gz');
   */
  async stat(key: string, options: { signal?: AbortSignal } = {}): Promise<ObjectInfo | undefined> {
    const { signal } = options;
    checkKey(key);
    throwIfAborted(signal);
    try {
      const blob = this.containerClient.getBlobClient(this.blobName(key));
      const properties = await this.timed(signal, (abortSignal) => blob.getProperties({ abortSignal }));
      return {
        key,
        size: properties.contentLength ?? 0,
        lastModified: properties.lastModified,
        etag: properties.etag,
      };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      if (signal?.aborted) throw toAbortedError(signal);
      throw this.toBkError(error, 'stat', key);
    }
  }

  /**
   * Every object whose key starts with `prefix` (a plain string prefix), listed with
   * `List Blobs` 5,000 at a time. Blocks that were staged but never committed are not objects
   * and are not listed.
   *
   * @throws {ConfigError} When the container does not exist.
   * @throws {AbortedError} When `signal` aborts.
   * @throws {StorageError} When Azure fails.
   * @example
   * for await (const object of storage.list('nightly/')) console.log(object.key, object.size);
   */
  async *list(prefix: string, options: { signal?: AbortSignal } = {}): AsyncIterable<ObjectInfo> {
    const { signal } = options;
    throwIfAborted(signal);
    const root = this.prefix === '' ? '' : `${this.prefix}/`;
    // One deadline for the listing: it runs only while a page is being fetched.
    const deadline = this.deadline(signal);
    const pages = this.containerClient
      .listBlobsFlat({ prefix: root + prefix, abortSignal: deadline.signal })
      .byPage({ maxPageSize: 5_000 });
    try {
      for await (const page of pages) {
        deadline.pause();
        for (const item of page.segment.blobItems)
          yield {
            key: item.name.slice(root.length),
            size: item.properties.contentLength ?? 0,
            lastModified: item.properties.lastModified,
            etag: item.properties.etag,
          };
        deadline.touch();
      }
    } catch (error) {
      if (signal?.aborted) throw toAbortedError(signal);
      if (deadline.expired) throw deadline.error;
      throw this.toBkError(error, 'list', prefix);
    } finally {
      deadline.done();
    }
  }

  /**
   * Removes nothing: the uncommitted blocks a killed `put` staged cannot be listed by age, and
   * Azure discards them by itself after 7 days (they never become a blob). Returns a note that
   * says so, which `bk prune` prints.
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
        `${this.description}: Azure keeps the uncommitted blocks of an upload killed before its commit for up to 7 days and then discards them by itself; they cannot be listed by age, so nothing was removed here (they never become a blob).`,
      ],
    };
  }

  /**
   * Deletes an object and its snapshots. Deleting a missing object does nothing. With soft
   * delete or versioning on the account, Azure keeps what those settings say.
   *
   * @throws {ConfigError} When the key is invalid or the container does not exist.
   * @throws {AbortedError} When `signal` aborts.
   * @throws {StorageError} When Azure fails.
   * @example
   * await storage.delete('nightly/backup_20261121_101500.lock');
   */
  async delete(key: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    const { signal } = options;
    checkKey(key);
    throwIfAborted(signal);
    try {
      const blob = this.containerClient.getBlobClient(this.blobName(key));
      await this.timed(signal, (abortSignal) =>
        blob.deleteIfExists({ deleteSnapshots: 'include', abortSignal }),
      );
    } catch (error) {
      if (signal?.aborted) throw toAbortedError(signal);
      throw this.toBkError(error, 'delete', key);
    }
  }

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
   * Runs one SDK call under a progress deadline: `touch` is its progress callback. When the
   * deadline fires, the call's error is the deadline's (a retryable `StorageError` naming the
   * endpoint), which `toBkError` passes on unchanged.
   */
  private async timed<T>(
    signal: AbortSignal | undefined,
    run: (abortSignal: AbortSignal, touch: () => void) => Promise<T>,
  ): Promise<T> {
    const deadline = this.deadline(signal);
    try {
      return await run(deadline.signal, () => deadline.touch());
    } catch (error) {
      if (deadline.expired) throw deadline.error;
      throw error;
    } finally {
      deadline.done();
    }
  }

  private blobName(key: string): string {
    checkKey(key);
    const name = this.prefix === '' ? key : `${this.prefix}/${key}`;
    if (name.length > MAX_NAME_LENGTH)
      throw new ConfigError(
        `Invalid storage key "${key}": the blob name would exceed ${MAX_NAME_LENGTH} characters.`,
      );
    return name;
  }

  private firstBlockSize(sizeHint: number | undefined): number {
    if (sizeHint === undefined || !Number.isSafeInteger(sizeHint) || sizeHint <= 0) return this.blockSize;
    const needed = Math.ceil(sizeHint / MAX_BLOCKS / MIB) * MIB;
    return Math.min(Math.max(this.blockSize, needed), MAX_BLOCK_BYTES);
  }

  private async ensureContainer(signal: AbortSignal): Promise<void> {
    if (!this.createContainer) return;
    this.containerReady ??= this.timed(signal, (abortSignal) =>
      this.containerClient.createIfNotExists({ abortSignal }),
    )
      .then(() => {})
      .catch((error: unknown) => {
        this.containerReady = undefined;
        throw error;
      });
    await this.containerReady;
  }

  private notFound(key: string): NotFoundError {
    return new NotFoundError(`No object "${key}" in ${this.description}.`);
  }

  /** Maps an SDK or network error to a bk error whose message says what happened. */
  private toBkError(error: unknown, action: string, key: string): BkError {
    if (BkError.isInstance(error)) return error;
    const failure = failureOf(error);
    const code = errorCodeOf(error);
    const status = failure.statusCode;
    if (failure.name === 'AbortError') return new AbortedError(undefined, { cause: error });
    if (code === 'ContainerNotFound')
      return new ConfigError(
        `The container of ${this.description} does not exist; create it, or pass createContainer: true.`,
        { cause: error },
      );
    if (isNotFound(error) && action !== 'store')
      return new NotFoundError(`No object "${key}" in ${this.description}.`, { cause: error });
    if (isConflict(error) && action === 'store') return new AlreadyExistsError(key, { cause: error });
    const detail = `${status ?? failure.code ?? 'network error'}${code && code !== failure.code ? ` ${code}` : ''}: ${(failure.message ?? String(error)).split('\n')[0]}`;
    if (status === 403 || status === 401)
      return new StorageError(
        `Could not ${action} "${key}" in ${this.description}: access denied (${detail}); check the credentials and their permissions.`,
        { cause: error },
      );
    if (code === 'InvalidBlockList')
      return new StorageError(
        `Could not ${action} "${key}" in ${this.description}: Azure no longer had its staged blocks, most likely because another writer committed the same key meanwhile (${detail}).`,
        { cause: error, retryable: true },
      );
    const retryable =
      status === undefined
        ? NETWORK_CODES.has(failure.code ?? '')
        : status === 408 || status === 429 || status >= 500;
    return new StorageError(`Could not ${action} "${key}" in ${this.description} (${detail}).`, {
      cause: error,
      retryable,
    });
  }
}

/** What one `put` needs to know, passed between its steps. */
interface Upload {
  key: string;
  blob: BlockBlobClient;
  /** Random, 16 hex digits: names this put's blocks and marks its blob in the metadata. */
  id: string;
  ifNoneMatch: boolean;
  contentType: string | undefined;
  /** Aborted by the caller's signal or by a failing block: stops reading and staging. */
  signal: AbortSignal;
  /** Passed to Azure requests: aborted only once in-flight requests had time to drain. */
  requestSignal: AbortSignal;
  /** Aborts `signal`: a block failed, so the rest of the upload stops. */
  abort(reason: unknown): void;
}

/** The size of block `index` (from 0) when the first is `first` bytes: see `blockSize`. */
export function blockSizeAt(first: number, index: number): number {
  const step = Math.floor(index / BLOCKS_PER_SIZE);
  if (step === 0) return first;
  // Growth starts from at least 2 MiB, so any first block size reaches 5 TiB in 50,000 blocks.
  return Math.min(Math.max(first, 2 * MIB) * 2 ** step, MAX_BLOCK_BYTES);
}
