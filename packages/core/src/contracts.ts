import type { ManifestEntry } from './manifest.ts';
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
  /**
   * What identifies the source object on its system, recorded so that an incremental can tell
   * an unchanged object from a replaced one (files: `<device>:<inode>`). Opaque to bk.
   */
  identity?: string;
  /**
   * In an incremental: this file is unchanged since the parent and its body is in the archive of
   * the backup named here (the parent, or where the parent's reference points). No body is
   * stored; `size` and `sha256` must be that backup's. A restore hands it over without a body: a
   * chain restore has already written it.
   */
  ref?: string;
  /** With `ref`: the sha256 that backup recorded for the body. */
  sha256?: string;
  /**
   * In an incremental: this path was in the parent and is gone (a directory: with everything
   * under it). No body is stored; a chain restore removes it.
   */
  deleted?: true;
  /**
   * Set when this entry holds a secret (a private key, a password hash, a token). The backup
   * runner records its path in the manifest under the component's `info.secrets.captured`
   * (grouped by `what`) and, when encryption is required, refuses to store it unencrypted.
   * Components that know up front declare their secrets in {@link ComponentInfo.secrets} instead.
   */
  secret?: Omit<SecretNote, 'paths' | 'count'>;
}

/** What kind of secret a {@link SecretNote} is about. */
export type SecretKind =
  | 'private-key'
  | 'password-hash'
  | 'password'
  | 'token'
  | 'kubernetes-secrets'
  | 'credentials';

/**
 * One kind of secret a backup holds, or could not capture, in words an operator understands.
 * It names the secret, never holds it.
 *
 * @example
 * { kind: 'private-key', what: 'the cluster CA and service-account signing keys', paths: ['pki/ca.key', 'pki/sa.key'] }
 */
export interface SecretNote {
  kind: SecretKind;
  /** What the secret is, e.g. `"password hashes of every InfluxDB user (metastore)"`. */
  what: string;
  /** Entries (relative to the component) holding it, when they can be named; globs allowed. At most 100. */
  paths?: string[];
  /** How many entries hold it, when more than `paths` lists. */
  count?: number;
}

/**
 * Which secrets a component's backup holds and which it could not capture. A backup that holds
 * any is stored unencrypted only with a warning, and not at all when encryption is required.
 */
export interface ComponentSecrets {
  /** Secrets the backup holds: whoever reads the stored archive reads them. */
  captured: SecretNote[];
  /**
   * Secrets the component could not capture (an API never returns them, a key lives outside the
   * component): a restore does not bring them back.
   */
  notCaptured: SecretNote[];
}

/** What a component tells about itself and the server it talks to; recorded in the manifest. */
export interface ComponentInfo {
  /** The server or data version, e.g. `"1.6.7"`. */
  version?: string;
  capabilities?: ComponentCapabilities;
  /** Things this component does not capture, in words an operator understands. */
  notCaptured?: string[];
  /** Which secrets the backup holds and which it could not capture; see {@link ComponentSecrets}. */
  secrets?: ComponentSecrets;
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

/** Passed to {@link Source.incremental}: the backup an incremental builds on. */
export interface IncrementalParent {
  /** The parent backup's name, e.g. `backup_20261121_101500`. */
  backupName: string;
  /** The parent's record of this component (same name and kind). */
  component: RestoreContext['component'];
  /**
   * The parent's recorded entries of this component, in archive order, read from storage on
   * demand (the entry index of a format-2 backup), each checked as it is read.
   */
  entries(): AsyncIterable<ManifestEntry>;
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
  /**
   * Present on components that can back up only what changed since a parent backup: returns a
   * source that does so (the component itself is left unchanged). `planIncremental` calls it
   * with the newest backup holding the component. May be async to read the parent's entries.
   *
   * @throws {ConfigError} when the parent cannot be continued from (it recorded too little).
   */
  incremental?(parent: IncrementalParent): Source | Promise<Source>;
}

/** What a restore did. */
export interface RestoreReport {
  entries: number;
  bytes: number;
  skipped?: number;
  details?: Record<string, unknown>;
}

/** Passed to {@link Restorer.preflight}. */
export interface PreflightContext extends OperationContext {
  backupName: string;
  /** The manifest's record of this component as it was backed up. */
  component: RestoreContext['component'];
}

/** What a restorer found out about the target before a restore writes anything. */
export interface PreflightResult {
  /** The target server's version as it reports it, e.g. `"15.18"`. */
  targetVersion?: string;
  /**
   * Set when the target cannot take this backup: `reason` says why and what would work.
   * `forceable` is false when no override can help (the target's tool cannot read the format at
   * all); otherwise `force` restores anyway, with a warning.
   */
  refusal?: { reason: string; forceable: boolean };
}

/** Writes entries back into a data store. */
export interface Restorer {
  readonly kind: string;
  readonly name: string;
  /**
   * Optional: reads the target server's version and says whether it can take this backup, before
   * any component of the restore writes anything. The restore runner calls it for every selected
   * component and refuses the whole restore with `VersionMismatchError` when one is refused
   * (unless it is `forceable` and the restore is forced). It must write nothing.
   *
   * @throws {ComponentError} When the target cannot be reached.
   * @example
   * async preflight(context) {
   *   const targetVersion = await this.serverVersion(context);
   *   return { targetVersion, refusal: refuseOtherMajor('InfluxDB', context.component.version, targetVersion) };
   * }
   */
  preflight?(context: PreflightContext): Promise<PreflightResult>;
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
