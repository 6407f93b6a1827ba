import {
  AGE_PASSPHRASE_RECIPIENT,
  type AgeEncryptOptions,
  ageDecryptKeys,
  decryptAgeBytes,
  encryptAgeBytes,
} from './age.ts';
import { DecryptionError, ManifestError } from './errors.ts';
import {
  type MANIFEST_FORMAT,
  type ManifestEncryption,
  parseManifest,
  type SidecarManifest,
  serializeManifest,
} from './manifest.ts';

/**
 * What the sidecar of an encrypted backup shows without a key: the backup's name, times, sizes
 * and recipients. Every path, size of an entry, component and label is in `sealed`, the full
 * sidecar manifest as an age file (base64), so nothing in storage names a file.
 */
export interface SealedSidecar {
  format: typeof MANIFEST_FORMAT;
  formatVersion: number;
  name: string;
  createdAt: string;
  completedAt: string;
  bk: { version: string };
  compression: 'gzip' | 'zstd';
  encryption: ManifestEncryption;
  archive: { key: string; size: number; sha256: string };
  /**
   * The backup this one builds on (`null` for none), so `bk prune` and `bk ls` can follow
   * incremental chains without a key. Absent in sidecars sealed by older versions.
   */
  parent?: string | null;
  /** The full sidecar manifest (JSON), encrypted to `encryption.recipients`, base64. */
  sealed: string;
}

/** Serialises the sidecar of an encrypted backup: the summary in clear, the manifest sealed. */
export async function sealSidecar(sidecar: SidecarManifest, passphrase?: string): Promise<Uint8Array> {
  const encryption = sidecar.encryption;
  if (!encryption) throw new ManifestError('Only the sidecar of an encrypted backup is sealed.');
  if (encryption.passphrase === true && passphrase === undefined)
    throw new ManifestError('The sidecar of a passphrase-encrypted backup is sealed with its passphrase.');
  const ageOptions: AgeEncryptOptions = encryption.passphrase
    ? { passphrase: passphrase as string }
    : { recipients: encryption.recipients };
  const sealed = await encryptAgeBytes(serializeManifest(sidecar), ageOptions);
  const summary: SealedSidecar = {
    format: sidecar.format,
    formatVersion: sidecar.formatVersion,
    name: sidecar.name,
    createdAt: sidecar.createdAt,
    completedAt: sidecar.completedAt,
    bk: sidecar.bk,
    compression: sidecar.compression,
    encryption,
    archive: sidecar.archive,
    parent: sidecar.parent,
    sealed: sealed.toString('base64'),
  };
  return new TextEncoder().encode(`${JSON.stringify(summary, null, 2)}\n`);
}

function parseJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    throw new ManifestError(`The manifest is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
}

/** The sealed summary of a sidecar, or `undefined` for the sidecar of an unencrypted backup. */
export function sealedSummary(bytes: Uint8Array): SealedSidecar | undefined {
  const value = parseJson(bytes);
  if (
    typeof value !== 'object' ||
    value === null ||
    typeof (value as { sealed?: unknown }).sealed !== 'string'
  )
    return undefined;
  const summary = value as SealedSidecar;
  const encryption = summary.encryption as unknown;
  if (
    typeof encryption !== 'object' ||
    encryption === null ||
    !Array.isArray((encryption as ManifestEncryption).recipients) ||
    typeof summary.name !== 'string' ||
    typeof summary.archive !== 'object' ||
    summary.archive === null
  )
    throw new ManifestError('Invalid manifest: the sealed sidecar lacks its name, archive or recipients.');
  return summary;
}

/**
 * Reads a sidecar: a plain one as it is, a sealed one decrypted with `identities` (`AGE-SECRET-KEY-1…`).
 *
 * @throws {DecryptionError} when the backup is encrypted and no identity given opens it; the
 *   error names the recipients the backup was encrypted to.
 * @throws {ManifestError} when the sealed manifest disagrees with its summary.
 */
export async function openSidecar(
  bytes: Uint8Array,
  identities: readonly string[] | undefined,
  what: string,
): Promise<SidecarManifest> {
  const summary = sealedSummary(bytes);
  if (!summary) return parseManifest(bytes, true);
  const keys = ageDecryptKeys(identities);
  const expected = summary.encryption.passphrase
    ? [AGE_PASSPHRASE_RECIPIENT]
    : summary.encryption.recipients.map(String);
  if (keys.identities.length === 0 && keys.passphrase === undefined)
    throw new DecryptionError(what, expected, []);
  const plain = await decryptAgeBytes(Buffer.from(summary.sealed, 'base64'), {
    ...keys,
    expectedRecipients: expected,
    what,
  });
  const manifest = parseManifest(plain, true);
  if (
    manifest.name !== summary.name ||
    manifest.archive.key !== summary.archive.key ||
    manifest.archive.size !== summary.archive.size ||
    manifest.archive.sha256 !== summary.archive.sha256 ||
    (summary.parent !== undefined && summary.parent !== manifest.parent) ||
    manifest.encryption === null
  )
    throw new ManifestError(
      `The sealed manifest of ${what} does not match its summary: the sidecar was altered.`,
    );
  return manifest;
}
