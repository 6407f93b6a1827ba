import { deepStrictEqual, ok, strictEqual } from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  type BackupContext,
  BkError,
  backup,
  type Component,
  type ConflictPolicy,
  type Entry,
  type EntryType,
  inspect,
  type ManifestEntry,
  MemoryStorage,
  manifestEntries,
  restore,
  type Source,
  verify,
} from '@bk/core';
import type { TestRegistrar } from './test-registrar.ts';

/**
 * A component under test and the data store it backs up, set up fresh for every test.
 *
 * @example
 * const fixture: ComponentFixture = {
 *   component: files({ root: directory, paths: ['.'] }),
 *   seed: () => writeTree(directory),
 *   snapshot: () => readTree(directory),
 *   reset: () => emptyDirectory(directory),
 *   cleanup: () => rm(directory, { recursive: true, force: true }),
 * };
 */
export interface ComponentFixture {
  /** The component, configured to back up the fixture's data and restore it in the same place. */
  component: Component;
  /** Writes representative data into the store: nested items, an empty one, a large one. */
  seed(): Promise<void>;
  /**
   * Reads the store into a plain value (JSON-like: objects, arrays, strings, numbers) holding
   * everything a restore must bring back; two snapshots are compared with deep equality.
   */
  snapshot(): Promise<unknown>;
  /** Empties the store, so that a restore with conflict `fail` can write everything back. */
  reset(): Promise<void>;
  /** Releases what the fixture holds (temporary directories, servers); called after every test. */
  cleanup?(): Promise<void>;
}

/**
 * Options of {@link componentRoundTrip}.
 *
 * @example
 * componentRoundTrip(it, createFixture, { timeout: 120_000, restoreOptions: { conflict: 'overwrite' } });
 */
export interface ComponentRoundTripOptions {
  /** How the round-trip test restores; default conflict `fail` (the store was reset). */
  restoreOptions?: { conflict?: ConflictPolicy };
  /** Per-test timeout in milliseconds, passed to `it`; default: the runner's. */
  timeout?: number;
}

/** What a component yielded, as the archive received it. */
interface RecordedEntry {
  path: string;
  type: EntryType;
  /** Bytes the body actually yielded (files only). */
  bytes?: number;
  sha256?: string;
  declaredSize?: number;
  linkTarget?: string;
}

/** Passes a component's entries through unchanged while recording each one and hashing its body. */
function recording(component: Component, recorded: RecordedEntry[]): Source {
  async function* hashed(body: AsyncIterable<Uint8Array>, record: RecordedEntry): AsyncIterable<Uint8Array> {
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of body) {
      hash.update(chunk);
      bytes += chunk.byteLength;
      yield chunk;
    }
    record.bytes = bytes;
    record.sha256 = hash.digest('hex');
  }
  return {
    kind: component.kind,
    name: component.name,
    describe: (context) => component.describe(context),
    async *backup(context: BackupContext): AsyncIterable<Entry> {
      for await (const entry of component.backup(context)) {
        const type = entry.type ?? 'file';
        const record: RecordedEntry = {
          path: entry.path,
          type,
          ...(entry.size === undefined ? {} : { declaredSize: entry.size }),
          ...(entry.linkTarget === undefined ? {} : { linkTarget: entry.linkTarget }),
        };
        recorded.push(record);
        if (type === 'file') {
          record.bytes = 0;
          record.sha256 = createHash('sha256').digest('hex');
          yield entry.body ? { ...entry, body: hashed(entry.body, record) } : entry;
        } else {
          yield entry;
        }
      }
    },
  };
}

async function withFixture(
  factory: () => Promise<ComponentFixture>,
  test: (fixture: ComponentFixture) => Promise<void>,
): Promise<void> {
  const fixture = await factory();
  try {
    await test(fixture);
  } finally {
    await fixture.cleanup?.();
  }
}

/**
 * Registers the component round-trip suite with a test runner: any {@link Component} — bk's own
 * or a third party's — can certify that what it backs up comes back identical.
 *
 * The tests, each on a fresh fixture from `factory`:
 * 1. seed → snapshot A → `backup()` into a `MemoryStorage` → `verify()` → reset → `restore()`
 *    (conflict `fail` unless `restoreOptions` says otherwise) → snapshot B deep-equals A;
 * 2. the stored manifest names the component's kind and name and lists every entry it yielded,
 *    in order, with type, size and (for files) the sha256 of the bytes the body yielded;
 * 3. a restore selecting (`only`) a component that is not in the backup throws `ConfigError`
 *    (`BK_CONFIG`) and leaves the store as it was.
 *
 * Failures are thrown as `node:assert` errors or as the bk error the runner threw.
 *
 * @example
 * import { it } from 'vitest';
 * import { componentRoundTrip } from '@bk/test-suite';
 *
 * componentRoundTrip(it, async () => createMyFixture(), { timeout: 120_000 });
 */
