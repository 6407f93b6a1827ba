import type { Storage } from '../contracts.ts';
import { IntegrityError, NotFoundError, throwIfAborted } from '../errors.ts';
import type { SidecarManifest } from '../manifest.ts';
import { inspect, resolveName } from './catalog.ts';

export interface ResolveChainOptions {
  storage: Storage;
  /** The newest backup of the chain, or `"latest"`. */
  name: string;
  /** With `"latest"`: the newest backup holding these components (see `InspectOptions`). */
  components?: readonly string[];
  prefix?: string;
  /** Secret keys for encrypted backups (see `InspectOptions.identities`). */
  identities?: readonly string[];
  signal?: AbortSignal;
}

/** One backup of an incremental chain. */
export interface ChainLink {
  name: string;
  manifest: SidecarManifest;
}

/** Upper bound on a chain's length; a longer one is almost certainly a loop through bad manifests. */
const MAX_CHAIN = 10_000;

/**
 * Follows `parent` from `name` back to the full backup (the first without a parent) and returns
 * the chain oldest first: `[full, inc1, …, name]`. Each manifest is read and validated once.
 *
 * @throws {NotFoundError} when a backup of the chain (the named one or a parent) does not exist,
 *   naming the backup that points at it.
 * @throws {IntegrityError} when the parents form a cycle.
 */
export async function resolveChain(options: ResolveChainOptions): Promise<ChainLink[]> {
  const { storage, prefix, signal } = options;
  throwIfAborted(signal);
  const newest = await resolveName({
    storage,
    name: options.name,
    prefix,
    signal,
    ...(options.components ? { components: options.components } : {}),
    ...(options.identities ? { identities: options.identities } : {}),
  });
  const links: ChainLink[] = [];
  const seen = new Set<string>();
  let name: string | null = newest;
  let child: string | undefined;
  while (name !== null) {
    throwIfAborted(signal);
    if (seen.has(name) || links.length >= MAX_CHAIN) {
      throw new IntegrityError(
        `The incremental chain of "${newest}" loops: "${child}" names "${name}" as its parent, which is already in the chain (${[...seen].join(' → ')}).`,
      );
    }
    seen.add(name);
    let manifest: SidecarManifest;
    try {
      manifest = await inspect({
        storage,
        name,
        prefix,
        signal,
        ...(options.identities ? { identities: options.identities } : {}),
      });
    } catch (error) {
      if (error instanceof NotFoundError && child !== undefined) {
        throw new NotFoundError(
          `The incremental chain of "${newest}" is broken: "${child}" builds on "${name}", which is not a complete backup in ${storage.description}.`,
          { cause: error },
        );
      }
      throw error;
    }
    links.push({ name, manifest });
    child = name;
    name = manifest.parent;
  }
  return links.reverse();
}
