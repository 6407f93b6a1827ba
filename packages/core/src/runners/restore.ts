import { type ArchivedEntry, readArchive } from '../archive.ts';
import type {
  ConflictPolicy,
  Entry,
  PreflightResult,
  RestoreReport,
  Restorer,
  Storage,
} from '../contracts.ts';
import { manifestEntries } from '../entry-index.ts';
import {
  BkError,
  ComponentError,
  ConfigError,
  IntegrityError,
  ManifestError,
  NotFoundError,
  throwIfAborted,
  toAbortedError,
  VersionMismatchError,
} from '../errors.ts';
import type { SidecarManifest } from '../manifest.ts';
import { openForRead } from '../parallel-get.ts';
import { ignoreProgress, type ProgressListener } from '../progress.ts';
import { abortable } from '../streams.ts';
import { selectComponents } from './backup.ts';
import { inspect } from './catalog.ts';

export interface RestoreOptions {
  storage: Storage;
  /**
   * A backup name or `"latest"`: the newest backup, or with `only` the newest backup that holds
   * every component in `only`.
   */
  name: string;
  /** Restorers by component name; every selected component needs one. */
  restorers: Restorer[];
  /** Restore only these components; default all in the backup. */
  only?: string[];
  /** What to do with data that exists in the target; default `fail`. */
  conflict?: ConflictPolicy;
  /**
   * Restore the whole incremental chain that ends at `name`: each selected component that `name`
   * holds as incremental (`incremental: true` in the manifest) is restored from its full copy
   * first, with `conflict`, then from each later link in order with `overwrite` (merging into
   * what the earlier links restored; `skip` stays `skip`); a component held in full is restored
   * from `name` alone. Same restorers for every link. A broken chain (a missing or damaged
   * link's manifest, archive or entry index, a cycle) fails naming the link before anything is
   * restored; a link that fails while restoring stops the chain there, with the links before it
   * restored. Default false: only `name`.
   */
  chain?: boolean;
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
  /**
   * Restore although a component's preflight refused the target's version (a `warning` event
   * says so), where the refusal is `forceable`; one that is not still throws. Default false.
   */
  force?: boolean;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export interface RestoreResult {
  name: string;
  manifest: SidecarManifest;
  components: Record<string, RestoreReport>;
  /** What each selected component's preflight found (the target's version), by component name. */
  preflight: Record<string, PreflightResult>;
  /** With `chain: true`: each link's result, oldest first (the last is this result's own). */
  chain?: RestoreResult[];
}

/**
 * Streams a backup back into its components. Every entry is checked against the manifest as it
 * is read (size, sha256; a corrupt entry fails its body with an `IntegrityError` naming it),
 * and the whole archive is checked at the end. Components not selected are read and checked but
 * not restored. Before the archive is opened, every selected restorer's `preflight` compares the
 * version the manifest recorded with the target's: a refusal throws `VersionMismatchError` (or,
 * with `force` and a forceable refusal, becomes a `warning`) before anything is written.
 */
export async function restore(options: RestoreOptions): Promise<RestoreResult> {
  if (!options.chain) return restoreOne(options);
  throwIfAborted(options.signal);
  const links = await planChain(options);
  const results: RestoreResult[] = [];
  const later = options.conflict === 'skip' ? 'skip' : ('overwrite' as const);
  for (const link of links) {
    const conflicts = new Map(
      link.components.map((name) => [name, link.first.has(name) ? (options.conflict ?? 'fail') : later]),
    );
    results.push(
      await restoreOne({ ...options, name: link.name, only: link.components }, link.manifest, conflicts),
    );
  }
  const last = results.at(-1)!;
  return { ...last, chain: results };
}

/** One backup of a chain restore: which components it restores, and which start there. */
interface PlannedLink {
  name: string;
  manifest: SidecarManifest;
  components: string[];
  /** Components whose chain starts at this link: restored with the caller's conflict policy. */
  first: Set<string>;
}

/**
 * Whether `manifest` holds only the changes since its parent for `component`. Manifests written
 * before components were marked record a parent and no marks: every component builds on it.
 */
function buildsOnParent(manifest: SidecarManifest, component: string): boolean {
  if (manifest.parent === null) return false;
  if (manifest.components.every((item) => item.incremental === undefined)) return true;
  return manifest.components.find((item) => item.name === component)?.incremental === true;
}

/**
 * The links a chain restore reads, oldest first. Each selected component goes back from the
 * named backup through its parents while it is recorded as incremental, to its full copy; a
 * component the named backup holds in full is restored from it alone. Every link's manifest is
 * read and checked, its archive and entry index are checked to exist with their recorded sizes,
 * before anything is restored: a missing or damaged link fails naming it.
 */
async function planChain(options: RestoreOptions): Promise<PlannedLink[]> {
  const { storage, prefix, signal } = options;
  const identities = options.identities ? { identities: options.identities } : {};
  const newest = await inspect({
    storage,
    name: options.name,
    prefix,
    signal,
    ...(options.only ? { components: options.only } : {}),
    ...identities,
  });
  const selection = selectComponents(newest.components, options.only, `backup ${newest.name}`).map(
    (component) => component.name,
  );
  const links: PlannedLink[] = [
    { name: newest.name, manifest: newest, components: selection, first: new Set() },
  ];
  let pending = selection.filter((name) => buildsOnParent(newest, name));
  for (const name of selection) if (!pending.includes(name)) links[0]!.first.add(name);
  const seen = new Set([newest.name]);
  while (pending.length > 0) {
    throwIfAborted(signal);
    const child = links.at(-1)!;
    const name = child.manifest.parent!;
    const broken = `The incremental chain of "${newest.name}" is broken: "${child.name}" builds on "${name}"`;
    if (seen.has(name)) {
      throw new IntegrityError(
        `The incremental chain of "${newest.name}" loops: "${child.name}" names "${name}" as its parent, which is already in the chain (${[...seen].join(' → ')}).`,
      );
    }
    seen.add(name);
    let manifest: SidecarManifest;
    try {
      manifest = await inspect({ storage, name, prefix, signal, ...identities });
    } catch (error) {
      if (error instanceof NotFoundError)
        throw new NotFoundError(`${broken}, which is not a complete backup in ${storage.description}.`, {
          cause: error,
        });
      if (error instanceof ManifestError)
        throw new ManifestError(`${broken}, whose manifest is damaged: ${error.message}`, { cause: error });
      throw error;
    }
    for (const component of pending) {
      const own = child.manifest.components.find((item) => item.name === component)!;
      const held = manifest.components.find((item) => item.name === component);
      if (held?.kind !== own.kind) {
        throw new IntegrityError(
          `${broken}, which holds no ${own.kind} component "${component}" for it to build on.`,
        );
      }
    }
    const link: PlannedLink = { name, manifest, components: pending, first: new Set() };
    pending = pending.filter((component) => buildsOnParent(manifest, component));
    for (const component of link.components) if (!pending.includes(component)) link.first.add(component);
    links.push(link);
  }
  for (const link of links) await checkStored(storage, link.manifest, newest.name, signal);
  return links.reverse();
}

/** Fails naming the link when its archive or entry index is missing or not the size recorded. */
async function checkStored(
  storage: Storage,
  manifest: SidecarManifest,
  newest: string,
  signal: AbortSignal | undefined,
): Promise<void> {
  const objects = [
    { what: 'archive', key: manifest.archive.key, size: manifest.archive.size },
    ...(manifest.entryIndex
      ? [{ what: 'entry index', key: manifest.entryIndex.key, size: manifest.entryIndex.size }]
      : []),
  ];
  for (const object of objects) {
    const info = await storage.stat(object.key, { signal });
    const link =
      manifest.name === newest ? `"${newest}"` : `"${manifest.name}" (a link of the chain of "${newest}")`;
    if (!info) {
      throw new NotFoundError(
        `The ${object.what} of ${link} is missing from ${storage.description} ("${object.key}"); nothing was restored.`,
      );
    }
    if (info.size !== object.size) {
      throw new IntegrityError(
        `The ${object.what} of ${link} is damaged: "${object.key}" holds ${info.size} bytes, the manifest records ${object.size}; nothing was restored.`,
      );
    }
  }
}

async function restoreOne(
  options: RestoreOptions,
  known?: SidecarManifest,
  conflicts?: ReadonlyMap<string, ConflictPolicy>,
): Promise<RestoreResult> {
  const { storage, signal } = options;
  const progress = options.onProgress ?? ignoreProgress;
  throwIfAborted(signal);
  const manifest =
    known ??
    (await inspect({
      storage,
      name: options.name,
      prefix: options.prefix,
      signal,
      ...(options.only ? { components: options.only } : {}),
      ...(options.identities ? { identities: options.identities } : {}),
    }));
  const selected = selectComponents(manifest.components, options.only, `backup ${manifest.name}`);
  const restorers = new Map(options.restorers.map((restorer) => [restorer.name, restorer]));
  const missing = selected.filter((component) => !restorers.has(component.name));
  if (missing.length > 0) {
    throw new ConfigError(
      `No restorer is configured for ${missing.map((component) => `"${component.name}" (${component.kind})`).join(', ')}. Configure the component or restore with --only.`,
    );
  }
  for (const component of selected) {
    const restorer = restorers.get(component.name)!;
    if (restorer.kind !== component.kind) {
      throw new ConfigError(
        `Component "${component.name}" was backed up by kind "${component.kind}" but the restorer is "${restorer.kind}".`,
      );
    }
  }
  const preflight: Record<string, PreflightResult> = {};
  for (const component of selected) {
    const restorer = restorers.get(component.name)!;
    if (!restorer.preflight) continue;
    const recorded = {
      name: component.name,
      kind: component.kind,
      version: component.version,
      info: component.info,
    };
    let result: PreflightResult;
    try {
      result = await restorer.preflight({
        signal: signal ?? new AbortController().signal,
        progress,
        backupName: manifest.name,
        component: recorded,
      });
    } catch (error) {
      if (BkError.isInstance(error) || signal?.aborted) throw error;
      throw new ComponentError(
        component.name,
        `cannot read the target's version before restoring: ${(error as Error).message}`,
        { cause: error, retryable: true },
      );
    }
    preflight[component.name] = result;
    const { refusal } = result;
    if (!refusal) continue;
    const details = {
      component: component.name,
      backup: manifest.name,
      backupVersion: component.version,
      targetVersion: result.targetVersion,
      reason: refusal.reason,
      forceable: refusal.forceable,
    };
    if (!options.force || !refusal.forceable) throw new VersionMismatchError(details);
    progress({
      type: 'warning',
      component: component.name,
      message: `restoring anyway (forced) from version ${component.version ?? 'unknown'} into ${result.targetVersion ?? 'unknown'}: ${refusal.reason}`,
    });
  }
  const totalBytes = manifest.components.reduce((sum, component) => sum + component.stats.bytes, 0);
  progress({
    type: 'restore-start',
    backup: manifest.name,
    components: selected.map((component) => component.name),
    totalBytes,
  });
  const archive = await openForRead(storage, manifest.archive.key, manifest.archive.size, {
    signal,
    concurrency: options.readConcurrency,
  });
  // Every entry restored is checked against its sha256; the hash of the archive's compressed
  // bytes as a whole is left to verify().
  const shared = readArchive(
    abortable(archive, signal),
    manifest,
    {
      archiveDigest: false,
      ...(options.identities ? { identities: options.identities } : {}),
      onArchiveBytes: (bytes) => progress({ type: 'archive-bytes', bytes }),
      onEntryBytes: (component, path, bytes) => progress({ type: 'bytes', component, path, bytes }),
    },
    manifestEntries(storage, manifest, {
      signal,
      ...(options.identities ? { identities: options.identities } : {}),
    }),
  )[Symbol.asyncIterator]();
  // One pass over the archive feeds each restorer in turn; an entry is handed out once and the
  // shared reader moves on (checking whatever the restorer did not read) when the next is asked.
  let current = await shared.next();
  let handedOut = false;
  async function advance(): Promise<IteratorResult<ArchivedEntry>> {
    if (handedOut) {
      current = await shared.next();
      handedOut = false;
    }
    return current;
  }
  function entriesOf(name: string): AsyncIterable<Entry> {
    return {
      [Symbol.asyncIterator]: () => ({
        async next(): Promise<IteratorResult<Entry>> {
          const result = await advance();
          if (result.done || result.value.component.name !== name) return { done: true, value: undefined };
          handedOut = true;
          return { done: false, value: result.value.entry };
        },
        async return(): Promise<IteratorResult<Entry>> {
          return { done: true, value: undefined };
        },
      }),
    };
  }
  const reports: Record<string, RestoreReport> = {};
  let entries = 0;
  let bytes = 0;
  try {
    for (const component of manifest.components) {
      const chosen = selected.includes(component);
      if (chosen) {
        progress({ type: 'component-start', component: component.name, kind: component.kind });
        const report = await restorers.get(component.name)!.restore(entriesOf(component.name), {
          signal: signal ?? new AbortController().signal,
          progress,
          backupName: manifest.name,
          component: {
            name: component.name,
            kind: component.kind,
            version: component.version,
            info: component.info,
          },
          conflict: conflicts?.get(component.name) ?? options.conflict ?? 'fail',
        });
        reports[component.name] = report;
        entries += report.entries;
        bytes += report.bytes;
      }
      for await (const _ of entriesOf(component.name)) {
        // Read and checked by the shared reader; not restored.
      }
      if (chosen) {
        const report = reports[component.name]!;
        progress({
          type: 'component-end',
          component: component.name,
          entries: report.entries,
          bytes: report.bytes,
        });
      }
    }
    // Pulls past the last entry, which makes the reader check the inner manifest and the archive hash.
    await advance();
  } catch (error) {
    throw signal?.aborted && !BkError.isInstance(error) ? toAbortedError(signal) : error;
  } finally {
    await shared.return?.();
  }
  progress({ type: 'restore-end', backup: manifest.name, entries, bytes });
  return { name: manifest.name, manifest, components: reports, preflight };
}
