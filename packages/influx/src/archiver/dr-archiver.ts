import { randomUUID } from 'node:crypto';
import { type FileHandle, mkdir, open, readdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzip as gzipCallback } from 'node:zlib';
import {
  AbortedError,
  BkError,
  ConfigError,
  type PutOptions,
  type Storage,
  StorageError,
  toAbortedError,
} from '@bk/core';
import type { LineProtocolPrecision } from '../line-protocol/import-line-protocol.ts';
import { checkSegment, timestampMillisOf, utcDay } from './line-scan.ts';
import { decodeSegment, encodeRecord, type SpoolRecord } from './spool-file.ts';

const gzipAsync = promisify(gzipCallback);

/** Time and timers, injectable for tests. */
export interface ArchiverClock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const systemClock: ArchiverClock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** Why a file was closed for upload. */
export type RotationReason = 'size' | 'age' | 'flush' | 'pressure';

/** What a {@link DrArchiver} tells `onEvent`. */
export type ArchiverEvent =
  /** A file closed for upload: in memory mode `key` is its object key, with a spool the segment's path. */
  | { type: 'rotated'; key: string; reason: RotationReason; lines: number; bytes: number }
  | { type: 'uploaded'; key: string; lines: number; bytes: number; attempts: number }
  | { type: 'retry'; key: string; attempt: number; delayMs: number; error: unknown }
  /** A spool segment left by an earlier run, queued for upload at start. */
  | { type: 'recovered'; segment: string; bytes: number }
  /** A spool segment ended in a torn record (a crash mid-append); it was never acknowledged. */
  | { type: 'torn-tail'; segment: string; droppedBytes: number }
  /** A permanent failure (access denied, a bad configuration): uploads stopped. */
  | { type: 'failed'; error: StorageError };

/** Where a {@link DrArchiver} keeps acknowledged lines until they are uploaded. */
export interface DrSpoolOptions {
  /**
   * A directory on local disk for this archiver alone (created if missing; a second archiver
   * on the same directory is refused while the first one's process lives). Keep it across
   * restarts: a restarted archiver uploads what it holds.
   */
  dir: string;
  /**
   * Bytes of segments on disk (written, not yet uploaded) past which `write()` waits for
   * uploads to free space (back-pressure). Default 1 GiB.
   */
  maxBytes?: number;
}

export interface DrArchiverOptions {
  /**
   * Where files go. Only plain `put`s are made (no read, list, delete or conditional request),
   * so credentials that may only create objects suffice.
   */
  storage: Storage;
  /**
   * Required choice of durability. `{ dir }`: every `write()` is appended to checksummed
   * segment files in `dir` and fsync'd (concurrent writes share one fsync) before it resolves;
   * a segment is uploaded as one object per database, retention policy and day, named after the
   * segment, and deleted once every object is stored, so a crash loses nothing acknowledged
   * and a restart uploads the rest exactly once. `false`: lines wait in memory only, and a
   * crash loses what was not uploaded yet.
   */
  spool: DrSpoolOptions | false;
  /** First key segment(s), e.g. `influx-prod-1` (may contain `/`, no empty/`.`/`..` segments). */
  instance: string;
  /**
   * Rotate a file before it would exceed this many uncompressed bytes (with a spool: rotate a
   * segment once it holds this many bytes). Default 64 MiB.
   */
  maxFileBytes?: number;
  /** Rotate a file this long after its first line. Default 60 000 ms. */
  maxFileAgeMs?: number;
  /**
   * Bytes held in memory across open files (uncompressed) and files waiting for upload
   * (compressed) before `write()` waits for uploads (back-pressure). Default 256 MiB.
   */
  maxBufferedBytes?: number;
  /**
   * Which UTC day names a line's file: `arrival` (default; the day `write()` was called, no
   * parsing) or `timestamp` (the point's own timestamp, read in `precision`; lines without a
   * timestamp fall back to the arrival day).
   */
  dayOf?: 'arrival' | 'timestamp';
  /** Precision of the written lines' timestamps, for `dayOf: 'timestamp'`. Default `ns`. */
  precision?: LineProtocolPrecision;
  clock?: ArchiverClock;
  /** File names; default `crypto.randomUUID()` (UUID v4). */
  idFactory?: () => string;
  /** First retry delay of a failed upload; doubles up to `retryMaxMs`, with full jitter. Default 500. */
  retryBaseMs?: number;
  /** Default 30 000. */
  retryMaxMs?: number;
  /** Uploads in flight at once. Default 4. */
  uploadConcurrency?: number;
  /** gzip level 1–9. Default 6. */
  gzipLevel?: number;
  onEvent?: (event: ArchiverEvent) => void;
}

