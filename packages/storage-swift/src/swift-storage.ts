import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
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
  fetchWithDeadline,
  type GetOptions,
  type IncompleteUpload,
  NotFoundError,
  type ObjectInfo,
  type PutOptions,
  type Storage,
  type StorageCapabilities,
  StorageError,
  throwIfAborted,
  toAbortedError,
} from '@bk/core';
import type { SwiftAuth } from './swift-auth.ts';
import { isRetryableStatus, SwiftClient, type SwiftRequest, statusError } from './swift-client.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** Default segment size of a Static Large Object. */
const DEFAULT_SEGMENT_BYTES = 64 * MiB;
/** Swift's default `max_file_size`: no single object (so no segment) may be larger. */
const MAX_SEGMENT_BYTES = 5 * GiB;
/** Swift's default `max_manifest_segments`: entries in one SLO manifest. */
const MAX_MANIFEST_ENTRIES = 1000;
/** Swift's default `max_object_name_length`. */
const MAX_OBJECT_NAME_BYTES = 1024;
const DEFAULT_CONCURRENCY = 4;
const DEFAULT_RETRIES = 4;
/** User metadata that marks which upload wrote an object, to resolve an ambiguous publish. */
const UPLOAD_HEADER = 'X-Object-Meta-Bk-Upload';
/**
 * A segment or sub-manifest bk wrote: `<object>/<uploadId>/<8-digit index>` or
 * `<object>/<uploadId>/manifest-NNNNNN`, the upload id being a base-36 time, `-` and 12 hex digits.
 */
const SEGMENT_NAME = /^(.+)\/([0-9a-z]{1,12}-[0-9a-f]{12})\/(?:\d{8}|manifest-\d{6})$/s;
/** Segments deleted per batch while a listing goes on. */
const DELETE_BATCH = 1000;
/** Finds the backup date in a key for the daily layout. */
const BACKUP_DATE = /(?:^|\/)backup_(\d{4})(\d{2})(\d{2})_\d{6}/;
const LIST_PAGE = 1000;

/** Options of {@link SwiftStorage}. */
export interface SwiftStorageOptions {
  /** The container that holds the objects (with the daily layout: the first part of each day's container name). */
  container: string;
  /** A `/`-separated prefix put before every key inside the container. */
  prefix?: string;
  /** How to authenticate; see {@link SwiftAuth}. */
  auth: SwiftAuth;
  /**
   * Bodies larger than this are uploaded as a Static Large Object in segments of this size.
   * Default 64 MiB. Beyond 1,000 segments (Swift's manifest limit) the SLO is nested: groups of
   * 1,000 segments become sub-manifests, and the object's manifest lists up to 1,000 of them, so
   * an object may have 1,000,000 segments (61 TiB at 64 MiB). Only when `sizeHint` says that is
   * not enough does the segment grow, to `ceil(sizeHint / 1,000,000)`, up to 5 GiB.
   * Memory: a put holds at most `concurrency × segmentSize` bytes of the body in flight, plus the
   * segment being read (320 MiB by default); each is sent without a further copy.
   */
  segmentSize?: number;
  /** Segments uploaded in parallel; default 4. See `segmentSize` for the memory it costs. */
  concurrency?: number;
  /**
   * `flat` (default): every key in `container`. `daily`: a key whose name holds a backup date
   * (`backup_YYYYMMDD_HHMMSS…`) goes to the container `<container>-YYYY-MM-DD`, other keys stay
   * in `container`; `list` spans `container` and every `<container>-YYYY-MM-DD`.
   */
  layout?: 'flat' | 'daily';
  /** Create missing containers (the object's and its `_segments` one) on `put`; default `true`. */
  createContainer?: boolean;
  /** How often an idempotent request is repeated after a 5xx, 429 or a connection reset; default 4. */
  retries?: number;
  /**
   * After a create-if-absent PUT succeeds, wait this long, then confirm with a HEAD that the
   * object is still ours; default 250 ms. Swift checks `If-None-Match: *` before it stores the
   * body, so two overlapping creates can both get 201: the later one's data is kept, and this
   * check makes the other report `AlreadyExistsError`. Overlaps longer than the wait remain
   * possible (see the README).
   */
  createSettleMs?: number;
  /** The `fetch` to use; default the global one. Tests inject faults through it. */
  fetch?: typeof fetch;
  /**
   * Milliseconds a request (the login included) may go without a byte moving — waiting for the
   * answer, sending a segment, or mid-way through a download — before the attempt fails with a
   * retryable `StorageError` naming the endpoint (idempotent requests are retried). Default
   * 60,000; `0` waits for ever.
   */
  requestTimeout?: number;
  /**
   * @internal Segments per sub-manifest once an upload needs more than this many segments
   * (2–1000, default 1000 = Swift's `max_manifest_segments`). Tests lower it to exercise nesting.
   */
  segmentsPerManifest?: number;
}

/** Where one key lives. */
interface Location {
  key: string;
  container: string;
  /** The object name inside the container (prefix included, not encoded). */
  object: string;
  /** The hidden container that holds this object's SLO segments. */
  segments: string;
}

/** An entry of a stored SLO manifest, as `?multipart-manifest=get` returns it. */
interface ManifestEntry {
  /** `/container/object`. */
  path: string;
  /** A sub-manifest (an SLO itself) rather than a plain segment. */
  subSlo: boolean;
}

/** One entry of an SLO manifest: a segment, or a sub-manifest with its SLO ETag and total size. */
interface SegmentRecord {
  path: string;
  etag: string;
  size: number;
}

/** The manifest JSON of `records` and its SLO ETag: the md5 of the entries' ETags, concatenated. */
function sloManifest(records: SegmentRecord[]): { body: string; etag: string; size: number } {
  return {
    body: JSON.stringify(
      records.map((record) => ({ path: record.path, etag: record.etag, size_bytes: record.size })),
    ),
    etag: md5Hex(records.map((record) => record.etag).join('')),
    size: records.reduce((sum, record) => sum + record.size, 0),
  };
}

