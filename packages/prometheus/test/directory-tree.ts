import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';

/** Every file under `root` (relative path → text), sorted. */
export async function readTree(root: string, prefix = ''): Promise<Record<string, string>> {
  const tree: Record<string, string> = {};
  for (const child of (await readdir(root, { withFileTypes: true })).sort((a, b) =>
    a.name < b.name ? -1 : 1,
  )) {
    if (child.isDirectory())
      Object.assign(tree, await readTree(join(root, child.name), `${prefix}${child.name}/`));
    else tree[`${prefix}${child.name}`] = await readFile(join(root, child.name), 'utf8');
  }
  return tree;
}

/** Removes everything inside `root`, keeping `root`. */
export async function emptyDirectory(root: string): Promise<void> {
  for (const child of await readdir(root)) await rm(join(root, child), { recursive: true, force: true });
}
