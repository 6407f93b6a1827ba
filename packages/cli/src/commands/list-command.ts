import { list } from '@bk/core';
import type { Command } from 'commander';
import type { CommandContext } from '../command-context.ts';
import { formatBytes } from '../format-bytes.ts';

/** One backup in `bk ls --json`, whose document is `{ "backups": ListedBackup[] }`, oldest first. */
export interface ListedBackup {
  name: string;
  /** ISO 8601, UTC: the second in the name. */
  time: string;
  /** Archive bytes; `null` when the archive object is missing. */
  size: number | null;
  key: string;
}

/** Defines `bk ls`. */
export function defineListCommand(program: Command, contextOf: (command: Command) => CommandContext): void {
  program
    .command('ls')
    .alias('list')
    .description('list complete backups in the target, oldest first')
    .action(async (_flags: unknown, command: Command) => {
      const context = contextOf(command);
      const backups = await list({
        storage: await context.storage(),
        prefix: await context.prefix(),
        signal: context.signal,
      });
      const listed: ListedBackup[] = backups.map((item) => ({
        name: item.name,
        time: item.time.toISOString(),
        size: item.size ?? null,
        key: item.key,
      }));
      context.printJson({ backups: listed });
      if (listed.length === 0) context.note(`no backups in ${await context.location('')}`);
      const width = Math.max(0, ...listed.map((item) => item.name.length));
      for (const item of listed) {
        const size = item.size === null ? 'archive missing' : formatBytes(item.size);
        context.print(`${item.name.padEnd(width)}  ${item.time.replace('.000Z', 'Z')}  ${size}`);
      }
    });
}
