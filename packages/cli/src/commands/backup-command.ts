import { resolve } from 'node:path';
import { backup, ConfigError, type IncrementalPlan, planIncremental } from '@bk/core';
import type { Command } from 'commander';
import {
  IDENTITY_FLAG,
  identitiesFrom,
  PASSPHRASE_ENV,
  PASSPHRASE_FLAG,
  passphraseFrom,
  recipientsFrom,
} from '../age-keys.ts';
import type { CommandContext } from '../command-context.ts';
import { formatBytes } from '../format-bytes.ts';
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
import {
  collectValues,
  parseCompression,
  parseCount,
  parseLabel,
  parseLevel,
  parseNameList,
} from '../option-parsers.ts';

interface BackupFlags extends InventoryFlags {
  dryRun?: boolean;
  only?: string[];
  path?: string[];
  fromPortable?: string;
  label?: Record<string, string>;
  level?: number;
  compression?: 'gzip' | 'zstd';
  workers?: number;
  recipient?: string[];
  recipientsFile?: string[];
  requireEncryption?: boolean;
  incremental?: boolean;
  identity?: string[];
  passphraseFile?: string;
}

/** The name of the ad-hoc component `--path` creates. */
export const AD_HOC_COMPONENT = 'files';

/** Picks the config entries `--only` may need; unnamed entries are kept, their name is not known yet. */
export function selectConfigs(configs: ComponentConfig[], only: string[] | undefined): ComponentConfig[] {
  if (!only || only.length === 0) return configs;
  return configs.filter((config) => config.name === undefined || only.includes(config.name));
}

