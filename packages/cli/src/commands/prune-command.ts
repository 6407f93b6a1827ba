import { prune, type RetentionPolicy } from '@bk/core';
import type { Command } from 'commander';
import { IDENTITY_FLAG, identitiesFrom } from '../age-keys.ts';
import type { CommandContext } from '../command-context.ts';
import { collectValues, parseCount, parseDuration } from '../option-parsers.ts';

interface PruneFlags extends RetentionPolicy {
  dryRun?: boolean;
  leftoverAge?: number;
  identity?: string[];
}

/** Defines `bk prune`. */
export function definePruneCommand(program: Command, contextOf: (command: Command) => CommandContext): void {
  program
    .command('prune')
    .description("delete backups the retention policy does not keep (flags override the config's retention)")
    .option('--keep-last <n>', 'keep the N newest backups', parseCount)
    .option('--keep-daily <n>', 'keep the newest backup of each of the N newest days (UTC)', parseCount)
    .option('--keep-weekly <n>', 'keep the newest backup of each of the N newest ISO weeks', parseCount)
    .option('--keep-monthly <n>', 'keep the newest backup of each of the N newest months', parseCount)
    .option('--dry-run', 'show what would be deleted, delete nothing')
    .option(
      '--leftover-age <duration>',
      'remove leftovers of killed runs (locks, temp files, multipart uploads, segments) older than this, e.g. 24h, 30m, 0s',
      parseDuration,
    )
    .option(
      IDENTITY_FLAG,
      'age identity file to read the parents of encrypted backups made by older versions; repeatable',
      collectValues,
    )
    .action(async (flags: PruneFlags, command: Command) => {
      const context = contextOf(command);
      const policy: RetentionPolicy = { ...(await context.config()).retention };
      for (const field of ['keepLast', 'keepDaily', 'keepWeekly', 'keepMonthly'] as const) {
        if (flags[field] !== undefined) policy[field] = flags[field];
      }
      const dryRun = flags.dryRun === true;
      const identities = await identitiesFrom(context, flags.identity);
      const result = await prune({
        storage: await context.storage(),
        prefix: await context.prefix(),
        ...policy,
        dryRun,
        ...(identities ? { identities } : {}),
        ...(flags.leftoverAge === undefined ? {} : { orphanAgeMs: flags.leftoverAge }),
        signal: context.signal,
      });
      context.printJson({ dryRun, ...result });
      const verb = dryRun ? 'would delete' : 'deleted';
      for (const name of result.deleted) context.print(`${verb} ${name}`);
      for (const key of result.orphans) context.print(`${verb} leftover ${key}`);
      for (const item of result.incomplete) context.print(`${verb} incomplete ${item.kind} ${item.location}`);
      for (const note of result.notes) context.print(`note: ${note}`);
      const neededBy = new Map(result.keptForChain.map((item) => [item.name, item.neededBy]));
      for (const name of result.kept) {
        const by = neededBy.get(name);
        context.print(by === undefined ? `kept ${name}` : `kept ${name} (incremental ${by} builds on it)`);
      }
    });
}
