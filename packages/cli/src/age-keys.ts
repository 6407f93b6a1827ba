import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { agePassphraseKey, ConfigError, parseAgeIdentities, parseAgeRecipients } from '@bk/core';
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

/** The environment variable holding a passphrase itself (age's scrypt stanza, as `age -p`). */
export const PASSPHRASE_ENV = 'BK_AGE_PASSPHRASE';

/** `--passphrase-file <file>`, for backup and the commands that read backups. */
export const PASSPHRASE_FLAG = '--passphrase-file <file>';
export const PASSPHRASE_HELP = `file whose first line is the passphrase of a passphrase-encrypted backup (age -p; default: ${PASSPHRASE_ENV}, else the config's encryption.passphraseFile)`;

/**
 * The passphrase: the first line of `--passphrase-file`, else `BK_AGE_PASSPHRASE`, else the first
 * line of the config's `encryption.passphraseFile`; `undefined` when none is given. Never logged.
 */
export async function passphraseFrom(
  context: CommandContext,
  file: string | undefined,
): Promise<{ passphrase: string; from: string } | undefined> {
  const firstLine = (text: string): string => text.split(/\r?\n/, 1)[0] ?? '';
  let found: { passphrase: string; from: string } | undefined;
  if (file !== undefined) {
    const path = resolve(context.io.cwd, file);
    found = {
      passphrase: firstLine(await readKeyFile(path, 'passphrase file')),
      from: `--passphrase-file ${path}`,
    };
  } else if (context.io.env[PASSPHRASE_ENV]) {
    found = { passphrase: context.io.env[PASSPHRASE_ENV], from: PASSPHRASE_ENV };
  } else {
    const configured = (await context.config()).encryption?.passphraseFile;
    if (configured)
      found = {
        passphrase: firstLine(await readKeyFile(configured, 'passphrase file (encryption.passphraseFile)')),
        from: `encryption.passphraseFile ${configured}`,
      };
  }
  if (found) context.addSecret(found.passphrase);
  if (found && found.passphrase === '') throw new ConfigError(`The passphrase from ${found.from} is empty.`);
  return found;
}

/** `--identity <file>` (repeatable), for the commands that read backups. */
export const IDENTITY_FLAG = '--identity <file>';
export const IDENTITY_HELP = `age identity file (age-keygen or bk keygen) for encrypted backups; repeatable (default: ${IDENTITY_ENV}, a key or a file, else the config's encryption.identityFile)`;

/**
 * The secret keys for reading encrypted backups: `--identity` files, else `BK_AGE_IDENTITY` (a key
 * or a file), else the config's `encryption.identityFile`; plus the passphrase (see
 * {@link passphraseFrom}) when one is given; `undefined` when none is.
 */
export async function identitiesFrom(
  context: CommandContext,
  files: string[] | undefined,
  passphraseFile?: string,
): Promise<string[] | undefined> {
  const texts: string[] = [];
  const passphrase = await passphraseFrom(context, passphraseFile);
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
  if (texts.length === 0 && passphrase === undefined) return undefined;
  const keys = texts.flatMap((text) => parseAgeIdentities(text).map((identity) => identity.secretKey));
  if (passphrase) keys.push(agePassphraseKey(passphrase.passphrase));
  return keys;
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