export function componentRoundTrip(
  it: TestRegistrar,
  factory: () => Promise<ComponentFixture>,
  options: ComponentRoundTripOptions = {},
): void {
  const conflict = options.restoreOptions?.conflict ?? 'fail';

  it(
    'component round trip: restores exactly what it backed up',
    () =>
      withFixture(factory, async ({ component, seed, snapshot, reset }) => {
        await seed();
        const before = await snapshot();
        const storage = new MemoryStorage();
        const result = await backup({ storage, components: [component] });
        await verify({ storage, name: result.name });
        await reset();
        const restored = await restore({ storage, name: result.name, restorers: [component], conflict });
        ok(restored.components[component.name], `restore() reported nothing for "${component.name}"`);
        deepStrictEqual(await snapshot(), before, 'the restored data differs from the data backed up');
      }),
    options.timeout,
  );

  it(
    'component round trip: the manifest lists every entry with its size and sha256',
    () =>
      withFixture(factory, async ({ component, seed }) => {
        await seed();
        const storage = new MemoryStorage();
        const recorded: RecordedEntry[] = [];
        const result = await backup({ storage, components: [recording(component, recorded)] });
        const manifest = await inspect({ storage, name: result.name });
        strictEqual(manifest.components.length, 1, 'the manifest should hold exactly one component');
        const record = manifest.components[0]!;
        const listed: ManifestEntry[] = [];
        for await (const { record: entry } of manifestEntries(storage, manifest)) listed.push(entry);
        strictEqual(record.name, component.name, 'the manifest records another component name');
        strictEqual(record.kind, component.kind, 'the manifest records another component kind');
        ok(recorded.length > 0, 'seed() should give the component something to back up');
        deepStrictEqual(
          listed.map((entry) => entry.path),
          recorded.map((entry) => entry.path),
          'the manifest does not list the entries the component yielded, in order',
        );
        let bytes = 0;
        listed.forEach((entry, index) => {
          const yielded = recorded[index]!;
          strictEqual(entry.type, yielded.type, `"${entry.path}" is recorded with another type`);
          if (yielded.type === 'file') {
            strictEqual(entry.size, yielded.bytes, `"${entry.path}" is recorded with another size`);
            if (yielded.declaredSize !== undefined) {
              strictEqual(entry.size, yielded.declaredSize, `"${entry.path}" differs from its declared size`);
            }
            strictEqual(entry.sha256, yielded.sha256, `"${entry.path}" is recorded with another sha256`);
          } else {
            strictEqual(entry.size, 0, `"${entry.path}" is not a file but is recorded with a size`);
            strictEqual(entry.sha256, undefined, `"${entry.path}" is not a file but has a sha256`);
          }
          if (yielded.type === 'symlink') {
            strictEqual(entry.linkTarget, yielded.linkTarget, `"${entry.path}" has another link target`);
          }
          bytes += entry.size;
        });
        deepStrictEqual(
          record.stats,
          { entries: recorded.length, bytes },
          "the component's stats do not add up its entries",
        );
      }),
    options.timeout,
  );

  it(
    'component round trip: restoring a component that is not in the backup is a config error',
    () =>
      withFixture(factory, async ({ component, seed, snapshot, reset }) => {
        await seed();
        const storage = new MemoryStorage();
        const result = await backup({ storage, components: [component] });
        await reset();
        const empty = await snapshot();
        const missing = `${component.name}-not-in-backup`;
        let caught: unknown;
        try {
          await restore({ storage, name: result.name, restorers: [component], only: [missing], conflict });
        } catch (error) {
          caught = error;
        }
        ok(caught !== undefined, `restore({ only: ["${missing}"] }) should throw`);
        ok(BkError.isInstance(caught), `restore() threw a non-bk error: ${String(caught)}`);
        strictEqual(caught.code, 'BK_CONFIG', `restore() threw ${caught.code} instead of BK_CONFIG`);
        deepStrictEqual(await snapshot(), empty, 'a refused restore changed the store');
      }),
    options.timeout,
  );
}
