import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, type Entry, NotFoundError } from '@bk/core';
import { decodeMetaFile } from './meta-file.ts';
import { type PortableManifest, parsePortableManifest } from './portable-manifest.ts';
import { throwIfAborted } from './support.ts';

/** The newest backup in a directory `influxd backup -portable` wrote. */
export interface PortableDirectory {
  directory: string;
  /** The newest `*.manifest`'s name. */
  manifestName: string;
  manifest: PortableManifest;
  /** The raw `meta.Data` blob inside its `.meta` file. */
  metastore: Buffer;
}

/**
 * Reads the newest `*.manifest` of a portable backup directory (as `influxd restore -portable`
 * does: names sorted, the last wins) and its `.meta`.
 *
 * @throws {NotFoundError} when the directory or its manifest is missing; {@link ConfigError}
 *   when a file the manifest names is missing.
 */
export async function readPortableDirectory(directory: string): Promise<PortableDirectory> {
  let names: string[];
  try {
    names = await readdir(directory);
  } catch (error) {
    throw new NotFoundError(
      `Cannot read the portable backup directory ${directory}: ${(error as Error).message}.`,
      { cause: error },
    );
  }
  const manifestName = names
    .filter((name) => name.endsWith('.manifest'))
    .sort()
    .at(-1);
  if (manifestName === undefined) {
    throw new NotFoundError(
      `${directory} holds no *.manifest: it is not a directory written by influxd backup -portable.`,
    );
  }
  const manifest = parsePortableManifest(await readFile(join(directory, manifestName), 'utf8'));
  for (const name of [manifest.meta.fileName, ...(manifest.files ?? []).map((file) => file.fileName)]) {
    if (!names.includes(name)) {
      throw new ConfigError(`${directory}/${manifestName} names ${name}, which the directory does not hold.`);
    }
  }
  const metastore = decodeMetaFile(await readFile(join(directory, manifest.meta.fileName)));
  return { directory, manifestName, manifest, metastore };
}

/**
 * The files of the newest backup in a portable backup directory as entries, in the order
 * `portableBackup` yields them (`.meta`, each shard archive, the manifest), each streamed from
 * disk with its size: what a bk backup of the server at that time would hold.
 */
export async function* portableDirectoryEntries(
  backup: PortableDirectory,
  signal?: AbortSignal,
): AsyncIterable<Entry> {
  const names = [
    backup.manifest.meta.fileName,
    ...(backup.manifest.files ?? []).map((file) => file.fileName),
    backup.manifestName,
  ];
  for (const name of names) {
    throwIfAborted(signal);
    const path = join(backup.directory, name);
    const { size } = await stat(path);
    yield {
      path: name,
      type: 'file',
      size,
      mode: 0o600,
      body: createReadStream(path, { highWaterMark: 1024 * 1024, ...(signal ? { signal } : {}) }),
    };
  }
}
