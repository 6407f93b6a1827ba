import type { ProgressListener } from './progress.ts';

/** Bytes as they move through bk: any `AsyncIterable` of `Uint8Array` (a Node `Readable` is one). */
export type ByteStream = AsyncIterable<Uint8Array>;

/** What kind of thing an {@link Entry} is. */
export type EntryType = 'file' | 'directory' | 'symlink';

/**
 * One item a component puts into a backup or receives on restore.
 *
 * `path` is relative to the component, `/`-separated, with no `.` or `..` segments.
 * For a `file`, `body` yields its bytes. When `size` is known, the body must yield exactly that
 * many bytes or the backup fails; when it is not (a dump streamed from a server), the archive
 * stores the body as bounded chunks and records the total.
 */
export interface Entry {
  path: string;
  type?: EntryType;
  size?: number;
  /** Unix permission bits, e.g. `0o644`. */
  mode?: number;
  mtime?: Date;
  /**
   * The mtime in nanoseconds since the epoch, when known more precisely than `mtime`'s
   * milliseconds (a file system's `lstat(…, { bigint: true }).mtimeNs`). When set it is what the
   * backup keeps, and `mtime` must be the same instant to the millisecond. Restore sets it on
   * entries read back, to the precision the manifest kept.
   */
  mtimeNs?: bigint;
  /** For `symlink`: where the link points, as stored in the link itself. */
  linkTarget?: string;
  body?: ByteStream;
}

/** What a component tells about itself and the server it talks to; recorded in the manifest. */
export interface ComponentInfo {
  /** The server or data version, e.g. `"1.6.7"`. */
  version?: string;
  capabilities?: ComponentCapabilities;
  /** Things this component does not capture, in words an operator understands. */
  notCaptured?: string[];
  /** Anything else worth reading before a restore (settings, counts, hashes). JSON only. */
  details?: Record<string, unknown>;
}

/** What a component offers; the shared test suite and the READMEs read these flags. */
export interface ComponentCapabilities {
  incremental?: boolean;
  pointInTime?: boolean;
  consistentSnapshot?: boolean;
  restoreIntoExisting?: boolean;
  selectiveRestore?: boolean;
}

/** Shared by every call bk makes into a component or storage. */
export interface OperationContext {
  /** Abort to cancel: every stage stops, remote state is cleaned up, the call rejects. */
  signal: AbortSignal;
  /** Receives typed progress events. */
  progress: ProgressListener;
}

/** Passed to {@link Source.backup}. */
export interface BackupContext extends OperationContext {
  /** The backup being written, e.g. `backup_20261121_101500`. */
  backupName: string;
}

/** How restore treats data that already exists in the target. */
export type ConflictPolicy = 'fail' | 'skip' | 'overwrite';

/** Passed to {@link Restorer.restore}. */
export interface RestoreContext extends OperationContext {
  backupName: string;
  /** The manifest's record of this component as it was backed up. */
  component: {
    name: string;
    kind: string;
    version?: string;
    info: ComponentInfo;
  };
  conflict: ConflictPolicy;
}

/** Reads a data store and yields its entries. */
export interface Source {
  /** The component's kind, e.g. `"files"`, `"influx"`. */
  readonly kind: string;
  /** Unique within one backup; the archive stores this component's entries under `<name>/`. */
  readonly name: string;
  /** Reads the server's version and what will and will not be captured. */
  describe(context: OperationContext): Promise<ComponentInfo>;
  /** Yields every entry. Stop early by returning from the iterator; abort with the signal. */
  backup(context: BackupContext): AsyncIterable<Entry>;
}

/** What a restore did. */
export interface RestoreReport {
  entries: number;
  bytes: number;
  skipped?: number;
  details?: Record<string, unknown>;
}

/** Writes entries back into a data store. */
export interface Restorer {
  readonly kind: string;
  readonly name: string;
  /**
   * Consumes `entries` in order. Each entry's body is checked against the manifest as it is read:
   * a mismatch makes the body throw an `IntegrityError` before it ends, so a restorer that
   * publishes only after a body completes never publishes corrupt data.
   */
  restore(entries: AsyncIterable<Entry>, context: RestoreContext): Promise<RestoreReport>;
}

/** Most components are both. */
export interface Component extends Source, Restorer {}

/** What a storage backend can do; the contract suite skips by these flags. */
export interface StorageCapabilities {
  /** `put` publishes atomically: a reader sees the whole object or none. */
  atomicPublish: boolean;
  /** `put(..., { ifNoneMatch: true })` is an atomic create-if-absent. */
  conditionalCreate: boolean;
  /** `get(..., { range })` is served by the backend without reading from the start. */
  rangeRead: boolean;
  /** Large bodies are uploaded in parallel parts. */
  multipart: boolean;
}

/** Metadata of one stored object. */
export interface ObjectInfo {
  key: string;
  size: number;
  lastModified?: Date;
  etag?: string;
}

