import { IntegrityError } from './support.ts';

/** One shard archive listed in a portable manifest. */
export interface PortableManifestFile {
  database: string;
  policy: string;
  shardID: number;
  fileName: string;
  /** Uncompressed tar bytes, not the `.tar.gz` size. */
  size: number;
  lastModified: number;
}

/** `<B>.manifest` of an `influxd backup -portable` directory (`backup_util.Manifest`). */
export interface PortableManifest {
  meta: { fileName: string /** Length of the raw meta blob, not of the `.meta` file. */; size: number };
  limited: boolean;
  files: PortableManifestFile[] | null;
}

/** As Go's `json.MarshalIndent(…, "", "  ")`: two-space indent, no trailing newline. */
export function serializePortableManifest(manifest: PortableManifest): string {
  return JSON.stringify(manifest, null, 2);
}

/** @throws {IntegrityError} when the text is not a portable manifest. */
export function parsePortableManifest(text: string): PortableManifest {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new IntegrityError('The portable manifest is not JSON.', { cause: error });
  }
  const manifest = value as PortableManifest;
  if (
    typeof manifest?.meta?.fileName !== 'string' ||
    (manifest.files !== null && !Array.isArray(manifest.files)) ||
    manifest.files?.some((file) => typeof file?.fileName !== 'string' || typeof file.shardID !== 'number')
  ) {
    throw new IntegrityError('The portable manifest lacks "meta.fileName" or a valid "files" list.');
  }
  return manifest;
}

/** `20060102T150405Z`: the base name every file of one portable backup shares. */
export function portableBaseName(date: Date): string {
  return date
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

/** Splits `B.meta`, `B.manifest`, `B.s<id>.tar.gz` into base name and role; `undefined` for other names. */
export function parsePortableFileName(
  name: string,
):
  | { base: string; kind: 'meta' | 'manifest' }
  | { base: string; kind: 'shard'; shardId: number }
  | undefined {
  const match = /^(.+)\.(?:(meta)|(manifest)|s(\d+)\.tar\.gz)$/.exec(name);
  if (!match) return undefined;
  if (match[2]) return { base: match[1]!, kind: 'meta' };
  if (match[3]) return { base: match[1]!, kind: 'manifest' };
  return { base: match[1]!, kind: 'shard', shardId: Number(match[4]) };
}
