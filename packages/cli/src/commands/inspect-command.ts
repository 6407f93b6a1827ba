import {
  type ComponentEntry,
  componentSecrets,
  describeSecret,
  inspectSummary,
  type ManifestEntry,
  manifestEntries,
} from '@bk/core';
import type { Command } from 'commander';
import {
  IDENTITY_ENV,
  IDENTITY_FLAG,
  IDENTITY_HELP,
  identitiesFrom,
  PASSPHRASE_ENV,
  PASSPHRASE_FLAG,
  PASSPHRASE_HELP,
} from '../age-keys.ts';
import type { CommandContext } from '../command-context.ts';
import { formatBytes } from '../format-bytes.ts';
import { formatEntries } from '../format-entries.ts';
import { collectValues } from '../option-parsers.ts';

function describeEntry(component: string, entry: ManifestEntry): string {
  const path = `${component}/${entry.path}`;
  if (entry.type === 'directory') return `${path}/  -  directory`;
  if (entry.type === 'symlink') return `${path}  -  symlink -> ${entry.linkTarget ?? ''}`;
  return `${path}  ${entry.size}  ${entry.sha256 ?? '-'}`;
}

/** Defines `bk inspect [name|latest]`. */
export function defineInspectCommand(
  program: Command,
  contextOf: (command: Command) => CommandContext,
): void {
  program
    .command('inspect')
    .description("show a backup's manifest: components, versions, entries (default: the latest)")
    .argument('[name]', 'a backup name, or "latest"', 'latest')
    .option('--entries', 'list every entry: path, size, sha256')
    .option(IDENTITY_FLAG, IDENTITY_HELP, collectValues)
    .option(PASSPHRASE_FLAG, PASSPHRASE_HELP)
    .action(
      async (
        name: string,
        flags: { entries?: boolean; identity?: string[]; passphraseFile?: string },
        command: Command,
      ) => {
        const context = contextOf(command);
        const identities = await identitiesFrom(context, flags.identity, flags.passphraseFile);
        const storage = await context.storage();
        const seen = await inspectSummary({
          storage,
          name,
          prefix: await context.prefix(),
          ...(identities ? { identities } : {}),
          signal: context.signal,
        });
        if ('summary' in seen) {
          // Encrypted and no key given: what the sidecar keeps in clear, and that the rest is sealed.
          const { summary } = seen;
          context.printJson({ ...summary, sealed: true });
          context.print(summary.name);
          context.print(`  created     ${summary.createdAt}  (completed ${summary.completedAt})`);
          context.print(`  bk          ${summary.bk.version}`);
          context.print(
            `  archive     ${await context.location(summary.archive.key)}  ${formatBytes(summary.archive.size)}  sha256 ${summary.archive.sha256}`,
          );
          context.print(
            summary.encryption.passphrase
              ? '  encrypted   age, with a passphrase'
              : `  encrypted   age, to ${summary.encryption.recipients.join(' ')}`,
          );
          context.print(
            summary.encryption.passphrase
              ? `  contents    encrypted: components, versions, labels, secrets and entries need the passphrase (--passphrase-file or ${PASSPHRASE_ENV})`
              : `  contents    encrypted: components, versions, labels, secrets and entries need a recipient's key (--identity or ${IDENTITY_ENV})`,
          );
          return;
        }
        const { manifest } = seen;
        context.printJson(manifest);
        const entries = manifest.components.reduce((sum, component) => sum + component.stats.entries, 0);
        const bytes = manifest.components.reduce((sum, component) => sum + component.stats.bytes, 0);
        const labels = Object.entries(manifest.labels).map(([key, value]) => `${key}=${value}`);
        context.print(manifest.name);
        context.print(`  created     ${manifest.createdAt}  (completed ${manifest.completedAt})`);
        context.print(`  bk          ${manifest.bk.version}`);
        context.print(
          `  archive     ${await context.location(manifest.archive.key)}  ${formatBytes(manifest.archive.size)}  sha256 ${manifest.archive.sha256}`,
        );
        if (manifest.encryption)
          context.print(
            manifest.encryption.passphrase
              ? '  encrypted   age, with a passphrase'
              : `  encrypted   age, to ${manifest.encryption.recipients.join(' ')}`,
          );
        if (manifest.parent) context.print(`  parent      ${manifest.parent}`);
        if (labels.length > 0) context.print(`  labels      ${labels.join(' ')}`);
        context.print(`  contents    ${formatEntries(entries)}, ${formatBytes(bytes)}`);
        const holding = componentSecrets(manifest.components)
          .filter((item) => item.secrets.captured.length > 0)
          .map((item) => item.component);
        if (holding.length > 0)
          context.print(
            `  secrets     held by ${holding.join(', ')}${manifest.encryption ? ' (encrypted)' : ': stored UNENCRYPTED, readable by anyone who can read the target'}`,
          );
        context.print('  components');
        // The entries come as one stream in component order (read from the entry index of a
        // format-2 backup), never held whole.
        const listed = flags.entries
          ? manifestEntries(storage, manifest, {
              signal: context.signal,
              ...(identities ? { identities } : {}),
            })[Symbol.asyncIterator]()
          : undefined;
        let next: IteratorResult<ComponentEntry> | undefined = await listed?.next();
        for (const component of manifest.components) {
          const version = component.version === undefined ? '' : `  version ${component.version}`;
          context.print(
            `    ${component.name}  (${component.kind})${version}  ${formatEntries(component.stats.entries)}  ${formatBytes(component.stats.bytes)}`,
          );
          for (const note of component.info.notCaptured ?? []) context.print(`      not captured: ${note}`);
          for (const secret of component.info.secrets?.captured ?? [])
            context.print(
              `      secret${manifest.encryption ? '' : ' (stored unencrypted)'}: ${describeSecret(secret)}`,
            );
          for (const secret of component.info.secrets?.notCaptured ?? [])
            context.print(`      secret not captured: ${describeSecret(secret)}`);
          while (listed && next && !next.done && next.value.component === component) {
            context.print(`      ${describeEntry(component.name, next.value.record)}`);
            next = await listed.next();
          }
        }
      },
    );
}
