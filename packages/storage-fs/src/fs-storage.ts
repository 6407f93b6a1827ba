import { randomBytes } from 'node:crypto';
import { constants, type Dir, type Stats } from 'node:fs';
import {
  type FileHandle,
  link,
  lstat,
  mkdir,
  open,
  opendir,
  realpath,
  rename,
  rmdir,
  unlink,
} from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
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

/** The directory under the root that holds bodies while they are written; never a key. */
const TEMP_DIR = '.bk-tmp';
/** `get` reads this much per chunk; each open read stream holds at most about this much. */
const READ_CHUNK_BYTES = 1024 * 1024;
/** How often `put` re-creates a parent directory that a concurrent `delete` removed. */
const PUBLISH_ATTEMPTS = 3;

/** Options of {@link FsStorage}. */
export interface FsStorageOptions {
  /**
   * The directory that holds the objects; relative paths are resolved against the working
   * directory. Created (with its parents) on the first `put`.
   */
  root: string;
  /**
   * Flush each object and its directory to disk before `put` resolves, so a published object
   * survives a power cut. Default `true`; turn off only for scratch data or tests.
   */
  fsync?: boolean;
}

/** The `code` of a Node system error, if `error` is one. */
function errorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string'
    ? error.code
    : undefined;
}

function hasCode(error: unknown, ...codes: string[]): boolean {
  const code = errorCode(error);
  return code !== undefined && codes.includes(code);
}

/** Wraps a file system error in a `StorageError` whose message says what to do about it. */
function storageError(action: string, error: unknown): BkError {
  if (BkError.isInstance(error)) return error;
  const detail = error instanceof Error ? error.message : String(error);
  const reason =
    {
      ENOSPC: 'the disk is full',
      EDQUOT: 'the disk quota is exceeded',
      EACCES: 'permission denied',
      EPERM: 'the operation is not permitted',
      EROFS: 'the file system is read-only',
      EXDEV: `the key crosses a mount point inside the root (the ${TEMP_DIR} directory must be on the same file system as every object)`,
      ENOTDIR: 'a part of the key is an object, not a directory',
      EISDIR: 'the key names a directory that holds other objects',
      EMFILE: 'the process has too many open files',
    }[errorCode(error) ?? ''] ?? 'unexpected file system error';
  return new StorageError(`Could not ${action}: ${reason} (${detail}).`, { cause: error });
}

/** The `Storage` contract's key rules, plus one of its own: the temp directory is not a key. */
function checkKey(key: string): void {
  checkStorageKey(key);
  if (key.startsWith(TEMP_DIR))
    throw new ConfigError(`Invalid storage key "${key}": keys starting with "${TEMP_DIR}" are reserved.`);
}

function toInfo(key: string, stats: Stats): ObjectInfo {
  return { key, size: stats.size, lastModified: stats.mtime };
}

async function writeFully(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.byteLength) {
    const { bytesWritten } = await handle.write(chunk, offset, chunk.byteLength - offset);
    offset += bytesWritten;
  }
}

/**
 * A storage in a directory of a local disk or an NFS mount. Each key is a file under the root
 * (`a/b/c` is `<root>/a/b/c`).
 *
 * `put` streams the body into a private temp file under `<root>/.bk-tmp/`, flushes it, then
 * publishes it with one atomic `rename` (or `link`, for create-if-absent), so a reader sees the
 * whole object or none, and an error or abort leaves nothing behind. Memory: `put` holds one
 * chunk of the body at a time; each stream returned by `get` buffers up to 1 MiB.
 *
 * Keys never leave the root: absolute keys, `.`/`..`/empty segments, backslashes, NUL bytes
 * and keys under `.bk-tmp` are refused with `ConfigError`, and so is a key whose directory
 * resolves, through a symbolic link, outside the root.
 *
 * @example
 * const storage = new FsStorage({ root: '/var/backups/bk' });
 * await storage.put('nightly/hello.txt', new TextEncoder().encode('hello'), { ifNoneMatch: true });
 * for await (const chunk of await storage.get('nightly/hello.txt')) process.stdout.write(chunk);
 */
