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

/** Type codes of a {@link PathTable} entry: the low two bits; {@link PARENT} marks an ancestor. */
const TYPE_CODES: Record<EntryType, number> = { file: 1, directory: 2, symlink: 3 };
const CODE_TYPES: (EntryType | undefined)[] = [undefined, 'file', 'directory', 'symlink'];
const PARENT = 4;
const SLASH = 0x2f;
const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * Paths with a few bits each, held as UTF-8 bytes in one buffer and found through an
 * open-addressing table of their indexes: about 20 bytes plus the path's own bytes per path,
 * against ~200 for a `Map` and a `Set` of strings. Exact: a lookup compares the bytes.
 * A path is looked up as the first `length` bytes of {@link key} (see {@link setKey}), with
 * the FNV-1a hash of those bytes: every prefix of one path is looked up from one encoding.
 */
class PathTable {
  #bytes = Buffer.allocUnsafe(64 * 1024);
  #used = 0;
  /** Where path `index` starts in {@link #bytes}; it ends where `index + 1` starts. */
  #starts = new Int32Array(1025);
  #hashes = new Int32Array(1024);
  #flags = new Uint8Array(1024);
  /** Path index + 1 per slot, 0 for a free slot; at most half full. */
  #table = new Int32Array(2048);
  size = 0;
  /** The path being looked up, as UTF-8. */
  key = Buffer.allocUnsafe(1024);

  /** Encodes `path` into {@link key}; returns its length in bytes. */
  setKey(path: string): number {
    if (path.length * 3 > this.key.byteLength) this.key = Buffer.allocUnsafe(path.length * 3);
    return this.key.write(path, 0, 'utf8');
  }

  /** The slot of the first `length` bytes of {@link key} (hashed `hash`): taken by it, or free. */
  #slot(length: number, hash: number): number {
    const table = this.#table;
    const mask = table.length - 1;
    const key = this.key;
    const bytes = this.#bytes;
    for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
      const held = table[slot]!;
      if (held === 0) return slot;
      const index = held - 1;
      if (this.#hashes[index] !== hash) continue;
      const start = this.#starts[index]!;
      if (this.#starts[index + 1]! - start !== length) continue;
      if (bytes.compare(key, 0, length, start, start + length) === 0) return slot;
    }
  }

  /** The flags of the first `length` bytes of {@link key}, 0 when not held. */
  get(length: number, hash: number): number {
    const held = this.#table[this.#slot(length, hash)]!;
    return held === 0 ? 0 : this.#flags[held - 1]!;
  }

