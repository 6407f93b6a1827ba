import { constants } from 'node:fs';
import { access, glob, readFile, stat } from 'node:fs/promises';
import { basename, isAbsolute, relative, resolve, sep } from 'node:path';
import {
  ComponentError,
  ConfigError,
  ConflictError,
  type ConflictPolicy,
  type Entry,
  fromBytes,
} from '@bk/core';
import { pathExists, type StagingArea, targetInside } from './staging-area.ts';

/** The entry prefix of configuration and rule files. */
export const CONFIG_PREFIX = 'config/';

/** Largest configuration or rule file read (they are read whole, so their size is exact). */
const FILE_LIMIT = 16 * 1024 * 1024;

/** One file to back up: its entry path (under `config/`) and where it is read from. */
export interface ConfigFile {
  /** Relative to `config/`, e.g. `prometheus.yml`, `rules/node.yml`. */
  path: string;
  /** Absolute path on this machine; absent for a config read from the server's API. */
  source?: string;
  /** The file's text when it came from the API. */
  text?: string;
  role: 'config' | 'rules';
}

/** Whether a path holds glob characters. */
function isGlob(path: string): boolean {
  return /[*?[\]{}]/.test(path);
}

/**
 * Expands `ruleFiles` (absolute paths or globs; relative ones resolve against the config
 * file's directory, as Prometheus reads `rule_files`) into files, sorted, without duplicates.
 *
 * @throws {ConfigError} when a plain path does not exist or is not a file.
 */
export async function expandRuleFiles(
  ruleFiles: readonly string[],
  base: string | undefined,
  where: string,
): Promise<string[]> {
  const found = new Set<string>();
  for (const pattern of ruleFiles) {
    if (!isAbsolute(pattern) && base === undefined) {
      throw new ConfigError(
        `${where}: rule file "${pattern}" is relative; make it absolute or set "configFile".`,
      );
    }
    const absolute = resolve(base ?? '/', pattern);
    if (isGlob(absolute)) {
      for await (const match of glob(absolute)) {
        if ((await stat(match).catch(() => undefined))?.isFile()) found.add(match);
      }
      continue;
    }
    const info = await stat(absolute).catch(() => undefined);
    if (!info?.isFile()) throw new ConfigError(`${where}: rule file "${absolute}" is not a readable file.`);
    found.add(absolute);
  }
  return [...found].sort();
}

/**
 * Lays out the files under `config/`: the config file (read from disk or the API) by its name,
 * each rule file by its path relative to `base` (the config file's directory) when it lies
 * below it, else by its base name.
 *
 * @throws {ConfigError} when two files would get the same entry path.
 */
export function layoutConfigFiles(
  config: ConfigFile,
  base: string | undefined,
  ruleFiles: readonly string[],
  where: string,
): ConfigFile[] {
  const files: ConfigFile[] = [config];
  for (const file of ruleFiles) {
    const inside = base === undefined ? undefined : relative(base, file);
    const path =
      inside !== undefined &&
      inside !== '' &&
      inside !== '..' &&
      !inside.startsWith(`..${sep}`) &&
      !isAbsolute(inside)
        ? inside.split(sep).join('/')
        : basename(file);
    files.push({ path, source: file, role: 'rules' });
  }
  const seen = new Map<string, string>();
  for (const file of files) {
    const other = seen.get(file.path);
    if (other !== undefined) {
      throw new ConfigError(
        `${where}: "${other}" and "${file.source ?? '(the API)'}" would both be stored as ${CONFIG_PREFIX}${file.path}.`,
      );
    }
    seen.set(file.path, file.source ?? '(the API)');
  }
  return files;
}