export class FsStorage implements Storage {
  /** `file://` and the absolute root, e.g. `file:///var/backups/bk`. */
  readonly description: string;
  /**
   * Atomic publish and create-if-absent (through `rename` and `link`), ranged reads, no
   * multipart upload (a local write is already as fast as the disk).
   */
  readonly capabilities: StorageCapabilities = {
    atomicPublish: true,
    conditionalCreate: true,
    rangeRead: true,
    multipart: false,
  };
  /** The absolute root directory, as given (not resolved through symbolic links). */
  readonly root: string;
  private readonly fsync: boolean;
  private realRoot: string | undefined;

  /**
   * @param options The root directory, or `{ root, fsync }`.
   * @throws {ConfigError} When the root is empty or not a string.
   * @example
   * const storage = new FsStorage('/var/backups/bk');
   * const scratch = new FsStorage({ root: '/tmp/bk-scratch', fsync: false });
   */
  constructor(options: string | FsStorageOptions) {
    const { root, fsync = true } = typeof options === 'string' ? { root: options } : options;
    if (typeof root !== 'string' || root === '' || root.includes('\0'))
      throw new ConfigError('FsStorage needs a root directory, e.g. new FsStorage("/var/backups/bk").');
    this.root = resolve(root);
    this.fsync = fsync;
    this.description = pathToFileURL(this.root).href;
  }

  /**
   * Stores `body` under `key`: streams it into a temp file, flushes it (unless `fsync` is off),
   * then publishes it atomically and flushes the directory. Without `ifNoneMatch` an existing
   * object is replaced; readers that already opened it keep reading the old bytes.
   *
   * @throws {ConfigError} When the key is invalid or leads outside the root.
   * @throws {AlreadyExistsError} When `ifNoneMatch` is set and the key exists.
   * @throws {AbortedError} When `signal` aborts (or the signal's reason, when it is a bk error).
   * @throws {StorageError} When the file system fails (disk full, permissions, a key that is a
   *   directory); the error the body throws is rethrown unchanged. In every case neither the
   *   object nor a temp file is left behind.
   * @example
   * const info = await storage.put('reports/2026.csv', fileStream, { ifNoneMatch: true, signal });
   * console.log(info.size);
   */
  async put(key: string, body: ByteStream | Uint8Array, options: PutOptions = {}): Promise<ObjectInfo> {
    const { signal, ifNoneMatch = false } = options;
    const reader = new BodyReader(body, signal);
    try {
      checkKey(key);
      throwIfAborted(signal);
      const path = join(this.root, key);
      const parent = dirname(path);
      // Fail fast, before the body is read: a refused key or a taken name costs no bytes.
      await this.checkParent(key, parent);
      if (ifNoneMatch && (await this.statPath(key, path))) throw new AlreadyExistsError(key);
      return await this.writeAndPublish(key, path, reader, ifNoneMatch, signal);
    } finally {
      await reader.release();
    }
  }

