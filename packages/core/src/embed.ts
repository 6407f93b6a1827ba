import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Component, Storage } from './contracts.ts';
import { ConfigError } from './errors.ts';
import { type BackupOptions, type BackupResult, backup } from './runners/backup.ts';
import { type RestoreOptions, type RestoreResult, restore } from './runners/restore.ts';

/**
 * Where a one-line backup goes: a target URL (`s3://bucket/prefix`, `file:///var/backups/bk`,
 * `swift://…`, `az://…`, `gs://…`), a plain directory path, or a {@link Storage} already made.
 */
export type BackupTarget = string | URL | Storage;

/**
 * Imports a package by name from the caller's place in `node_modules`. A component package
 * passes `(name) => import(name)`, so a storage package the application installed is found
 * beside that component package (where pnpm's strict layout puts optional peers), never beside
 * `@bk/core`, which depends on no storage package.
 */
export type ImportPackage = (packageName: string) => Promise<unknown>;

/** The storage package behind each target URL scheme. */
export const STORAGE_PACKAGES: Readonly<Record<string, string>> = {
  file: '@bk/storage-fs',
  s3: '@bk/storage-s3',
  swift: '@bk/storage-swift',
  az: '@bk/storage-azure',
  gs: '@bk/storage-gcs',
};

export interface OpenStorageOptions {
  /** Credentials and endpoints the storage package reads (`S3_REGION`, …); default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** How to load a storage package; default `import()` from `@bk/core`'s own place. */
  importPackage?: ImportPackage;
}

function isStorage(target: unknown): target is Storage {
  if (typeof target !== 'object' || target === null || target instanceof URL) return false;
  const storage = target as Partial<Storage>;
  return (
    typeof storage.put === 'function' &&
    typeof storage.get === 'function' &&
    typeof storage.list === 'function'
  );
}

function isMissing(error: unknown, packageName: string): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (typeof message !== 'string' || !message.includes(packageName)) return false;
  return code === 'ERR_MODULE_NOT_FOUND' || /cannot find|failed to (load|resolve)/i.test(message);
}

/** The target as a URL: URLs as they are, a plain path (absolute or relative to the cwd) as `file:`. */
function targetUrl(target: string | URL): URL {
  if (target instanceof URL) return target;
  if (/^[a-z][a-z0-9+.-]*:/i.test(target) && !isAbsolute(target)) {
    try {
      return new URL(target);
    } catch (error) {
      throw new ConfigError(`The target "${target.replace(/\/\/[^@/]*@/, '//***@')}" is not a valid URL.`, {
        cause: error,
      });
    }
  }
  if (target.trim() === '')
    throw new ConfigError('The target is empty: give a URL, a directory or a Storage.');
  return pathToFileURL(resolve(target));
}

/**
 * Opens the storage a target names. A {@link Storage} is returned as it is; a URL loads the
 * storage package of its scheme (see {@link STORAGE_PACKAGES}) and calls its
 * `storageFromUrl(url, env)`, which reads credentials from `env` (for `s3:`, `S3_REGION`,
 * `S3_REGION_ENDPOINT`, `S3_ACCESS_KEY`, `S3_SECRET_KEY`).
 *
 * @throws {ConfigError} for an unknown scheme, an invalid URL, or a storage package that is not
 *   installed (naming the package to install).
 * @example
 * const storage = await openStorage('s3://backups/influx', { importPackage: (name) => import(name) });
 */
export async function openStorage(target: BackupTarget, options: OpenStorageOptions = {}): Promise<Storage> {
  if (isStorage(target)) return target;
  if (typeof target !== 'string' && !(target instanceof URL))
    throw new ConfigError('The target must be a URL, a directory path or a Storage.');
  const url = targetUrl(target);
  const scheme = url.protocol.replace(/:$/, '');
  const packageName = STORAGE_PACKAGES[scheme];
  if (packageName === undefined) {
    throw new ConfigError(
      `bk cannot store to "${scheme}:" targets; use one of ${Object.keys(STORAGE_PACKAGES)
        .map((known) => `${known}:`)
        .join(', ')}, or pass a Storage.`,
    );
  }
  const importPackage = options.importPackage ?? ((name: string) => import(name));
  let plugin: Record<string, unknown>;
  try {
    plugin = (await importPackage(packageName)) as Record<string, unknown>;
  } catch (error) {
    if (isMissing(error, packageName))
      throw new ConfigError(
        `A "${scheme}:" target needs ${packageName}, which is not installed: install it.`,
        {
          cause: error,
        },
      );
    throw error;
  }
  const factory = plugin.storageFromUrl;
  if (typeof factory !== 'function')
    throw new ConfigError(
      `${packageName} does not export storageFromUrl(url, env); is it a bk storage package?`,
    );
  return (factory as (url: URL, env: NodeJS.ProcessEnv) => Storage | Promise<Storage>)(
    url,
    options.env ?? process.env,
  );
}

