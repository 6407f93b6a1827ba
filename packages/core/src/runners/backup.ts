import { hostname } from 'node:os';
import { type ArchiveComponent, archiveRecords, DEFAULT_CHUNK_SIZE } from '../archive.ts';
import { type CompressionFormat, compress, resolveCompressOptions } from '../compress.ts';
import type { Source, Storage } from '../contracts.ts';
import { AlreadyExistsError, BkError, ConfigError, throwIfAborted, toAbortedError } from '../errors.ts';
import { digest } from '../hash.ts';
import {
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  type Manifest,
  type SidecarManifest,
  serializeManifest,
} from '../manifest.ts';
import {
  ARCHIVE_SUFFIX,
  archiveSuffix,
  formatBackupName,
  joinKey,
  LOCK_SUFFIX,
  SIDECAR_SUFFIX,
  ZSTD_ARCHIVE_SUFFIX,
} from '../naming.ts';
import { checkComponentName } from '../paths.ts';
import { ignoreProgress, type ProgressListener } from '../progress.ts';
import { countBytes } from '../streams.ts';
import { packTar } from '../tar.ts';
import { BK_VERSION } from '../version.ts';

export interface BackupOptions {
  storage: Storage;
  components: Source[];
  /** Back up only these components (by name); default all. */
  only?: string[];
  /** Key prefix in the storage, e.g. `"nightly"`. */
  prefix?: string;
  labels?: Record<string, string>;
  /** The backup this one builds on (incremental chains). */
  parent?: string;
  /** `gzip` (default, `.tar.gz`) or `zstd` (`.tar.zst`, Node 22.15+). */
  compression?: CompressionFormat;
  /** gzip 0–9 (default 6) or zstd 1–19 (default 3). */
  compressionLevel?: number;
  /**
   * Blocks compressed at once on libuv's thread pool (independent gzip members / zstd frames,
   * in order); default: one more than the available cores, at most 4. `0` compresses in one stream.
   */
  compressionWorkers?: number;
  /** Chunk size for entries of unknown length; each costs this much memory. Default 8 MiB. */
  chunkSize?: number;
  /** The clock; the backup is named after its start in UTC. */
  now?: () => Date;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export interface BackupResult {
  name: string;
  /** The archive's storage key. */
  key: string;
  sidecarKey: string;
  size: number;
  sha256: string;
  manifest: SidecarManifest;
}

/** Picks the components to run: all, or those named in `only` (unknown names are an error). */
export function selectComponents<T extends { name: string }>(
  components: T[],
  only: string[] | undefined,
  what: string,
): T[] {
  const names = new Set<string>();
  for (const component of components) {
    checkComponentName(component.name);
    if (names.has(component.name))
      throw new ConfigError(`Two components are named "${component.name}"; names must be unique.`);
    names.add(component.name);
  }
  if (!only || only.length === 0) return components;
  const unknown = only.filter((name) => !names.has(name));
  if (unknown.length > 0) {
    throw new ConfigError(
      `Unknown component ${unknown.map((name) => `"${name}"`).join(', ')} in ${what}; known: ${[...names].join(', ') || 'none'}.`,
    );
  }
  return components.filter((component) => only.includes(component.name));
}

/**
 * Claims `backup_YYYYMMDD_HHMMSS` (or the next free `_N`) with a create-if-absent lock object.
 * A name is free when its lock can be created and neither its archive nor its sidecar exists:
 * a finished backup removes its lock only after both are stored, so a claim never shadows one.
 */
async function claimName(
  storage: Storage,
  prefix: string | undefined,
  time: Date,
  signal?: AbortSignal,
): Promise<string> {
  for (let sequence = 0; sequence < 10_000; sequence += 1) {
    const name = formatBackupName(time, sequence);
    const lockKey = joinKey(prefix, name + LOCK_SUFFIX);
    const claim = new TextEncoder().encode(
      `${JSON.stringify({ name, host: hostname(), pid: process.pid, startedAt: new Date().toISOString() })}\n`,
    );
    if (!storage.capabilities.conditionalCreate && (await storage.stat(lockKey, { signal }))) continue;
    try {
      await storage.put(lockKey, claim, { ifNoneMatch: true, signal });
    } catch (error) {
      if (
        error instanceof AlreadyExistsError ||
        (BkError.isInstance(error) && error.code === 'BK_ALREADY_EXISTS')
      )
        continue;
      throw error;
    }
    const taken =
      (await storage.stat(joinKey(prefix, name + ARCHIVE_SUFFIX), { signal })) ??
      (await storage.stat(joinKey(prefix, name + ZSTD_ARCHIVE_SUFFIX), { signal })) ??
      (await storage.stat(joinKey(prefix, name + SIDECAR_SUFFIX), { signal }));
    if (!taken) return name;
    await storage.delete(lockKey, { signal });
  }
  throw new ConfigError('Could not find a free backup name after 10000 attempts.');
}

/**
 * Backs up components into one `backup_YYYYMMDD_HHMMSS.tar.gz` and its sidecar manifest.
 *
 * The archive streams from the components through tar, gzip and sha256 into `storage.put`;
 * nothing is staged on disk. The backup exists only once the sidecar manifest is stored; on
 * error or abort the archive, the sidecar and the name's lock are removed and the error is
 * rethrown. Memory: the storage's upload buffers, zlib's window, and `chunkSize` for an entry of
 * unknown length, plus the manifest (about 200 bytes per entry).
 *
 * @example
 * const result = await backup({ storage: new FsStorage('/var/backups/bk'), components: [files] });
 * console.log(result.name); // backup_20261121_101500
 */
export async function backup(options: BackupOptions): Promise<BackupResult> {
  const { storage, prefix, signal } = options;
  const progress = options.onProgress ?? ignoreProgress;
  throwIfAborted(signal);
  const selected = selectComponents(options.components, options.only, 'the selection');
  // Checked before anything is claimed or read.
  const compressOptions = resolveCompressOptions({
    ...(options.compression === undefined ? {} : { format: options.compression }),
    ...(options.compressionLevel === undefined ? {} : { level: options.compressionLevel }),
    ...(options.compressionWorkers === undefined ? {} : { workers: options.compressionWorkers }),
  });
  const compression = compressOptions.format;
  if (selected.length === 0) throw new ConfigError('Nothing to back up: no components are configured.');
  const abort = new AbortController();
  const onAbort = () => abort.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  const context = { signal: abort.signal, progress };
  try {
    const components: ArchiveComponent[] = [];
    for (const source of selected) components.push({ source, info: await source.describe(context) });
    const startedAt = (options.now ?? (() => new Date()))();
    const name = await claimName(storage, prefix, startedAt, abort.signal);
    const key = joinKey(prefix, name + archiveSuffix(compression));
    const sidecarKey = joinKey(prefix, name + SIDECAR_SUFFIX);
    const lockKey = joinKey(prefix, name + LOCK_SUFFIX);
    let archiveStored = false;
    try {
      progress({ type: 'backup-start', backup: name, components: selected.map((source) => source.name) });
      const manifest: Manifest = {
        format: MANIFEST_FORMAT,
        formatVersion: MANIFEST_VERSION,
        name,
        createdAt: startedAt.toISOString(),
        completedAt: startedAt.toISOString(),
        bk: { version: BK_VERSION },
        compression,
        encryption: null,
        parent: options.parent ?? null,
        labels: options.labels ?? {},
        components: [],
      };
      const records = (async function* () {
        yield* archiveRecords(
          components,
          manifest,
          { ...context, backupName: name },
          options.chunkSize ?? DEFAULT_CHUNK_SIZE,
        );
        manifest.completedAt = new Date().toISOString();
        yield {
          name: 'manifest.json',
          type: 'file' as const,
          size: serializeManifest(manifest).byteLength,
          mode: 0o644,
          body: serializeManifest(manifest),
        };
      })();
      const archive = digest(compress(packTar(records), { ...compressOptions, signal: abort.signal }));
      const body = countBytes(archive.stream, (bytes) => progress({ type: 'archive-bytes', bytes }));
      await storage.put(key, body, {
        ifNoneMatch: true,
        contentType: compression === 'zstd' ? 'application/zstd' : 'application/gzip',
        signal: abort.signal,
      });
      archiveStored = true;
      const sidecar: SidecarManifest = {
        ...manifest,
        archive: { key, size: archive.result.size, sha256: archive.result.sha256 },
      };
      await storage.put(sidecarKey, serializeManifest(sidecar), {
        ifNoneMatch: true,
        contentType: 'application/json',
        signal: abort.signal,
      });
      await storage.delete(lockKey).catch(() => {});
      const entries = manifest.components.reduce((sum, component) => sum + component.stats.entries, 0);
      progress({
        type: 'backup-end',
        backup: name,
        key,
        size: sidecar.archive.size,
        sha256: sidecar.archive.sha256,
        entries,
      });
      return {
        name,
        key,
        sidecarKey,
        size: sidecar.archive.size,
        sha256: sidecar.archive.sha256,
        manifest: sidecar,
      };
    } catch (error) {
      // Clean-up runs without the (possibly aborted) signal: it must finish.
      if (archiveStored) await storage.delete(key).catch(() => {});
      await storage.delete(lockKey).catch(() => {});
      throw signal?.aborted && !BkError.isInstance(error) ? toAbortedError(signal) : error;
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    abort.abort();
  }
}
