import type { EntryType } from './contracts.ts';

const WORDS: Record<EntryType, string> = {
  file: 'a file',
  directory: 'a directory',
  symlink: 'a symbolic link',
};

/**
 * How many paths an {@link EntryTree} holds before it relies on the entries' order instead: up
 * to this many, a component may yield its entries in any order; past it, they must come sorted
 * by {@link compareEntryPaths} (as the files component yields them), and the tree holds only
 * the chain of parents of the latest entry.
 */
export const ENTRY_TREE_HELD_PATHS = 100_000;

function compareNames(left: string, right: string): number {
  return left < right ? -1 : left > right ? 1 : 0;
}

/**
 * Orders entry paths segment by segment (`a/b` before `a.b`), so a directory comes right before
 * everything under it; negative when `left` comes first.
 */
export function compareEntryPaths(left: string, right: string): number {
  let leftStart = 0;
  let rightStart = 0;
  for (;;) {
    const leftEnd = left.indexOf('/', leftStart);
    const rightEnd = right.indexOf('/', rightStart);
    const order = compareNames(
      left.slice(leftStart, leftEnd < 0 ? undefined : leftEnd),
      right.slice(rightStart, rightEnd < 0 ? undefined : rightEnd),
    );
    if (order !== 0) return order;
    if (leftEnd < 0 || rightEnd < 0) return leftEnd < 0 ? (rightEnd < 0 ? 0 : -1) : 1;
    leftStart = leftEnd + 1;
    rightStart = rightEnd + 1;
  }
}

/**
 * The entry paths of one component, checked as a tree as they are added: each path once, and
 * nothing under a file or a link. Restore writes an entry only under real directories (never
 * through a link), so an archive that places `d/x` under a link `d` — or `f/g` under a file `f` —
 * cannot be restored; backup, verify and restore refuse it with this check, in either order.
 *
 * Memory: every path added, plus each path's parent directories, up to
 * {@link ENTRY_TREE_HELD_PATHS} paths; then, when every entry so far came sorted, nothing but the
 * chain of parents of the latest one, and every later entry must come sorted too (a sorted
 * stream repeats a path or puts one under a file only right after it). Two million files are
 * checked in the memory of their deepest path.
 */
export class EntryTree {
  #types: Map<string, EntryType> | undefined = new Map();
  /** Every proper ancestor of a path added, while paths are held. */
  #parents: Set<string> | undefined = new Set();
  #sorted = true;
  #last: string | undefined;
  /** The latest entry and those of its ancestors that were added, outermost first. */
  readonly #chain: { path: string; type: EntryType }[] = [];

  /** Adds `path` (safe and normalised); returns why it cannot join the tree, or `undefined`. */
  add(path: string, type: EntryType): string | undefined {
    const order = this.#last === undefined ? -1 : compareEntryPaths(this.#last, path);
    const chain = this.#chain;
    while (chain.length > 0 && !path.startsWith(`${chain[chain.length - 1]!.path}/`)) chain.pop();
    const types = this.#types;
    if (types === undefined) {
      if (order === 0) return `"${path}" appears twice`;
      if (order > 0) {
        return `"${path}" comes after "${this.#last}": past ${ENTRY_TREE_HELD_PATHS} entries a component must yield its entries sorted, each directory right before its contents`;
      }
      const parent = chain[chain.length - 1];
      if (parent !== undefined && parent.type !== 'directory') {
        return `"${path}" lies under "${parent.path}", which is ${WORDS[parent.type]}, not a directory`;
      }
    } else {
      const parents = this.#parents!;
      if (types.has(path)) return `"${path}" appears twice`;
      if (type !== 'directory' && parents.has(path)) {
        return `"${path}" is ${WORDS[type]}, yet other entries lie under it`;
      }
      for (let slash = path.indexOf('/'); slash > 0; slash = path.indexOf('/', slash + 1)) {
        const parent = path.slice(0, slash);
        // A known parent had its own ancestors checked when it was first seen.
        if (parents.has(parent)) continue;
        const parentType = types.get(parent);
        if (parentType !== undefined && parentType !== 'directory') {
          return `"${path}" lies under "${parent}", which is ${WORDS[parentType]}, not a directory`;
        }
        parents.add(parent);
      }
      types.set(path, type);
      if (order > 0) this.#sorted = false;
      if (this.#sorted && types.size >= ENTRY_TREE_HELD_PATHS) {
        this.#types = undefined;
        this.#parents = undefined;
      }
    }
    chain.push({ path, type });
    this.#last = path;
    return undefined;
  }
}