function md5Hex(bytes: Uint8Array | string): string {
  return createHash('md5').update(bytes).digest('hex');
}

function unquote(etag: string | null): string | undefined {
  return etag === null ? undefined : etag.replace(/^"|"$/g, '');
}

function encodePath(container: string, object?: string): string {
  const head = `/${encodeURIComponent(container)}`;
  return object === undefined ? head : `${head}/${object.split('/').map(encodeURIComponent).join('/')}`;
}

function checkContainer(container: string): void {
  if (typeof container !== 'string' || container === '' || container.includes('/') || container.length > 200)
    throw new ConfigError(`Invalid Swift container "${container}": it must be 1–200 characters without "/".`);
}

function pad(index: number): string {
  return String(index).padStart(8, '0');
}

/** The name (after the upload's segment prefix) of the sub-manifest of segment group `index`. */
function subManifestName(index: number): string {
  return `manifest-${String(index).padStart(6, '0')}`;
}

function isRetryable(error: unknown): boolean {
  return BkError.isInstance(error) && error.retryable;
}

/**
 * A storage in an OpenStack Swift container, over Swift's REST API with the global `fetch`.
 *
 * A body that fits in one segment is stored with one `PUT` (its md5 sent as `ETag`, checked by
 * Swift). A larger one becomes a Static Large Object: its segments go to the hidden container
 * `<container>_segments` under `<object>/<uploadId>/<index>`, uploaded by `concurrency` workers
 * (beyond 1,000 segments, grouped into sub-manifests there: a nested SLO of up to 1,000,000
 * segments), then one manifest `PUT` publishes the whole object at once. Create-if-absent sends
 * `If-None-Match: *`. On any error or abort every uploaded segment is deleted and no object
 * appears. Idempotent requests are retried with exponential backoff and jitter.
 *
 * @example
 * const storage = new SwiftStorage({
 *   container: 'backups',
 *   prefix: 'nightly',
 *   auth: { kind: 'v1', authUrl: 'https://swift.example.com/auth/v1.0', user: 'acct:ops', key: process.env.SWIFT_KEY! },
 * });
 * await storage.put('backup_20261121_101500.tar.gz', archive, { ifNoneMatch: true });
 */
export class SwiftStorage implements Storage {
  /** `swift://<container>/<prefix>`, plus `?layout=daily` for that layout; never credentials. */
  readonly description: string;
  /** Atomic publish (one PUT or one manifest PUT), `If-None-Match: *`, `Range`, parallel SLO segments. */
  readonly capabilities: StorageCapabilities = {
    atomicPublish: true,
    conditionalCreate: true,
    rangeRead: true,
    multipart: true,
  };
  readonly container: string;
  /** The prefix with a trailing `/`, or `''`. */
  readonly prefix: string;
  readonly layout: 'flat' | 'daily';
  private readonly segmentSize: number;
  private readonly segmentsPerManifest: number;
  private readonly concurrency: number;
  private readonly createContainer: boolean;
  private readonly createSettleMs: number;
  private readonly client: SwiftClient;
  private readonly ensured = new Map<string, Promise<void>>();

  /**
   * @throws {ConfigError} When the container, prefix, segment size or concurrency is invalid.
   */
  constructor(options: SwiftStorageOptions) {
    checkContainer(options.container);
    const prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    if (prefix !== '') checkStorageKey(prefix);
    const segmentSize = options.segmentSize ?? DEFAULT_SEGMENT_BYTES;
    if (!Number.isSafeInteger(segmentSize) || segmentSize < 1 || segmentSize > MAX_SEGMENT_BYTES)
      throw new ConfigError(`Invalid segmentSize ${segmentSize}: use 1 byte to 5 GiB.`);
    const segmentsPerManifest = options.segmentsPerManifest ?? MAX_MANIFEST_ENTRIES;
    if (
      !Number.isSafeInteger(segmentsPerManifest) ||
      segmentsPerManifest < 2 ||
      segmentsPerManifest > MAX_MANIFEST_ENTRIES
    )
      throw new ConfigError(
        `Invalid segmentsPerManifest ${segmentsPerManifest}: use 2 to ${MAX_MANIFEST_ENTRIES}.`,
      );
    const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
    if (!Number.isSafeInteger(concurrency) || concurrency < 1)
      throw new ConfigError(`Invalid concurrency ${concurrency}: use a positive integer.`);
    const layout = options.layout ?? 'flat';
    if (layout !== 'flat' && layout !== 'daily')
      throw new ConfigError(`Invalid layout "${String(layout)}": use "flat" or "daily".`);
    this.container = options.container;
    this.prefix = prefix === '' ? '' : `${prefix}/`;
    this.layout = layout;
    this.segmentSize = segmentSize;
    this.segmentsPerManifest = segmentsPerManifest;
    this.concurrency = concurrency;
    this.createContainer = options.createContainer ?? true;
    this.createSettleMs = options.createSettleMs ?? 250;
    const requestTimeout = options.requestTimeout ?? DEFAULT_REQUEST_TIMEOUT_MS;
    if (!Number.isSafeInteger(requestTimeout) || requestTimeout < 0)
      throw new ConfigError(`Invalid requestTimeout ${requestTimeout}: use milliseconds, 0 or more.`);
    this.client = new SwiftClient(
      options.auth,
      fetchWithDeadline(options.fetch ?? fetch, { idleMs: requestTimeout }),
      options.retries ?? DEFAULT_RETRIES,
    );
    this.description =
      `swift://${encodeURIComponent(this.container)}/${prefix}` + (layout === 'daily' ? '?layout=daily' : '');
  }

