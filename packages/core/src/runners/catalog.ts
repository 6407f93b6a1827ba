import type { ObjectInfo, Storage } from '../contracts.ts';
import { ConfigError, NotFoundError } from '../errors.ts';
import type { SidecarManifest } from '../manifest.ts';
import {
  AGE_SUFFIX,
  ARCHIVE_SUFFIX,
  archiveSuffix,
  type BackupName,
  compareBackupNames,
  ENTRY_INDEX_SUFFIX,
  joinKey,
  LOCK_SUFFIX,
  parseBackupName,
  SIDECAR_SUFFIX,
  ZSTD_ARCHIVE_SUFFIX,
} from '../naming.ts';
import { openSidecar, type SealedSidecar, sealedSummary } from '../sealed-sidecar.ts';
import { collect } from '../streams.ts';

/** A complete backup as listed: its sidecar manifest exists. */
export interface BackupSummary extends BackupName {
  key: string;
  sidecarKey: string;
  /** Archive size from the listing, when the archive object was seen. */
  size?: number;
}

/** Every object under a prefix that belongs to a backup name, grouped by name. */
export interface CatalogItem extends BackupName {
  archive?: ObjectInfo;
  sidecar?: ObjectInfo;
  /** The entry index of a format-2 backup. */
  index?: ObjectInfo;
  lock?: ObjectInfo;
}

export interface CatalogOptions {
  storage: Storage;
  prefix?: string;
  signal?: AbortSignal;
}

/** Groups the backup objects directly under `prefix` by backup name, oldest first. */
export async function catalog(options: CatalogOptions): Promise<CatalogItem[]> {
  const base = joinKey(options.prefix, '');
  const items = new Map<string, CatalogItem>();
  for await (const object of options.storage.list(base, { signal: options.signal })) {
    const rest = object.key.slice(base.length);
    if (rest.includes('/')) continue;
    for (const [suffix, field] of [
      [ARCHIVE_SUFFIX, 'archive'],
      [ZSTD_ARCHIVE_SUFFIX, 'archive'],
      [archiveSuffix('gzip', true), 'archive'],
      [archiveSuffix('zstd', true), 'archive'],
      [SIDECAR_SUFFIX, 'sidecar'],
      [ENTRY_INDEX_SUFFIX, 'index'],
      [ENTRY_INDEX_SUFFIX + AGE_SUFFIX, 'index'],
      [LOCK_SUFFIX, 'lock'],
    ] as const) {
      if (!rest.endsWith(suffix)) continue;
      const parsed = parseBackupName(rest.slice(0, -suffix.length));
      if (!parsed) continue;
      const item = items.get(parsed.name) ?? { ...parsed };
      item[field] = object;
      items.set(parsed.name, item);
    }
  }
  return [...items.values()].sort(compareBackupNames);
}

/**
 * Lists complete backups, oldest first. Only a backup whose sidecar manifest exists is listed:
 * an interrupted run's lock or partial objects never show up as a backup.
 */
export async function list(options: CatalogOptions): Promise<BackupSummary[]> {
  return (await catalog(options))
    .filter((item) => item.sidecar)
    .map((item) => ({
      name: item.name,
      time: item.time,
      sequence: item.sequence,
      key: item.archive?.key ?? joinKey(options.prefix, item.name + ARCHIVE_SUFFIX),
      sidecarKey: item.sidecar!.key,
      ...(item.archive ? { size: item.archive.size } : {}),
    }));
}

export interface InspectOptions extends CatalogOptions {
  /** A backup name, or `"latest"`. */
  name: string;
  /**
   * With `"latest"`: the newest backup that holds every one of these components (by name), not
   * simply the newest backup. After a backup of only `postgres`, `latest` with
   * `components: ['zookeeper']` is the newest backup with ZooKeeper in it. Ignored for a name.
   */
  components?: readonly string[];
  /**
   * Secret keys (`AGE-SECRET-KEY-1…`, or `agePassphraseKey(passphrase)` for a
   * passphrase-encrypted backup) to open an encrypted backup's manifest with; one of its
   * recipients' is enough. Without one, an encrypted backup throws `DecryptionError`.
   */
  identities?: readonly string[];
}

/**
 * Resolves `"latest"` to the newest complete backup's name, or with `components` to the newest
 * complete backup holding them.
 *
 * @throws {ConfigError} when `name` is neither `"latest"` nor a backup name: a typo, not a
 *   missing backup.
 * @throws {ConfigError} when a name in `components` is held by no backup at all.
 * @throws {NotFoundError} when there is no backup for `"latest"` (holding `components`).
 */
