import {
  type BackupContext,
  type ComponentInfo,
  type Entry,
  formatMtime,
  type IncrementalParent,
  type ManifestEntry,
  mtimeNanoseconds,
  type OperationContext,
  type Source,
} from '@bk/core';
import type { FilesComponent } from './files-component.ts';

/** What an incremental needs of each path the parent recorded. */
interface ParentEntry {
  type: ManifestEntry['type'];
  size: number;
  sha256: string | undefined;
  mode: number | undefined;
  mtime: string | undefined;
  identity: string | undefined;
  /** The backup whose archive holds the body. */
  holder: string;
}

/**
 * The files of a {@link FilesComponent} that changed since a parent backup. A file whose size,
 * mtime (to the nanosecond), mode and identity (device and inode) are those the parent recorded
 * is stored as a reference to the parent's entry (or to the backup the parent's reference
 * points at): no body, the parent's sha256. Every other file, every directory and every link is
 * stored as in a full backup, and each path the parent had that is gone is recorded as deleted,
 * so that a chain restore ends at exactly this backup's tree.
 *
 * A file rewritten in place with its size and mtime preserved (`touch -r`, some `rsync` modes,
 * a clock set back) keeps its inode and looks unchanged: its new content is not stored. Take a
 * full backup from time to time to catch such files.
 *
 * Memory: one small record per path of the parent (about 200 bytes each), held while the
 * backup runs.
 */
export class IncrementalFiles implements Source {
  readonly kind = 'files' as const;
  readonly name: string;
  readonly #component: FilesComponent;
  readonly #parentName: string;
  readonly #parent: Map<string, ParentEntry>;

  private constructor(component: FilesComponent, parentName: string, parent: Map<string, ParentEntry>) {
    this.name = component.name;
    this.#component = component;
    this.#parentName = parentName;
    this.#parent = parent;
  }

  /** Reads the parent's entries of this component (its entry index) into memory. */
  static async load(component: FilesComponent, parent: IncrementalParent): Promise<IncrementalFiles> {
    const entries = new Map<string, ParentEntry>();
    for await (const entry of parent.entries()) {
      if (entry.deleted) continue;
      entries.set(entry.path, {
        type: entry.type,
        size: entry.size,
        sha256: entry.sha256,
        mode: entry.mode,
        mtime: entry.mtime,
        identity: entry.identity,
        holder: entry.ref ?? parent.backupName,
      });
    }
    return new IncrementalFiles(component, parent.backupName, entries);
  }

  /** The component's description, with `details.incremental` naming the parent. */
  async describe(context: OperationContext): Promise<ComponentInfo> {
    const info = await this.#component.describe(context);
    return { ...info, details: { ...info.details, incremental: { parent: this.#parentName } } };
  }

  async *backup(context: BackupContext): AsyncIterable<Entry> {
    const remaining = new Map(this.#parent);
    // Directories that became a file or a link: what the parent had under them is replaced, not deleted.
    const replaced: string[] = [];
    for await (const entry of this.#component.backup(context)) {
      const before = remaining.get(entry.path);
      remaining.delete(entry.path);
      if (before?.type === 'directory' && entry.type !== 'directory') replaced.push(`${entry.path}/`);
      if (
        entry.type === 'file' &&
        before?.type === 'file' &&
        before.sha256 !== undefined &&
        before.identity !== undefined &&
        before.identity === entry.identity &&
        before.size === entry.size &&
        before.mode === entry.mode &&
        entry.mtime !== undefined &&
        before.mtime === formatMtime(mtimeNanoseconds(entry.mtime, entry.mtimeNs))
      ) {
        // Unchanged: the body (opened only when read) is never read.
        const { body: _body, ...unchanged } = entry;
        yield { ...unchanged, ref: before.holder, sha256: before.sha256 };
        continue;
      }
      yield entry;
    }
    // Deleted: only the top of each deleted subtree, in path order.
    const tops = new Set<string>();
    const under = (path: string, prefixes: Iterable<string>) => {
      for (const prefix of prefixes) if (path.startsWith(prefix)) return true;
      return false;
    };
    for (const path of [...remaining.keys()].sort()) {
      if (under(path, tops) || under(path, replaced)) continue;
      tops.add(`${path}/`);
      yield { path, type: remaining.get(path)!.type, deleted: true };
    }
  }
}