  /** Where `key` lives: its container (by layout), object name and segments container. */
  private locate(key: string): Location {
    checkStorageKey(key);
    const object = this.prefix + key;
    if (Buffer.byteLength(object) > MAX_OBJECT_NAME_BYTES - 40)
      throw new ConfigError(`Invalid storage key "${key}": with the prefix it is longer than Swift allows.`);
    let container = this.container;
    const date = this.layout === 'daily' ? BACKUP_DATE.exec(key) : null;
    if (date) container = `${this.container}-${date[1]}-${date[2]}-${date[3]}`;
    return { key, container, object, segments: `${container}_segments` };
  }

  /**
   * The most segments one object may have: the object's manifest lists up to 1,000 sub-manifests
   * of `segmentsPerManifest` segments each (one level of nesting; Swift allows ten).
   */
  private get maxSegments(): number {
    return this.segmentsPerManifest * MAX_MANIFEST_ENTRIES;
  }

  /** The segment size for a body of `sizeHint` bytes. */
  private segmentSizeFor(sizeHint: number | undefined): number {
    const maxSegments = this.maxSegments;
    if (sizeHint === undefined || sizeHint <= this.segmentSize * maxSegments) return this.segmentSize;
    const needed = Math.ceil(sizeHint / maxSegments / MiB) * MiB;
    if (needed > MAX_SEGMENT_BYTES)
      throw new ConfigError(
        `A body of ${sizeHint} bytes is larger than ${maxSegments} segments of 5 GiB, the most one object can have.`,
      );
    return needed;
  }

  private async send(request: SwiftRequest, describe: string): Promise<Response> {
    return this.client.send(request, describe);
  }

  /** Creates `container` once per storage instance (PUT on a container is idempotent). */
  private async ensureContainer(container: string, signal: AbortSignal | undefined): Promise<void> {
    if (!this.createContainer) return;
    let pending = this.ensured.get(container);
    if (!pending) {
      pending = (async () => {
        const describe = `create container "${container}"`;
        const response = await this.send(
          { method: 'PUT', path: encodePath(container), idempotent: true, signal },
          describe,
        );
        // 403: a user that may write objects but not create containers (a write ACL); the
        // container exists or the object PUT says so.
        if (!response.ok && response.status !== 403) throw await statusError(describe, response);
        await response.body?.cancel();
      })();
      this.ensured.set(container, pending);
      pending.catch(() => this.ensured.delete(container));
    }
    await pending;
  }

  /** `HEAD` of an object: its response when it exists, `undefined` on 404. */
  private async head(location: Location, signal: AbortSignal | undefined): Promise<Response | undefined> {
    const response = await this.headOrDenied(location, signal);
    if (response === 'denied')
      throw new StorageError(
        `Could not stat "${location.key}" in ${this.description}: HTTP 403 (access denied); check the credentials and the container's read ACL.`,
      );
    return response;
  }

  /**
   * `HEAD` of an object, or `'denied'` (403) when the credentials may not read it: a user whose
   * container ACL grants writes only, for whom `put` works without the checks that need a read.
   */
  private async headOrDenied(
    location: Location,
    signal: AbortSignal | undefined,
  ): Promise<Response | undefined | 'denied'> {
    const describe = `stat "${location.key}" in ${this.description}`;
    const response = await this.send(
      { method: 'HEAD', path: encodePath(location.container, location.object), idempotent: true, signal },
      describe,
    );
    if (response.status === 404) return undefined;
    if (response.status === 403) {
      await response.body?.cancel();
      return 'denied';
    }
    if (!response.ok) throw await statusError(describe, response);
    return response;
  }

  /**
   * Stores `body` under `key`. A body up to one segment is one `PUT`; a larger one is an SLO
   * (segments in parallel, then the manifest). Overwriting an SLO deletes its old segments once
   * the new object is published.
   *
   * @throws {ConfigError} When the key is invalid or `sizeHint` exceeds Swift's limits.
   * @throws {AlreadyExistsError} When `ifNoneMatch` is set and the key exists.
   * @throws {AbortedError} When `signal` aborts.
   * @throws {StorageError} When Swift fails or a returned ETag does not match what was sent; the
   *   body's own error is rethrown unchanged. In every case no new object and no segment is left.
   * @example
   * await storage.put('backup_20261121_101500.tar.gz', stream, { ifNoneMatch: true, sizeHint });
   */
  async put(key: string, body: ByteStream | Uint8Array, options: PutOptions = {}): Promise<ObjectInfo> {
    const { ifNoneMatch = false } = options;
    const stop = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
    const reader = new BodyReader(body, signal);
    try {
      const location = this.locate(key);
      throwIfAborted(options.signal);
      const segmentSize = this.segmentSizeFor(options.sizeHint);
      // Fail fast, before the body is read: a taken name costs no bytes. Write-only
      // credentials cannot look: `If-None-Match: *` on the PUT still refuses a taken name, and
      // the segments of an SLO this put replaces (unreadable too) are left for `cleanupIncomplete`.
      const found = await this.headOrDenied(location, signal);
      const previous = found === 'denied' ? undefined : found;
      if (previous && ifNoneMatch) throw new AlreadyExistsError(key);
      const oldSegments =
        previous?.headers.get('x-static-large-object')?.toLowerCase() === 'true'
          ? await this.manifestSegments(location, signal)
          : [];
      await this.ensureContainer(location.container, signal);
      // Handed over in an array, not held here: putLarge drops it once it is sent.
      const first = [await reader.read(segmentSize)];
      const info = (await reader.hasMore())
        ? await this.putLarge(location, first, reader, segmentSize, options, signal, stop)
        : await this.putSingle(location, first[0]!, options, signal);
      await this.deleteOldSegments(oldSegments);
      return info;
    } catch (error) {
      if (options.signal?.aborted) throw toAbortedError(options.signal);
      throw error;
    } finally {
      stop.abort();
      await reader.release();
    }
  }

  private publishHeaders(options: PutOptions, uploadId: string): Record<string, string> {
    return {
      'Content-Type': options.contentType ?? 'application/octet-stream',
      [UPLOAD_HEADER]: uploadId,
      ...(options.ifNoneMatch ? { 'If-None-Match': '*' } : {}),
    };
  }

