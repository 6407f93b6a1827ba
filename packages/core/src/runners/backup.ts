import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { type AgeEncryptOptions, checkAgeRecipients, encryptAge } from '../age.ts';
import { type ArchiveComponent, archiveRecords, DEFAULT_CHUNK_SIZE } from '../archive.ts';
import { componentSecrets, describeSecret, recordSecretEntry } from '../component-secrets.ts';
import { type CompressionFormat, compress, resolveCompressOptions } from '../compress.ts';
import type { BackupContext, ComponentInfo, OperationContext, Source, Storage } from '../contracts.ts';
import { EntryIndexWriter, EntrySections } from '../entry-index.ts';
import {
  AlreadyExistsError,
  BkError,
  ComponentError,
  ConfigError,
  NotFoundError,
  StorageError,
  throwIfAborted,
  toAbortedError,
  UnencryptedSecretsError,
} from '../errors.ts';
import { digest, sha256Hex } from '../hash.ts';
import {
  MANIFEST_ENTRY,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  type Manifest,
  type SidecarManifest,
  serializeManifest,
} from '../manifest.ts';
import {
  AGE_SUFFIX,
  ARCHIVE_SUFFIX,
  archiveSuffix,
  ENTRY_INDEX_SUFFIX,
  formatBackupName,
  joinKey,
  LOCK_SUFFIX,
  SIDECAR_SUFFIX,
  uniqueRunSequence,
  ZSTD_ARCHIVE_SUFFIX,
} from '../naming.ts';
import { checkComponentName } from '../paths.ts';
import { ignoreProgress, type ProgressListener } from '../progress.ts';
import { sealSidecar } from '../sealed-sidecar.ts';
import { collect, countBytes } from '../streams.ts';
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
  /** The backup this one builds on (incremental chains); see `planIncremental`. */
  parent?: string;
  /**
   * Components (by name) that hold only what changed since `parent`, recorded as
   * `incremental: true` in the manifest so a chain restore knows to restore the parent's copy
   * first; needs `parent`. `planIncremental` returns this list.
   */
  incrementalComponents?: readonly string[];
  /** `gzip` (default, `.tar.gz`) or `zstd` (`.tar.zst`, Node 22.15+). */
  compression?: CompressionFormat;
  /** gzip 0–9 (default 6) or zstd 1–19 (default 3). */
  compressionLevel?: number;
  /**
   * Blocks compressed at once on libuv's thread pool (independent gzip members / zstd frames,
   * in order); default: one more than the available cores, at most 4. `0` compresses in one stream.
   */
  compressionWorkers?: number;
  /**
   * Encrypt the archive and the sidecar manifest in the age format to these recipients (`age1…`
   * X25519 public keys; any one of their secret keys opens the backup, with bk or with
   * `age -d`). The archive is stored as `<name>.tar.gz.age`; the sidecar shows only the name,
   * times, sizes and recipients in clear. Default: not encrypted.
   *
   * `{ passphrase }` instead encrypts every object with a passphrase (age's scrypt stanza, as
   * `age -p`; opened with `age -d` and the passphrase, or bk with `agePassphraseKey`): one scrypt
   * run per object, about 1 s and 256 MiB each, one at a time. Not combined with recipients.
   */
  encryption?:
    | { recipients: string[]; passphrase?: undefined }
    | { passphrase: string; recipients?: undefined };
  /**
   * Refuse to store secrets unencrypted: without `encryption`, a component that declares secrets
   * (`ComponentInfo.secrets.captured`) fails the run with `UnencryptedSecretsError` before anything
   * is written, and one that yields an entry marked `secret` fails it then, with the run's objects
   * removed. Default false: such a backup is stored with a `warning` progress event.
   */
  requireEncryption?: boolean;
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

/** The lock object's body: who holds the name, and the run's token that proves it. */
function lockBody(name: string, run: string): Uint8Array {
  return new TextEncoder().encode(
    `${JSON.stringify({ name, run, host: hostname(), pid: process.pid, startedAt: new Date().toISOString() })}\n`,
  );
}

/** Whether an archive or a sidecar already exists under `name`. */
async function nameTaken(
  storage: Storage,
  prefix: string | undefined,
  name: string,
  signal?: AbortSignal,
): Promise<boolean> {
  return Boolean(
    (await storage.stat(joinKey(prefix, name + ARCHIVE_SUFFIX), { signal })) ??
      (await storage.stat(joinKey(prefix, name + ZSTD_ARCHIVE_SUFFIX), { signal })) ??
      (await storage.stat(joinKey(prefix, name + archiveSuffix('gzip', true)), { signal })) ??
      (await storage.stat(joinKey(prefix, name + archiveSuffix('zstd', true)), { signal })) ??
      (await storage.stat(joinKey(prefix, name + SIDECAR_SUFFIX), { signal })),
  );
}