/** Counters of a {@link DrArchiver}. */
export interface DrArchiverStats {
  /** Lines acknowledged by `write()`. */
  linesAccepted: number;
  filesUploaded: number;
  /** Lines in uploaded files. */
  linesUploaded: number;
  /** Compressed bytes uploaded. */
  bytesUploaded: number;
  /** Failed upload attempts (each was retried). */
  retries: number;
  openFiles: number;
  /** Files closed but not uploaded yet (compressing, uploading or waiting to retry). */
  pendingFiles: number;
  /** Bytes held in memory, as counted for `maxBufferedBytes` (memory mode). */
  bufferedBytes: number;
  /** With a spool: bytes of segments on disk not uploaded yet, as counted for `spool.maxBytes`. */
  spooledBytes: number;
  /** With a spool: segments waiting for upload or uploading. */
  spooledSegments: number;
  /** With a spool: appends made durable, each one fsync shared by every write queued meanwhile. */
  spoolCommits: number;
  /** `write()` calls waiting for buffer space. */
  waitingWrites: number;
  /** The last upload error, if any. */
  lastError?: string;
}

interface OpenFile {
  place: string;
  key: string;
  chunks: string[];
  lines: number;
  bytes: number;
  timer: unknown;
}

interface ActiveSegment {
  id: string;
  path: string;
  handle: FileHandle;
  bytes: number;
  lines: number;
  timer: unknown;
}

/** A sealed segment file waiting for (or in) upload. */
interface SpoolSegment {
  id: string;
  path: string;
  bytes: number;
  done: Promise<void>;
  resolve: () => void;
}

type CommitItem =
  | { kind: 'write'; bytes: Buffer; lines: number; resolve: () => void; reject: (error: unknown) => void }
  | { kind: 'seal'; reason: RotationReason; resolve: () => void; reject: (error: unknown) => void };

const SEGMENT_NAME = /^(\d{12})-([0-9A-Za-z-]{1,64})\.spool$/;

interface SealedFile {
  key: string;
  keyBase: string;
  lines: number;
  /** Bytes counted in `buffered` for this file. */
  accounted: number;
  body?: Uint8Array;
  attempts: number;
  done: Promise<void>;
  resolve: () => void;
}

const MiB = 1024 * 1024;

/**
 * Continuous disaster-recovery capture for InfluxDB 1.x writes: the lines your writer sends to
 * InfluxDB are also handed to `write()`, which keeps them per database, retention policy and UTC
 * day and uploads them, gzipped, to `<instance>/<db>/<rp>/<YYYYMMDD>/<id>.gz`. Each file is
 * annotated line protocol (`# DML`, `# CONTEXT-DATABASE:`, `# CONTEXT-RETENTION-POLICY:`) that
 * `influx -import -compressed -precision <p> -path <file>` and {@link replay} read.
 *
 * With `spool: { dir }`, `write()` resolves once its lines are fsync'd in a checksummed local
 * segment; segments rotate by size and age, are uploaded as one object per place named after the
 * segment, and are deleted once stored, so a crash loses nothing acknowledged and a restart on the
 * same `dir` uploads the rest exactly once. With `spool: false`, lines wait in memory and a crash
 * loses what was not uploaded. Uploads only ever `put` (write-only credentials suffice); a failing
 * storage is retried forever with exponential backoff and jitter, while a spool past
 * `spool.maxBytes` (or memory past `maxBufferedBytes`) makes `write()` wait; access denied stops
 * the archiver with a `StorageError`. The archive does not store the timestamp precision: replay
 * with the precision your writer uses, and write points with explicit timestamps (a line without
 * one gets the import's time on replay).
 *
 * @example
 * const archiver = new DrArchiver({ storage, instance: 'influx-prod-1', spool: { dir: '/var/lib/app/dr-spool' } });
 * await archiver.write('metrics', 'autogen', 'cpu,host=a usage=0.5 1795236814000000000');
 * process.once('SIGTERM', () => {
 *   archiver.close().then(() => process.exit(0), () => process.exit(1));
 * });
 */
export class DrArchiver {
  private readonly storage: Storage;
  private readonly instance: string;
  private readonly maxFileBytes: number;
  private readonly maxFileAgeMs: number;
  private readonly maxBufferedBytes: number;
  private readonly dayOf: 'arrival' | 'timestamp';
  private readonly precision: LineProtocolPrecision;
  private readonly clock: ArchiverClock;
  private readonly idFactory: () => string;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private readonly uploadConcurrency: number;
  private readonly gzipLevel: number;
  private readonly onEvent: ((event: ArchiverEvent) => void) | undefined;

  private readonly open = new Map<string, OpenFile>();
  private readonly pending = new Set<SealedFile>();
  private readonly ready: SealedFile[] = [];
  private readonly retryTimers = new Set<unknown>();
  private readonly waiters: Array<() => void> = [];
  private uploading = 0;
  private buffered = 0;
  private closed = false;
  private readonly counters = {
    linesAccepted: 0,
    filesUploaded: 0,
    linesUploaded: 0,
    bytesUploaded: 0,
    retries: 0,
    spoolCommits: 0,
  };
  private lastError: string | undefined;
  /** Set once uploads stopped for good; every later call rejects with it. */
  private failure: StorageError | undefined;
  private readonly failed: Promise<never>;
  private rejectFailed: (error: StorageError) => void = () => {};

