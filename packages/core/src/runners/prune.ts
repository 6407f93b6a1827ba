import type { IncompleteUpload, Storage } from '../contracts.ts';
import { ConfigError, throwIfAborted } from '../errors.ts';
import { joinKey } from '../naming.ts';
import { type CatalogItem, catalog } from './catalog.ts';
import { readParents } from './incremental.ts';

export interface RetentionPolicy {
  /** Keep the N newest backups. */
  keepLast?: number;
  /** Keep the newest backup of each of the N newest days (UTC) that have one. */
  keepDaily?: number;
  /** … of each of the N newest ISO weeks. */
  keepWeekly?: number;
  /** … of each of the N newest months. */
  keepMonthly?: number;
}

export interface PruneOptions extends RetentionPolicy {
  storage: Storage;
  prefix?: string;
  /** Report what would be deleted without deleting. */
  dryRun?: boolean;
  /**
   * Leftovers of killed runs older than this are removed: locks and archives without a sidecar,
   * and what the storage's `cleanupIncomplete` finds (temp files, open multipart uploads,
   * orphaned segments). Default 24 hours; younger ones may belong to a backup still running.
   */
  orphanAgeMs?: number;
  /**
   * Secret keys to read the parent of an encrypted backup sealed by a version that did not
   * record it in clear; without one, every backup older than such a backup is kept.
   */
  identities?: readonly string[];
  now?: () => Date;
  signal?: AbortSignal;
}

export interface PruneResult {
  /** Backups kept, oldest first. */
  kept: string[];
  /**
   * Backups the policy alone would delete but that a kept incremental builds on (directly or
   * through other links), oldest first, each with the kept backup that needs it: kept too.
   */
  keptForChain: Array<{ name: string; neededBy: string }>;
  /** Backups deleted (or, with `dryRun`, to be deleted), oldest first. */
  deleted: string[];
  /** Keys of leftovers from interrupted runs that were removed (locks, archives without a sidecar). */
  orphans: string[];
  /**
   * What interrupted writes left in the storage and was removed (or, with `dryRun`, would be):
   * temp files, open multipart uploads, segments. Empty when the storage has no `cleanupIncomplete`.
   */
  incomplete: IncompleteUpload[];
  /** What the storage cannot clean up and how it goes away (see `CleanupIncompleteResult.notes`). */
  notes: string[];
}

