import type { ComponentInfo, Source } from '@bk/core';

/**
 * `source` with what its `describe` reports changed by `change` (e.g. `{ version: '16.4' }`): a
 * backup that records a server version the test server does not run, to prove a restore's
 * version preflight refuses it before anything is written. Its manifest and archive agree, as a
 * backup of that version's server would.
 *
 * @example
 * const newer = claimedVersion(postgres, (info) => ({ ...info, version: '16.4' }));
 * await backup({ storage, components: [newer] });
 */
export function claimedVersion(source: Source, change: (info: ComponentInfo) => ComponentInfo): Source {
  return {
    kind: source.kind,
    name: source.name,
    describe: async (context) => change(await source.describe(context)),
    backup: (context) => source.backup(context),
  };
}
