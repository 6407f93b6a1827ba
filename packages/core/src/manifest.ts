import type { ComponentInfo, EntryType } from './contracts.ts';
import { EntryTree } from './entry-tree.ts';
import { ManifestError, ManifestVersionError } from './errors.ts';
import { parseMtime } from './mtime.ts';
import { archiveSuffix } from './naming.ts';
import { checkComponentName, checkStorageKey, safeEntryPath } from './paths.ts';

/** Identifies a bk manifest. */
export const MANIFEST_FORMAT = 'bk-backup';
/**
 * The manifest format version this bk writes. Version 2 keeps the per-entry list out of the
 * manifest, in an entry index object beside the archive (gzip NDJSON, see
 * {@link ManifestEntryIndex}), so neither writing nor reading a backup holds it whole; version 1
 * (every entry inside the manifest) is still read.
 */
export const MANIFEST_VERSION = 3;
/** Every manifest format version this bk reads. */
export const READABLE_MANIFEST_VERSIONS: readonly number[] = [1, 2, 3];
/** The manifest's path inside the archive: always the last entry. */
export const MANIFEST_ENTRY = 'manifest.json';

/** One entry of a component as recorded in the manifest. */
export interface ManifestEntry {
  /** Relative to the component; the archive holds it at `<component>/<path>`. */
  path: string;
  type: EntryType;
  /** Bytes of the body (0 for directories and links). */
  size: number;
  /** sha256 of the body, hex; files only. */
  sha256?: string;
  mode?: number;
  /** ISO 8601 UTC, to the nanosecond at most (`2026-11-21T10:15:00.123456789Z`). */
  mtime?: string;
  linkTarget?: string;
  /** Set when the body was stored as this many bounded chunks (a stream of unknown length). */
  chunks?: number;
  /** See `Entry.identity`. */
  identity?: string;
  /** An unchanged file whose body is in this backup's archive (see `Entry.ref`); no record here. */
  ref?: string;
  /** A path that was in the parent and is gone (see `Entry.deleted`); no record here. */
  deleted?: true;
}

/** Whether the archive holds a record for this entry: not for references and deletions. */
export function isStored(entry: ManifestEntry): boolean {
  return entry.ref === undefined && entry.deleted === undefined;
}

export interface ManifestComponent {
  name: string;
  kind: string;
  version?: string;
  info: ComponentInfo;
  /**
   * `true` when this component holds only what changed since the backup's `parent`: restoring it
   * needs the parent's copy first (see `restore({ chain: true })`). Absent for a full copy.
   */
  incremental?: boolean;
  /** Format 1 only: every entry. Format 2 lists them in the entry index. */
  entries?: ManifestEntry[];
  stats: { entries: number; bytes: number };
}

/**
 * Format 2: the stored object that lists every entry, in archive order — gzip-compressed NDJSON,
 * one `{"component":"<name>"}` line before each component's entries, then one
 * {@link ManifestEntry} per line. Written while the archive is, read beside it as a stream.
 */
export interface ManifestEntryIndex {
  key: string;
  /** Stored (compressed) bytes. */
  size: number;
  /** sha256 of the stored bytes, hex. */
  sha256: string;
  /** Entry lines, over all components. */
  entries: number;
  /**
   * Format 3: the same NDJSON lines, uncompressed, also inside the archive as
   * `manifest.entries/NNNNNN.ndjson` records between the entries they follow, so that the archive
   * alone lists every entry's size and sha256. `sha256` is of all their bytes in order.
   */
  archived?: ArchivedEntryIndex;
}

/** Where a format-3 archive holds its own copy of the entry index; see {@link ManifestEntryIndex}. */
export interface ArchivedEntryIndex {
  sections: number;
  bytes: number;
  sha256: string;
}

/** The folder of the archive that holds the entry index's sections (format 3). */
export const ENTRY_SECTIONS_DIR = 'manifest.entries';

