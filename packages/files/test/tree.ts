import { createHash, randomBytes } from 'node:crypto';
import {
  chmod,
  lstat,
  lutimes,
  mkdir,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';

/** A fixed time per entry, so that restored mtimes are checked against something that is not "now". */
function timeOf(index: number): Date {
  return new Date(Date.UTC(2021, 2, 4, 5, 6, 7, 890) + index * 61_000);
}

/**
 * Writes the sample tree into `root`: nested directories, an empty file, a 3 MiB file, unicode
 * names, a 0o600 file, a read-only directory with a file in it and relative symlinks; then gives
 * every entry a fixed mtime, directories last and deepest first.
 */
export async function writeSampleTree(root: string): Promise<void> {
  await mkdir(join(root, 'conf/nested/deeper'), { recursive: true });
  await mkdir(join(root, 'naïve café'), { recursive: true });
  await mkdir(join(root, 'readonly'), { recursive: true });
  await writeFile(join(root, 'conf/haproxy.cfg'), 'global\n  maxconn 4096\n');
  await writeFile(join(root, 'conf/nested/deeper/leaf.txt'), 'leaf\n');
  await writeFile(join(root, 'conf/nested/notes.txt'), 'notes\n');
  await writeFile(join(root, 'conf/empty.txt'), '');
  await writeFile(join(root, 'big.bin'), randomBytes(3 * 1024 * 1024));
  await writeFile(join(root, 'naïve café/日本語.txt'), 'こんにちは\n');
  await writeFile(join(root, 'emoji-🎉.txt'), 'party\n');
  await writeFile(join(root, 'secret.key'), 'PRIVATE KEY\n');
  await writeFile(join(root, 'readonly/inside.txt'), 'inside\n');
  await symlink('haproxy.cfg', join(root, 'conf/link-to-cfg'));
  await symlink('conf/nested', join(root, 'latest'));
  const files = [
    'conf/haproxy.cfg',
    'conf/nested/deeper/leaf.txt',
    'conf/nested/notes.txt',
    'conf/empty.txt',
    'big.bin',
    'naïve café/日本語.txt',
    'emoji-🎉.txt',
    'secret.key',
    'readonly/inside.txt',
  ];
  for (const file of files) await chmod(join(root, file), 0o644);
  await chmod(join(root, 'secret.key'), 0o600);
  await chmod(join(root, 'conf/haproxy.cfg'), 0o640);
  let index = 0;
  for (const file of files) {
    const time = timeOf(index++);
    await utimes(join(root, file), time, time);
  }
  for (const link of ['conf/link-to-cfg', 'latest']) {
    const time = timeOf(index++);
    await lutimes(join(root, link), time, time);
  }
  const directories = ['conf/nested/deeper', 'conf/nested', 'conf', 'naïve café', 'readonly'];
  for (const directory of directories) await chmod(join(root, directory), 0o755);
  await chmod(join(root, 'conf/nested'), 0o750);
  await chmod(join(root, 'readonly'), 0o555);
  for (const directory of directories) {
    const time = timeOf(index++);
    await utimes(join(root, directory), time, time);
  }
}

export interface SnapshotItem {
  path: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  mode: number;
  /** Seconds. */
  mtime: number;
  sha256?: string;
  size?: number;
  linkTarget?: string;
}

/** Every entry under `root` with its type, mode, mtime (to the second), contents hash or link target. */
export async function snapshotTree(root: string): Promise<SnapshotItem[]> {
  const items: SnapshotItem[] = [];
  async function walk(directory: string, prefix: string): Promise<void> {
    const names = (await readdir(directory)).sort();
    for (const name of names) {
      const absolute = join(directory, name);
      const path = prefix === '' ? name : `${prefix}/${name}`;
      const stats = await lstat(absolute);
      const base = { path, mode: stats.mode & 0o7777, mtime: Math.floor(stats.mtimeMs / 1000) };
      if (stats.isDirectory()) {
        items.push({ ...base, type: 'directory' });
        await walk(absolute, path);
      } else if (stats.isFile()) {
        const bytes = await readFile(absolute);
        items.push({
          ...base,
          type: 'file',
          size: bytes.byteLength,
          sha256: createHash('sha256').update(bytes).digest('hex'),
        });
      } else if (stats.isSymbolicLink()) {
        items.push({
          path,
          type: 'symlink',
          mtime: base.mtime,
          mode: 0,
          linkTarget: await readlink(absolute),
        });
      } else {
        items.push({ ...base, type: 'other' });
      }
    }
  }
  await walk(root, '');
  return items;
}

/** Removes a tree even when it holds read-only directories. */
export async function removeTree(root: string): Promise<void> {
  async function unlock(directory: string): Promise<void> {
    // chmod follows links: only ever touch a real directory.
    const stats = await lstat(directory).catch(() => undefined);
    if (!stats?.isDirectory()) return;
    await chmod(directory, 0o755).catch(() => {});
    for (const entry of await readdir(directory, { withFileTypes: true }).catch(() => [])) {
      if (entry.isDirectory()) await unlock(join(directory, entry.name));
    }
  }
  await unlock(root);
  await rm(root, { recursive: true, force: true });
}

/** Removes everything inside `root` and leaves it empty. */
export async function emptyDirectory(root: string): Promise<void> {
  for (const name of await readdir(root)) await removeTree(join(root, name));
}
