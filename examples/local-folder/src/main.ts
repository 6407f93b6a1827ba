/**
 * Starter: back up a directory into a local folder and restore it, with the library.
 *
 *   node src/main.ts <directory> <backup-folder> <restore-into>
 */
import { resolve } from 'node:path';
import { backup, restore } from '@bk/core';
import { files } from '@bk/files';
import { FsStorage } from '@bk/storage-fs';

export async function backupAndRestore(directory: string, backupFolder: string, restoreInto: string) {
  const storage = new FsStorage({ root: resolve(backupFolder) });
  const component = files({
    name: 'data',
    root: resolve(directory),
    paths: ['.'],
    restoreTo: resolve(restoreInto),
  });
  const written = await backup({ storage, components: [component] });
  const restored = await restore({ storage, name: written.name, restorers: [component] });
  return { written, restored };
}

if (process.argv[1] === import.meta.filename) {
  const [directory, backupFolder, restoreInto] = process.argv.slice(2);
  if (!directory || !backupFolder || !restoreInto) {
    console.error('usage: node src/main.ts <directory> <backup-folder> <restore-into>');
    process.exit(2);
  }
  const { written, restored } = await backupAndRestore(directory, backupFolder, restoreInto);
  console.log(`${written.name}: ${written.size} bytes, sha256 ${written.sha256}`);
  console.log(`restored ${restored.components.data?.entries ?? 0} entries into ${restoreInto}`);
}
