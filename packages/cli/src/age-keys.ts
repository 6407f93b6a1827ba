import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ConfigError, parseAgeIdentities, parseAgeRecipients } from '@bk/core';
import type { CommandContext } from './command-context.ts';

/** The environment variable holding an identity: the `AGE-SECRET-KEY-1…` key itself or an identity file's path. */
export const IDENTITY_ENV = 'BK_AGE_IDENTITY';

async function readKeyFile(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`Cannot read the ${what} ${path}: ${(error as Error).message}.`, { cause: error });
  }
}

/** `--identity <file>` (repeatable), for the commands that read backups. */
export const IDENTITY_FLAG = '--identity <file>';
export const IDENTITY_HELP = `age identity file (age-keygen or bk keygen) for encrypted backups; repeatable (default: ${IDENTITY_ENV}, a key or a file, else the config's encryption.identityFile)`;

/**
 * The secret keys for reading encrypted backups: `--identity` files, else `BK_AGE_IDENTITY` (a key
 * or a file), else the config's `encryption.identityFile`; `undefined` when none is given.
 */
export async function identitiesFrom(
  context: CommandContext,
  files: string[] | undefined,
): Promise<string[] | undefined> {
  const texts: string[] = [];
  if (files && files.length > 0) {
    for (const file of files) texts.push(await readKeyFile(resolve(context.io.cwd, file), 'identity file'));
  } else {
    const fromEnv = context.io.env[IDENTITY_ENV]?.trim();
    if (fromEnv) {
      texts.push(
        fromEnv.startsWith('AGE-SECRET-KEY-1')
          ? fromEnv
          : await readKeyFile(resolve(context.io.cwd, fromEnv), `identity file (${IDENTITY_ENV})`),
      );
    } else {
      const file = (await context.config()).encryption?.identityFile;
      if (file) texts.push(await readKeyFile(file, 'identity file (encryption.identityFile)'));
    }
  }
  if (texts.length === 0) return undefined;
  return texts.flatMap((text) => parseAgeIdentities(text).map((identity) => identity.secretKey));
}

/**
 * The recipients to encrypt a backup to: `--recipient` keys and `--recipients-file` files, else
 * the config's `encryption.recipients`; `undefined` for an unencrypted backup.
 */
export async function recipientsFrom(
  context: CommandContext,
  keys: string[] | undefined,
  files: string[] | undefined,
): Promise<string[] | undefined> {
  const recipients = parseAgeRecipients((keys ?? []).join('\n'));
  for (const file of files ?? [])
    recipients.push(
      ...parseAgeRecipients(await readKeyFile(resolve(context.io.cwd, file), 'recipients file')),
    );
  if (keys?.length || files?.length) {
    if (recipients.length === 0) throw new ConfigError('The recipients files hold no age1… public key.');
    return recipients;
  }
  const configured = (await context.config()).encryption?.recipients;
  return configured && configured.length > 0 ? configured : undefined;
}