/**
 * Claims a name with a lock object holding the run's token.
 *
 * Where the store creates atomically: `backup_YYYYMMDD_HHMMSS`, or the next free `_N`, through a
 * create-if-absent lock. A name is free when its lock can be created and neither its archive nor
 * its sidecar exists: a finished backup removes its lock only after both are stored, so a claim
 * never shadows one.
 *
 * Where it cannot (a put replaces whatever is there), a check-then-put would let two runs that
 * check at once both "claim" the same `_N` and overwrite each other's archive and sidecar. The
 * run takes a name no other run can pick instead: the 16-digit run number of
 * {@link uniqueRunSequence}.
 */
async function claimName(
  storage: Storage,
  prefix: string | undefined,
  time: Date,
  run: string,
  atomic: boolean,
  signal?: AbortSignal,
): Promise<string> {
  if (!atomic) {
    for (let attempt = 0; attempt < 100; attempt += 1) {
      const name = formatBackupName(time, uniqueRunSequence(time));
      const lockKey = joinKey(prefix, name + LOCK_SUFFIX);
      if ((await storage.stat(lockKey, { signal })) || (await nameTaken(storage, prefix, name, signal)))
        continue;
      await storage.put(lockKey, lockBody(name, run), { signal });
      return name;
    }
    throw new StorageError(
      `Could not find a free backup name in ${storage.description} after 100 random attempts; its listing looks wrong.`,
    );
  }
  for (let sequence = 0; sequence < 10_000; sequence += 1) {
    const name = formatBackupName(time, sequence);
    const lockKey = joinKey(prefix, name + LOCK_SUFFIX);
    try {
      await storage.put(lockKey, lockBody(name, run), { ifNoneMatch: true, signal });
    } catch (error) {
      if (
        error instanceof AlreadyExistsError ||
        (BkError.isInstance(error) && error.code === 'BK_ALREADY_EXISTS')
      )
        continue;
      throw error;
    }
    if (!(await nameTaken(storage, prefix, name, signal))) return name;
    await storage.delete(lockKey, { signal });
  }
  throw new ConfigError('Could not find a free backup name after 10000 attempts.');
}

/** Raised when what the store holds under this run's name is not what this run wrote. */
function overwritten(storage: Storage, key: string, what: string): StorageError {
  return new StorageError(
    `"${key}" in ${storage.description} ${what} after this backup run wrote it: another writer used the same name. ` +
      'This run is not reported as a backup and left the name alone; run the backup again.',
    { retryable: true },
  );
}

/** Reads back the lock: `false` when another run's token is in it (a missing lock is fine: prune may have removed a stale one). */
async function lockStillOurs(
  storage: Storage,
  lockKey: string,
  run: string,
  signal: AbortSignal,
): Promise<boolean> {
  let bytes: Uint8Array;
  try {
    bytes = await collect(await storage.get(lockKey, { signal }), 64 * 1024);
  } catch (error) {
    if (error instanceof NotFoundError || (BkError.isInstance(error) && error.code === 'BK_NOT_FOUND'))
      return true;
    // Larger than any lock bk writes: not this run's.
    if (error instanceof RangeError) return false;
    throw error;
  }
  try {
    const held = JSON.parse(new TextDecoder().decode(bytes)) as { run?: unknown };
    return held.run === run;
  } catch {
    return false;
  }
}

/**
 * Re-reads what the run stored before it reports success: the sidecar's sha256 and the
 * archive's size. On a store without atomic create-if-absent this is what shows that no other
 * writer replaced either object. Returns what is wrong, or `undefined`.
 */
async function checkStored(
  storage: Storage,
  key: string,
  size: number,
  sidecarKey: string,
  sidecarBytes: Uint8Array,
  signal: AbortSignal,
): Promise<{ key: string; what: string } | undefined> {
  const stored = digest(await storage.get(sidecarKey, { signal }));
  for await (const _chunk of stored.stream);
  if (stored.result.sha256 !== sha256Hex(sidecarBytes)) return { key: sidecarKey, what: 'changed' };
  const archive = await storage.stat(key, { signal });
  if (!archive) return { key, what: 'disappeared' };
  if (archive.size !== size) return { key, what: `holds ${archive.size} bytes, not ${size},` };
  return undefined;
}

/**
 * Backs up components into one `backup_YYYYMMDD_HHMMSS.tar.gz` and its sidecar manifest.
 *
 * The archive streams from the components through tar, gzip and sha256 into `storage.put`;
 * nothing is staged on disk. The backup exists only once the sidecar manifest is stored; on
 * error or abort the archive, the sidecar and the name's lock are removed and the error is
 * rethrown. Memory: the storage's upload buffers, zlib's window, and `chunkSize` for an entry of
 * unknown length, plus the entry index's upload (a few 64 KiB batches) and, for a component past
 * `ENTRY_TREE_HELD_PATHS` entries that yields them sorted, nothing per entry: flat in entries.
 *
 * @example
 * const result = await backup({ storage: new FsStorage('/var/backups/bk'), components: [files] });
 * console.log(result.name); // backup_20261121_101500
 */