  // Spool mode.
  private readonly spoolDir: string | undefined;
  private readonly maxSpoolBytes: number;
  private started: Promise<void> = Promise.resolve();
  private active: ActiveSegment | undefined;
  private readonly commitQueue: CommitItem[] = [];
  private committing = false;
  private nextSequence = 0;
  private spooledBytes = 0;
  /** Segments sealed and not yet uploaded, in order. */
  private readonly segments = new Set<SpoolSegment>();
  private readonly segmentQueue: SpoolSegment[] = [];
  private segmentsUploading = 0;
  private readonly sleepers = new Set<{ timer: unknown; wake: () => void }>();
  private lockPath: string | undefined;
  /** close() gave up waiting (aborted or failed): no upload starts or retries any more. */
  private halted = false;

  /** @throws {ConfigError} an invalid instance or option. */
  constructor(options: DrArchiverOptions) {
    if (options.storage === undefined) throw new ConfigError('DrArchiver: `storage` is required.');
    if (typeof options.instance !== 'string' || options.instance === '') {
      throw new ConfigError('DrArchiver: `instance` is required.');
    }
    for (const segment of options.instance.split('/')) checkSegment('instance segment', segment);
    const positive = (name: string, value: number | undefined, fallback: number) => {
      const result = value ?? fallback;
      if (!Number.isFinite(result) || result <= 0)
        throw new ConfigError(`DrArchiver: \`${name}\` must be > 0.`);
      return result;
    };
    this.storage = options.storage;
    this.instance = options.instance;
    this.maxFileBytes = positive('maxFileBytes', options.maxFileBytes, 64 * MiB);
    this.maxFileAgeMs = positive('maxFileAgeMs', options.maxFileAgeMs, 60_000);
    this.maxBufferedBytes = positive('maxBufferedBytes', options.maxBufferedBytes, 256 * MiB);
    this.dayOf = options.dayOf ?? 'arrival';
    if (this.dayOf !== 'arrival' && this.dayOf !== 'timestamp') {
      throw new ConfigError(`DrArchiver: \`dayOf\` must be 'arrival' or 'timestamp'.`);
    }
    this.precision = options.precision ?? 'ns';
    this.clock = options.clock ?? systemClock;
    this.idFactory = options.idFactory ?? randomUUID;
    this.retryBaseMs = positive('retryBaseMs', options.retryBaseMs, 500);
    this.retryMaxMs = positive('retryMaxMs', options.retryMaxMs, 30_000);
    this.uploadConcurrency = Math.floor(positive('uploadConcurrency', options.uploadConcurrency, 4));
    this.gzipLevel = options.gzipLevel ?? 6;
    this.onEvent = options.onEvent;
    this.failed = new Promise<never>((_, reject) => {
      this.rejectFailed = reject;
    });
    this.failed.catch(() => {});
    if (options.spool === undefined) {
      throw new ConfigError(
        'DrArchiver: `spool` is required: pass `{ dir }` to keep acknowledged lines on local disk until they are uploaded, or `false` to keep them in memory only (a crash loses them).',
      );
    }
    if (options.spool !== false) {
      if (typeof options.spool?.dir !== 'string' || options.spool.dir === '')
        throw new ConfigError('DrArchiver: `spool.dir` must be a directory path.');
      this.spoolDir = options.spool.dir;
      this.maxSpoolBytes = positive('spool.maxBytes', options.spool.maxBytes, 1024 * MiB);
      this.started = this.startSpool(this.spoolDir);
      this.started.catch(() => {});
    } else {
      this.maxSpoolBytes = 0;
    }
  }

  /**
   * Appends line-protocol lines for `db`/`rp`. `lines` is one line (a string), several (an array,
   * one line per element) or a `/write` body (bytes, UTF-8, `\n`-separated). Blank lines are
   * skipped; a line with a line break inside an element, or starting with `#` (it would be read
   * as an annotation), is refused and nothing of the call is kept. Lines are not parsed
   * further: a malformed point fails at import.
   *
   * With a spool, resolves once the lines are fsync'd to it (writes made meanwhile share one
   * fsync); waits first while the spool holds more than `spool.maxBytes` not uploaded yet. In
   * memory mode, resolves once the lines are in memory; waits first while more than
   * `maxBufferedBytes` are buffered (storage slow or down).
   *
   * @throws {ConfigError} invalid db, rp or line; the archiver is closed; the spool is another
   *   live process's.
   * @throws {StorageError} uploads stopped for good (access denied); or, retryable, the spool
   *   could not be appended to (disk full): the lines of that call are not acknowledged.
   */
  async write(db: string, rp: string, lines: string | readonly string[] | Uint8Array): Promise<void> {
    if (this.closed) throw new ConfigError('DrArchiver: write() after close().');
    checkSegment('database', db);
    checkSegment('retention policy', rp);
    const accepted = normalizeLines(lines);
    if (accepted.length === 0) return;
    if (this.spoolDir !== undefined) return this.writeSpooled(db, rp, accepted);
    if (this.failure) throw this.failure;
    await this.acquire();
    if (this.failure) throw this.failure;
    if (this.closed) throw new ConfigError('DrArchiver: closed while write() waited for buffer space.');
    try {
      const now = this.clock.now();
      const arrivalDay = utcDay(now);
      if (this.dayOf === 'arrival') {
        this.append(db, rp, arrivalDay, accepted);
      } else {
        const byDay = new Map<string, string[]>();
        for (const line of accepted) {
          const millis = timestampMillisOf(line, this.precision);
          const day = millis === undefined ? arrivalDay : utcDay(millis);
          let group = byDay.get(day);
          if (group === undefined) {
            group = [];
            byDay.set(day, group);
          }
          group.push(line);
        }
        for (const [day, group] of [...byDay].sort(([a], [b]) => a.localeCompare(b))) {
          this.append(db, rp, day, group);
        }
      }
      this.counters.linesAccepted += accepted.length;
    } finally {
      this.wake();
    }
  }

