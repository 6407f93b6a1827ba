import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { gzip as gzipCallback } from 'node:zlib';
import { AlreadyExistsError, BkError, ConfigError, type Storage, toAbortedError } from '@bk/core';
import type { LineProtocolPrecision } from '../line-protocol/import-line-protocol.ts';
import { checkSegment, timestampMillisOf, utcDay } from './line-scan.ts';

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
  | { type: 'rotated'; key: string; reason: RotationReason; lines: number; bytes: number }
  | { type: 'uploaded'; key: string; lines: number; bytes: number; attempts: number }
  | { type: 'retry'; key: string; attempt: number; delayMs: number; error: unknown };

export interface DrArchiverOptions {
  /** Where files go. Only `put` with `ifNoneMatch` is used: write-only credentials suffice. */
  storage: Storage;
  /** First key segment(s), e.g. `influx-prod-1` (may contain `/`, no empty/`.`/`..` segments). */
  instance: string;
  /** Rotate a file before it would exceed this many uncompressed bytes. Default 64 MiB. */
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
  /** Bytes held in memory, as counted for `maxBufferedBytes`. */
  bufferedBytes: number;
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
 * InfluxDB are also handed to `write()`, which appends them to an in-memory file per database,
 * retention policy and UTC day. Files rotate by size and age and are uploaded, gzipped, to
 * `<instance>/<db>/<rp>/<YYYYMMDD>/<uuid>.gz` with create-if-absent `put`s. Each file is annotated
 * line protocol (`# DML`, `# CONTEXT-DATABASE:`, `# CONTEXT-RETENTION-POLICY:`) that
 * `influx -import -compressed -precision <p> -path <file>` and {@link replay} read.
 *
 * Unlike InfluxDB subscriptions, nothing acknowledged is dropped: `write()` resolves once its
 * lines are in a file that will be uploaded; a failing storage is retried forever with
 * exponential backoff and jitter, and while more than `maxBufferedBytes` are held `write()`
 * waits instead. The archive does not store the timestamp precision: replay with the precision
 * your writer uses, and write points with explicit timestamps (a line without one gets the
 * import's time on replay).
 *
 * @example
 * const archiver = new DrArchiver({ storage, instance: 'influx-prod-1' });
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
  };
  private lastError: string | undefined;

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
  }

  /**
   * Appends line-protocol lines for `db`/`rp`. `lines` is one line (a string), several (an array,
   * one line per element) or a `/write` body (bytes, UTF-8, `\n`-separated). Blank lines are
   * skipped; a line with a line break inside an element, or starting with `#` (it would be read
   * as an annotation), is refused and nothing of the call is kept. Lines are not parsed
   * further: a malformed point fails at import.
   *
   * Resolves when every line is in an in-memory file that will be uploaded; waits first while
   * more than `maxBufferedBytes` are buffered (storage slow or down).
   *
   * @throws {ConfigError} invalid db, rp or line; the archiver is closed.
   */
  async write(db: string, rp: string, lines: string | readonly string[] | Uint8Array): Promise<void> {
    if (this.closed) throw new ConfigError('DrArchiver: write() after close().');
    checkSegment('database', db);
    checkSegment('retention policy', rp);
    const accepted = normalizeLines(lines);
    if (accepted.length === 0) return;
    await this.acquire();
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
    for (const file of [...this.open.values()]) this.seal(file, 'flush');
    const all = Promise.all([...this.pending].map((file) => file.done)).then(() => undefined);
    const { signal } = options;
    if (signal === undefined) return all;
    if (signal.aborted) throw toAbortedError(signal);
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
   * the storage may be down (unuploaded files are then lost with the process).
   */
  async close(options: { signal?: AbortSignal } = {}): Promise<void> {
    this.closed = true;
    try {
      await this.flush(options);
    } finally {
      if (this.pending.size === 0) this.stopTimers();
      for (const waiter of this.waiters.splice(0)) waiter();
    }
  }

  stats(): DrArchiverStats {
    return {
      ...this.counters,
      openFiles: this.open.size,
      pendingFiles: this.pending.size,
      bufferedBytes: this.buffered,
      waitingWrites: this.waiters.length,
      ...(this.lastError === undefined ? {} : { lastError: this.lastError }),
    };
  }

  private stopTimers(): void {
    for (const file of this.open.values()) this.clock.clearTimeout(file.timer);
    for (const timer of this.retryTimers) this.clock.clearTimeout(timer);
    this.retryTimers.clear();
  }

  private acquire(): Promise<void> {
    if (this.waiters.length === 0 && this.buffered <= this.maxBufferedBytes) return Promise.resolve();
    // Open files would otherwise only leave memory when they age out: hand them to the uploader.
    for (const file of [...this.open.values()]) this.seal(file, 'pressure');
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Lets the first waiting write go when there is room; it calls wake() again when done. */
  private wake(): void {
    if (this.waiters.length > 0 && (this.buffered <= this.maxBufferedBytes || this.closed)) {
      this.waiters.shift()?.();
    }
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
    while (this.uploading < this.uploadConcurrency && this.ready.length > 0) {
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
    file.attempts += 1;
    try {
      await this.storage.put(file.key, body, {
        ifNoneMatch: true,
        sizeHint: body.byteLength,
        contentType: 'application/gzip',
      });
    } catch (error) {
      if (
        error instanceof AlreadyExistsError ||
        (BkError.isInstance(error) && error.code === 'BK_ALREADY_EXISTS')
      ) {
        if (file.attempts === 1) {
          // Another file holds this name (an id collision): take a new one, at once.
          file.key = `${file.keyBase}${this.idFactory()}.gz`;
          this.ready.unshift(file);
          return;
        }
        // An earlier attempt of ours landed although it reported a failure: the file is stored.
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

  private emit(event: ArchiverEvent): void {
    try {
      this.onEvent?.(event);
    } catch {
      // A listener's failure must not lose data.
    }
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
