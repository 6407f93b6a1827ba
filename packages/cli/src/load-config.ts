import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ConfigError, checkAgeRecipients, isRecord, type RetentionPolicy } from '@bk/core';
import { toTargetUrl } from './target-url.ts';

/** The config file `bk` reads from the working directory when `--config` is not given. */
export const DEFAULT_CONFIG_FILE = 'bk.config.json';

/**
 * One component as written in the config file: its `kind` picks the package
 * (`files` → `@bk/files`, `influx` → `@bk/influx`), the other fields go to that package's
 * `fromConfig`.
 */
export interface ComponentConfig {
  kind: string;
  name?: string;
  [field: string]: unknown;
}

/** A validated config file, with relative paths already resolved. */
export interface BkConfig {
  /** The file it was read from; `undefined` when there was none. */
  file: string | undefined;
  /** The directory relative paths were resolved against. */
  directory: string;
  target: URL | undefined;
  prefix: string | undefined;
  components: ComponentConfig[];
  retention: RetentionPolicy | undefined;
  /**
   * `encryption.recipients`: `age1…` keys every backup is encrypted to; `encryption.identityFile`:
   * the identity file (resolved against the config's directory) restores and verifies read with;
   * `encryption.passphraseFile`: a file holding a passphrase to encrypt with instead of recipients
   * and to read backups with (resolved against the config's directory);
   * `encryption.required`: refuse to store secrets unencrypted, as `bk backup --require-encryption`.
   */
  encryption:
    | { recipients?: string[]; identityFile?: string; passphraseFile?: string; required?: boolean }
    | undefined;
}

const TOP_LEVEL_FIELDS = new Set(['$schema', 'target', 'prefix', 'components', 'retention', 'encryption']);
const RETENTION_FIELDS = ['keepLast', 'keepDaily', 'keepWeekly', 'keepMonthly'] as const;
const KIND = /^[a-z0-9][a-z0-9-]*$/;

function isFile(error: unknown, code: string): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === code;
}

/**
 * Reads the config file: `file` when given (it must exist), else `bk.config.json` in `cwd` when
 * it exists, else an empty config whose relative paths resolve against `cwd`.
 *
 * @throws {ConfigError} when the file is missing, unreadable, not JSON, or a field is invalid.
 */