  /**
   * Closes every open file and resolves when all files closed so far are uploaded (which waits
   * as long as the storage is down). Abort with `signal` to stop waiting; the files stay queued.
   */
  async flush(options: { signal?: AbortSignal } = {}): Promise<void> {
    const { signal } = options;
    if (signal?.aborted) throw toAbortedError(signal);
    let all: Promise<unknown>;
    if (this.spoolDir !== undefined) {
      all = this.started.then(async () => {
        await this.enqueueCommit({ kind: 'seal', reason: 'flush' });
        await Promise.all([...this.segments].map((segment) => segment.done));
      });
    } else {
      for (const file of [...this.open.values()]) this.seal(file, 'flush');
      all = Promise.all([...this.pending].map((file) => file.done));
    }
    if (this.failure) throw this.failure;
    all = Promise.race([all, this.failed]);
    if (signal === undefined) {
      await all;
      return;
    }
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(toAbortedError(signal));
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      await Promise.race([all, aborted]);
    } finally {
      if (onAbort !== undefined) signal.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Refuses further writes, flushes, then stops every timer. Registering SIGTERM/SIGINT handlers
   * is the caller's job (see the class example); give `signal` a deadline to bound the wait when
   * the storage may be down (with a spool, what is not uploaded stays in it for the next start;
   * in memory mode it is lost with the process). Always settles: after a permanent failure it
   * rejects with that `StorageError`.
   *
   * @throws {StorageError} uploads stopped for good (e.g. access denied); see `stats().lastError`.
   * @throws {AbortedError} `signal` aborted first.
   */
  async close(options: { signal?: AbortSignal } = {}): Promise<void> {
    this.closed = true;
    try {
      await this.flush(options);
    } finally {
      const stopped = this.failure !== undefined || options.signal?.aborted === true;
      if (this.pending.size === 0 || stopped) this.stopTimers();
      if (stopped) {
        // Uploads stop here; what they had not stored stays in the spool for the next start.
        this.halted = true;
        for (const sleeper of [...this.sleepers]) sleeper.wake();
      }
      for (const waiter of this.waiters.splice(0)) waiter();
      if (this.spoolDir !== undefined) await this.releaseSpool();
    }
  }

  stats(): DrArchiverStats {
    return {
      ...this.counters,
      openFiles: this.open.size,
      pendingFiles: this.pending.size,
      bufferedBytes: this.buffered,
      spooledBytes: this.spooledBytes,
      spooledSegments: this.segments.size,
      waitingWrites: this.waiters.length,
      ...(this.lastError === undefined ? {} : { lastError: this.lastError }),
    };
  }

  private stopTimers(): void {
    for (const file of this.open.values()) this.clock.clearTimeout(file.timer);
    for (const timer of this.retryTimers) this.clock.clearTimeout(timer);
    this.retryTimers.clear();
    if (this.active !== undefined) this.clock.clearTimeout(this.active.timer);
  }

  private hasRoom(): boolean {
    return this.spoolDir === undefined
      ? this.buffered <= this.maxBufferedBytes
      : this.spooledBytes <= this.maxSpoolBytes;
  }

  private acquire(): Promise<void> {
    if (this.waiters.length === 0 && this.hasRoom()) return Promise.resolve();
    // Open files would otherwise only leave memory (or the spool) when they age out: hand them
    // to the uploader.
    if (this.spoolDir === undefined) for (const file of [...this.open.values()]) this.seal(file, 'pressure');
    else if (this.active !== undefined && this.active.bytes > 0)
      void this.enqueueCommit({ kind: 'seal', reason: 'pressure' }).catch(() => {});
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Lets the first waiting write go when there is room; it calls wake() again when done. */
  private wake(): void {
    if (this.waiters.length > 0 && (this.hasRoom() || this.closed || this.failure !== undefined)) {
      this.waiters.shift()?.();
    }
  }

  /** Stops uploading for good: flush(), close() and waiting writes reject with `error`. */
  private fail(error: StorageError): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    this.lastError = error.message;
    this.rejectFailed(error);
    this.emit({ type: 'failed', error });
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  private permanentFailure(key: string, error: unknown): StorageError {
    const where =
      this.spoolDir === undefined
        ? 'they are lost when this process ends'
        : `they stay in the spool ${this.spoolDir} and are uploaded when an archiver starts on it again`;
    const detail = error instanceof Error ? error.message : String(error);
    return new StorageError(
      `DrArchiver: uploads stopped: storing "${key}" failed in a way retrying cannot fix (${detail}). Lines not uploaded yet are not retried; ${where}. Fix the credentials or their permissions (put must be allowed), then start the archiver again.`,
      { cause: error },
    );
  }

  private append(db: string, rp: string, day: string, lines: string[]): void {
    const place = `${db}\u0000${rp}\u0000${day}`;
    let file = this.open.get(place) ?? this.openFile(place, db, rp, day);
    for (const line of lines) {
      const size = Buffer.byteLength(line) + 1;
      if (file.lines > 0 && file.bytes + size > this.maxFileBytes) {
        this.seal(file, 'size');
        file = this.openFile(place, db, rp, day);
      }
      file.chunks.push(line);
      file.lines += 1;
      file.bytes += size;
      this.buffered += size;
    }
    if (file.bytes >= this.maxFileBytes) this.seal(file, 'size');
  }

  private openFile(place: string, db: string, rp: string, day: string): OpenFile {
    const header = `# DML\n# CONTEXT-DATABASE: ${db}\n# CONTEXT-RETENTION-POLICY: ${rp}`;
    const file: OpenFile = {
      place,
      key: `${this.instance}/${db}/${rp}/${day}/`,
      chunks: [header],
      lines: 0,
      bytes: Buffer.byteLength(header) + 1,
      timer: undefined,
    };
    this.buffered += file.bytes;
    file.timer = this.clock.setTimeout(() => {
      if (this.open.get(place) === file) this.seal(file, 'age');
    }, this.maxFileAgeMs);
    this.open.set(place, file);
    return file;
  }

  private seal(file: OpenFile, reason: RotationReason): void {
    if (this.open.get(file.place) !== file) return;
    this.open.delete(file.place);
    this.clock.clearTimeout(file.timer);
    let resolve: () => void = () => {};
    const done = new Promise<void>((settle) => {
      resolve = settle;
    });
    const sealed: SealedFile = {
      keyBase: file.key,
      key: `${file.key}${this.idFactory()}.gz`,
      lines: file.lines,
      accounted: file.bytes,
      attempts: 0,
      done,
      resolve,
    };
    this.pending.add(sealed);
    this.emit({ type: 'rotated', key: sealed.key, reason, lines: file.lines, bytes: file.bytes });
    const text = `${file.chunks.join('\n')}\n`;
    file.chunks.length = 0;
    gzipAsync(Buffer.from(text, 'utf8'), { level: this.gzipLevel }).then(
      (compressed) => {
        sealed.body = new Uint8Array(compressed.buffer, compressed.byteOffset, compressed.byteLength);
        this.buffered += sealed.body.byteLength - sealed.accounted;
        sealed.accounted = sealed.body.byteLength;
        this.ready.push(sealed);
        this.pump();
        this.wake();
      },
      // zlib does not fail on a buffer; should it, keep the plain text (import detects gzip).
      () => {
        sealed.body = new TextEncoder().encode(text);
        this.ready.push(sealed);
        this.pump();
      },
    );
  }

  private pump(): void {
    while (!this.failure && this.uploading < this.uploadConcurrency && this.ready.length > 0) {
      const file = this.ready.shift() as SealedFile;
      this.uploading += 1;
      void this.upload(file).finally(() => {
        this.uploading -= 1;
        this.pump();
      });
    }
  }

  private async upload(file: SealedFile): Promise<void> {
    const body = file.body as Uint8Array;
    if (this.failure) return;
    file.attempts += 1;
    try {
      await this.storage.put(file.key, body, this.putOptions(body));
    } catch (error) {
      if (isAlreadyExists(error)) {
        if (file.attempts === 1) {
          // Another file holds this name (an id collision): take a new one, at once.
          file.key = `${file.keyBase}${this.idFactory()}.gz`;
          this.ready.unshift(file);
          return;
        }
        // An earlier attempt of ours landed although it reported a failure: the file is stored.
      } else if (isPermanent(error)) {
        this.ready.unshift(file);
        this.fail(this.permanentFailure(file.key, error));
        return;
      } else {
        this.counters.retries += 1;
        this.lastError = error instanceof Error ? error.message : String(error);
        const cap = Math.min(this.retryMaxMs, this.retryBaseMs * 2 ** Math.min(file.attempts - 1, 30));
        const delayMs = Math.round(cap / 2 + (Math.random() * cap) / 2);
        this.emit({ type: 'retry', key: file.key, attempt: file.attempts, delayMs, error });
        const timer = this.clock.setTimeout(() => {
          this.retryTimers.delete(timer);
          this.ready.push(file);
          this.pump();
        }, delayMs);
        this.retryTimers.add(timer);
        return;
      }
    }
    this.pending.delete(file);
    this.buffered -= file.accounted;
    file.body = undefined;
    this.counters.filesUploaded += 1;
    this.counters.linesUploaded += file.lines;
    this.counters.bytesUploaded += body.byteLength;
    this.emit({
      type: 'uploaded',
      key: file.key,
      lines: file.lines,
      bytes: body.byteLength,
      attempts: file.attempts,
    });
    file.resolve();
    this.wake();
  }

  /**
   * Create-if-absent where the store does it in the same request (fs, Azure, GCS, Swift, S3 in
   * `if-none-match` mode): needed where write-only credentials may create but not replace (a GCS
   * role without `storage.objects.delete`, an Azure SAS without `w`). Elsewhere a plain put: the
   * names are fresh, and a repeat stores the same bytes.
   */
  private putOptions(body: Uint8Array): PutOptions {
    return {
      sizeHint: body.byteLength,
      contentType: 'application/gzip',
      ...(this.storage.capabilities?.conditionalCreate === true ? { ifNoneMatch: true } : {}),
    };
  }

  // ---- Spool mode -------------------------------------------------------------------------

  /** Takes the spool directory and queues the segments an earlier run left for upload. */
  private async startSpool(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    const lockPath = join(dir, 'lock');
    for (let attempt = 0; ; attempt += 1) {
      try {
        await writeFile(lockPath, `${process.pid}\n`, { flag: 'wx' });
        this.lockPath = lockPath;
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw error;
        const owner = Number.parseInt(await readFile(lockPath, 'utf8').catch(() => ''), 10);
        if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && processLives(owner)) {
          throw new ConfigError(
            `DrArchiver: the spool ${dir} is in use by process ${owner}; give each archiver its own spool directory.`,
          );
        }
        // Left by a process that is gone (killed): take it over.
        await unlink(lockPath).catch(() => {});
      }
    }
    const names = (await readdir(dir)).filter((name) => SEGMENT_NAME.test(name)).sort();
    for (const name of names) {
      const [, sequence, id] = SEGMENT_NAME.exec(name) as RegExpExecArray;
      this.nextSequence = Math.max(this.nextSequence, Number(sequence) + 1);
      const path = join(dir, name);
      const { size } = await stat(path);
      this.emit({ type: 'recovered', segment: path, bytes: size });
      this.queueSegment(id as string, path, size);
    }
  }

  private async releaseSpool(): Promise<void> {
    await this.started.catch(() => {});
    const active = this.active;
    if (active !== undefined && this.commitQueue.length === 0 && !this.committing) {
      this.active = undefined;
      this.clock.clearTimeout(active.timer);
      await active.handle.close().catch(() => {});
      if (active.bytes === 0) await unlink(active.path).catch(() => {});
    }
    if (this.lockPath !== undefined) {
      const lockPath = this.lockPath;
      this.lockPath = undefined;
      await unlink(lockPath).catch(() => {});
    }
  }

  private async writeSpooled(db: string, rp: string, accepted: string[]): Promise<void> {
    await this.started;
    if (this.failure) throw this.failure;
    await this.acquire();
    if (this.failure) throw this.failure;
    if (this.closed) throw new ConfigError('DrArchiver: closed while write() waited for spool space.');
    const records: SpoolRecord[] = [];
    const arrivalDay = utcDay(this.clock.now());
    if (this.dayOf === 'arrival') records.push({ db, rp, day: arrivalDay, lines: accepted });
    else {
      const byDay = new Map<string, string[]>();
      for (const line of accepted) {
        const millis = timestampMillisOf(line, this.precision);
        const day = millis === undefined ? arrivalDay : utcDay(millis);
        const group = byDay.get(day);
        if (group === undefined) byDay.set(day, [line]);
        else group.push(line);
      }
      for (const [day, group] of [...byDay].sort(([a], [b]) => a.localeCompare(b)))
        records.push({ db, rp, day, lines: group });
    }
    const bytes = Buffer.concat(records.map(encodeRecord));
    this.spooledBytes += bytes.byteLength;
    try {
      await this.enqueueCommit({ kind: 'write', bytes, lines: accepted.length });
      this.counters.linesAccepted += accepted.length;
    } catch (error) {
      this.spooledBytes -= bytes.byteLength;
      throw error;
    } finally {
      this.wake();
    }
  }

  /** Queues an append or a seal for the committer; resolves once it is done (fsync'd). */
  private enqueueCommit(
    item: { kind: 'write'; bytes: Buffer; lines: number } | { kind: 'seal'; reason: RotationReason },
  ): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.commitQueue.push({ ...item, resolve, reject });
      if (!this.committing) void this.commit();
    });
  }

  /**
   * The one committer: takes everything queued, appends the writes to the active segment with
   * one write and one fsync (group commit), then seals if asked or full.
   */
  private async commit(): Promise<void> {
    this.committing = true;
    try {
      while (this.commitQueue.length > 0) {
        // Everything queued, up to a seal or as much as fits in the active segment.
        const batch: CommitItem[] = [];
        let size = this.active?.bytes ?? 0;
        while (this.commitQueue.length > 0) {
          const item = this.commitQueue[0] as CommitItem;
          if (item.kind === 'write' && batch.length > 0 && size + item.bytes.byteLength > this.maxFileBytes)
            break;
          this.commitQueue.shift();
          batch.push(item);
          if (item.kind === 'seal') break;
          size += item.bytes.byteLength;
        }
        const writes = batch.filter((item) => item.kind === 'write');
        const seal = batch.find((item) => item.kind === 'seal');
        try {
          if (writes.length > 0) {
            const segment = this.active ?? (await this.openSegment());
            const bytes = Buffer.concat(writes.map((item) => item.bytes));
            try {
              await writeFully(segment.handle, bytes, segment.bytes);
              await segment.handle.datasync();
              this.counters.spoolCommits += 1;
            } catch (error) {
              // Whatever part landed is a torn tail: no later record may follow it.
              await this.sealActive('flush').catch(() => {});
              throw new StorageError(
                `DrArchiver: could not append to the spool ${segment.path}: ${(error as Error).message}. Free space or fix the directory, then write again.`,
                { cause: error, retryable: true },
              );
            }
            segment.bytes += bytes.byteLength;
            for (const item of writes) if (item.kind === 'write') segment.lines += item.lines;
            for (const item of writes) item.resolve();
          }
          if (seal !== undefined && seal.kind === 'seal') await this.sealActive(seal.reason);
          else if (this.active !== undefined && this.active.bytes >= this.maxFileBytes)
            await this.sealActive('size');
          for (const item of batch) if (item.kind === 'seal') item.resolve();
        } catch (error) {
          for (const item of batch) item.reject(error);
        }
      }
    } finally {
      this.committing = false;
    }
  }

  private async openSegment(): Promise<ActiveSegment> {
    const dir = this.spoolDir as string;
    const id = this.idFactory();
    const sequence = this.nextSequence;
    this.nextSequence += 1;
    const path = join(dir, `${String(sequence).padStart(12, '0')}-${id}.spool`);
    const handle = await open(path, 'wx');
    // The new name must survive a crash as much as the records in it.
    await syncDirectory(dir);
    const segment: ActiveSegment = { id, path, handle, bytes: 0, lines: 0, timer: undefined };
    segment.timer = this.clock.setTimeout(() => {
      if (this.active === segment) void this.enqueueCommit({ kind: 'seal', reason: 'age' }).catch(() => {});
    }, this.maxFileAgeMs);
    this.active = segment;
    return segment;
  }

  /** Closes the active segment and queues it for upload (an empty one is just removed). */
  private async sealActive(reason: RotationReason): Promise<void> {
    const segment = this.active;
    if (segment === undefined) return;
    this.active = undefined;
    this.clock.clearTimeout(segment.timer);
    await segment.handle.close().catch(() => {});
    if (segment.bytes === 0) {
      await unlink(segment.path).catch(() => {});
      return;
    }
    this.emit({ type: 'rotated', key: segment.path, reason, lines: segment.lines, bytes: segment.bytes });
    this.queueSegment(segment.id, segment.path, segment.bytes);
  }

  private queueSegment(id: string, path: string, bytes: number): void {
    let resolve: () => void = () => {};
    const done = new Promise<void>((settle) => {
      resolve = settle;
    });
    const segment: SpoolSegment = { id, path, bytes, done, resolve };
    this.segments.add(segment);
    this.segmentQueue.push(segment);
    this.pumpSegments();
  }

  private pumpSegments(): void {
    while (
      !this.failure &&
      !this.halted &&
      this.segmentsUploading < this.uploadConcurrency &&
      this.segmentQueue.length > 0
    ) {
      const segment = this.segmentQueue.shift() as SpoolSegment;
      this.segmentsUploading += 1;
      void this.uploadSegment(segment)
        .catch((error: unknown) => {
          // Reading the spool failed: nothing retrying in this process can fix.
          if (!this.halted && (!BkError.isInstance(error) || error.code !== 'BK_STORAGE')) {
            this.fail(this.permanentFailure(segment.path, error));
          }
        })
        .finally(() => {
          this.segmentsUploading -= 1;
          this.pumpSegments();
        });
    }
  }

  /**
   * Uploads one sealed segment as one object per database, retention policy and day, each named
   * `<segment id>.gz`: a segment uploaded again after a crash (between the upload and the
   * deletion of the segment) writes the same objects with the same bytes, never a second copy.
   */
  private async uploadSegment(segment: SpoolSegment): Promise<void> {
    const { records, droppedBytes } = decodeSegment(await readFile(segment.path));
    if (droppedBytes > 0) this.emit({ type: 'torn-tail', segment: segment.path, droppedBytes });
    const places = new Map<string, { key: string; header: string; lines: string[] }>();
    for (const record of records) {
      const place = `${record.db}\u0000${record.rp}\u0000${record.day}`;
      let group = places.get(place);
      if (group === undefined) {
        for (const [what, name] of [
          ['database', record.db],
          ['retention policy', record.rp],
        ] as const)
          checkSegment(what, name);
        group = {
          key: `${this.instance}/${record.db}/${record.rp}/${record.day}/${segment.id}.gz`,
          header: `# DML\n# CONTEXT-DATABASE: ${record.db}\n# CONTEXT-RETENTION-POLICY: ${record.rp}`,
          lines: [],
        };
        places.set(place, group);
      }
      for (const line of record.lines) group.lines.push(line);
    }
    for (const group of places.values()) {
      const text = `${group.header}\n${group.lines.join('\n')}\n`;
      const compressed = await gzipAsync(Buffer.from(text, 'utf8'), { level: this.gzipLevel });
      const body = new Uint8Array(compressed.buffer, compressed.byteOffset, compressed.byteLength);
      await this.putWithRetry(group.key, body, group.lines.length);
    }
    await unlink(segment.path);
    this.segments.delete(segment);
    this.spooledBytes -= segment.bytes;
    segment.resolve();
    this.wake();
  }

  private async putWithRetry(key: string, body: Uint8Array, lines: number): Promise<void> {
    for (let attempt = 1; ; attempt += 1) {
      if (this.failure) throw this.failure;
      if (this.halted) throw new AbortedError('DrArchiver: closed before this upload finished.');
      try {
        await this.storage.put(key, body, this.putOptions(body));
      } catch (error) {
        // The name is the segment's: an object under it is this segment, stored by an earlier
        // attempt or an earlier run that died before it deleted the segment.
        if (isAlreadyExists(error)) {
          this.counters.filesUploaded += 1;
          this.counters.linesUploaded += lines;
          this.emit({ type: 'uploaded', key, lines, bytes: body.byteLength, attempts: attempt });
          return;
        }
        if (isPermanent(error)) {
          const failure = this.permanentFailure(key, error);
          this.fail(failure);
          throw failure;
        }
        this.counters.retries += 1;
        this.lastError = error instanceof Error ? error.message : String(error);
        const cap = Math.min(this.retryMaxMs, this.retryBaseMs * 2 ** Math.min(attempt - 1, 30));
        const delayMs = Math.round(cap / 2 + (Math.random() * cap) / 2);
        this.emit({ type: 'retry', key, attempt, delayMs, error });
        await this.sleep(delayMs);
        continue;
      }
      this.counters.filesUploaded += 1;
      this.counters.linesUploaded += lines;
      this.counters.bytesUploaded += body.byteLength;
      this.emit({ type: 'uploaded', key, lines, bytes: body.byteLength, attempts: attempt });
      return;
    }
  }

  /** Waits on the injected clock; close() after a failure or an abort cuts it short. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const sleeper = {
        timer: undefined as unknown,
        wake: () => {
          this.clock.clearTimeout(sleeper.timer);
          this.sleepers.delete(sleeper);
          resolve();
        },
      };
      sleeper.timer = this.clock.setTimeout(sleeper.wake, ms);
      this.sleepers.add(sleeper);
    });
  }

  private emit(event: ArchiverEvent): void {
    try {
      this.onEvent?.(event);
    } catch {
      // A listener's failure must not lose data.
    }
  }
}

/**
 * Whether retrying cannot help: access denied (401/403 from any store, EACCES/EPERM/EROFS from
 * a file system) or a configuration error. Everything else (5xx, throttling, resets, injected
 * faults) is retried.
 */