/** The archive path of entry-index section `index` (format 3). */
export function entrySectionName(index: number): string {
  return `${ENTRY_SECTIONS_DIR}/${String(index).padStart(6, '0')}.ndjson`;
}

/** The manifest inside the archive (last entry). */
export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  /** 2 as written now; 1 for backups made before the entry index. */
  formatVersion: 1 | 2 | 3;
  /** The backup's name, e.g. `backup_20261121_101500_1`. */
  name: string;
  /** ISO 8601: when the backup started. */
  createdAt: string;
  /** ISO 8601: when the last entry was read. */
  completedAt: string;
  bk: { version: string };
  /** `gzip` (`.tar.gz`) or `zstd` (`.tar.zst`); absent in manifests older than zstd support. */
  compression: 'gzip' | 'zstd';
  /**
   * `null`, or how the archive and the sidecar are encrypted: the age format, to these
   * recipients (X25519 public keys). A restore names them when the key given is not one of theirs.
   */
  encryption: ManifestEncryption | null;
  /** The backup this one builds on, for incremental chains. */
  parent: string | null;
  labels: Record<string, string>;
  components: ManifestComponent[];
  /** Format 2: where the entries are listed. */
  entryIndex?: ManifestEntryIndex;
}

/** How an encrypted backup is encrypted. */
export interface ManifestEncryption {
  format: 'age';
  /** The `age1…` public keys the backup is encrypted to; empty for a passphrase. */
  recipients: string[];
  /**
   * `true` when the backup is encrypted with a passphrase (age's scrypt stanza, as `age -p`)
   * instead of recipients: each object opens with the passphrase alone. Absent otherwise.
   */
  passphrase?: true;
}

/** The sidecar manifest beside the archive: the manifest plus the archive's own size and hash. */
export interface SidecarManifest extends Manifest {
  archive: { key: string; size: number; sha256: string };
}

function fail(where: string, problem: string): never {
  throw new ManifestError(`Invalid manifest: ${where} ${problem}.`);
}

function expectObject(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(where, 'must be an object');
  return value as Record<string, unknown>;
}

function expectString(value: unknown, where: string): string {
  if (typeof value !== 'string') fail(where, 'must be a string');
  return value;
}

function expectSize(value: unknown, where: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    fail(where, 'must be a non-negative integer');
  return value;
}

function expectOptional<T>(
  value: unknown,
  where: string,
  check: (value: unknown, where: string) => T,
): T | undefined {
  return value === undefined ? undefined : check(value, where);
}

function expectSha256(value: unknown, where: string): string {
  const hex = expectString(value, where);
  if (!/^[0-9a-f]{64}$/.test(hex)) fail(where, 'must be a lower-case hex sha256');
  return hex;
}

export function validateEntry(value: unknown, where: string): ManifestEntry {
  const entry = expectObject(value, where);
  const type = entry.type;
  if (type !== 'file' && type !== 'directory' && type !== 'symlink')
    fail(`${where}.type`, 'must be file, directory or symlink');
  const path = expectString(entry.path, `${where}.path`);
  let normal: string | undefined;
  try {
    normal = safeEntryPath(path);
  } catch {}
  if (normal !== path) fail(`${where}.path`, 'must be a safe, normalised relative path');
  expectSize(entry.size, `${where}.size`);
  if (entry.deleted !== undefined && entry.deleted !== true) fail(`${where}.deleted`, 'must be true');
  if (entry.deleted === true && entry.ref !== undefined) fail(`${where}.ref`, 'cannot go with "deleted"');
  expectOptional(entry.ref, `${where}.ref`, expectString);
  expectOptional(entry.identity, `${where}.identity`, expectString);
  if (entry.ref !== undefined && type !== 'file') fail(`${where}.ref`, 'is for files only');
  if (entry.deleted !== true) {
    if (type === 'file') expectSha256(entry.sha256, `${where}.sha256`);
    if (type === 'symlink') expectLinkTarget(entry.linkTarget, `${where}.linkTarget`);
  }
  expectOptional(entry.mode, `${where}.mode`, expectMode);
  expectOptional(entry.mtime, `${where}.mtime`, expectMtime);
  expectOptional(entry.chunks, `${where}.chunks`, expectChunks);
  return entry as unknown as ManifestEntry;
}

