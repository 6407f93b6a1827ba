import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ConfigError, formatAgeIdentityFile, generateAgeIdentity } from '@bk/core';
import type { Command } from 'commander';
import type { CommandContext } from '../command-context.ts';

/** Defines `bk keygen [-o file]`: a new age X25519 identity, as `age-keygen` makes. */
export function defineKeygenCommand(program: Command, contextOf: (command: Command) => CommandContext): void {
  program
    .command('keygen')
    .description(
      'make an age identity (secret key) for encrypted backups; its public key goes to bk backup --recipient',
    )
    .option('-o, --output <file>', 'write the identity to this new file (mode 0600) instead of stdout')
    .action(async (flags: { output?: string }, command: Command) => {
      const context = contextOf(command);
      const identity = generateAgeIdentity();
      const text = formatAgeIdentityFile(identity);
      if (flags.output === undefined) {
        if (context.json) context.printJson({ recipient: identity.recipient, identity: identity.secretKey });
        else context.io.stdout.write(text);
        return;
      }
      const file = resolve(context.io.cwd, flags.output);
      try {
        await writeFile(file, text, { mode: 0o600, flag: 'wx' });
      } catch (error) {
        const reason =
          (error as NodeJS.ErrnoException).code === 'EEXIST'
            ? 'it exists (bk keygen never replaces a key; choose another file)'
            : (error as Error).message;
        throw new ConfigError(`Cannot write the identity file ${file}: ${reason}.`, { cause: error });
      }
      context.printJson({ recipient: identity.recipient, file });
      context.note(`Public key: ${identity.recipient}`);
    });
}
