import type { ComponentInfo, ComponentSecrets, Entry, SecretNote } from './contracts.ts';

/** Most paths a {@link SecretNote} names; past that it counts them. */
export const SECRET_PATHS_LISTED = 100;

/** One component's secrets as a backup holds them. */
export interface ComponentSecretsSummary {
  component: string;
  kind: string;
  secrets: ComponentSecrets;
}

/**
 * The components of a backup (or of a manifest) that hold secrets, with what they hold and lack;
 * components with neither are left out.
 *
 * @example
 * for (const { component, secrets } of componentSecrets(manifest.components)) console.log(component, secrets.captured);
 */
export function componentSecrets(
  components: readonly { name: string; kind: string; info: ComponentInfo }[],
): ComponentSecretsSummary[] {
  return components
    .filter(
      (component) =>
        (component.info.secrets?.captured.length ?? 0) > 0 ||
        (component.info.secrets?.notCaptured.length ?? 0) > 0,
    )
    .map((component) => ({
      component: component.name,
      kind: component.kind,
      secrets: component.info.secrets!,
    }));
}

/** A note in a line: `what (path, path, … and N more)`. */
export function describeSecret(note: SecretNote): string {
  const paths = note.paths ?? [];
  if (paths.length === 0) return note.what;
  const more = (note.count ?? paths.length) - Math.min(paths.length, 3);
  return `${note.what} (${paths.slice(0, 3).join(', ')}${more > 0 ? ` and ${more} more` : ''})`;
}

/**
 * Adds an entry that says it holds a secret (`entry.secret`) to `info.secrets.captured`: to the
 * note with the same kind and `what`, or a new one. Lists its path up to
 * {@link SECRET_PATHS_LISTED}, then only counts.
 */
export function recordSecretEntry(info: ComponentInfo, entry: Entry): void {
  const secret = entry.secret;
  if (!secret) return;
  info.secrets ??= { captured: [], notCaptured: [] };
  let note = info.secrets.captured.find((item) => item.kind === secret.kind && item.what === secret.what);
  if (!note) {
    note = { kind: secret.kind, what: secret.what, paths: [] };
    info.secrets.captured.push(note);
  }
  note.paths ??= [];
  const count = (note.count ?? note.paths.length) + 1;
  if (note.paths.length < SECRET_PATHS_LISTED) note.paths.push(entry.path);
  if (count > note.paths.length) note.count = count;
}