/** Defines `bk backup`. */
export function defineBackupCommand(program: Command, contextOf: (command: Command) => CommandContext): void {
  program
    .command('backup')
    .description('back up the configured components (or --path) into the target')
    .option('--only <names>', 'back up only these components (comma-separated)', parseNameList)
    .option(
      '--path <path>',
      `back up this path (repeatable) as component "${AD_HOC_COMPONENT}" instead of the config's components`,
      collectValues,
    )
    .option(
      '--from-portable <dir>',
      'back up the directory `influxd backup -portable` wrote, as component "influx", instead of the config\'s components',
    )
    .option('--label <key=value>', 'record a label in the manifest (repeatable)', parseLabel)
    .option(
      '--compression <format>',
      'gzip (default: backup_….tar.gz) or zstd (backup_….tar.zst, Node 22.15+)',
      parseCompression,
    )
    .option('--level <n>', 'compression level: gzip 1-9 (default 6), zstd 1-19 (default 3)', parseLevel)
    .option(
      '--workers <n>',
      'blocks compressed at once (default: cores + 1, at most 4; 0: one stream)',
      parseCount,
    )
    .option(
      '--recipient <age1…>',
      "encrypt the backup (archive and manifest, age format) to this public key; repeatable (default: the config's encryption.recipients)",
      collectValues,
    )
    .option(
      '--recipients-file <file>',
      'encrypt to the age1… keys in this file, one a line; repeatable',
      collectValues,
    )
    .option(
      PASSPHRASE_FLAG,
      `encrypt the backup (archive, manifest and entry index) with the passphrase on this file's first line instead of recipients (age -p; scrypt, about 1 s and 256 MiB per object; default: ${PASSPHRASE_ENV}, else the config's encryption.passphraseFile); also reads an encrypted parent with --incremental`,
    )
    .option(
      '--require-encryption',
      "refuse to store a component's secrets (keys, password hashes, Kubernetes Secrets) unencrypted, before anything is written (default: the config's encryption.required)",
    )
    .option(
      '--incremental',
      'components that can (influx, files) back up only what changed since the newest backup holding them, recorded as its parent; the first run takes a full backup',
    )
    .option(
      IDENTITY_FLAG,
      "with --incremental: age identity file to read an encrypted parent; repeatable (default: BK_AGE_IDENTITY, else the config's encryption.identityFile)",
      collectValues,
    )
    .option('--dry-run', 'print what would be backed up (component, hosts, what it reads) and touch nothing')
    .option(...INVENTORY_OPTION)
    .option(...SKIP_OPTION, parseNameList)
    .option(...SSH_KEY_OPTION)
    .option(...KNOWN_HOSTS_OPTION)
    .option(...ACCEPT_NEW_HOST_KEYS_OPTION)
    .action(async (flags: BackupFlags, command: Command) => {
      const context = contextOf(command);
      const inventoryPlan = await inventoryPlanOf(context, flags);
      if (flags.dryRun) {
        const items =
          inventoryPlan?.items ??
          selectConfigs((await context.config()).components, flags.only).map((config) => ({
            component: config.kind,
            name: config.name ?? config.kind,
            kind: config.kind,
            hosts: [] as string[],
            reads: 'as configured',
          }));
        context.printJson({ dryRun: true, components: items, warnings: inventoryPlan?.warnings ?? [] });
        for (const item of items) {
          context.print(`${item.name}  ${item.kind}  ${item.hosts.join(',') || '-'}  ${item.reads}`);
        }
        return;
      }
      const recipients = await recipientsFrom(context, flags.recipient, flags.recipientsFile);
      const passphrase = await passphraseFrom(context, flags.passphraseFile);
      if (passphrase && recipients)
        throw new ConfigError(
          `Give recipients (--recipient, --recipients-file, encryption.recipients) or a passphrase (${passphrase.from}), not both: age allows a passphrase only as the one way to open a file.`,
        );
      if (flags.path && flags.fromPortable !== undefined) {
        throw new ConfigError('Give --path or --from-portable, not both.');
      }
      const configs: ComponentConfig[] = inventoryPlan
        ? inventoryPlan.configs
        : flags.fromPortable
          ? [{ kind: 'influx', name: 'influx', fromPortable: resolve(context.io.cwd, flags.fromPortable) }]
          : flags.path
            ? [
                {
                  kind: 'files',
                  name: AD_HOC_COMPONENT,
                  root: '/',
                  paths: flags.path.map((path) => resolve(context.io.cwd, path)),
                },
              ]
            : selectConfigs((await context.config()).components, flags.only);
      // The inventory's --only and --skip already chose the components, by type or name.
      if (inventoryPlan) flags.only = undefined;
      if (configs.length === 0) {
        throw new ConfigError(
          'Nothing to back up: add "components" to the config file (see --config) or pass --path <path>.',
        );
      }
      const requireEncryption =
        flags.requireEncryption === true || (await context.config()).encryption?.required === true;
      const components = await context.components(configs);
      const storage = await context.storage();
      const prefix = await context.prefix();
      let plan: IncrementalPlan | undefined;
      if (flags.incremental) {
        const identities = await identitiesFrom(context, flags.identity, flags.passphraseFile);
        plan = await planIncremental({
          storage,
          components,
          prefix,
          ...(flags.only ? { only: flags.only } : {}),
          ...(identities ? { identities } : {}),
          signal: context.signal,
        });
        const capable = components
          .filter((component) => typeof component.incremental === 'function')
          .filter((component) => !flags.only || flags.only.includes(component.name))
          .map((component) => component.name);
        if (capable.length === 0) {
          context.note('no selected component can back up incrementally: taking a full backup');
        } else if (plan.parent === null) {
          context.note(
            `no backup in the target holds ${capable.join(', ')} yet: taking a full backup to start the chain`,
          );
        } else {
          context.note(
            `incremental on ${plan.parent}: ${plan.incrementalComponents.join(', ')}${plan.fullComponents.length > 0 ? `; in full: ${plan.fullComponents.join(', ')}` : ''}`,
          );
        }
      }
      const progress = context.progress();
      let result: Awaited<ReturnType<typeof backup>>;
      try {
        result = await backup({
          storage,
          components: plan?.components ?? components,
          prefix,
          ...(plan?.parent ? { parent: plan.parent, incrementalComponents: plan.incrementalComponents } : {}),
          ...(flags.only ? { only: flags.only } : {}),
          ...(flags.label ? { labels: flags.label } : {}),
          ...(flags.level ? { compressionLevel: flags.level } : {}),
          ...(flags.compression ? { compression: flags.compression } : {}),
          ...(flags.workers === undefined ? {} : { compressionWorkers: flags.workers }),
          ...(recipients ? { encryption: { recipients } } : {}),
          ...(passphrase ? { encryption: { passphrase: passphrase.passphrase } } : {}),
          ...(requireEncryption ? { requireEncryption } : {}),
          ...(progress.listener ? { onProgress: progress.listener } : {}),
          signal: context.signal,
        });
      } finally {
        progress.finish();
      }
      const location = await context.location(result.key);
      const { manifest } = result;
      context.printJson({
        name: result.name,
        key: result.key,
        sidecarKey: result.sidecarKey,
        location,
        size: result.size,
        sha256: result.sha256,
        encrypted: manifest.encryption !== null,
        parent: manifest.parent,
        createdAt: manifest.createdAt,
        completedAt: manifest.completedAt,
        components: manifest.components.map((component) => ({
          name: component.name,
          kind: component.kind,
          ...(component.version === undefined ? {} : { version: component.version }),
          incremental: component.incremental === true,
          entries: component.stats.entries,
          bytes: component.stats.bytes,
          ...(component.info.secrets ? { secrets: component.info.secrets } : {}),
        })),
        unencryptedSecrets:
          manifest.encryption === null &&
          manifest.components.some((component) => (component.info.secrets?.captured.length ?? 0) > 0),
      });
      context.print(
        `${result.name}  ${formatBytes(result.size)}  sha256 ${result.sha256}  ${location}${manifest.parent ? `  parent ${manifest.parent}` : ''}`,
      );
    });
}
