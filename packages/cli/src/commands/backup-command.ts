import { resolve } from 'node:path';
import { backup, ConfigError } from '@bk/core';
import type { Command } from 'commander';
import { recipientsFrom } from '../age-keys.ts';
import type { CommandContext } from '../command-context.ts';
import { formatBytes } from '../format-bytes.ts';
import type { ComponentConfig } from '../load-config.ts';
import {
  collectValues,
  parseCompression,
  parseCount,
  parseLabel,
  parseLevel,
  parseNameList,
} from '../option-parsers.ts';

interface BackupFlags {
  only?: string[];
  path?: string[];
  label?: Record<string, string>;
  level?: number;
  compression?: 'gzip' | 'zstd';
  workers?: number;
  recipient?: string[];
  recipientsFile?: string[];
  requireEncryption?: boolean;
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
      '--require-encryption',
      "refuse to store a component's secrets (keys, password hashes, Kubernetes Secrets) unencrypted, before anything is written (default: the config's encryption.required)",
    )
    .action(async (flags: BackupFlags, command: Command) => {
      const context = contextOf(command);
      const recipients = await recipientsFrom(context, flags.recipient, flags.recipientsFile);
      const configs: ComponentConfig[] = flags.path
        ? [
            {
              kind: 'files',
              name: AD_HOC_COMPONENT,
              root: '/',
              paths: flags.path.map((path) => resolve(context.io.cwd, path)),
            },
          ]
        : selectConfigs((await context.config()).components, flags.only);
      if (configs.length === 0) {
        throw new ConfigError(
          'Nothing to back up: add "components" to the config file (see --config) or pass --path <path>.',
        );
      }
      const requireEncryption =
        flags.requireEncryption === true || (await context.config()).encryption?.required === true;
      const components = await context.components(configs);
      const storage = await context.storage();
      const progress = context.progress();
      let result: Awaited<ReturnType<typeof backup>>;
      try {
        result = await backup({
          storage,
          components,
          prefix: await context.prefix(),
          ...(flags.only ? { only: flags.only } : {}),
          ...(flags.label ? { labels: flags.label } : {}),
          ...(flags.level ? { compressionLevel: flags.level } : {}),
          ...(flags.compression ? { compression: flags.compression } : {}),
          ...(flags.workers === undefined ? {} : { compressionWorkers: flags.workers }),
          ...(recipients ? { encryption: { recipients } } : {}),
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
        createdAt: manifest.createdAt,
        completedAt: manifest.completedAt,
        components: manifest.components.map((component) => ({
          name: component.name,
          kind: component.kind,
          ...(component.version === undefined ? {} : { version: component.version }),
          entries: component.stats.entries,
          bytes: component.stats.bytes,
          ...(component.info.secrets ? { secrets: component.info.secrets } : {}),
        })),
        unencryptedSecrets:
          manifest.encryption === null &&
          manifest.components.some((component) => (component.info.secrets?.captured.length ?? 0) > 0),
      });
      context.print(`${result.name}  ${formatBytes(result.size)}  sha256 ${result.sha256}  ${location}`);
    });
}