  /** Adds `flags` to those of the first `length` bytes of {@link key}, adding the path if new. */
  mark(length: number, hash: number, flags: number): void {
    const slot = this.#slot(length, hash);
    const held = this.#table[slot]!;
    if (held !== 0) {
      this.#flags[held - 1]! |= flags;
      return;
    }
    const index = this.size;
    if (index + 1 >= this.#hashes.length) this.#growEntries();
    if (this.#used + length > this.#bytes.byteLength) {
      const bytes = Buffer.allocUnsafe(Math.max(this.#bytes.byteLength * 2, this.#used + length));
      this.#bytes.copy(bytes, 0, 0, this.#used);
      this.#bytes = bytes;
    }
    this.key.copy(this.#bytes, this.#used, 0, length);
    this.#used += length;
    this.#starts[index + 1] = this.#used;
    this.#hashes[index] = hash;
    this.#flags[index] = flags;
    this.size += 1;
    this.#table[slot] = index + 1;
    if (this.size * 2 > this.#table.length) this.#rehash();
  }

  #growEntries(): void {
    const capacity = this.#hashes.length * 2;
    const starts = new Int32Array(capacity + 1);
    starts.set(this.#starts);
    this.#starts = starts;
    const hashes = new Int32Array(capacity);
    hashes.set(this.#hashes);
    this.#hashes = hashes;
    const flags = new Uint8Array(capacity);
    flags.set(this.#flags);
    this.#flags = flags;
  }

  #rehash(): void {
    const table = new Int32Array(this.#table.length * 2);
    const mask = table.length - 1;
    for (let index = 0; index < this.size; index += 1) {
      let slot = this.#hashes[index]! & mask;
      while (table[slot] !== 0) slot = (slot + 1) & mask;
      table[slot] = index + 1;
    }
    this.#table = table;
  }
}

/**
 * The entry paths of one component, checked as a tree as they are added: each path once, and
 * nothing under a file or a link. Restore writes an entry only under real directories (never
 * through a link), so an archive that places `d/x` under a link `d` — or `f/g` under a file `f` —
 * cannot be restored; backup, verify and restore refuse it with this check, in either order.
 *
 * Memory: every path added, plus each path's parent directories, up to
 * {@link ENTRY_TREE_HELD_PATHS} paths, as UTF-8 bytes in one buffer with about 20 bytes each
 * besides (see `PathTable`); then, when every entry so far came sorted, nothing but the
 * chain of parents of the latest one, and every later entry must come sorted too (a sorted
 * stream repeats a path or puts one under a file only right after it). Two million files are
 * checked in the memory of their deepest path.
 */
export class EntryTree {
  #paths: PathTable | undefined = new PathTable();
  /** The byte length and hash of each proper ancestor of the path being added. */
  #prefixLengths = new Int32Array(64);
  #prefixHashes = new Int32Array(64);
  /** Entries held (ancestors that are no entry of their own not counted). */
  #held = 0;
  /** The parent of the latest path held, with a trailing `/`: its ancestors are all checked. */
  #checkedParent = '';
  #sorted = true;
  #last: string | undefined;
  /** The latest entry and those of its ancestors that were added, outermost first. */
  readonly #chain: { path: string; type: EntryType }[] = [];

  /** Adds `path` (safe and normalised); returns why it cannot join the tree, or `undefined`. */
  add(path: string, type: EntryType): string | undefined {
    const order = this.#last === undefined ? -1 : compareEntryPaths(this.#last, path);
    const chain = this.#chain;
    while (chain.length > 0 && !path.startsWith(`${chain[chain.length - 1]!.path}/`)) chain.pop();
    const paths = this.#paths;
    if (paths === undefined) {
      if (order === 0) return `"${path}" appears twice`;
      if (order > 0) {
        return `"${path}" comes after "${this.#last}": past ${ENTRY_TREE_HELD_PATHS} entries a component must yield its entries sorted, each directory right before its contents`;
      }
      const parent = chain[chain.length - 1];
      if (parent !== undefined && parent.type !== 'directory') {
        return `"${path}" lies under "${parent.path}", which is ${WORDS[parent.type]}, not a directory`;
      }
    } else {
      const length = paths.setKey(path);
      const key = paths.key;
      // One pass hashes the path and each of its ancestors (the bytes before each "/").
      let depth = 0;
      let hash = FNV_OFFSET;
      for (let at = 0; at < length; at += 1) {
        const byte = key[at]!;
        if (byte === SLASH && at > 0) {
          if (depth === this.#prefixLengths.length) {
            const lengths = new Int32Array(depth * 2);
            lengths.set(this.#prefixLengths);
            this.#prefixLengths = lengths;
            const hashes = new Int32Array(depth * 2);
            hashes.set(this.#prefixHashes);
            this.#prefixHashes = hashes;
          }
          this.#prefixLengths[depth] = at;
          this.#prefixHashes[depth] = hash;
          depth += 1;
        }
        hash = Math.imul(hash ^ byte, FNV_PRIME);
      }
      const own = paths.get(length, hash);
      if ((own & 3) !== 0) return `"${path}" appears twice`;
      if (type !== 'directory' && (own & PARENT) !== 0) {
        return `"${path}" is ${WORDS[type]}, yet other entries lie under it`;
      }
      // A sibling of the latest path shares its ancestors, which were checked and marked then.
      const checked =
        this.#checkedParent !== '' &&
        path.startsWith(this.#checkedParent) &&
        path.indexOf('/', this.#checkedParent.length) < 0;
      for (let level = checked ? depth : 0; level < depth; level += 1) {
        const prefixLength = this.#prefixLengths[level]!;
        const prefixHash = this.#prefixHashes[level]!;
        const flags = paths.get(prefixLength, prefixHash);
        // A known parent had its own ancestors checked when it was first seen.
        if ((flags & PARENT) !== 0) continue;
        const parentType = CODE_TYPES[flags & 3];
        if (parentType !== undefined && parentType !== 'directory') {
          const parent = key.toString('utf8', 0, prefixLength);
          return `"${path}" lies under "${parent}", which is ${WORDS[parentType]}, not a directory`;
        }
        paths.mark(prefixLength, prefixHash, PARENT);
      }
      paths.mark(length, hash, TYPE_CODES[type]);
      this.#held += 1;
      this.#checkedParent = depth === 0 ? '' : path.slice(0, path.lastIndexOf('/') + 1);
      if (order > 0) this.#sorted = false;
      if (this.#sorted && this.#held >= ENTRY_TREE_HELD_PATHS) this.#paths = undefined;
    }
    chain.push({ path, type });
    this.#last = path;
    return undefined;
  }
}
