import { verify } from '@bk/core';
import type { Command } from 'commander';
import {
  IDENTITY_FLAG,
  IDENTITY_HELP,
  identitiesFrom,
  PASSPHRASE_FLAG,
  PASSPHRASE_HELP,
} from '../age-keys.ts';
import type { CommandContext } from '../command-context.ts';
import { formatBytes } from '../format-bytes.ts';
import { formatEntries } from '../format-entries.ts';
import { collectValues, parseReadConcurrency } from '../option-parsers.ts';

/** Defines `bk verify [name|latest]`. */
export function defineVerifyCommand(program: Command, contextOf: (command: Command) => CommandContext): void {
  program
    .command('verify')
    .description('re-read a backup and check every entry against its manifest (default: the latest)')
    .argument('[name]', 'a backup name, or "latest"', 'latest')
    .option(
      '--read-concurrency <n>',
      'ranged requests in flight on a remote store (default 4; memory (n + 1) × 3 MiB; 1 reads one stream)',
      parseReadConcurrency,
    )
    .option(IDENTITY_FLAG, IDENTITY_HELP, collectValues)
    .option(PASSPHRASE_FLAG, PASSPHRASE_HELP)
    .action(
      async (
        name: string,
        flags: { readConcurrency?: number; identity?: string[]; passphraseFile?: string },
        command: Command,
      ) => {
        const context = contextOf(command);
        const identities = await identitiesFrom(context, flags.identity, flags.passphraseFile);
        const progress = context.progress();
        let result: Awaited<ReturnType<typeof verify>>;
        try {
          result = await verify({
            storage: await context.storage(),
            name,
            prefix: await context.prefix(),
            ...(flags.readConcurrency ? { readConcurrency: flags.readConcurrency } : {}),
            ...(progress.listener ? { onProgress: progress.listener } : {}),
            ...(identities ? { identities } : {}),
            signal: context.signal,
          });
        } finally {
          progress.finish();
        }
        const { archive } = result.manifest;
        context.printJson({
          name: result.name,
          ok: true,
          entries: result.entries,
          bytes: result.bytes,
          archive,
        });
        context.print(
          `${result.name}: OK  ${formatEntries(result.entries)}  ${formatBytes(result.bytes)}  archive ${formatBytes(archive.size)} sha256 ${archive.sha256}`,
        );
      },
    );
}
