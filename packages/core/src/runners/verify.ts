import { readArchive } from '../archive.ts';
import type { Storage } from '../contracts.ts';
import { manifestEntries } from '../entry-index.ts';
import { BkError, throwIfAborted, toAbortedError } from '../errors.ts';
import type { SidecarManifest } from '../manifest.ts';
import { openForRead } from '../parallel-get.ts';
import { ignoreProgress, type ProgressListener } from '../progress.ts';
import { abortable } from '../streams.ts';
import { inspect } from './catalog.ts';

export interface VerifyOptions {
  storage: Storage;
  /** A backup name or `"latest"`. */
  name: string;
  prefix?: string;
  /**
   * Ranged requests in flight while reading the archive; default 4 on remote stores that serve
   * ranges, 1 (one stream) on others. Memory: (this + 1) × 3 MiB, the ranges in flight and the
   * one being read.
   */
  readConcurrency?: number;
  /**
   * Secret keys (`AGE-SECRET-KEY-1…`, or `agePassphraseKey(passphrase)` for a
   * passphrase-encrypted backup) for an encrypted backup; one of its recipients' is enough.
   * With none that fits, the run throws `DecryptionError` (naming the recipients) before it
   * reads the archive or writes anything.
   */
  identities?: readonly string[];
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export interface VerifyResult {
  name: string;
  manifest: SidecarManifest;
  entries: number;
  bytes: number;
}

/**
 * Re-reads a whole backup and checks it: the sidecar manifest, every tar record's name, type and
 * size, every entry's sha256, the manifest inside the archive and the archive's own sha256.
 * Resolves when everything matches; otherwise throws an `IntegrityError` naming the entry.
 *
 * @example
 * await verify({ storage, name: 'latest' }); // throws on the first damaged entry
 */
export async function verify(options: VerifyOptions): Promise<VerifyResult> {
  const { storage, signal } = options;
  const progress = options.onProgress ?? ignoreProgress;
  throwIfAborted(signal);
  const manifest = await inspect({
    storage,
    name: options.name,
    prefix: options.prefix,
    signal,
    ...(options.identities ? { identities: options.identities } : {}),
  });
  const totalBytes = manifest.components.reduce((sum, component) => sum + component.stats.bytes, 0);
  progress({ type: 'verify-start', backup: manifest.name, totalBytes });
  let entries = 0;
  let bytes = 0;
  try {
    const archive = await openForRead(storage, manifest.archive.key, manifest.archive.size, {
      signal,
      concurrency: options.readConcurrency,
    });
    for await (const { record } of readArchive(
      abortable(archive, signal),
      manifest,
      {
        ...(options.identities ? { identities: options.identities } : {}),
        onArchiveBytes: (count) => progress({ type: 'archive-bytes', bytes: count }),
        onEntryBytes: (component, path, count) => progress({ type: 'bytes', component, path, bytes: count }),
      },
      manifestEntries(storage, manifest, {
        signal,
        ...(options.identities ? { identities: options.identities } : {}),
      }),
    )) {
      entries += 1;
      bytes += record.size;
    }
  } catch (error) {
    throw signal?.aborted && !BkError.isInstance(error) ? toAbortedError(signal) : error;
  }
  progress({ type: 'verify-end', backup: manifest.name, entries, bytes });
  return { name: manifest.name, manifest, entries, bytes };
}