/** Reads a config or rule file whole and makes it an entry with its exact size. */
export async function configEntry(file: ConfigFile, component: string): Promise<Entry> {
  let bytes: Uint8Array;
  let mode = 0o644;
  let mtime: Date | undefined;
  if (file.source === undefined) {
    bytes = Buffer.from(file.text ?? '');
  } else {
    try {
      const info = await stat(file.source);
      if (info.size > FILE_LIMIT) {
        throw new ConfigError(
          `${component}: "${file.source}" is larger than ${FILE_LIMIT} bytes; is it a config file?`,
        );
      }
      mode = info.mode & 0o777;
      mtime = info.mtime;
      bytes = await readFile(file.source);
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      throw new ComponentError(component, `cannot read "${file.source}": ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
  return {
    path: `${CONFIG_PREFIX}${file.path}`,
    type: 'file',
    size: bytes.byteLength,
    mode,
    ...(mtime ? { mtime } : {}),
    body: fromBytes(bytes),
  };
}

/** Whether `path` can be read by this process. */
export async function readable(path: string): Promise<boolean> {
  try {
    await access(path, constants.R_OK);
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/**
 * Restores `config/…` entries into a config directory: each file is staged under a temp name
 * and renamed into place by {@link publish} once every entry was read, so a failed restore
 * leaves the directory as it was. Existing files: `fail` → `ConflictError` (before anything is
 * written), `skip` → kept, `overwrite` → replaced (atomically, by rename).
 */
export class ConfigFilesRestore {
  readonly #staging: StagingArea;
  readonly #conflict: ConflictPolicy;
  readonly #staged: { path: string; existed: boolean }[] = [];
  readonly skipped: string[] = [];

  constructor(staging: StagingArea, conflict: ConflictPolicy) {
    this.#staging = staging;
    this.#conflict = conflict;
  }

  /** Stages one entry (path relative to `config/`); returns the bytes written (0 when skipped). */
  async add(path: string, entry: Entry, signal: AbortSignal): Promise<number> {
    const target = await targetInside(this.#staging.root, path);
    const existed = await pathExists(target);
    if (existed) {
      if ((await stat(target)).isDirectory()) {
        throw new ConflictError(target, `"${target}" is a directory; a config file cannot replace it.`);
      }
      if (this.#conflict === 'fail') {
        throw new ConflictError(
          target,
          `config file "${target}" already exists; restore with conflict "skip" or "overwrite", or into an empty "restore.configDir".`,
        );
      }
      if (this.#conflict === 'skip') {
        for await (const _ of entry.body ?? []) {
          // Read so core checks it; not written.
        }
        this.skipped.push(path);
        return 0;
      }
    }
    const bytes = await this.#staging.write(
      path,
      entry.body ?? fromBytes(new Uint8Array()),
      entry.mode ?? 0o644,
      signal,
    );
    this.#staged.push({ path, existed });
    return bytes;
  }

  /** Checks again that no file appeared meanwhile (policy `fail`). */
  async check(): Promise<void> {
    if (this.#conflict !== 'fail') return;
    for (const file of this.#staged) {
      const target = await targetInside(this.#staging.root, file.path);
      if (await pathExists(target)) throw new ConflictError(target);
    }
  }

  /** Renames the staged files into place; returns their paths. */
  async publish(): Promise<string[]> {
    for (const file of this.#staged) await this.#staging.publish(file.path, this.#conflict === 'overwrite');
    return this.#staged.map((file) => file.path);
  }
}

/** YAML keys whose value is a secret in Prometheus' and Alertmanager's configs (`*_file` variants name a file instead). */
const SECRET_KEYS =
  /^\s*-?\s*(password|bearer_token|client_secret|credentials|secret_key|access_key|api_key|auth_password|smtp_auth_password|auth_secret|routing_key|service_key|token|api_url|webhook_url|bot_token|http_config_token)\s*:\s*(\S+)/gm;

/**
 * The secrets the config files hold (a key such as `password:` or `bearer_token:` with a value
 * that is not the API's `<secret>` mask), as a `SecretNote` list for `ComponentInfo.secrets`.
 */
export async function configSecrets(
  files: readonly ConfigFile[],
  product: string,
): Promise<{ kind: 'credentials'; what: string; paths: string[] }[]> {
  const paths: string[] = [];
  for (const file of files) {
    const text = file.text ?? (file.source ? await readFile(file.source, 'utf8').catch(() => '') : '');
    const unmasked = [...text.matchAll(SECRET_KEYS)].some(
      (found) => !/^["']?<secret>["']?$/.test(found[2] ?? ''),
    );
    if (unmasked) paths.push(`${CONFIG_PREFIX}${file.path}`);
  }
  if (paths.length === 0) return [];
  return [
    {
      kind: 'credentials',
      what: `credentials written in the ${product} config (passwords, bearer tokens, client secrets, webhook URLs)`,
      paths,
    },
  ];
}