/** A link's target: any path a file system can hold (absolute, `..`, dangling), so not empty nor with a NUL. */
function expectLinkTarget(value: unknown, where: string): string {
  const target = expectString(value, where);
  if (target === '' || target.includes('\0')) fail(where, 'must be a non-empty path without NUL bytes');
  return target;
}

/** Permission bits, as bk stores them: an integer from 0 to 0o7777. */
function expectMode(value: unknown, where: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0o7777)
    fail(where, 'must be permission bits, an integer from 0 to 0o7777 (4095)');
  return value;
}

/** An mtime as bk writes it: ISO 8601 UTC to the nanosecond at most, a real date. */
function expectMtime(value: unknown, where: string): string {
  if (typeof value !== 'string' || parseMtime(value) === undefined)
    fail(where, 'must be an ISO 8601 UTC time such as "2026-11-21T10:15:00.123456789Z"');
  return value;
}

/** A chunk count: at least one chunk (an empty stream is one empty chunk). */
function expectChunks(value: unknown, where: string): number {
  const chunks = expectSize(value, where);
  if (chunks < 1) fail(where, 'must be at least 1');
  return chunks;
}

/**
 * The most tar bytes one compressed byte can stand for: deflate's ceiling is ~1032:1; zstd's
 * densest block (an RLE block: a 3-byte header and 1 byte for 128 KiB) 32768:1.
 */
const MAX_EXPANSION = { gzip: 1032, zstd: 32_768 } as const;
const TAR_BLOCK = 512;

/**
 * Checks every count and size of a manifest against what an archive of `archiveSize` bytes can
 * hold, before anything is allocated or read by them: each chunk of an entry holds at least one
 * byte (only an empty entry is one empty chunk), and the tar stream — a 512-byte header per
 * record and every byte of every body — cannot be longer than the archive inflates to.
 */
function checkArchiveCanHold(manifest: Manifest, archiveSize: number): void {
  const ceiling = archiveSize * MAX_EXPANSION[manifest.compression];
  let tarBytes = 2 * TAR_BLOCK;
  manifest.components.forEach((component, index) => {
    const where = `components[${index}]`;
    (component.entries ?? []).forEach((entry, entryIndex) => {
      if (entry.chunks !== undefined && entry.chunks > Math.max(1, entry.size)) {
        fail(
          `${where}.entries[${entryIndex}].chunks`,
          `(${entry.chunks}) cannot exceed the entry's ${entry.size} bytes`,
        );
      }
      if (isStored(entry)) tarBytes += (entry.chunks ?? 1) * TAR_BLOCK + entry.size;
    });
    for (const [field, value] of [
      ['entries', component.stats.entries * TAR_BLOCK],
      ['bytes', component.stats.bytes],
    ] as const) {
      if (value > ceiling) {
        fail(
          `${where}.stats.${field}`,
          `(${component.stats[field]}) is more than an archive of ${archiveSize} bytes can hold`,
        );
      }
    }
  });
  if (tarBytes > ceiling) {
    fail(
      'components',
      `record more entries and bytes (at least ${tarBytes} bytes of tar) than an archive of ${archiveSize} bytes can hold`,
    );
  }
}

/**
 * Checks that `value` is a manifest this bk can read and returns it typed. Throws
 * `ManifestVersionError` for another format version and `ManifestError` naming the first
 * problem otherwise.
 */
