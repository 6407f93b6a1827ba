import { resolve } from 'node:path';
import { ConfigError, type ConflictPolicy, type Restorer } from '@bk/core';
import { type Command, Option } from 'commander';
import { IDENTITY_FLAG, IDENTITY_HELP, PASSPHRASE_FLAG, PASSPHRASE_HELP } from '../age-keys.ts';
import type { CommandContext } from '../command-context.ts';
import { formatBytes } from '../format-bytes.ts';
import { formatEntries } from '../format-entries.ts';
import {
  ACCEPT_NEW_HOST_KEYS_OPTION,
  INVENTORY_OPTION,
  type InventoryFlags,
  inventoryPlanOf,
  KNOWN_HOSTS_OPTION,
  SKIP_OPTION,
  SSH_KEY_OPTION,
} from '../inventory-options.ts';
import type { ComponentConfig } from '../load-config.ts';
import { collectValues, parseNameList, parseReadConcurrency } from '../option-parsers.ts';
import { resolveBackup, restoreWithProgress } from './restore-with-progress.ts';

interface RestoreFlags extends InventoryFlags {
  identity?: string[];
  passphraseFile?: string;
  only?: string[];
  conflict: ConflictPolicy;
  to?: string;
  readConcurrency?: number;
  force?: boolean;
  chain: boolean;
}

/** Defines `bk restore [name|latest]`. */
export function defineRestoreCommand(
  program: Command,
  contextOf: (command: Command) => CommandContext,
): void {
  program
    .command('restore')
    .description('restore a backup into its components (default: the latest backup)')
    .argument('[name]', 'a backup name, or "latest"', 'latest')
    .option('--only <names>', 'restore only these components (comma-separated)', parseNameList)
    .addOption(
      new Option('--conflict <policy>', 'when data exists in the target: fail, skip or overwrite')
        .choices(['fail', 'skip', 'overwrite'])
        .default('fail'),
    )
    .option('--to <dir>', 'restore every files component into this directory instead of its original place')
    .option(
      '--read-concurrency <n>',
      'ranged requests in flight on a remote store (default 4; memory (n + 1) × 3 MiB; 1 reads one stream)',
      parseReadConcurrency,
    )
    .option(
      '--no-chain',
      'restore only the named backup, not the incremental chain it builds on (by default its parents are restored first, oldest first)',
    )
    .option(IDENTITY_FLAG, IDENTITY_HELP, collectValues)
    .option(PASSPHRASE_FLAG, PASSPHRASE_HELP)
    .option(
      '--force',
      "restore although a component's server version was refused (another major, older than the backup) where a forced restore can work; warns",
    )
    .option(...INVENTORY_OPTION)
    .option(...SKIP_OPTION, parseNameList)
    .option(...SSH_KEY_OPTION)
    .option(...KNOWN_HOSTS_OPTION)
    .option(...ACCEPT_NEW_HOST_KEYS_OPTION)
    .action(async (name: string, flags: RestoreFlags, command: Command) => {
      const context = contextOf(command);
      const plan = await inventoryPlanOf(context, flags);
      const { storage, prefix, identities, manifest } = await resolveBackup(context, name, flags);
      if (plan) {
        // The inventory names the hosts to restore to; --only and --skip chose its components.
        const backedUp = new Set(manifest.components.map((component) => component.name));
        flags.only = plan.configs
          .map((config) => config.name!)
          .filter((configName) => backedUp.has(configName));
        if (flags.only.length === 0) {
          throw new ConfigError(
            `${manifest.name} holds none of the inventory's components (${plan.configs.map((config) => config.name).join(', ')}); it has ${[...backedUp].join(', ')}.`,
          );
        }
      }
      const wanted = new Set(flags.only ?? manifest.components.map((component) => component.name));
      const to = flags.to === undefined ? undefined : resolve(context.io.cwd, flags.to);
      const configs: ComponentConfig[] = (plan ? plan.configs : (await context.config()).components)
        .filter((config) => config.name === undefined || wanted.has(config.name))
        .map((config) =>
          to !== undefined && config.kind === 'files' ? { ...config, restoreTo: to } : config,
        );
      const restorers: Restorer[] = await context.components(configs);
      const configured = new Set(restorers.map((restorer) => restorer.name));
      const unconfigured = manifest.components.filter(
        (component) => wanted.has(component.name) && !configured.has(component.name),
      );
      const adHoc = unconfigured.filter((component) => component.kind === 'files');
      if (to === undefined && adHoc.length > 0) {
        throw new ConfigError(
          `Component "${adHoc[0]!.name}" of ${manifest.name} is not in the config: pass --to <dir> to restore it into a directory, or configure it to restore it in place.`,
        );
      }
      if (to !== undefined) {
        restorers.push(
          ...(await context.components(
            adHoc.map((component) => ({ kind: 'files', name: component.name, paths: ['/'], restoreTo: to })),
          )),
        );
      }
      const { result, entries, bytes, skipped } = await restoreWithProgress(context, {
        storage,
        name: manifest.name,
        restorers,
        conflict: flags.conflict,
        prefix,
        ...(flags.only ? { only: flags.only } : {}),
        ...(flags.readConcurrency ? { readConcurrency: flags.readConcurrency } : {}),
        ...(identities ? { identities } : {}),
        ...(flags.force ? { force: true } : {}),
        chain: flags.chain && manifest.parent !== null,
      });
      const links = result.chain ?? [result];
      context.printJson({
        name: result.name,
        entries,
        bytes,
        skipped,
        components: result.components,
        preflight: result.preflight,
        chain: links.map((link) => ({ name: link.name, components: link.components })),
      });
      if (links.length > 1) {
        for (const link of links.slice(0, -1)) {
          context.print(`restored ${link.name} (chain link): ${Object.keys(link.components).join(', ')}`);
        }
      }
      context.print(
        `restored ${result.name}: ${formatEntries(entries)}, ${formatBytes(bytes)}${skipped ? `, ${skipped} skipped` : ''}`,
      );
    });
}
