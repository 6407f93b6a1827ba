import type { IncrementalParent, Source, Storage } from '../contracts.ts';
import { manifestEntries } from '../entry-index.ts';
import { NotFoundError, throwIfAborted } from '../errors.ts';
import type { ManifestEntry, SidecarManifest } from '../manifest.ts';
import { joinKey, SIDECAR_SUFFIX } from '../naming.ts';
import { openSidecar, sealedSummary } from '../sealed-sidecar.ts';
import { collect } from '../streams.ts';
import { selectComponents } from './backup.ts';
import { inspect, list } from './catalog.ts';

export interface PlanIncrementalOptions {
  storage: Storage;
  /** The components the backup will run (as for `backup`). */
  components: Source[];
  /** As `backup`'s `only`. */
  only?: string[];
  prefix?: string;
  /** Secret keys to read encrypted candidates' manifests (see `InspectOptions.identities`). */
  identities?: readonly string[];
  signal?: AbortSignal;
}

/** What `backup` needs to write an incremental: pass all three fields on. */
export interface IncrementalPlan {
  /** The backup the incremental builds on; `null` when there is none yet (a full backup). */
  parent: string | null;
  /** The components to back up: incremental-capable ones replaced by their continuation. */
  components: Source[];
  /** Names of the components that continue from `parent` (`backup`'s `incrementalComponents`). */
  incrementalComponents: string[];
  /** Names of the selected components that cannot back up incrementally: taken in full. */
  fullComponents: string[];
}

/**
 * Plans an incremental backup: the incremental-capable components among those selected (those
 * with `Source.incremental`) continue from the newest complete backup that holds every one of
 * them (same name and kind); the others are taken in full. With no such backup (the first run),
 * `parent` is `null` and every component is taken in full.
 *
 * @example
 * const plan = await planIncremental({ storage, components });
 * await backup({ storage, ...plan, parent: plan.parent ?? undefined });
 *
 * @throws {ConfigError} from a component that cannot continue from the parent found.
 */
export async function planIncremental(options: PlanIncrementalOptions): Promise<IncrementalPlan> {
  const { storage, prefix, signal } = options;
  throwIfAborted(signal);
  const selected = selectComponents(options.components, options.only, 'the selection');
  const capable = selected.filter((source) => typeof source.incremental === 'function');
  const full = selected
    .filter((source) => typeof source.incremental !== 'function')
    .map((source) => source.name);
  const none: IncrementalPlan = {
    parent: null,
    components: options.components,
    incrementalComponents: [],
    fullComponents: selected.map((source) => source.name),
  };
  if (capable.length === 0) return none;
  const identities = options.identities ? { identities: options.identities } : {};
  let parent: SidecarManifest | undefined;
  for (const candidate of (await list({ storage, prefix, signal })).reverse()) {
    const manifest = await inspect({ storage, prefix, name: candidate.name, signal, ...identities });
    const holds = capable.every((source) =>
      manifest.components.some(
        (component) => component.name === source.name && component.kind === source.kind,
      ),
    );
    if (holds) {
      parent = manifest;
      break;
    }
  }
  if (!parent) return none;
  const found = parent;
  const replaced = new Map<Source, Source>();
  for (const source of capable) {
    const component = found.components.find((item) => item.name === source.name)!;
    const link: IncrementalParent = {
      backupName: found.name,
      component: {
        name: component.name,
        kind: component.kind,
        ...(component.version === undefined ? {} : { version: component.version }),
        info: component.info,
      },
      entries: () => componentEntries(storage, found, component.name, { signal, ...identities }),
    };
    replaced.set(source, await source.incremental!(link));
  }
  return {
    parent: found.name,
    components: options.components.map((source) => replaced.get(source) ?? source),
    incrementalComponents: capable.map((source) => source.name),
    fullComponents: full,
  };
}

async function* componentEntries(
  storage: Storage,
  manifest: SidecarManifest,
  name: string,
  options: { signal?: AbortSignal; identities?: readonly string[] },
): AsyncIterable<ManifestEntry> {
  let seen = false;
  for await (const { component, record } of manifestEntries(storage, manifest, options)) {
    if (component.name !== name) {
      if (seen) return;
      continue;
    }
    seen = true;
    yield record;
  }
}

/**
 * The parent of each named backup, read from its sidecar: in clear even for an encrypted backup
 * (the sealed summary names it), or from the sealed manifest with `identities` for one sealed by
 * an older version. `undefined` when it cannot be told (such a backup, no key that opens it).
 *
 * @throws {NotFoundError} when a backup has no sidecar.
 */
export async function readParents(options: {
  storage: Storage;
  names: readonly string[];
  prefix?: string;
  identities?: readonly string[];
  signal?: AbortSignal;
}): Promise<Map<string, string | null | undefined>> {
  const { storage, prefix, signal } = options;
  const parents = new Map<string, string | null | undefined>();
  for (const name of options.names) {
    throwIfAborted(signal);
    const key = joinKey(prefix, name + SIDECAR_SUFFIX);
    let bytes: Uint8Array;
    try {
      bytes = await collect(await storage.get(key, { signal }), 512 * 1024 * 1024);
    } catch (error) {
      if (error instanceof NotFoundError)
        throw new NotFoundError(`No complete backup named "${name}" in ${storage.description}.`, {
          cause: error,
        });
      throw error;
    }
    const summary = sealedSummary(bytes);
    if (summary && summary.parent !== undefined) {
      parents.set(name, summary.parent);
      continue;
    }
    if (summary && (options.identities ?? []).length === 0) {
      parents.set(name, undefined);
      continue;
    }
    parents.set(name, (await openSidecar(bytes, options.identities, `backup "${name}"`)).parent);
  }
  return parents;
}
