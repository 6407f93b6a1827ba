import { resolve } from 'node:path';
import type { CommandContext } from './command-context.ts';
import { type InventoryPlan, planInventory, readInventory } from './inventory.ts';

/** The flags `--inventory` brings to `bk backup` and `bk restore`. */
export interface InventoryFlags {
  inventory?: string;
  only?: string[];
  skip?: string[];
  sshKey?: string;
  knownHosts?: string;
  acceptNewHostKeys?: boolean;
}

/** The `--inventory` option and its companions, for `.option(...)` in `bk backup` and `bk restore`. */
export const INVENTORY_OPTION = [
  '-b, --inventory <file>',
  "take the components from this Ansible inventory (INI or YAML) instead of the config's",
] as const;
export const SKIP_OPTION = [
  '--skip <components>',
  'with --inventory: leave out these components (comma-separated)',
] as const;
export const SSH_KEY_OPTION = [
  '--ssh-key <file>',
  'with --inventory: the SSH private key for hosts without ansible_ssh_private_key_file',
] as const;
export const KNOWN_HOSTS_OPTION = [
  '--known-hosts <file>',
  'with --inventory: the known_hosts file host keys are checked against',
] as const;
export const ACCEPT_NEW_HOST_KEYS_OPTION = [
  '--accept-new-host-keys',
  'with --inventory: accept hosts missing from known_hosts and record their keys',
] as const;

/**
 * Reads the inventory and plans its components (with `--only`/`--skip` by component type or
 * name), writing each warning to stderr. Undefined without `--inventory`.
 */
export async function inventoryPlanOf(
  context: CommandContext,
  flags: InventoryFlags,
): Promise<InventoryPlan | undefined> {
  if (flags.inventory === undefined) return undefined;
  const inventory = await readInventory(resolve(context.io.cwd, flags.inventory));
  const plan = planInventory(inventory, {
    ...(flags.only ? { only: flags.only } : {}),
    ...(flags.skip ? { skip: flags.skip } : {}),
    ssh: {
      ...(flags.sshKey ? { privateKeyPath: resolve(context.io.cwd, flags.sshKey) } : {}),
      ...(flags.knownHosts ? { knownHostsPath: resolve(context.io.cwd, flags.knownHosts) } : {}),
      ...(flags.acceptNewHostKeys ? { acceptNewHostKey: true } : {}),
    },
  });
  for (const warning of plan.warnings) context.note(`bk: warning: ${warning}`);
  return plan;
}
