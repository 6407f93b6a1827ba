import { ConfigError, rekey } from '@bk/core';
import type { Command } from 'commander';
import { IDENTITY_FLAG, IDENTITY_HELP, identitiesFrom, recipientsFrom } from '../age-keys.ts';
import type { CommandContext } from '../command-context.ts';
import { collectValues } from '../option-parsers.ts';

interface RekeyFlags {
  identity?: string[];
  recipient?: string[];
  recipientsFile?: string[];
}

/** Defines `bk rekey [name|latest] --recipient age1…`. */
export function defineRekeyCommand(program: Command, contextOf: (command: Command) => CommandContext): void {
  program
    .command('rekey')
    .description(
      'let another age key open an encrypted backup: re-wraps its file key, without re-encrypting the data (default: the latest)',
    )
    .argument('[name]', 'a backup name, or "latest"', 'latest')
    .option(IDENTITY_FLAG, IDENTITY_HELP, collectValues)
    .option('--recipient <age1…>', 'the public key to add; repeatable', collectValues)
    .option(
      '--recipients-file <file>',
      'add the age1… keys in this file, one a line; repeatable',
      collectValues,
    )
    .action(async (name: string, flags: RekeyFlags, command: Command) => {
      const context = contextOf(command);
      if (!flags.recipient?.length && !flags.recipientsFile?.length)
        throw new ConfigError(
          'bk rekey needs --recipient age1… or --recipients-file <file>: the key to add.',
        );
      const addRecipients = (await recipientsFrom(context, flags.recipient, flags.recipientsFile)) ?? [];
      const identities = await identitiesFrom(context, flags.identity);
      const result = await rekey({
        storage: await context.storage(),
        name,
        prefix: await context.prefix(),
        identities: identities ?? [],
        addRecipients,
        signal: context.signal,
      });
      context.printJson({ name: result.name, recipients: result.recipients, added: result.added });
      context.print(
        result.added.length === 0
          ? `${result.name}: already encrypted to ${addRecipients.join(', ')}`
          : `${result.name}: added ${result.added.join(', ')}; now encrypted to ${result.recipients.length} recipients`,
      );
    });
}