export interface PutOptions {
  /** Create only if no object has this key; otherwise reject with `AlreadyExistsError`. */
  ifNoneMatch?: boolean;
  /** Expected size when known; adapters use it to choose part sizes. */
  sizeHint?: number;
  contentType?: string;
  signal?: AbortSignal;
}

export interface GetOptions {
  /** Byte range: `start` and `end` non-negative, `end` exclusive (default: the object's end); `end <= start` reads nothing; negative or fractional bounds throw `ConfigError` (see `checkRange`). */
  range?: { start: number; end?: number };
  signal?: AbortSignal;
}

/**
 * Something a write that never finished left in a store (its process was killed, the machine
 * lost power): a temp file, an open multipart upload, segments no object refers to. Never
 * visible through `list`, but it takes space until removed.
 */
export interface IncompleteUpload {
  /** What it is, in the store's own words, e.g. `"temp file"`, `"multipart upload"`, `"segments"`. */
  kind: string;
  /** Where it is, for an operator to find it: a path, a key and upload id. Never credentials. */
  location: string;
  /** The key it was being written for, when the store records it. */
  key?: string;
  /** Bytes it holds, when the store tells. */
  size?: number;
  /** When it was last written to (or started, when that is all the store tells). */
  lastModified?: Date;
}

/** Options of {@link Storage.cleanupIncomplete}. */
export interface CleanupIncompleteOptions {
  /**
   * Only what has not been written to for at least this many milliseconds is removed: a younger
   * leftover may belong to a put that is still running.
   */
  olderThanMs: number;
  /** Only leftovers of keys starting with this; a store that cannot tell (fs temp files) ignores it. */
  prefix?: string;
  /** Report what would be removed, remove nothing. */
  dryRun?: boolean;
  signal?: AbortSignal;
}

/** What {@link Storage.cleanupIncomplete} removed, and what it could not. */
export interface CleanupIncompleteResult {
  /** Leftovers removed (with `dryRun`: that would be removed). */
  removed: IncompleteUpload[];
  /**
   * What this store keeps that it cannot list or remove, and how it goes away, e.g. "Azure
   * discards uncommitted blocks after 7 days". Empty when there is nothing to say.
   */
  notes: string[];
}

/**
 * An object store. Keys are `/`-separated and relative; an adapter must refuse keys that would
 * escape its root or prefix with `ConfigError`: empty, absolute (a leading `/`), with a
 * backslash or a NUL byte, or with an empty, `.` or `..` segment. `checkStorageKey` applies
 * exactly these rules; an adapter may refuse more (a reserved prefix, characters its backend
 * cannot hold). Adapters read `put` bodies with `BodyReader`.
 */
export interface Storage {
  /** A short description for logs, never containing credentials, e.g. `file:///var/backups`. */
  readonly description: string;
  readonly capabilities: StorageCapabilities;
  /**
   * Optional: finds out what the backend can do when `capabilities` cannot say it up front
   * (whether an S3-compatible server honours `If-None-Match`), and returns the capabilities.
   * The backup runner calls it before it claims a name; without it `capabilities` is trusted.
   */
  probeCapabilities?(options?: { signal?: AbortSignal }): Promise<StorageCapabilities>;
  /**
   * Stores `body` under `key`. Rejects with `AlreadyExistsError` when `ifNoneMatch` is set and
   * the key exists. On error or abort no object appears and nothing is left behind.
   */
  put(key: string, body: ByteStream | Uint8Array, options?: PutOptions): Promise<ObjectInfo>;
  /** Reads an object. Rejects with `NotFoundError` when it does not exist. */
  get(key: string, options?: GetOptions): Promise<ByteStream>;
  /** Returns `undefined` when the object does not exist. */
  stat(key: string, options?: { signal?: AbortSignal }): Promise<ObjectInfo | undefined>;
  /** Every object whose key starts with `prefix`, in no particular order. */
  list(prefix: string, options?: { signal?: AbortSignal }): AsyncIterable<ObjectInfo>;
  /** Deletes an object; deleting a missing object is not an error. */
  delete(key: string, options?: { signal?: AbortSignal }): Promise<void>;
  /**
   * Removes what puts that never finished left behind (see {@link IncompleteUpload}), older than
   * `olderThanMs`, and says what it removed. Never touches an object, nor anything a running put
   * has written to within `olderThanMs`. Optional: a store whose puts leave nothing behind, or
   * that cannot find it, may omit it; `prune` calls it when it is there.
   *
   * @throws {AbortedError} When `signal` aborts.
   * @throws {StorageError} When listing or removing fails.
   * @example
   * const { removed } = await storage.cleanupIncomplete?.({ olderThanMs: 86_400_000, dryRun: true }) ?? { removed: [] };
   */
  cleanupIncomplete?(options: CleanupIncompleteOptions): Promise<CleanupIncompleteResult>;
}