function isAlreadyExists(error: unknown): boolean {
  return BkError.isInstance(error) && error.code === 'BK_ALREADY_EXISTS';
}

function isPermanent(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 6 && typeof current === 'object' && current !== null; depth += 1) {
    const value = current as {
      code?: unknown;
      status?: unknown;
      statusCode?: unknown;
      name?: unknown;
      message?: unknown;
      $metadata?: { httpStatusCode?: unknown };
      response?: { status?: unknown };
      retryable?: unknown;
      cause?: unknown;
    };
    if (BkError.isInstance(current) && (current.code === 'BK_CONFIG' || current.code === 'BK_UNSUPPORTED'))
      return true;
    for (const status of [
      value.status,
      value.statusCode,
      value.$metadata?.httpStatusCode,
      value.response?.status,
      value.code,
    ]) {
      if (status === 401 || status === 403) return true;
    }
    if (typeof value.code === 'string' && ['EACCES', 'EPERM', 'EROFS'].includes(value.code)) return true;
    if (typeof value.name === 'string' && PERMISSION_NAMES.has(value.name)) return true;
    if (
      BkError.isInstance(current) &&
      !current.retryable &&
      /\bHTTP 40[13]\b|access denied|AccessDenied|Forbidden/i.test(current.message)
    )
      return true;
    current = value.cause;
  }
  return false;
}

