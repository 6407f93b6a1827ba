import type { EntryType } from './contracts.ts';

const WORDS: Record<EntryType, string> = {
  file: 'a file',
  directory: 'a directory',
  symlink: 'a symbolic link',
};

/**
 * The entry paths of one component, checked as a tree as they are added: each path once, and
 * nothing under a file or a link. Restore writes an entry only under real directories (never
 * through a link), so an archive that places `d/x` under a link `d` — or `f/g` under a file `f` —
 * cannot be restored; backup, verify and restore refuse it with this check, in either order.
 * Memory: every path added, plus each path's parent directories.
 */
export class EntryTree {
  readonly #types = new Map<string, EntryType>();
  /** Every proper ancestor of a path added. */
  readonly #parents = new Set<string>();

  /** Adds `path` (safe and normalised); returns why it cannot join the tree, or `undefined`. */
  add(path: string, type: EntryType): string | undefined {
    if (this.#types.has(path)) return `"${path}" appears twice`;
    if (type !== 'directory' && this.#parents.has(path)) {
      return `"${path}" is ${WORDS[type]}, yet other entries lie under it`;
    }
    for (let slash = path.indexOf('/'); slash > 0; slash = path.indexOf('/', slash + 1)) {
      const parent = path.slice(0, slash);
      // A known parent had its own ancestors checked when it was first seen.
      if (this.#parents.has(parent)) continue;
      const parentType = this.#types.get(parent);
      if (parentType !== undefined && parentType !== 'directory') {
        return `"${path}" lies under "${parent}", which is ${WORDS[parentType]}, not a directory`;
      }
      this.#parents.add(parent);
    }
    this.#types.set(path, type);
    return undefined;
  }
}