  private async putSingle(
    location: Location,
    bytes: Uint8Array,
    options: PutOptions,
    signal: AbortSignal,
  ): Promise<ObjectInfo> {
    const uploadId = randomBytes(12).toString('hex');
    const etag = md5Hex(bytes);
    const lastModified = await this.publish(
      location,
      {
        method: 'PUT',
        path: encodePath(location.container, location.object),
        idempotent: false,
        signal,
        body: bytes,
      },
      { ...this.publishHeaders(options, uploadId), ETag: etag },
      etag,
      uploadId,
      options.ifNoneMatch ?? false,
    );
    return { key: location.key, size: bytes.byteLength, etag, lastModified };
  }

  /**
   * Sends the final PUT (a plain object or an SLO manifest) and checks the returned ETag. An
   * ambiguous failure (connection lost, 5xx) is never replayed blindly: a HEAD first tells
   * whether the object that landed is ours (our upload id), someone else's, or none.
   */
  private async publish(
    location: Location,
    request: SwiftRequest,
    headers: Record<string, string>,
    expectedEtag: string,
    uploadId: string,
    ifNoneMatch: boolean,
    query?: Record<string, string>,
  ): Promise<Date | undefined> {
    const describe = `store "${location.key}" in ${this.description}`;
    const { signal } = request;
    const check = (etag: string | undefined, lastModified: string | null): Date | undefined => {
      if (etag !== expectedEtag)
        throw new StorageError(
          `Could not ${describe}: Swift reports ETag ${etag ?? '(none)'} but ${expectedEtag} was sent.`,
        );
      return lastModified ? new Date(lastModified) : undefined;
    };
    for (let attempt = 0; ; attempt += 1) {
      let failure: unknown;
      try {
        const response = await this.send({ ...request, headers, ...(query ? { query } : {}) }, describe);
        if (response.status === 201) {
          await response.body?.cancel();
          let lastModified: Date | undefined;
          try {
            lastModified = check(
              unquote(response.headers.get('etag')),
              response.headers.get('last-modified'),
            );
          } catch (error) {
            await this.removePublished(location);
            throw error;
          }
          if (ifNoneMatch) await this.confirmCreated(location, uploadId, signal);
          return lastModified;
        }
        // 409: an object with a newer timestamp is already there.
        if ((response.status === 412 || response.status === 409) && ifNoneMatch) {
          await response.body?.cancel();
          throw new AlreadyExistsError(location.key);
        }
        if (response.status === 404)
          throw new StorageError(
            `Could not ${describe}: the container "${location.container}" does not exist${this.createContainer ? ' (it was deleted meanwhile)' : ' and createContainer is false'}.`,
          );
        // 422: Swift computed another md5 than the ETag sent, so nothing was stored.
        if (!isRetryableStatus(response.status) && response.status !== 422)
          throw await statusError(describe, response);
        failure = await statusError(describe, response);
      } catch (error) {
        if (!isRetryable(error) || signal?.aborted) throw error;
        failure = error;
      }
      const landed = await this.head(location, signal);
      if (landed && landed.headers.get(UPLOAD_HEADER.toLowerCase()) === uploadId)
        return check(unquote(landed.headers.get('etag')), landed.headers.get('last-modified'));
      if (landed && ifNoneMatch) throw new AlreadyExistsError(location.key);
      if (attempt >= this.client.maxRetries) throw failure;
      await this.client.backoff(attempt, signal);
    }
  }

  /**
   * Confirms that a create-if-absent PUT still owns the key once overlapping creates have had
   * time to land: Swift keeps the newest write, so a writer whose upload id is not the current
   * one lost the race, and its object is already gone.
   */
  private async confirmCreated(
    location: Location,
    uploadId: string,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    if (this.createSettleMs > 0)
      await sleep(this.createSettleMs, undefined, { signal }).catch(() => throwIfAborted(signal));
    const current = await this.headOrDenied(location, signal);
    // Write-only credentials: the 201 of a PUT with `If-None-Match: *` is all there is to go by.
    if (current === 'denied') return;
    const owner = current?.headers.get(UPLOAD_HEADER.toLowerCase());
    if (owner !== undefined && owner !== null && owner !== uploadId)
      throw new AlreadyExistsError(location.key);
  }

  /** Deletes an object this put just published but could not confirm (an ETag mismatch). */
  private async removePublished(location: Location): Promise<void> {
    await this.deleteLocation(location, AbortSignal.timeout(60_000)).catch(() => {});
  }

