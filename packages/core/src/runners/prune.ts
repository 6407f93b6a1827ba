import type { IncompleteUpload, Storage } from '../contracts.ts';
import { ConfigError, throwIfAborted } from '../errors.ts';
import { joinKey } from '../naming.ts';
import { type CatalogItem, catalog } from './catalog.ts';

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
  now?: () => Date;
  signal?: AbortSignal;
}

export interface PruneResult {
  /** Backups kept, oldest first. */
  kept: string[];
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
    deleted: doomed.map((item) => item.name).reverse(),
    orphans,
    incomplete: incomplete.removed,
    notes: incomplete.notes,
  };
}

async function deleteBackup(storage: Storage, item: CatalogItem, signal?: AbortSignal): Promise<void> {
  if (item.sidecar) await storage.delete(item.sidecar.key, { signal });
  if (item.archive) await storage.delete(item.archive.key, { signal });
  if (item.index) await storage.delete(item.index.key, { signal });
  if (item.lock) await storage.delete(item.lock.key, { signal });
}