export async function resolveName(options: InspectOptions): Promise<string> {
  if (options.name !== 'latest') {
    if (!parseBackupName(options.name)) {
      throw new ConfigError(
        `"${options.name}" is not a backup name (expected backup_YYYYMMDD_HHMMSS[_N] or "latest").`,
      );
    }
    return options.name;
  }
  const backups = await list(options);
  const newest = backups.at(-1);
  if (!newest) throw new NotFoundError(`There are no backups in ${options.storage.description}.`);
  const wanted = options.components ?? [];
  if (wanted.length === 0) return newest.name;
  // Newest first, reading one sidecar at a time: usually the newest backup holds them.
  const heldAnywhere = new Set<string>();
  for (const candidate of backups.reverse()) {
    const manifest = await inspect({ ...options, name: candidate.name, components: undefined });
    const held = new Set(manifest.components.map((component) => component.name));
    if (wanted.every((name) => held.has(name))) return candidate.name;
    for (const name of held) heldAnywhere.add(name);
  }
  // A name no backup holds is a typo, not a missing backup: say which names exist.
  const unknown = wanted.filter((name) => !heldAnywhere.has(name));
  if (unknown.length > 0) {
    throw new ConfigError(
      `Unknown component ${unknown.map((name) => `"${name}"`).join(', ')}: no backup in ${options.storage.description} holds it; known: ${[...heldAnywhere].join(', ') || 'none'}.`,
    );
  }
  throw new NotFoundError(
    `No backup in ${options.storage.description} holds ${wanted.map((name) => `"${name}"`).join(', ')}.`,
  );
}

async function readSidecar(
  options: InspectOptions,
): Promise<{ name: string; sidecarKey: string; bytes: Uint8Array }> {
  const name = await resolveName(options);
  const sidecarKey = joinKey(options.prefix, name + SIDECAR_SUFFIX);
  try {
    const bytes = await collect(
      await options.storage.get(sidecarKey, { signal: options.signal }),
      512 * 1024 * 1024,
    );
    return { name, sidecarKey, bytes };
  } catch (error) {
    if (error instanceof NotFoundError) {
      throw new NotFoundError(`No complete backup named "${name}" in ${options.storage.description}.`, {
        cause: error,
      });
    }
    throw error;
  }
}

/**
 * Reads and validates a backup's sidecar manifest: components, versions, every entry's size and
 * sha256. Throws `NotFoundError` when the backup does not exist (or never completed).
 */
export async function inspect(options: InspectOptions): Promise<SidecarManifest> {
  const { name, sidecarKey, bytes } = await readSidecar(options);
  const manifest = await openSidecar(bytes, options.identities, `backup "${name}"`);
  if (manifest.name !== name)
    throw new NotFoundError(`The manifest at "${sidecarKey}" describes "${manifest.name}", not "${name}".`);
  return manifest;
}

/**
 * What can be shown of a backup with the keys at hand: its whole manifest, or for an encrypted
 * backup when no identity is given, the summary its sidecar keeps in clear (name, times, bk
 * version, compression, archive size and sha256, recipients) without the sealed manifest.
 *
 * @throws {DecryptionError} when identities are given and none opens the backup.
 * @throws {NotFoundError} as `inspect`.
 * @example
 * const seen = await inspectSummary({ storage, name: 'latest' });
 * if ('summary' in seen) console.log(seen.summary.name, 'is encrypted to', seen.summary.encryption.recipients);
 */
export async function inspectSummary(
  options: InspectOptions,
): Promise<{ manifest: SidecarManifest } | { summary: Omit<SealedSidecar, 'sealed'> }> {
  if (options.identities && options.identities.length > 0) return { manifest: await inspect(options) };
  const { name, sidecarKey, bytes } = await readSidecar(options);
  const sealed = sealedSummary(bytes);
  if (!sealed) {
    const manifest = await openSidecar(bytes, undefined, `backup "${name}"`);
    if (manifest.name !== name)
      throw new NotFoundError(`The manifest at "${sidecarKey}" describes "${manifest.name}", not "${name}".`);
    return { manifest };
  }
  if (sealed.name !== name)
    throw new NotFoundError(`The manifest at "${sidecarKey}" describes "${sealed.name}", not "${name}".`);
  const { sealed: _sealed, ...summary } = sealed;
  return { summary };
}