  /**
   * Uploads the body as an SLO. Up to `segmentsPerManifest` (G) segments: one manifest lists
   * them. Beyond that the SLO is nested: each group of G segments is published as a sub-manifest
   * `<segmentPrefix>manifest-NNNNNN` in the segments container as soon as it is complete (so only
   * the records of unfinished groups are kept), the trailing group at the end, and the object's
   * manifest lists the sub-manifests, each with its own SLO ETag and total size.
   */
  private async putLarge(
    location: Location,
    first: Uint8Array[],
    reader: BodyReader,
    segmentSize: number,
    options: PutOptions,
    signal: AbortSignal,
    stop: AbortController,
  ): Promise<ObjectInfo> {
    const uploadId = `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
    const segmentPrefix = `${location.object}/${uploadId}/`;
    const group = this.segmentsPerManifest;
    const maxSegments = this.maxSegments;
    // Segments uploaded but not yet in a published sub-manifest, by index.
    const records = new Map<number, SegmentRecord>();
    // Published sub-manifests, by group.
    const subManifests: SegmentRecord[] = [];
    const finished = new Map<number, number>();
    // Full groups not yet published because nesting was not yet known to be needed.
    const waiting: number[] = [];
    // Segments 0 … taken - 1 have been handed to a worker (their PUT may have started).
    let taken = 0;
    let size = 0;
    try {
      await this.ensureContainer(location.segments, signal);
      let pendingFirst: Uint8Array | undefined = first.shift();
      const readNext = async (): Promise<{ index: number; bytes: Uint8Array } | undefined> => {
        let bytes: Uint8Array;
        if (pendingFirst) {
          bytes = pendingFirst;
          pendingFirst = undefined;
        } else {
          throwIfAborted(signal);
          bytes = await reader.read(segmentSize);
          if (bytes.byteLength === 0) return undefined;
        }
        if (taken >= maxSegments)
          throw new StorageError(
            `Could not store "${location.key}" in ${this.description}: it needs more than ${maxSegments} segments of ${segmentSize} bytes; pass sizeHint or raise segmentSize.`,
          );
        size += bytes.byteLength;
        return { index: taken++, bytes };
      };
      // Workers pull from one reader; reads are serialised so segments keep their order.
      let lock: Promise<unknown> = Promise.resolve();
      const take = () => {
        const next = lock.then(readNext);
        // Settles to nothing, so the chain does not keep the last segment alive.
        lock = next.then(
          () => {},
          () => {},
        );
        return next;
      };
      const publishGroup = async (index: number, count: number): Promise<void> => {
        const entries: SegmentRecord[] = [];
        for (let segment = index * group; segment < index * group + count; segment += 1)
          entries.push(records.get(segment)!);
        subManifests[index] = await this.putSubManifest(location, segmentPrefix, index, entries, signal);
        for (let segment = index * group; segment < index * group + count; segment += 1)
          records.delete(segment);
      };
      const worker = async (): Promise<void> => {
        try {
          for (let segment = await take(); segment; segment = await take()) {
            records.set(segment.index, await this.putSegment(location, segmentPrefix, segment, signal));
            if (Buffer.isBuffer(segment.bytes)) reader.recycle(segment.bytes);
            const index = Math.floor(segment.index / group);
            const done = (finished.get(index) ?? 0) + 1;
            finished.set(index, done);
            if (done === group) {
              finished.delete(index);
              waiting.push(index);
            }
            // Full groups are published as soon as the object is known to need nesting (a
            // segment past the first group was read); a body of at most one group never nests.
            if (taken > group) for (const ready of waiting.splice(0)) await publishGroup(ready, group);
          }
        } catch (error) {
          if (!stop.signal.aborted) stop.abort(error);
          throw error;
        }
      };
      const results = await Promise.allSettled(Array.from({ length: this.concurrency }, worker));
      if (results.some((result) => result.status === 'rejected')) throw stop.signal.reason;

      let entries: SegmentRecord[];
      if (taken <= group) {
        entries = Array.from({ length: taken }, (_, index) => records.get(index)!);
      } else {
        const groups = Math.ceil(taken / group);
        for (let index = 0; index < groups; index += 1)
          if (!subManifests[index]) await publishGroup(index, Math.min(group, taken - index * group));
        entries = subManifests;
      }
      const manifest = sloManifest(entries);
      const lastModified = await this.publish(
        location,
        {
          method: 'PUT',
          path: encodePath(location.container, location.object),
          idempotent: false,
          signal,
          body: manifest.body,
        },
        this.publishHeaders(options, uploadId),
        manifest.etag,
        uploadId,
        options.ifNoneMatch ?? false,
        { 'multipart-manifest': 'put' },
      );
      return { key: location.key, size, etag: manifest.etag, lastModified };
    } catch (error) {
      await this.cleanUpUpload(location, segmentPrefix, taken, taken > group ? Math.ceil(taken / group) : 0);
      throw error;
    }
  }

  /**
   * Publishes one group of segments as a sub-manifest in the segments container and checks its
   * SLO ETag (Swift also checks the `ETag` sent, 422 on a mismatch). Its entry in the object's
   * manifest carries that ETag and the group's total size, as Swift's SLO rule requires.
   */
  private async putSubManifest(
    location: Location,
    segmentPrefix: string,
    index: number,
    entries: SegmentRecord[],
    signal: AbortSignal,
  ): Promise<SegmentRecord> {
    const name = segmentPrefix + subManifestName(index);
    const manifest = sloManifest(entries);
    const describe = `upload sub-manifest ${index} of "${location.key}" to ${this.description}`;
    const response = await this.send(
      {
        method: 'PUT',
        path: encodePath(location.segments, name),
        query: { 'multipart-manifest': 'put' },
        headers: { ETag: manifest.etag, 'Content-Type': 'application/octet-stream' },
        body: manifest.body,
        // The same manifest under the same name: repeating it is harmless.
        idempotent: true,
        signal,
      },
      describe,
    );
    if (response.status !== 201) throw await statusError(describe, response);
    await response.body?.cancel();
    const returned = unquote(response.headers.get('etag'));
    if (returned !== manifest.etag)
      throw new StorageError(
        `Could not ${describe}: Swift reports ETag ${returned} but the SLO ETag is ${manifest.etag}.`,
      );
    return { path: `/${location.segments}/${name}`, etag: manifest.etag, size: manifest.size };
  }

  private async putSegment(
    location: Location,
    segmentPrefix: string,
    segment: { index: number; bytes: Uint8Array },
    signal: AbortSignal,
  ): Promise<SegmentRecord> {
    const name = segmentPrefix + pad(segment.index);
    const etag = md5Hex(segment.bytes);
    const describe = `upload segment ${segment.index} of "${location.key}" to ${this.description}`;
    for (let attempt = 0; ; attempt += 1) {
      const response = await this.send(
        {
          method: 'PUT',
          path: encodePath(location.segments, name),
          headers: { ETag: etag, 'Content-Type': 'application/octet-stream' },
          body: segment.bytes,
          idempotent: true,
          signal,
        },
        describe,
      );
      // 422: the bytes Swift received do not match the md5 sent; send them again.
      if (response.status === 422 && attempt < this.client.maxRetries) {
        await response.body?.cancel();
        await this.client.backoff(attempt, signal);
        continue;
      }
      if (response.status !== 201) throw await statusError(describe, response);
      await response.body?.cancel();
      const returned = unquote(response.headers.get('etag'));
      if (returned !== etag)
        throw new StorageError(`Could not ${describe}: Swift reports ETag ${returned} but ${etag} was sent.`);
      return { path: `/${location.segments}/${name}`, etag, size: segment.bytes.byteLength };
    }
  }

  /**
   * Deletes every segment and sub-manifest of a failed upload: the sub-manifests it may have
   * written and the segments it started (an aborted PUT may still have landed), then whatever a
   * listing of the upload's prefix still shows. Runs even after an abort, with its own time
   * limit; failures here are not reported over the upload's error.
   */
  private async cleanUpUpload(
    location: Location,
    segmentPrefix: string,
    segments: number,
    subManifests: number,
  ): Promise<void> {
    const signal = AbortSignal.timeout(120_000);
    const base = `/${location.segments}/${segmentPrefix}`;
    // Plain DELETEs: a sub-manifest goes alone, its segments are on the list anyway.
    await this.deleteEach(
      subManifests + segments,
      (index) => base + (index < subManifests ? subManifestName(index) : pad(index - subManifests)),
      signal,
    ).catch(() => {});
    try {
      const leftovers: string[] = [];
      for await (const item of this.listContainer(location.segments, segmentPrefix, signal))
        leftovers.push(`/${location.segments}/${item.name}`);
      await this.deleteSegments(leftovers, signal);
    } catch {}
  }

  /** Deletes segments given as `/container/object` paths, `concurrency` at a time; 404 is fine. */
  private async deleteSegments(paths: string[], signal?: AbortSignal): Promise<void> {
    await this.deleteEach(paths.length, (index) => paths[index]!, signal);
  }

  /** Deletes `count` objects named by `pathAt` (`/container/object`), without a list of them all. */
  private async deleteEach(
    count: number,
    pathAt: (index: number) => string,
    signal?: AbortSignal,
  ): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < count) {
        const path = pathAt(next++);
        const [, container = '', ...rest] = path.split('/');
        const describe = `delete segment ${path} in ${this.description}`;
        const response = await this.send(
          { method: 'DELETE', path: encodePath(container, rest.join('/')), idempotent: true, signal },
          describe,
        );
        if (!response.ok && response.status !== 404) throw await statusError(describe, response);
        await response.body?.cancel();
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, count) }, worker));
  }

  /**
   * Deletes an overwritten SLO's entries: plain segments with a plain `DELETE`, sub-manifests
   * with `?multipart-manifest=delete` so their own segments go with them.
   */
  private async deleteOldSegments(entries: ManifestEntry[]): Promise<void> {
    await this.deleteSegments(entries.filter((entry) => !entry.subSlo).map((entry) => entry.path));
    for (const entry of entries.filter((entry) => entry.subSlo)) {
      const [, container = '', ...rest] = entry.path.split('/');
      await this.deleteSlo(
        container,
        rest.join('/'),
        `delete sub-manifest ${entry.path} in ${this.description}`,
      );
    }
  }

  /** The entries (`/container/object` paths) of an SLO manifest; sub-manifests are marked. */
  private async manifestSegments(
    location: Location,
    signal: AbortSignal | undefined,
  ): Promise<ManifestEntry[]> {
    const describe = `read the manifest of "${location.key}" in ${this.description}`;
    const response = await this.send(
      {
        method: 'GET',
        path: encodePath(location.container, location.object),
        query: { 'multipart-manifest': 'get' },
        idempotent: true,
        signal,
      },
      describe,
    );
    if (response.status === 404) return [];
    if (!response.ok) throw await statusError(describe, response);
    const segments = (await response.json()) as Array<{ name?: string; sub_slo?: boolean }>;
    return segments.flatMap((segment) =>
      typeof segment.name === 'string' ? [{ path: segment.name, subSlo: segment.sub_slo === true }] : [],
    );
  }

  /**
   * Opens an object for reading, from `range.start` (default 0) to `range.end` (exclusive,
   * default the end), with a `Range` request. A whole non-SLO object is checked against its md5
   * ETag as it is read; every read is checked against `Content-Length`.
   *
   * @throws {ConfigError} When the key or range is invalid.
   * @throws {NotFoundError} When no object has this key.
   * @throws {AbortedError} When `signal` aborts.
   * @throws {StorageError} When Swift fails (the stream itself throws one when the body is cut short).
   * @example
   * for await (const chunk of await storage.get('backup_20261121_101500.tar.gz', { range: { start: 512 } })) use(chunk);
   */
  async get(key: string, options: GetOptions = {}): Promise<ByteStream> {
    const { signal } = options;
    const location = this.locate(key);
    const { start, end } = checkRange(options.range);
    throwIfAborted(signal);
    const notFound = () => new NotFoundError(`No object "${key}" in ${this.description}.`);
    if (end !== undefined && end <= start) {
      if (!(await this.head(location, signal))) throw notFound();
      return (async function* () {})();
    }
    const ranged = start > 0 || end !== undefined;
    const describe = `read "${key}" from ${this.description}`;
    const response = await this.send(
      {
        method: 'GET',
        path: encodePath(location.container, location.object),
        headers: ranged ? { Range: `bytes=${start}-${end === undefined ? '' : end - 1}` } : {},
        idempotent: true,
        signal,
      },
      describe,
    );
    if (response.status === 404) {
      await response.body?.cancel();
      throw notFound();
    }
    // The range starts past the end: the object exists, the slice is empty.
    if (response.status === 416) {
      await response.body?.cancel();
      return (async function* () {})();
    }
    if (response.status !== 200 && response.status !== 206) throw await statusError(describe, response);
    const etag = unquote(response.headers.get('etag'));
    const verifyMd5 =
      !ranged && response.headers.get('x-static-large-object') === null && /^[0-9a-f]{32}$/.test(etag ?? '');
    const length = response.headers.get('content-length');
    return readBody(response, {
      describe,
      expectedBytes: length === null ? undefined : Number(length),
      expectedMd5: verifyMd5 ? etag : undefined,
      signal,
    });
  }

  /**
   * Size, modification time and ETag of an object (`HEAD`), or `undefined` when there is none.
   * For an SLO the size is the whole object's and the ETag the SLO ETag (md5 of segment md5s).
   *
   * @throws {ConfigError} When the key is invalid.
   * @throws {StorageError} When Swift fails.
   * @example
   * const info = await storage.stat('backup_20261121_101500.manifest.json');
   */
  async stat(key: string, options: { signal?: AbortSignal } = {}): Promise<ObjectInfo | undefined> {
    const location = this.locate(key);
    throwIfAborted(options.signal);
    const response = await this.head(location, options.signal);
    if (!response) return undefined;
    const lastModified = response.headers.get('last-modified');
    const etag = unquote(response.headers.get('etag'));
    return {
      key,
      size: Number(response.headers.get('content-length') ?? 0),
      ...(lastModified ? { lastModified: new Date(lastModified) } : {}),
      ...(etag ? { etag } : {}),
    };
  }

  /**
   * Every object whose key starts with `prefix` (a plain string prefix), paging through the
   * container listing 1,000 names at a time. With the daily layout it lists `container` and
   * every `<container>-YYYY-MM-DD` container. Segments live in other containers and never show.
   *
   * @throws {AbortedError} When `signal` aborts.
   * @throws {StorageError} When Swift fails.
   * @example
   * for await (const object of storage.list('backup_2026')) console.log(object.key, object.size);
   */
  async *list(prefix: string, options: { signal?: AbortSignal } = {}): AsyncIterable<ObjectInfo> {
    const { signal } = options;
    throwIfAborted(signal);
    for (const container of await this.containersToList(signal)) {
      for await (const item of this.listContainer(container, this.prefix + prefix, signal)) {
        const etag = unquote(item.slo_etag ?? item.hash ?? null);
        yield {
          key: item.name.slice(this.prefix.length),
          size: item.bytes ?? 0,
          ...(item.last_modified ? { lastModified: new Date(`${item.last_modified}Z`) } : {}),
          ...(etag ? { etag } : {}),
        };
      }
    }
  }

  private async containersToList(signal: AbortSignal | undefined): Promise<string[]> {
    if (this.layout === 'flat') return [this.container];
    const daily = new RegExp(
      `^${this.container.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-\\d{4}-\\d{2}-\\d{2}$`,
    );
    const containers = [this.container];
    for await (const item of this.listContainer(undefined, `${this.container}-`, signal))
      if (daily.test(item.name)) containers.push(item.name);
    return containers;
  }

  /** Pages through a container's listing (or the account's, when `container` is undefined); a missing container is empty. */
  private async *listContainer(
    container: string | undefined,
    prefix: string,
    signal: AbortSignal | undefined,
  ): AsyncIterable<{
    name: string;
    bytes?: number;
    last_modified?: string;
    hash?: string;
    slo_etag?: string;
  }> {
    const describe = `list ${container === undefined ? 'containers' : `"${container}"`} in ${this.description}`;
    let marker = '';
    for (;;) {
      throwIfAborted(signal);
      const response = await this.send(
        {
          method: 'GET',
          path: container === undefined ? '' : encodePath(container),
          query: { format: 'json', prefix, marker, limit: String(LIST_PAGE) },
          idempotent: true,
          signal,
        },
        describe,
      );
      if (response.status === 404) {
        await response.body?.cancel();
        return;
      }
      if (response.status === 204) return;
      if (!response.ok) throw await statusError(describe, response);
      const page = (await response.json()) as Array<{ name?: string; subdir?: string }>;
      for (const item of page) if (typeof item.name === 'string') yield item as { name: string };
      const last = page.at(-1);
      if (page.length < LIST_PAGE || !last?.name) return;
      marker = last.name;
    }
  }

  /**
   * Deletes (with `dryRun`: only lists) the segments that killed puts left in the `_segments`
   * containers: those of an upload whose object was never published (the put died before its
   * manifest) or was published by another upload since (an overwrite that died before deleting
   * the old segments). An upload is left over when none of its segments was written within
   * `olderThanMs` and the object under its key is not an SLO made of it (the object's
   * `X-Object-Meta-Bk-Upload`, or its manifest). Only names bk writes
   * (`<object>/<uploadId>/<index>`) are considered; other tools' segments are never touched.
   *
   * @throws {AbortedError} When `signal` aborts.
   * @throws {StorageError} When Swift fails.
   * @example
   * const { removed } = await storage.cleanupIncomplete({ olderThanMs: 86_400_000, dryRun: true });
   */
  async cleanupIncomplete(options: CleanupIncompleteOptions): Promise<CleanupIncompleteResult> {
    const { olderThanMs, dryRun = false, signal } = options;
    throwIfAborted(signal);
    const cutoff = Date.now() - olderThanMs;
    const removed: IncompleteUpload[] = [];
    for (const container of await this.containersToList(signal)) {
      const segments = `${container}_segments`;
      let upload: { prefix: string; object: string; id: string; bytes: number; newest: number } | undefined;
      const finish = async () => {
        if (!upload || upload.newest > cutoff) return;
        const location: Location = {
          key: upload.object.slice(this.prefix.length),
          container,
          object: upload.object,
          segments,
        };
        if (await this.uploadInUse(location, upload.prefix, upload.id, signal)) return;
        if (!dryRun) await this.deleteUploadSegments(segments, upload.prefix, signal);
        removed.push({
          kind: 'segments',
          location: `swift://${segments}/${upload.prefix}`,
          key: location.key,
          size: upload.bytes,
          lastModified: new Date(upload.newest),
        });
      };
      for await (const item of this.listContainer(segments, this.prefix + (options.prefix ?? ''), signal)) {
        const match = SEGMENT_NAME.exec(item.name);
        if (!match) continue;
        const prefix = `${match[1]}/${match[2]}/`;
        const modified = item.last_modified ? Date.parse(`${item.last_modified}Z`) : Number.POSITIVE_INFINITY;
        if (upload?.prefix !== prefix) {
          await finish();
          upload = { prefix, object: match[1]!, id: match[2]!, bytes: 0, newest: 0 };
        }
        upload.bytes += item.bytes ?? 0;
        upload.newest = Math.max(upload.newest, modified);
      }
      await finish();
    }
    return { removed, notes: [] };
  }

  /** Whether the object at `location` is an SLO built from the upload `uploadId`. */
  private async uploadInUse(
    location: Location,
    segmentPrefix: string,
    uploadId: string,
    signal: AbortSignal | undefined,
  ): Promise<boolean> {
    const current = await this.head(location, signal);
    if (!current) return false;
    const owner = current.headers.get(UPLOAD_HEADER.toLowerCase());
    if (owner !== null) return owner === uploadId;
    if (current.headers.get('x-static-large-object')?.toLowerCase() !== 'true') return false;
    // An SLO written without the upload header: read its manifest.
    const base = `/${location.segments}/${segmentPrefix}`;
    return (await this.manifestSegments(location, signal)).some((entry) => entry.path.startsWith(base));
  }

  /** Deletes every object under `segmentPrefix` in `container`, a batch at a time while listing. */
  private async deleteUploadSegments(
    container: string,
    segmentPrefix: string,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    let batch: string[] = [];
    for await (const item of this.listContainer(container, segmentPrefix, signal)) {
      batch.push(`/${container}/${item.name}`);
      if (batch.length >= DELETE_BATCH) {
        await this.deleteSegments(batch, signal);
        batch = [];
      }
    }
    await this.deleteSegments(batch, signal);
  }

  /**
   * Deletes an object; an SLO goes with its segments (`?multipart-manifest=delete`). Deleting a
   * missing object does nothing.
   *
   * @throws {ConfigError} When the key is invalid.
   * @throws {StorageError} When Swift refuses the deletion.
   * @example
   * await storage.delete('backup_20261121_101500.lock');
   */
  async delete(key: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    const location = this.locate(key);
    throwIfAborted(options.signal);
    await this.deleteLocation(location, options.signal);
  }

  private async deleteLocation(location: Location, signal: AbortSignal | undefined): Promise<void> {
    await this.deleteSlo(
      location.container,
      location.object,
      `delete "${location.key}" from ${this.description}`,
      signal,
    );
  }

  /**
   * `DELETE ?multipart-manifest=delete`: an SLO goes with its segments, and a nested one with its
   * sub-manifests and theirs (Swift recurses); a plain object falls back to a plain `DELETE`.
   */
  private async deleteSlo(
    container: string,
    object: string,
    describe: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const path = encodePath(container, object);
    const response = await this.send(
      {
        method: 'DELETE',
        path,
        query: { 'multipart-manifest': 'delete' },
        headers: { Accept: 'application/json' },
        idempotent: true,
        signal,
      },
      describe,
    );
    if (response.status === 404) {
      await response.body?.cancel();
      return;
    }
    if (!response.ok) throw await statusError(describe, response);
    // Without SLO middleware the parameter is ignored and this was a plain delete.
    if (!response.headers.get('content-type')?.includes('application/json')) {
      await response.body?.cancel();
      return;
    }
    const result = (await response.json()) as {
      'Response Status'?: string;
      Errors?: Array<[string, string]>;
    };
    const errors = result.Errors ?? [];
    if (errors.some(([, reason]) => /not an slo manifest/i.test(reason))) {
      const plain = await this.send({ method: 'DELETE', path, idempotent: true, signal }, describe);
      if (!plain.ok && plain.status !== 404) throw await statusError(describe, plain);
      await plain.body?.cancel();
      return;
    }
    const status = Number.parseInt(result['Response Status'] ?? '200', 10);
    if (errors.length > 0 || (status >= 300 && status !== 404))
      throw new StorageError(
        `Could not ${describe}: ${result['Response Status'] ?? ''} ${errors.map((error) => error.join(': ')).join('; ')}`.trim(),
        { retryable: isRetryableStatus(status) },
      );
  }
}