export function validateManifest(value: unknown): Manifest {
  const manifest = expectObject(value, 'the manifest');
  if (manifest.format !== MANIFEST_FORMAT) fail('format', `must be "${MANIFEST_FORMAT}"`);
  if (!READABLE_MANIFEST_VERSIONS.includes(manifest.formatVersion as number))
    throw new ManifestVersionError(manifest.formatVersion, MANIFEST_VERSION);
  const indexed = manifest.formatVersion !== 1;
  if (indexed) {
    const index = expectObject(manifest.entryIndex, 'entryIndex');
    expectString(index.key, 'entryIndex.key');
    expectSize(index.size, 'entryIndex.size');
    expectSha256(index.sha256, 'entryIndex.sha256');
    expectSize(index.entries, 'entryIndex.entries');
    if (manifest.formatVersion === 3) {
      const archived = expectObject(index.archived, 'entryIndex.archived');
      expectSize(archived.sections, 'entryIndex.archived.sections');
      expectSize(archived.bytes, 'entryIndex.archived.bytes');
      expectSha256(archived.sha256, 'entryIndex.archived.sha256');
    } else if (index.archived !== undefined) {
      fail(
        'entryIndex.archived',
        `is format 3's, but the manifest is format ${String(manifest.formatVersion)}`,
      );
    }
  }
  expectString(manifest.name, 'name');
  for (const field of ['createdAt', 'completedAt'] as const) {
    if (Number.isNaN(Date.parse(expectString(manifest[field], field))))
      fail(field, 'must be an ISO 8601 time');
  }
  expectString(expectObject(manifest.bk, 'bk').version, 'bk.version');
  if (manifest.compression !== 'gzip' && manifest.compression !== 'zstd')
    fail('compression', 'must be "gzip" or "zstd"');
  if (manifest.encryption !== null) validateEncryption(manifest.encryption);
  if (manifest.parent !== null) expectString(manifest.parent, 'parent');
  for (const [key, label] of Object.entries(expectObject(manifest.labels, 'labels')))
    expectString(label, `labels.${key}`);
  if (!Array.isArray(manifest.components)) fail('components', 'must be an array');
  const names = new Set<string>();
  manifest.components.forEach((value: unknown, index: number) => {
    const where = `components[${index}]`;
    const component = expectObject(value, where);
    const name = expectString(component.name, `${where}.name`);
    try {
      checkComponentName(name);
    } catch {
      fail(`${where}.name`, 'must be one safe path segment');
    }
    if (names.has(name)) fail(`${where}.name`, `repeats "${name}"`);
    names.add(name);
    expectString(component.kind, `${where}.kind`);
    expectOptional(component.version, `${where}.version`, expectString);
    const info = expectObject(component.info, `${where}.info`);
    if (info.secrets !== undefined) validateSecrets(info.secrets, `${where}.info.secrets`);
    if (component.incremental !== undefined && typeof component.incremental !== 'boolean')
      fail(`${where}.incremental`, 'must be a boolean');
    if (component.incremental === true && manifest.parent === null)
      fail(`${where}.incremental`, 'needs the backup to have a parent');
    if (indexed) {
      if (component.entries !== undefined)
        fail(`${where}.entries`, 'must be absent: the entry index lists them');
    } else {
      if (!Array.isArray(component.entries)) fail(`${where}.entries`, 'must be an array');
      const tree = new EntryTree();
      component.entries.forEach((value: unknown, entryIndex: number) => {
        const entry = validateEntry(value, `${where}.entries[${entryIndex}]`);
        const problem = tree.add(entry.path, entry.type);
        if (problem !== undefined) fail(`${where}.entries[${entryIndex}].path`, `is refused: ${problem}`);
      });
    }
    const stats = expectObject(component.stats, `${where}.stats`);
    expectSize(stats.entries, `${where}.stats.entries`);
    expectSize(stats.bytes, `${where}.stats.bytes`);
  });
  if (indexed) {
    const total = (manifest.components as { stats: { entries: number } }[]).reduce(
      (sum, component) => sum + component.stats.entries,
      0,
    );
    if (total !== (manifest.entryIndex as ManifestEntryIndex).entries)
      fail(
        'entryIndex.entries',
        `(${(manifest.entryIndex as ManifestEntryIndex).entries}) differs from the components' ${total} entries`,
      );
  }
  return manifest as unknown as Manifest;
}

