import {
  type ConflictPolicy,
  inspect,
  type RestoreResult,
  type Restorer,
  restore,
  type SidecarManifest,
  type Storage,
} from '@bk/core';
import { identitiesFrom } from '../age-keys.ts';
import type { CommandContext } from '../command-context.ts';

/** The backup `bk restore` and `bk extract` work on, and what they need to read it. */
export interface ResolvedBackup {
  storage: Storage;
  prefix: string | undefined;
  identities: string[] | undefined;
  /** The backup's manifest: `"latest"` resolved once, so the run stays on this backup. */
  manifest: SidecarManifest;
}

/**
 * Opens the target and reads the manifest of `name`, with the identities from `--identity` (or
 * the environment and config). With `only`, `"latest"` is the newest backup holding those
 * components; resolving it once keeps the run on this backup even if another completes meanwhile.
 */
export async function resolveBackup(
  context: CommandContext,
  name: string,
  flags: { only?: string[]; identity?: string[]; passphraseFile?: string },
): Promise<ResolvedBackup> {
  const identities = await identitiesFrom(context, flags.identity, flags.passphraseFile);
  const storage = await context.storage();
  const prefix = await context.prefix();
  const manifest = await inspect({
    storage,
    name,
    prefix,
    ...(identities ? { identities } : {}),
    signal: context.signal,
    ...(flags.only ? { components: flags.only } : {}),
  });
  return { storage, prefix, identities, manifest };
}

/** What `bk restore` and `bk extract` hand to the restore runner. */
export interface RestoreRun {
  storage: Storage;
  /** The resolved backup name (never `"latest"`, so the run stays on the backup inspected). */
  name: string;
  restorers: Restorer[];
  conflict: ConflictPolicy;
  prefix: string | undefined;
  only?: string[];
  readConcurrency?: number;
  identities?: string[];
  /** Restore although a component's preflight refused the target's version (`--force`). */
  force?: boolean;
  /** Restore the incremental chain that ends at `name` (see core `restore`'s `chain`). */
  chain?: boolean;
}

/** Totals over every component of a restore, as both commands print them. */
export interface RestoreTotals {
  result: RestoreResult;
  entries: number;
  bytes: number;
  skipped: number;
}

/**
 * Runs the restore runner with the command's progress reporter and abort signal, finishing the
 * progress display whatever happens, and sums the components' reports.
 */
export async function restoreWithProgress(context: CommandContext, run: RestoreRun): Promise<RestoreTotals> {
  const progress = context.progress();
  let result: RestoreResult;
  try {
    result = await restore({
      storage: run.storage,
      name: run.name,
      restorers: run.restorers,
      conflict: run.conflict,
      prefix: run.prefix,
      ...(run.only ? { only: run.only } : {}),
      ...(run.readConcurrency ? { readConcurrency: run.readConcurrency } : {}),
      ...(progress.listener ? { onProgress: progress.listener } : {}),
      ...(run.identities ? { identities: run.identities } : {}),
      ...(run.force ? { force: true } : {}),
      ...(run.chain ? { chain: true } : {}),
      signal: context.signal,
    });
  } finally {
    progress.finish();
  }
  const reports = (result.chain ?? [result]).flatMap((link) => Object.values(link.components));
  return {
    result,
    entries: reports.reduce((sum, report) => sum + report.entries, 0),
    bytes: reports.reduce((sum, report) => sum + report.bytes, 0),
    skipped: reports.reduce((sum, report) => sum + (report.skipped ?? 0), 0),
  };
}