export async function loadConfig(options: { file?: string; cwd: string }): Promise<BkConfig> {
  const explicit = options.file !== undefined;
  const file = resolve(options.cwd, options.file ?? DEFAULT_CONFIG_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (!explicit && isFile(error, 'ENOENT')) return parseConfig({}, options.cwd, undefined);
    const reason = isFile(error, 'ENOENT') ? 'it does not exist' : (error as Error).message;
    throw new ConfigError(`Cannot read the config file ${file}: ${reason}.`, { cause: error });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`The config file ${file} is not valid JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return parseConfig(value, dirname(file), file);
}

/**
 * Validates a parsed config. A relative `target` path and the `root` and `restoreTo` of `files`
 * components resolve against `directory`; relative `paths` resolve against the component's
 * `root` when it has one (as `@bk/files` reads them), else against `directory`. Other kinds get
 * their fields unchanged.
 *
 * @throws {ConfigError} naming the first invalid field.
 */
export function parseConfig(value: unknown, directory: string, file: string | undefined): BkConfig {
  const where = (field: string) => (file ? `${file}: ${field}` : field);
  if (!isRecord(value)) throw new ConfigError(`${where('the config')} must be a JSON object.`);
  for (const field of Object.keys(value)) {
    if (!TOP_LEVEL_FIELDS.has(field)) {
      throw new ConfigError(
        `${where(field)} is not a config field; known fields: ${[...TOP_LEVEL_FIELDS].slice(1).join(', ')}.`,
      );
    }
  }
  let target: URL | undefined;
  if (value.target !== undefined) {
    if (typeof value.target !== 'string')
      throw new ConfigError(`${where('target')} must be a string (a URL).`);
    target = toTargetUrl(value.target, directory, where('target'));
  }
  if (value.prefix !== undefined && typeof value.prefix !== 'string')
    throw new ConfigError(`${where('prefix')} must be a string.`);
  const components = value.components ?? [];
  if (!Array.isArray(components)) throw new ConfigError(`${where('components')} must be an array.`);
  return {
    file,
    directory,
    target,
    prefix: value.prefix as string | undefined,
    components: components.map((component: unknown, index) =>
      parseComponent(component, directory, where(`components[${index}]`)),
    ),
    retention:
      value.retention === undefined ? undefined : parseRetention(value.retention, where('retention')),
    encryption:
      value.encryption === undefined
        ? undefined
        : parseEncryption(value.encryption, directory, where('encryption')),
  };
}

function parseEncryption(
  value: unknown,
  directory: string,
  where: string,
): { recipients?: string[]; identityFile?: string; passphraseFile?: string; required?: boolean } {
  if (!isRecord(value)) throw new ConfigError(`${where} must be an object.`);
  for (const field of Object.keys(value)) {
    if (!['recipients', 'identityFile', 'passphraseFile', 'required'].includes(field))
      throw new ConfigError(
        `${where}.${field} is not a field; known fields: recipients, identityFile, passphraseFile, required.`,
      );
  }
  const { recipients, identityFile, passphraseFile, required } = value;
  if (required !== undefined && typeof required !== 'boolean')
    throw new ConfigError(`${where}.required must be true or false.`);
  if (
    recipients !== undefined &&
    (!Array.isArray(recipients) || recipients.some((recipient) => typeof recipient !== 'string'))
  )
    throw new ConfigError(`${where}.recipients must be an array of age1… public keys.`);
  if (identityFile !== undefined && (typeof identityFile !== 'string' || identityFile === ''))
    throw new ConfigError(`${where}.identityFile must be a non-empty string (a path).`);
  if (passphraseFile !== undefined && (typeof passphraseFile !== 'string' || passphraseFile === ''))
    throw new ConfigError(`${where}.passphraseFile must be a non-empty string (a path).`);
  if (passphraseFile !== undefined && Array.isArray(recipients) && recipients.length > 0)
    throw new ConfigError(
      `${where} has both recipients and passphraseFile: age allows a passphrase only as the one way to open a file; keep one.`,
    );
  return {
    ...(recipients === undefined ? {} : { recipients: checkAgeRecipients(recipients as string[]) }),
    ...(identityFile === undefined ? {} : { identityFile: resolve(directory, identityFile as string) }),
    ...(passphraseFile === undefined ? {} : { passphraseFile: resolve(directory, passphraseFile as string) }),
    ...(required === undefined ? {} : { required }),
  };
}

function parseComponent(value: unknown, directory: string, where: string): ComponentConfig {
  if (!isRecord(value)) throw new ConfigError(`${where} must be an object with a "kind".`);
  const { kind, name } = value;
  if (typeof kind !== 'string' || !KIND.test(kind)) {
    throw new ConfigError(
      `${where}.kind must be a component kind such as "files" (lower-case letters, digits, -).`,
    );
  }
  if (name !== undefined && (typeof name !== 'string' || name === ''))
    throw new ConfigError(`${where}.name must be a non-empty string.`);
  if (kind !== 'files') return { ...value, kind };
  const resolved: ComponentConfig = { ...value, kind };
  for (const field of ['root', 'restoreTo']) {
    const path = value[field];
    if (path === undefined) continue;
    if (typeof path !== 'string' || path === '')
      throw new ConfigError(`${where}.${field} must be a non-empty string.`);
    resolved[field] = resolve(directory, path);
  }
  if (
    !Array.isArray(value.paths) ||
    value.paths.length === 0 ||
    value.paths.some((path) => typeof path !== 'string' || path === '')
  )
    throw new ConfigError(`${where}.paths must be a non-empty array of non-empty strings.`);
  // With a root, @bk/files reads relative paths as relative to it; without one, the config's directory is the natural base.
  const base = typeof resolved.root === 'string' ? resolved.root : directory;
  resolved.paths = value.paths.map((path: string) => resolve(base, path));
  return resolved;
}

function parseRetention(value: unknown, where: string): RetentionPolicy {
  if (!isRecord(value)) throw new ConfigError(`${where} must be an object such as { "keepLast": 7 }.`);
  const policy: RetentionPolicy = {};
  for (const [field, count] of Object.entries(value)) {
    if (!(RETENTION_FIELDS as readonly string[]).includes(field))
      throw new ConfigError(
        `${where}.${field} is not a retention field; known: ${RETENTION_FIELDS.join(', ')}.`,
      );
    if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0)
      throw new ConfigError(`${where}.${field} must be a non-negative integer.`);
    policy[field as (typeof RETENTION_FIELDS)[number]] = count;
  }
  return policy;
}