/** Run options of a component package's `backup(target, options)`, beside the component's own. */
export interface EmbeddedBackupOptions
  extends Pick<
    BackupOptions,
    'prefix' | 'labels' | 'compression' | 'compressionLevel' | 'requireEncryption' | 'onProgress' | 'signal'
  > {
  /** Environment defaults of the component and the storage; default `process.env`. */
  env?: NodeJS.ProcessEnv;
}

/** Run options of a component package's `restore(target, options)`, beside the component's own. */
export interface EmbeddedRestoreOptions
  extends Pick<
    RestoreOptions,
    'prefix' | 'conflict' | 'chain' | 'readConcurrency' | 'force' | 'onProgress' | 'signal'
  > {
  /**
   * The backup to restore: a name, or `"latest"` (default), the newest backup that holds this
   * component.
   */
  backup?: string;
  /** Environment defaults of the component and the storage; default `process.env`. */
  env?: NodeJS.ProcessEnv;
}

const BACKUP_KEYS = [
  'prefix',
  'labels',
  'compression',
  'compressionLevel',
  'requireEncryption',
  'onProgress',
  'signal',
  'env',
] as const;
const RESTORE_KEYS = [
  'prefix',
  'conflict',
  'chain',
  'readConcurrency',
  'force',
  'onProgress',
  'signal',
  'env',
  'backup',
] as const;

function split<T extends object>(options: T, keys: readonly string[]) {
  const run: Record<string, unknown> = {};
  const component: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) (keys.includes(key) ? run : component)[key] = value;
  return { run, component };
}

/** What a component package hands to {@link bindComponent}. */
export interface ComponentBinding<Options> {
  /** Builds the component from its options, filling what is missing from `env`. */
  create(options: Options, env: NodeJS.ProcessEnv): Component;
  /** `(name) => import(name)`, written in the component package: see {@link ImportPackage}. */
  importPackage: ImportPackage;
}

/** The `backup` and `restore` a component package exports, bound to that component. */
export interface BoundComponent<Options> {
  backup(target: BackupTarget, options?: Options & EmbeddedBackupOptions): Promise<BackupResult>;
  restore(target: BackupTarget, options?: Options & EmbeddedRestoreOptions): Promise<RestoreResult>;
}

/**
 * Binds the core runners to one component, for the one-line embed every component package
 * exports (`import { backup } from '@bk/influx'`). The options are the component's own plus the
 * run's (`prefix`, `onProgress`, `signal`, `env`, …); the target is a URL, a path or a Storage.
 * A restore restores only this component, by default from the newest backup holding it.
 *
 * @example
 * const bound = bindComponent<InfluxOptions>({
 *   create: (options, env) => influxFromEnv(options, env),
 *   importPackage: (name) => import(name),
 * });
 * export const backup = bound.backup;
 */
export function bindComponent<Options extends object>(
  binding: ComponentBinding<Options>,
): BoundComponent<Options> {
  return {
    async backup(target, options = {} as Options & EmbeddedBackupOptions) {
      const { run, component } = split(options, BACKUP_KEYS);
      const env = (run.env as NodeJS.ProcessEnv | undefined) ?? process.env;
      const source = binding.create(component as Options, env);
      const storage = await openStorage(target, { env, importPackage: binding.importPackage });
      const { env: _env, ...rest } = run;
      return backup({ ...(rest as Partial<BackupOptions>), storage, components: [source] });
    },
    async restore(target, options = {} as Options & EmbeddedRestoreOptions) {
      const { run, component } = split(options, RESTORE_KEYS);
      const env = (run.env as NodeJS.ProcessEnv | undefined) ?? process.env;
      const restorer = binding.create(component as Options, env);
      const storage = await openStorage(target, { env, importPackage: binding.importPackage });
      const { env: _env, backup: name, ...rest } = run;
      return restore({
        ...(rest as Partial<RestoreOptions>),
        storage,
        name: (name as string | undefined) ?? 'latest',
        restorers: [restorer],
        only: [restorer.name],
      });
    },
  };
}