  private async writeAndPublish(
    key: string,
    path: string,
    reader: BodyReader,
    ifNoneMatch: boolean,
    signal: AbortSignal | undefined,
  ): Promise<ObjectInfo> {
    const parent = dirname(path);
    const tempDir = join(this.root, TEMP_DIR);
    const tempPath = join(tempDir, `${randomBytes(12).toString('hex')}.tmp`);
    let handle: FileHandle | undefined;
    let published = false;
    let createdFrom: string | undefined;
    try {
      try {
        await mkdir(tempDir, { recursive: true });
        handle = await open(tempPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
      } catch (error) {
        throw storageError(`create a temp file in ${tempDir}`, error);
      }
      for (let chunk = await reader.next(); chunk !== undefined; chunk = await reader.next()) {
        try {
          await writeFully(handle, chunk);
        } catch (error) {
          throw storageError(`write "${key}" to ${this.description}`, error);
        }
      }
      let stats: Stats;
      try {
        if (this.fsync) await handle.sync();
        await handle.chmod(0o644);
        stats = await handle.stat();
        await handle.close();
        handle = undefined;
      } catch (error) {
        throw storageError(`flush "${key}" to ${this.description}`, error);
      }
      throwIfAborted(signal);
      for (let attempt = 1; !published; attempt += 1) {
        createdFrom = (await this.makeParent(key, parent)) ?? createdFrom;
        try {
          published = await this.publish(key, tempPath, path, ifNoneMatch);
        } catch (error) {
          // A concurrent delete may have removed the directory while it was empty: make it again.
          if (!hasCode(error, 'ENOENT') || attempt >= PUBLISH_ATTEMPTS)
            throw storageError(`publish "${key}" in ${this.description}`, error);
        }
      }
      await this.syncDirectories(parent, createdFrom === undefined ? parent : dirname(createdFrom), key);
      return toInfo(key, stats);
    } catch (error) {
      await handle?.close().catch(() => {});
      await unlink(tempPath).catch(() => {});
      if (published) await unlink(path).catch(() => {});
      await this.removeEmptyParents(parent);
      throw signal?.aborted ? toAbortedError(signal) : error;
    }
  }

  /**
   * Opens an object for reading, from `range.start` (default 0) to `range.end` (exclusive,
   * default the end). The file is opened before this resolves, so a missing object rejects here
   * and not while reading. The stream reads 1 MiB at a time; aborting `signal` ends it with the
   * signal's reason.
   *
   * @throws {ConfigError} When the key or range is invalid, the key leads outside the root, or
   *   the object is a symbolic link.
   * @throws {NotFoundError} When no object has this key.
   * @throws {AbortedError} When `signal` is already aborted.
   * @throws {StorageError} When the file cannot be opened for another reason.
   * @example
   * const tail = await storage.get('big.bin', { range: { start: 1024 } });
   * for await (const chunk of tail) hash.update(chunk);
   */
  async get(key: string, options: GetOptions = {}): Promise<ByteStream> {
    const { signal } = options;
    checkKey(key);
    const { start, end } = checkRange(options.range);
    throwIfAborted(signal);
    const path = join(this.root, key);
    const notFound = () => new NotFoundError(`No object "${key}" in ${this.description}.`);
    if (!(await this.checkParent(key, dirname(path)))) throw notFound();
    let handle: FileHandle;
    try {
      handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (error) {
      if (hasCode(error, 'ENOENT', 'ENOTDIR')) throw notFound();
      if (hasCode(error, 'ELOOP')) throw this.symlinkError(key);
      throw storageError(`open "${key}" in ${this.description}`, error);
    }
    try {
      if (!(await handle.stat()).isFile()) throw notFound();
    } catch (error) {
      await handle.close().catch(() => {});
      throw storageError(`open "${key}" in ${this.description}`, error);
    }
    if (end !== undefined && end <= start) {
      await handle.close();
      return (async function* () {})();
    }
    const stream = handle.createReadStream({
      start,
      ...(end === undefined ? {} : { end: end - 1 }),
      highWaterMark: READ_CHUNK_BYTES,
    });
    // Without a listener, an error before anyone iterates (an abort, EIO) would crash the
    // process; iterating still reports it, since the stream remembers it.
    stream.on('error', () => {});
    if (signal) {
      const onAbort = () => stream.destroy(toAbortedError(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      stream.once('close', () => signal.removeEventListener('abort', onAbort));
    }
    return stream;
  }

  /**
   * Size and modification time of an object, or `undefined` when there is none (a directory
   * that only holds other objects is not an object).
   *
   * @throws {ConfigError} When the key is invalid, leads outside the root, or is a symbolic link.
   * @throws {AbortedError} When `signal` is already aborted.
   * @throws {StorageError} When the file system fails.
   * @example
   * const info = await storage.stat('nightly/backup_20261121_101500.tar.gz');
   * if (info) console.log(info.size, info.lastModified);
   */
  async stat(key: string, options: { signal?: AbortSignal } = {}): Promise<ObjectInfo | undefined> {
    checkKey(key);
    throwIfAborted(options.signal);
    const path = join(this.root, key);
    if (!(await this.checkParent(key, dirname(path)))) return undefined;
    return this.statPath(key, path);
  }

  /**
   * Every object whose key starts with `prefix` (a plain string prefix, so `"backup_2026"`
   * matches `backup_20261121_101500.tar.gz`), in no particular order. Walks only the
   * directories that can hold a match, skips `.bk-tmp` and symbolic links, and streams: memory
   * stays bounded however many objects there are.
   *
   * @throws {AbortedError} When `signal` aborts.
   * @throws {StorageError} When a directory cannot be read.
   * @example
   * for await (const object of storage.list('nightly/')) console.log(object.key, object.size);
   */
  async *list(prefix: string, options: { signal?: AbortSignal } = {}): AsyncIterable<ObjectInfo> {
    throwIfAborted(options.signal);
    yield* this.walk(this.root, '', prefix, options.signal);
  }

  /**
   * Deletes an object, then removes directories it leaves empty, up to (not including) the root.
   * Deleting a missing object does nothing.
   *
   * @throws {ConfigError} When the key is invalid or leads outside the root.
   * @throws {AbortedError} When `signal` is already aborted.
   * @throws {StorageError} When the file system refuses the deletion.
   * @example
   * await storage.delete('nightly/backup_20261121_101500.lock');
   */
  async delete(key: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    checkKey(key);
    throwIfAborted(options.signal);
    const path = join(this.root, key);
    const parent = dirname(path);
    if (!(await this.checkParent(key, parent))) return;
    try {
      await unlink(path);
    } catch (error) {
      // EISDIR/EPERM: the key is a directory of other objects, which is not an object.
      if (hasCode(error, 'ENOENT', 'ENOTDIR', 'EISDIR')) return;
      if (hasCode(error, 'EPERM') && (await lstat(path).catch(() => undefined))?.isDirectory()) return;
      throw storageError(`delete "${key}" from ${this.description}`, error);
    }
    await this.removeEmptyParents(parent);
  }

  /**
   * Deletes temp files that a killed process left in `<root>/.bk-tmp/`. A `put` that is still
   * running keeps its temp file's modification time fresh while its body flows, so pick an age
   * longer than any body may stall (the default is one hour). Safe to run while other
   * processes write. `prune` calls {@link cleanupIncomplete}, which does the same and says what
   * it removed.
   *
   * @param olderThanMs Only files last modified at least this long ago are deleted.
   * @returns How many temp files were deleted.
   * @throws {StorageError} When the temp directory cannot be read.
   * @example
   * const removed = await storage.cleanupTemp(24 * 3600_000);
   */
  async cleanupTemp(olderThanMs = 3_600_000): Promise<number> {
    return (await this.cleanupIncomplete({ olderThanMs })).removed.length;
  }

  /**
   * Deletes (with `dryRun`: only lists) the temp files that killed processes left in
   * `<root>/.bk-tmp/` and that were last modified at least `olderThanMs` ago. A running `put`
   * keeps its temp file's modification time fresh while its body flows. Temp files do not record
   * their key, so `prefix` is ignored: every old temp file under the root goes.
   *
   * @throws {AbortedError} When `signal` aborts.
   * @throws {StorageError} When the temp directory cannot be read or a file cannot be deleted.
   * @example
   * const { removed } = await storage.cleanupIncomplete({ olderThanMs: 86_400_000, dryRun: true });
   * for (const item of removed) console.log(item.location, item.size);
   */
  async cleanupIncomplete(options: CleanupIncompleteOptions): Promise<CleanupIncompleteResult> {
    const { olderThanMs, dryRun = false, signal } = options;
    throwIfAborted(signal);
    const tempDir = join(this.root, TEMP_DIR);
    const cutoff = Date.now() - olderThanMs;
    const removed: IncompleteUpload[] = [];
    try {
      for await (const entry of await opendir(tempDir)) {
        throwIfAborted(signal);
        if (!entry.isFile() || !entry.name.endsWith('.tmp')) continue;
        const path = join(tempDir, entry.name);
        const stats = await lstat(path).catch(() => undefined);
        if (!stats?.isFile() || stats.mtimeMs > cutoff) continue;
        if (!dryRun) {
          try {
            await unlink(path);
          } catch (error) {
            if (hasCode(error, 'ENOENT')) continue;
            throw error;
          }
        }
        removed.push({ kind: 'temp file', location: path, size: stats.size, lastModified: stats.mtime });
      }
    } catch (error) {
      if (signal?.aborted) throw toAbortedError(signal);
      if (hasCode(error, 'ENOENT')) return { removed, notes: [] };
      throw storageError(`clean up temp files in ${tempDir}`, error);
    }
    return { removed, notes: [] };
  }

  /** `realpath(root)`, cached once the root exists; `undefined` while it does not. */
  private async resolveRoot(): Promise<string | undefined> {
    if (this.realRoot !== undefined) return this.realRoot;
    try {
      this.realRoot = await realpath(this.root);
      return this.realRoot;
    } catch (error) {
      if (hasCode(error, 'ENOENT')) return undefined;
      throw storageError(`resolve the root ${this.root}`, error);
    }
  }

  private symlinkError(key: string): ConfigError {
    return new ConfigError(
      `Refusing storage key "${key}": it is, or goes through, a symbolic link that leads outside ${this.description}.`,
    );
  }

  /**
   * Checks that `directory` or, when it does not exist yet, its deepest existing ancestor
   * resolves inside the root, so nothing is read, written or created through a link that
   * leaves it. Returns whether `directory` exists.
   *
   * @throws {ConfigError} When it resolves outside the root.
   */
  private async checkParent(key: string, directory: string): Promise<boolean> {
    const realRoot = await this.resolveRoot();
    if (realRoot === undefined) return false;
    let probe = directory;
    let real: string | undefined;
    while (real === undefined) {
      try {
        real = await realpath(probe);
      } catch (error) {
        if (!hasCode(error, 'ENOENT', 'ENOTDIR')) throw storageError(`resolve "${key}"`, error);
        if (probe === this.root) return false;
        probe = dirname(probe);
      }
    }
    if (real !== realRoot && !real.startsWith(realRoot.endsWith(sep) ? realRoot : realRoot + sep))
      throw this.symlinkError(key);
    if (probe !== directory) return false;
    return (await lstat(real)).isDirectory();
  }

  /**
   * Creates the object's directory after checking that the part that already exists stays
   * inside the root, so no directory is ever created outside it. Returns the first directory
   * it created, if any.
   */
  private async makeParent(key: string, parent: string): Promise<string | undefined> {
    if (await this.checkParent(key, parent)) return undefined;
    let created: string | undefined;
    try {
      created = await mkdir(parent, { recursive: true });
    } catch (error) {
      if (hasCode(error, 'EEXIST', 'ENOTDIR'))
        throw new StorageError(
          `Could not store "${key}" in ${this.description}: a part of its key is already an object, and a file system cannot hold both "a" and "a/b".`,
          { cause: error },
        );
      throw storageError(`create the directory of "${key}" in ${this.description}`, error);
    }
    // A link swapped in between the check and mkdir shows here, before anything is published.
    await this.checkParent(key, parent);
    return created;
  }

  private async statPath(key: string, path: string): Promise<ObjectInfo | undefined> {
    let stats: Stats;
    try {
      stats = await lstat(path);
    } catch (error) {
      if (hasCode(error, 'ENOENT', 'ENOTDIR')) return undefined;
      throw storageError(`stat "${key}" in ${this.description}`, error);
    }
    if (stats.isSymbolicLink()) throw this.symlinkError(key);
    return stats.isFile() ? toInfo(key, stats) : undefined;
  }

  /**
   * Moves the finished temp file to its key. With `ifNoneMatch`, `link` creates the key only if
   * it is free (atomic on local file systems and on NFS), then the temp name is dropped.
   * Resolves `true` once the object is published; a missing directory rejects with the raw
   * `ENOENT` so the caller can make it again.
   */
  private async publish(key: string, tempPath: string, path: string, ifNoneMatch: boolean): Promise<true> {
    if (!ifNoneMatch) {
      try {
        await rename(tempPath, path);
      } catch (error) {
        if (hasCode(error, 'ENOENT')) throw error;
        throw storageError(`publish "${key}" in ${this.description}`, error);
      }
      return true;
    }
    try {
      await link(tempPath, path);
    } catch (error) {
      // NFS may answer a retransmitted, successful LINK with EEXIST; the temp file's link count
      // tells whether the new name is ours (the method open(2) describes under O_EXCL).
      const ours = hasCode(error, 'EEXIST') && (await lstat(tempPath).catch(() => undefined))?.nlink === 2;
      if (!ours) {
        if (hasCode(error, 'EEXIST')) throw new AlreadyExistsError(key);
        if (hasCode(error, 'ENOENT')) throw error;
        if (hasCode(error, 'EPERM', 'ENOTSUP', 'EOPNOTSUPP'))
          throw new StorageError(
            `Could not publish "${key}" in ${this.description}: this file system does not support hard links, which create-if-absent needs (${errorCode(error)}).`,
            { cause: error },
          );
        throw storageError(`publish "${key}" in ${this.description}`, error);
      }
    }
    await unlink(tempPath).catch(() => {});
    return true;
  }

  /**
   * Flushes `from` and each parent up to `to`: the new object's entry, and the entries of the
   * directories this put created, so all of them survive a power cut.
   */
  private async syncDirectories(from: string, to: string, key: string): Promise<void> {
    if (!this.fsync) return;
    for (let directory = from; ; directory = dirname(directory)) {
      let handle: FileHandle | undefined;
      try {
        handle = await open(directory, constants.O_RDONLY | constants.O_DIRECTORY);
        await handle.sync();
      } catch (error) {
        // Some file systems (a few network and FUSE ones) cannot fsync a directory at all.
        if (!hasCode(error, 'EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'EISDIR', 'EBADF', 'EACCES'))
          throw storageError(`flush the directory of "${key}" in ${this.description}`, error);
      } finally {
        await handle?.close().catch(() => {});
      }
      if (directory === to || directory === dirname(directory)) return;
    }
  }

  /** Best effort: removes `directory` and its parents while they are empty, never the root. */
  private async removeEmptyParents(directory: string): Promise<void> {
    for (let current = directory; current.startsWith(this.root + sep); current = dirname(current)) {
      try {
        await rmdir(current);
      } catch {
        return;
      }
    }
  }

  private async *walk(
    directory: string,
    directoryKey: string,
    prefix: string,
    signal: AbortSignal | undefined,
  ): AsyncIterable<ObjectInfo> {
    let entries: Dir;
    try {
      entries = await opendir(directory);
    } catch (error) {
      if (hasCode(error, 'ENOENT', 'ENOTDIR')) return;
      throw storageError(`list ${directory}`, error);
    }
    for await (const entry of entries) {
      throwIfAborted(signal);
      if (directoryKey === '' && entry.name === TEMP_DIR) continue;
      const key = directoryKey === '' ? entry.name : `${directoryKey}/${entry.name}`;
      if (entry.isDirectory()) {
        const asPrefix = `${key}/`;
        if (asPrefix.startsWith(prefix) || prefix.startsWith(asPrefix))
          yield* this.walk(join(directory, entry.name), key, prefix, signal);
      } else if (entry.isFile() && key.startsWith(prefix)) {
        const stats = await lstat(join(directory, entry.name)).catch((error: unknown) => {
          // Deleted between reading the directory and the stat: not listed.
          if (hasCode(error, 'ENOENT')) return undefined;
          throw storageError(`stat "${key}" in ${this.description}`, error);
        });
        if (stats?.isFile()) yield toInfo(key, stats);
      }
    }
  }
}
