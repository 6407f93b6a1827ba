import { checkAgeRecipients, parseAgeIdentity, rewrapAge } from '../age.ts';
import type { Storage } from '../contracts.ts';
import { ConfigError, throwIfAborted } from '../errors.ts';
import { digest } from '../hash.ts';
import type { SidecarManifest } from '../manifest.ts';
import { joinKey, SIDECAR_SUFFIX } from '../naming.ts';
import { sealSidecar } from '../sealed-sidecar.ts';
import { inspect } from './catalog.ts';

export interface RekeyOptions {
  storage: Storage;
  /** A backup name or `"latest"`. */
  name: string;
  prefix?: string;
  /** A secret key (`AGE-SECRET-KEY-1…`) of one of the backup's recipients. */
  identities: readonly string[];
  /** `age1…` public keys to add; those already recipients are skipped. */
  addRecipients: readonly string[];
  signal?: AbortSignal;
}

export interface RekeyResult {
  name: string;
  /** Every recipient the backup is now encrypted to. */
  recipients: string[];
  /** The recipients added (empty when all were already there). */
  added: string[];
  manifest: SidecarManifest;
}

/**
 * Adds recipients to an encrypted backup without re-encrypting it: the archive's age header gets
 * one stanza per new recipient (the payload is copied unchanged, nothing decrypted), then the
 * sidecar is sealed again to every recipient. The archive is rewritten first and the sidecar
 * second; a run interrupted between the two leaves a sidecar whose archive size no longer
 * matches (restore and verify say so) and running `rekey` again completes it.
 *
 * @throws {DecryptionError} when no identity given opens the backup (nothing is written).
 * @throws {ConfigError} when the backup is not encrypted or a recipient is not an age key.
 */
export async function rekey(options: RekeyOptions): Promise<RekeyResult> {
  const { storage, signal } = options;
  throwIfAborted(signal);
  const wanted = checkAgeRecipients(options.addRecipients);
  const manifest = await inspect({
    storage,
    name: options.name,
    prefix: options.prefix,
    identities: options.identities,
    ...(signal ? { signal } : {}),
  });
  const encryption = manifest.encryption;
  if (!encryption)
    throw new ConfigError(
      `Backup "${manifest.name}" is not encrypted; rekey only adds recipients to encrypted backups.`,
    );
  const added = [...new Set(wanted)].filter((recipient) => !encryption.recipients.includes(recipient));
  if (added.length === 0) return { name: manifest.name, recipients: encryption.recipients, added, manifest };
  const archive = digest(
    rewrapAge(await storage.get(manifest.archive.key, { ...(signal ? { signal } : {}) }), {
      identities: options.identities.map(parseAgeIdentity),
      expectedRecipients: encryption.recipients,
      addRecipients: added,
      what: `the archive of backup "${manifest.name}"`,
    }),
  );
  await storage.put(manifest.archive.key, archive.stream, {
    contentType: 'application/octet-stream',
    ...(signal ? { signal } : {}),
  });
  // The entry index is encrypted to the same recipients: its key is re-wrapped the same way.
  let entryIndex = manifest.entryIndex;
  if (entryIndex) {
    const index = digest(
      rewrapAge(await storage.get(entryIndex.key, { ...(signal ? { signal } : {}) }), {
        identities: options.identities.map(parseAgeIdentity),
        expectedRecipients: encryption.recipients,
        addRecipients: added,
        what: `the entry index of backup "${manifest.name}"`,
      }),
    );
    await storage.put(entryIndex.key, index.stream, {
      contentType: 'application/octet-stream',
      ...(signal ? { signal } : {}),
    });
    entryIndex = { ...entryIndex, size: index.result.size, sha256: index.result.sha256 };
  }
  const recipients = [...encryption.recipients, ...added];
  const sidecar: SidecarManifest = {
    ...manifest,
    ...(entryIndex ? { entryIndex } : {}),
    encryption: { format: 'age', recipients },
    archive: { key: manifest.archive.key, size: archive.result.size, sha256: archive.result.sha256 },
  };
  await storage.put(joinKey(options.prefix, manifest.name + SIDECAR_SUFFIX), await sealSidecar(sidecar), {
    contentType: 'application/json',
    ...(signal ? { signal } : {}),
  });
  return { name: manifest.name, recipients, added, manifest: sidecar };
}
