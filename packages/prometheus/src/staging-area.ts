import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { lstat, mkdir, realpath, rename, rm } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { type ByteStream, safeEntryPath, UnsafePathError } from '@bk/core';

/** Whether `path` exists (without following a final symlink). */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/**
 * Checks that `relativePath` (an entry path) stays inside `root` once resolved: it is a safe
 * relative path, and no existing directory on the way is a link leading out of `root`.
 * Returns the absolute target path.
 *
 * @throws {UnsafePathError}
 */
export async function targetInside(root: string, relativePath: string): Promise<string> {
  const safe = safeEntryPath(relativePath);
  if (safe !== relativePath) throw new UnsafePathError(relativePath, 'the path is not in normal form');
  const target = join(root, safe);
  const realRoot = await realpath(root);
  // The deepest existing ancestor of the target decides where the write really lands.
  let ancestor = dirname(target);
  while (!(await pathExists(ancestor))) ancestor = dirname(ancestor);
  const real = await realpath(ancestor);
  const inside = relative(realRoot, real);
  if (inside.startsWith(`..${sep}`) || inside === '..' || inside.startsWith(sep)) {
    throw new UnsafePathError(relativePath, `it resolves outside ${root} through a link`);
  }
  return target;
}

/**
 * A hidden directory inside a restore target where files are written under temp names before
 * they are renamed into place (same file system, so a rename is atomic: a half-written file or
 * block is never visible). Removed by {@link dispose}, on success and on failure.
 */
export class StagingArea {
  readonly root: string;
  readonly dir: string;
  #created = false;

  constructor(root: string) {
    this.root = root;
    this.dir = join(root, `.bk-restore-${randomBytes(6).toString('hex')}`);
  }

  /** The staged location of `relativePath`. */
  path(relativePath: string): string {
    return join(this.dir, relativePath);
  }

  async #ensure(): Promise<void> {
    if (this.#created) return;
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    this.#created = true;
  }

  /** Creates a staged directory. */
  async directory(relativePath: string): Promise<void> {
    await this.#ensure();
    await mkdir(this.path(relativePath), { recursive: true });
  }

  /** Writes `body` to the staged file `relativePath`; returns the bytes written. */
  async write(relativePath: string, body: ByteStream, mode: number, signal: AbortSignal): Promise<number> {
    await this.#ensure();
    const file = this.path(relativePath);
    await mkdir(dirname(file), { recursive: true });
    let bytes = 0;
    async function* counted(): AsyncGenerator<Uint8Array> {
      for await (const chunk of body) {
        bytes += chunk.byteLength;
        yield chunk;
      }
    }
    await pipeline(counted(), createWriteStream(file, { mode }), { signal });
    return bytes;
  }

  /**
   * Renames the staged `relativePath` to the same place under the root. With `replace`, an
   * existing file is replaced atomically; an existing directory is first moved aside into the
   * staging area (removed with it).
   */
  async publish(relativePath: string, replace: boolean): Promise<void> {
    const target = join(this.root, relativePath);
    await mkdir(dirname(target), { recursive: true });
    if (replace && (await pathExists(target))) {
      const existing = await lstat(target);
      if (existing.isDirectory()) {
        await rename(target, join(this.dir, `.replaced-${randomBytes(6).toString('hex')}`));
      }
    }
    await rename(this.path(relativePath), target);
  }

  /** Removes the staging area and everything left in it. */
  async dispose(): Promise<void> {
    if (this.#created) await rm(this.dir, { recursive: true, force: true });
  }
}
