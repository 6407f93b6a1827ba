import { type ManifestEntry, manifestEntries, type SidecarManifest, type Storage } from '@bk/core';

/**
 * The entries a backup recorded for one component, in archive order, whatever the manifest's
 * format: format 1 keeps them in the manifest, format 2 in the entry index beside the archive
 * (read here through `manifestEntries`, with every check it makes). For tests and tools that
 * compare what a component captured; a large backup's entries are better streamed.
 *
 * @example
 * const paths = (await recordedEntries(storage, result.manifest, 'haproxy')).map((entry) => entry.path);
 */
export async function recordedEntries(
  storage: Storage,
  manifest: SidecarManifest,
  component: string,
  options: { signal?: AbortSignal; identities?: readonly string[] } = {},
): Promise<ManifestEntry[]> {
  const recorded: ManifestEntry[] = [];
  for await (const { component: owner, record } of manifestEntries(storage, manifest, options))
    if (owner.name === component) recorded.push(record);
  return recorded;
}