/**
 * A source's `describe`, its first contact with the data store. An error that is not a bk error
 * (a failed `fetch`, a refused socket) says nothing of which component failed: it is wrapped in a
 * `ComponentError` that names the component, keeping the original as `cause`.
 */
/** The components whose secrets are captured, in the words of `UnencryptedSecretsError`. */
function holdingSecrets(components: { source: Source; info: ComponentInfo }[]) {
  return componentSecrets(
    components.map(({ source, info }) => ({ name: source.name, kind: source.kind, info })),
  )
    .filter((item) => item.secrets.captured.length > 0)
    .map((item) => ({ name: item.component, secrets: item.secrets.captured.map(describeSecret) }));
}

/**
 * `source` with its entries marked `secret` recorded in `info.secrets.captured`; with `refuse`,
 * the first such entry throws `UnencryptedSecretsError` instead.
 */
function accountSecrets(source: Source, info: ComponentInfo, refuse: boolean): Source {
  return {
    kind: source.kind,
    name: source.name,
    describe: (context) => source.describe(context),
    async *backup(context: BackupContext) {
      for await (const entry of source.backup(context)) {
        if (entry.secret && refuse) {
          throw new UnencryptedSecretsError([
            { name: source.name, secrets: [`${entry.secret.what} (${entry.path})`] },
          ]);
        }
        recordSecretEntry(info, entry);
        yield entry;
      }
    },
  };
}

