import { AGE_SUFFIX, componentSecrets, inspect, list, readParents } from '@bk/core';
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
  /**
   * The backup this incremental builds on, `null` for a full backup; absent when it cannot be
   * told (an encrypted backup sealed by a version that did not record it in clear).
   */
  parent?: string | null;
  /** Whether the archive and manifest are encrypted (told by the archive's name, no key needed). */
  encrypted: boolean;
  /** Unencrypted backups only: the components whose secrets it stores in clear (empty: none). */
  unencryptedSecrets?: string[];
}

/** Defines `bk ls`. */
export function defineListCommand(program: Command, contextOf: (command: Command) => CommandContext): void {
  program
    .command('ls')
    .alias('list')
    .description('list complete backups in the target, oldest first')
    .action(async (_flags: unknown, command: Command) => {
      const context = contextOf(command);
      const storage = await context.storage();
      const prefix = await context.prefix();
      const backups = await list({ storage, prefix, signal: context.signal });
      const parents = await readParents({
        storage,
        prefix,
        names: backups.map((item) => item.name),
        signal: context.signal,
      });
      const listed: ListedBackup[] = [];
      for (const item of backups) {
        const parent = parents.get(item.name);
        const encrypted = item.key.endsWith(AGE_SUFFIX);
        // An unencrypted sidecar is plain JSON: it says which components hold secrets in clear.
        const unencryptedSecrets = encrypted
          ? undefined
          : componentSecrets(
              (await inspect({ storage, name: item.name, prefix, signal: context.signal })).components,
            )
              .filter((held) => held.secrets.captured.length > 0)
              .map((held) => held.component);
        listed.push({
          name: item.name,
          time: item.time.toISOString(),
          size: item.size ?? null,
          key: item.key,
          ...(parent === undefined ? {} : { parent }),
          encrypted,
          ...(unencryptedSecrets ? { unencryptedSecrets } : {}),
        });
      }
      context.printJson({ backups: listed });
      if (listed.length === 0) context.note(`no backups in ${await context.location('')}`);
      const width = Math.max(0, ...listed.map((item) => item.name.length));
      for (const item of listed) {
        const size = item.size === null ? 'archive missing' : formatBytes(item.size);
        const parent =
          item.parent === undefined
            ? '  parent unknown (encrypted)'
            : item.parent === null
              ? ''
              : `  parent ${item.parent}`;
        const secrets = item.encrypted
          ? '  encrypted'
          : item.unencryptedSecrets && item.unencryptedSecrets.length > 0
            ? `  UNENCRYPTED secrets of ${item.unencryptedSecrets.join(', ')}`
            : '';
        context.print(
          `${item.name.padEnd(width)}  ${item.time.replace('.000Z', 'Z')}  ${size}${parent}${secrets}`,
        );
      }
    });
}