/**
 * Streams a response body, checking its length (and md5 when given) at the end, turning an
 * abort into the signal's reason and a broken connection into a retryable `StorageError`.
 */
async function* readBody(
  response: Response,
  check: { describe: string; expectedBytes?: number; expectedMd5?: string; signal?: AbortSignal },
): ByteStream {
  const body = response.body;
  if (!body) return;
  const reader = body.getReader();
  const hash = check.expectedMd5 ? createHash('md5') : undefined;
  let bytes = 0;
  let finished = false;
  try {
    for (;;) {
      let result: Awaited<ReturnType<typeof reader.read>>;
      try {
        result = await reader.read();
      } catch (error) {
        if (check.signal?.aborted) throw toAbortedError(check.signal);
        // A stalled stream fails with the deadline's error, which names the endpoint.
        const why = BkError.isInstance(error) ? error.message : 'the connection broke';
        throw new StorageError(`Could not ${check.describe}: ${why} (after ${bytes} bytes).`, {
          cause: error,
          retryable: true,
        });
      }
      if (result.done) break;
      bytes += result.value.byteLength;
      hash?.update(result.value);
      yield result.value;
    }
    finished = true;
    if (check.expectedBytes !== undefined && bytes !== check.expectedBytes)
      throw new StorageError(
        `Could not ${check.describe}: got ${bytes} bytes, Content-Length said ${check.expectedBytes}.`,
        { retryable: true },
      );
    const md5 = hash?.digest('hex');
    if (md5 !== undefined && md5 !== check.expectedMd5)
      throw new StorageError(
        `Could not ${check.describe}: its md5 is ${md5}, Swift's ETag says ${check.expectedMd5}.`,
      );
  } finally {
    if (!finished) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}