async function describeSource(source: Source, context: OperationContext) {
  try {
    return await source.describe(context);
  } catch (error) {
    if (BkError.isInstance(error) || context.signal.aborted) throw error;
    const message = error instanceof Error ? error.message : String(error);
    const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : '';
    throw new ComponentError(
      source.name,
      `${message}${cause && !message.includes(cause) ? ` (${cause})` : ''}`,
      { cause: error, retryable: true },
    );
  }
}

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
  const passphrase = options.encryption?.passphrase;
  if (passphrase !== undefined && options.encryption?.recipients !== undefined)
    throw new ConfigError(
      'A passphrase cannot be combined with recipients: age allows a passphrase only as the one way to open a file.',
    );
  if (passphrase === '') throw new ConfigError('The passphrase is empty.');
  const recipients =
    options.encryption?.recipients !== undefined
      ? checkAgeRecipients(options.encryption.recipients)
      : undefined;
  if (recipients?.length === 0)
    throw new ConfigError('Encryption needs at least one recipient (an age1… public key).');
  // What every object of an encrypted backup is sealed with; each object gets its own scrypt salt.
  const ageOptions: AgeEncryptOptions | undefined = recipients
    ? { recipients }
    : passphrase !== undefined
      ? { passphrase }
      : undefined;
  if (selected.length === 0) throw new ConfigError('Nothing to back up: no components are configured.');
  const incremental = new Set(options.incrementalComponents ?? []);
  if (incremental.size > 0 && options.parent === undefined)
    throw new ConfigError('"incrementalComponents" needs "parent": the backup they build on.');
  const abort = new AbortController();
  const onAbort = () => abort.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  const context = { signal: abort.signal, progress };
  try {
    const components: ArchiveComponent[] = [];
    for (const source of selected) {
      const info = await describeSource(source, context);
      // The runner adds entries marked secret to its own copy, never to the component's object.
      const secrets = info.secrets && structuredClone(info.secrets);
      components.push({
        source,
        info: { ...info, ...(secrets ? { secrets } : {}) },
        ...(incremental.has(source.name) ? { incremental: true } : {}),
      });
    }
    const refuseSecrets = options.requireEncryption === true && ageOptions === undefined;
    if (refuseSecrets) {
      const holding = holdingSecrets(components);
      if (holding.length > 0) throw new UnencryptedSecretsError(holding);
    }
    for (const component of components)
      component.source = accountSecrets(component.source, component.info, refuseSecrets);
    const startedAt = (options.now ?? (() => new Date()))();
    const capabilities = storage.probeCapabilities
      ? await storage.probeCapabilities({ signal: abort.signal })
      : storage.capabilities;
    const run = randomUUID();
    const name = await claimName(
      storage,
      prefix,
      startedAt,
      run,
      capabilities.conditionalCreate,
      abort.signal,
    );
    const key = joinKey(prefix, name + archiveSuffix(compression, ageOptions !== undefined));
    const sidecarKey = joinKey(prefix, name + SIDECAR_SUFFIX);
    const lockKey = joinKey(prefix, name + LOCK_SUFFIX);
    // An encrypted backup's index is encrypted to the same recipients: it names every path.
    const indexKey = joinKey(prefix, name + ENTRY_INDEX_SUFFIX + (ageOptions ? AGE_SUFFIX : ''));
    // The archive holds the same lines as the stored index, in sections, so it lists every
    // entry's size and sha256 on its own (format 3).
    const sections = new EntrySections();
    const index = new EntryIndexWriter(6, (line) => sections.add(line));
    const storedIndex = digest(ageOptions ? encryptAge(index.stream, ageOptions) : index.stream);
    let indexPut: Promise<void> | undefined = undefined as Promise<void> | undefined;
    let archiveStored = false;
    // Set when another writer holds the name: its objects are not this run's to remove.
    let nameLost = false;
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
        encryption: recipients
          ? { format: 'age', recipients }
          : passphrase !== undefined
            ? { format: 'age', recipients: [], passphrase: true }
            : null,
        parent: options.parent ?? null,
        labels: options.labels ?? {},
        components: [],
      };
      const records = (async function* () {
        // The entry index is stored while the archive is written, as its entries are hashed:
        // neither is ever held whole. A failed index upload stops the archive at its next entry.
        const uploading = storage
          .put(indexKey, storedIndex.stream, {
            ifNoneMatch: true,
            contentType: ageOptions ? 'application/octet-stream' : 'application/gzip',
            signal: abort.signal,
          })
          .then(() => {});
        indexPut = uploading;
        uploading.catch((error: unknown) => index.fail(error));
        for await (const record of archiveRecords(
          components,
          manifest,
          { ...context, backupName: name },
          index,
          options.chunkSize ?? DEFAULT_CHUNK_SIZE,
        )) {
          // The entries before this record are listed by now: a full section goes first.
          const section = sections.take();
          if (section) yield section;
          yield record;
        }
        const last = sections.take(true);
        if (last) yield last;
        index.end();
        await uploading;
        manifest.entryIndex = {
          key: indexKey,
          size: storedIndex.result.size,
          sha256: storedIndex.result.sha256,
          entries: index.entries,
          archived: sections.result(),
        };
        manifest.completedAt = new Date().toISOString();
        const inner = serializeManifest(manifest);
        yield {
          name: MANIFEST_ENTRY,
          type: 'file' as const,
          size: inner.byteLength,
          mode: 0o644,
          body: inner,
        };
      })();
      const compressed = compress(packTar(records), { ...compressOptions, signal: abort.signal });
      const archive = digest(
        ageOptions ? encryptAge(compressed, { ...ageOptions, thread: true }) : compressed,
      );
      const body = countBytes(archive.stream, (bytes) => progress({ type: 'archive-bytes', bytes }));
      await storage.put(key, body, {
        ifNoneMatch: true,
        contentType: ageOptions
          ? 'application/octet-stream'
          : compression === 'zstd'
            ? 'application/zstd'
            : 'application/gzip',
        signal: abort.signal,
      });
      archiveStored = true;
      const sidecar: SidecarManifest = {
        ...manifest,
        archive: { key, size: archive.result.size, sha256: archive.result.sha256 },
      };
      if (!(await lockStillOurs(storage, lockKey, run, abort.signal))) {
        nameLost = true;
        throw overwritten(storage, lockKey, 'names another run');
      }
      const sidecarBytes = ageOptions ? await sealSidecar(sidecar, passphrase) : serializeManifest(sidecar);
      await storage.put(sidecarKey, sidecarBytes, {
        ifNoneMatch: true,
        contentType: 'application/json',
        signal: abort.signal,
      });
      const wrong = await checkStored(
        storage,
        key,
        sidecar.archive.size,
        sidecarKey,
        sidecarBytes,
        abort.signal,
      );
      if (wrong) {
        nameLost = true;
        throw overwritten(storage, wrong.key, wrong.what);
      }
      await storage.delete(lockKey).catch(() => {});
      if (!ageOptions) {
        for (const holding of holdingSecrets(components)) {
          progress({
            type: 'warning',
            component: holding.name,
            message: `stored unencrypted although it holds secrets: ${holding.secrets.join('; ')}. Anyone who can read ${storage.description} can read them; encrypt backups (--recipient age1… or encryption.recipients) and require it (--require-encryption).`,
          });
        }
      }
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
      index.fail(error);
      const indexStored = indexPut
        ? await indexPut.then(
            () => true,
            () => false,
          )
        : false;
      if (!nameLost) {
        if (indexStored) await storage.delete(indexKey).catch(() => {});
        if (archiveStored) await storage.delete(key).catch(() => {});
        await storage.delete(lockKey).catch(() => {});
      }
      throw signal?.aborted && !BkError.isInstance(error) ? toAbortedError(signal) : error;
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    abort.abort();
  }
}