/** `info.secrets`: `captured` and `notCaptured` lists of `{ kind, what, paths?, count? }`. */
function validateSecrets(value: unknown, where: string): void {
  const secrets = expectObject(value, where);
  for (const list of ['captured', 'notCaptured'] as const) {
    const notes = secrets[list];
    if (!Array.isArray(notes)) fail(`${where}.${list}`, 'must be an array');
    notes.forEach((item: unknown, index: number) => {
      const at = `${where}.${list}[${index}]`;
      const note = expectObject(item, at);
      expectString(note.kind, `${at}.kind`);
      expectString(note.what, `${at}.what`);
      if (note.paths !== undefined) {
        if (!Array.isArray(note.paths)) fail(`${at}.paths`, 'must be an array');
        note.paths.forEach((path: unknown, pathIndex: number) => {
          expectString(path, `${at}.paths[${pathIndex}]`);
        });
      }
      expectOptional(note.count, `${at}.count`, expectSize);
    });
  }
}

function validateEncryption(value: unknown): ManifestEncryption {
  const encryption = expectObject(value, 'encryption');
  if (encryption.format !== 'age') fail('encryption.format', 'must be "age"');
  if (encryption.passphrase !== undefined && encryption.passphrase !== true)
    fail('encryption.passphrase', 'must be true when present');
  if (encryption.passphrase === true) {
    if (!Array.isArray(encryption.recipients) || encryption.recipients.length !== 0)
      fail('encryption.recipients', 'must be empty for a passphrase-encrypted backup');
  } else if (!Array.isArray(encryption.recipients) || encryption.recipients.length === 0)
    fail('encryption.recipients', 'must be a non-empty array');
  encryption.recipients.forEach((recipient: unknown, index: number) => {
    if (typeof recipient !== 'string' || !/^age1[02-9ac-hj-np-z]+$/.test(recipient))
      fail(`encryption.recipients[${index}]`, 'must be an age1… public key');
  });
  return encryption as unknown as ManifestEncryption;
}

/**
 * The archive's key must be a storage key naming this backup's archive (`[prefix/]<name>.tar.gz`
 * or `.tar.zst`): a sidecar pointing anywhere else is a broken manifest, not a bad argument.
 */
function checkArchiveKey(key: string, manifest: Manifest): void {
  try {
    checkStorageKey(key);
  } catch (error) {
    fail('archive.key', `"${key}" is not a storage key: ${(error as Error).message}`);
  }
  const file = `${manifest.name}${archiveSuffix(manifest.compression, manifest.encryption !== null)}`;
  if (key !== file && !key.endsWith(`/${file}`)) fail('archive.key', `"${key}" does not name "${file}"`);
}

/** Validates a sidecar manifest: a manifest plus the archive's key, size and sha256. */
export function validateSidecar(value: unknown): SidecarManifest {
  const manifest = validateManifest(value);
  const archive = expectObject((value as Record<string, unknown>).archive, 'archive');
  checkArchiveKey(expectString(archive.key, 'archive.key'), manifest);
  const archiveSize = expectSize(archive.size, 'archive.size');
  expectSha256(archive.sha256, 'archive.sha256');
  checkArchiveCanHold(manifest, archiveSize);
  return manifest as SidecarManifest;
}

/** Parses and validates manifest JSON. */
export function parseManifest(text: string | Uint8Array, sidecar: true): SidecarManifest;
export function parseManifest(text: string | Uint8Array, sidecar?: false): Manifest;
export function parseManifest(text: string | Uint8Array, sidecar = false): Manifest {
  let value: unknown;
  try {
    value = JSON.parse(typeof text === 'string' ? text : new TextDecoder().decode(text));
  } catch (error) {
    throw new ManifestError(`The manifest is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  return sidecar ? validateSidecar(value) : validateManifest(value);
}

/** Serialises a manifest as stable, readable JSON (format 2 holds no entries: it stays small). */
export function serializeManifest(manifest: Manifest | SidecarManifest): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`);
}