function isoWeek(time: Date): string {
  const day = new Date(Date.UTC(time.getUTCFullYear(), time.getUTCMonth(), time.getUTCDate()));
  const weekday = day.getUTCDay() || 7;
  day.setUTCDate(day.getUTCDate() + 4 - weekday);
  const yearStart = Date.UTC(day.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((day.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${day.getUTCFullYear()}-W${week}`;
}

/** Which backups a retention policy keeps, given names newest first. */
export function selectKept(
  newestFirst: Array<{ name: string; time: Date }>,
  policy: RetentionPolicy,
): Set<string> {
  const kept = new Set<string>();
  for (const backup of newestFirst.slice(0, policy.keepLast ?? 0)) kept.add(backup.name);
  const buckets: Array<[number | undefined, (time: Date) => string]> = [
    [policy.keepDaily, (time) => time.toISOString().slice(0, 10)],
    [policy.keepWeekly, isoWeek],
    [policy.keepMonthly, (time) => time.toISOString().slice(0, 7)],
  ];
  for (const [count, bucketOf] of buckets) {
    if (!count) continue;
    const seen = new Set<string>();
    for (const backup of newestFirst) {
      const bucket = bucketOf(backup.time);
      if (seen.has(bucket)) continue;
      if (seen.size >= count) break;
      seen.add(bucket);
      kept.add(backup.name);
    }
  }
  return kept;
}

/**
 * Deletes backups that the retention policy does not keep, newest-first buckets as in
 * restic's `forget`; `_N` suffixes order after the plain name of the same second. The sidecar
 * goes first, so a backup interrupted mid-delete is no longer listed. Also removes leftovers of
 * killed runs older than `orphanAgeMs`, and has the storage's `cleanupIncomplete` remove what
 * interrupted writes left (temp files, multipart uploads, segments) past the same age. At least
 * one `keep*` option is required.
 */
export async function prune(options: PruneOptions): Promise<PruneResult> {
  const { storage, signal } = options;
  throwIfAborted(signal);
  const policy: RetentionPolicy = options;
  if (
    ![policy.keepLast, policy.keepDaily, policy.keepWeekly, policy.keepMonthly].some(
      (count) => (count ?? 0) > 0,
    )
  ) {
    throw new ConfigError(
      'prune needs a retention policy: set at least one of keepLast, keepDaily, keepWeekly, keepMonthly above 0.',
    );
  }
  for (const [field, count] of Object.entries(policy)) {
    if (field.startsWith('keep') && count !== undefined && (!Number.isSafeInteger(count) || count < 0)) {
      throw new ConfigError(`${field} must be a non-negative integer.`);
    }
  }
  const items = await catalog({ storage, prefix: options.prefix, signal });
  const complete = items.filter((item) => item.sidecar).reverse();
  const kept = selectKept(complete, policy);
  const { keptForChain, notes: chainNotes } = await keepChains(options, complete, kept);
  const doomed = complete.filter((item) => !kept.has(item.name));
  const now = (options.now ?? (() => new Date()))().getTime();
  const orphanAge = options.orphanAgeMs ?? 24 * 60 * 60 * 1000;
  if (Number.isNaN(orphanAge)) throw new ConfigError('orphanAgeMs must be a number of milliseconds.');
  const orphans: string[] = [];
  const isOld = (lastModified: Date | undefined) =>
    lastModified !== undefined && now - lastModified.getTime() >= orphanAge;
  for (const item of items) {
    if (item.lock && isOld(item.lock.lastModified)) orphans.push(item.lock.key);
    if (!item.sidecar && item.archive && isOld(item.archive.lastModified)) orphans.push(item.archive.key);
    if (!item.sidecar && item.index && isOld(item.index.lastModified)) orphans.push(item.index.key);
  }
  if (!options.dryRun) {
    for (const item of doomed) await deleteBackup(storage, item, signal);
    for (const key of orphans) await storage.delete(key, { signal });
  }
  const incomplete = (await storage.cleanupIncomplete?.({
    olderThanMs: orphanAge,
    prefix: joinKey(options.prefix, '') || undefined,
    dryRun: options.dryRun === true,
    signal,
  })) ?? { removed: [], notes: [] };
  return {
    kept: complete
      .filter((item) => kept.has(item.name))
      .map((item) => item.name)
      .reverse(),
    keptForChain,
    deleted: doomed.map((item) => item.name).reverse(),
    orphans,
    incomplete: incomplete.removed,
    notes: [...chainNotes, ...incomplete.notes],
  };
}

async function deleteBackup(storage: Storage, item: CatalogItem, signal?: AbortSignal): Promise<void> {
  if (item.sidecar) await storage.delete(item.sidecar.key, { signal });
  if (item.archive) await storage.delete(item.archive.key, { signal });
  if (item.index) await storage.delete(item.index.key, { signal });
  if (item.lock) await storage.delete(item.lock.key, { signal });
}

/**
 * Adds to `kept` every backup a kept one builds on, following parents to each chain's full
 * backup, so that pruning never leaves an incremental that cannot be restored. A backup whose
 * parent cannot be read (sealed by an older version, no key) keeps every older backup.
 */
async function keepChains(
  options: PruneOptions,
  newestFirst: CatalogItem[],
  kept: Set<string>,
): Promise<{ keptForChain: Array<{ name: string; neededBy: string }>; notes: string[] }> {
  const complete = new Set(newestFirst.map((item) => item.name));
  const keptForChain: Array<{ name: string; neededBy: string }> = [];
  const notes: string[] = [];
  const queue = newestFirst.filter((item) => kept.has(item.name)).map((item) => item.name);
  const neededBy = new Map(queue.map((name) => [name, name]));
  while (queue.length > 0) {
    const name = queue.shift()!;
    const parents = await readParents({
      storage: options.storage,
      names: [name],
      prefix: options.prefix,
      signal: options.signal,
      ...(options.identities ? { identities: options.identities } : {}),
    });
    const parent = parents.get(name);
    if (parent === null) continue;
    if (parent === undefined) {
      const older = newestFirst.filter(
        (item) => compareNewer(name, item.name, newestFirst) && !kept.has(item.name),
      );
      for (const item of older) {
        kept.add(item.name);
        keptForChain.push({ name: item.name, neededBy: neededBy.get(name)! });
      }
      notes.push(
        `the parent of encrypted backup ${name} is not recorded in clear; every older backup is kept (pass a key with --identity to follow its chain)`,
      );
      continue;
    }
    if (!complete.has(parent)) {
      notes.push(`backup ${name} builds on ${parent}, which is missing: it cannot be restored as a chain`);
      continue;
    }
    if (kept.has(parent)) continue;
    kept.add(parent);
    neededBy.set(parent, neededBy.get(name)!);
    keptForChain.push({ name: parent, neededBy: neededBy.get(name)! });
    queue.push(parent);
  }
  const order = newestFirst.map((item) => item.name).reverse();
  keptForChain.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
  return { keptForChain, notes };
}

/** Whether `older` comes after `name` in the newest-first list, i.e. is older. */
function compareNewer(name: string, older: string, newestFirst: CatalogItem[]): boolean {
  const names = newestFirst.map((item) => item.name);
  return names.indexOf(older) > names.indexOf(name);
}