const PERMISSION_NAMES = new Set([
  'AccessDenied',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'AuthorizationFailure',
  'AuthorizationPermissionMismatch',
  'AuthenticationFailed',
]);

function processLives(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function writeFully(handle: FileHandle, bytes: Buffer, position: number): Promise<void> {
  let offset = 0;
  while (offset < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.byteLength - offset, position + offset);
    offset += bytesWritten;
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function checkLine(line: string): string {
  if (typeof line !== 'string') throw new ConfigError('DrArchiver: a line must be a string.');
  if (/[\r\n]/.test(line)) {
    throw new ConfigError(`DrArchiver: a line contains a line break: ${JSON.stringify(line.slice(0, 80))}.`);
  }
  if (line.trimStart().startsWith('#')) {
    throw new ConfigError(`DrArchiver: a line starts with "#": ${JSON.stringify(line.slice(0, 80))}.`);
  }
  return line;
}

function normalizeLines(lines: string | readonly string[] | Uint8Array): string[] {
  let candidates: readonly string[];
  if (typeof lines === 'string') candidates = [lines];
  else if (lines instanceof Uint8Array) {
    try {
      candidates = new TextDecoder('utf-8', { fatal: true }).decode(lines).split(/\r?\n/);
    } catch (error) {
      throw new ConfigError('DrArchiver: `lines` bytes are not valid UTF-8.', { cause: error });
    }
  } else if (Array.isArray(lines)) candidates = lines;
  else throw new ConfigError('DrArchiver: `lines` must be a string, an array of strings or a Uint8Array.');
  const result: string[] = [];
  for (const line of candidates) {
    if (typeof line === 'string' && line.trim() === '') continue;
    result.push(checkLine(line));
  }
  return result;
}
