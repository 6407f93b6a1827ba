import { join, resolve } from 'node:path';
import type { ConflictPolicy, Restorer } from '@bk/core';
import { files } from '@bk/files';
import { type Command, Option } from 'commander';
import { IDENTITY_FLAG, IDENTITY_HELP, PASSPHRASE_FLAG, PASSPHRASE_HELP } from '../age-keys.ts';
import type { CommandContext } from '../command-context.ts';
import { formatBytes } from '../format-bytes.ts';
import { formatEntries } from '../format-entries.ts';
import { collectValues, parseNameList, parseReadConcurrency } from '../option-parsers.ts';
import { resolveBackup, restoreWithProgress } from './restore-with-progress.ts';

interface ExtractFlags {
  identity?: string[];
  passphraseFile?: string;
  to: string;
  only?: string[];
  conflict: ConflictPolicy;
  readConcurrency?: number;
}

/**
 * A restorer of any kind that writes the component's entries as files under `directory`, through
 * `@bk/files`' restore: the same path safety (nothing outside `directory`), modes, mtimes, links
 * and conflict policy. Entries stored in chunks (`part-000000`, …) arrive joined into one body,
 * each entry's sha256 checked before it is published.
 */
function fileWriter(kind: string, name: string, directory: string): Restorer {
  const writer = files({ name, paths: ['/'], restoreTo: directory });
  return { kind, name, restore: (entries, context) => writer.restore(entries, context) };
}

/** Defines `bk extract [name|latest] --to <dir>`. */
export function defineExtractCommand(
  program: Command,
  contextOf: (command: Command) => CommandContext,
): void {
  program
    .command('extract')
    .description(
      "write a backup's files into a directory as they were, chunks joined and every checksum checked, without a server (default: the latest)",
    )
    .argument('[name]', 'a backup name, or "latest"', 'latest')
    .requiredOption('--to <dir>', 'the directory to write into: one folder per component')
    .option('--only <names>', 'extract only these components (comma-separated)', parseNameList)
    .addOption(
      new Option('--conflict <policy>', 'when a file exists in the directory: fail, skip or overwrite')
        .choices(['fail', 'skip', 'overwrite'])
        .default('fail'),
    )
    .option(
      '--read-concurrency <n>',
      'ranged requests in flight on a remote store (default 4; memory (n + 1) × 3 MiB; 1 reads one stream)',
      parseReadConcurrency,
    )
    .option(IDENTITY_FLAG, IDENTITY_HELP, collectValues)
    .option(PASSPHRASE_FLAG, PASSPHRASE_HELP)
    .action(async (name: string, flags: ExtractFlags, command: Command) => {
      const context = contextOf(command);
      const { storage, prefix, identities, manifest } = await resolveBackup(context, name, flags);
      const to = resolve(context.io.cwd, flags.to);
      const restorers = manifest.components.map((component) =>
        fileWriter(component.kind, component.name, join(to, component.name)),
      );
      const { result, entries, bytes, skipped } = await restoreWithProgress(context, {
        storage,
        name: manifest.name,
        restorers,
        conflict: flags.conflict,
        prefix,
        ...(flags.only ? { only: flags.only } : {}),
        ...(flags.readConcurrency ? { readConcurrency: flags.readConcurrency } : {}),
        ...(identities ? { identities } : {}),
      });
      const components = Object.fromEntries(
        Object.entries(result.components).map(([component, report]) => [
          component,
          { directory: join(to, component), entries: report.entries, bytes: report.bytes },
        ]),
      );
      context.printJson({ name: result.name, to, entries, bytes, skipped, components });
      context.print(
        `extracted ${result.name} into ${to}: ${formatEntries(entries)}, ${formatBytes(bytes)}${skipped ? `, ${skipped} skipped` : ''}`,
      );
    });
}
