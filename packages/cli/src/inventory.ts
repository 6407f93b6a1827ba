import { readFile } from 'node:fs/promises';
import { ConfigError, isRecord } from '@bk/core';
import { parse as parseYaml } from 'yaml';
import type { ComponentConfig } from './load-config.ts';

/** Variables of a host or group, as the inventory gives them. */
export type InventoryVars = Record<string, unknown>;

interface InventoryGroup {
  hosts: string[];
  children: string[];
  vars: InventoryVars;
}

/** An Ansible inventory: groups (with `all`), their hosts, children and variables, and host variables. */
export interface Inventory {
  groups: Map<string, InventoryGroup>;
  hostVars: Map<string, InventoryVars>;
}

/** One host of a group, with its merged variables and the address to reach it. */
export interface InventoryHost {
  name: string;
  /** `ansible_host`, else the inventory name. */
  address: string;
  vars: InventoryVars;
}

/** One line of the plan: a component, where it runs, what it reads. */
export interface InventoryPlanItem {
  component: string;
  name: string;
  kind: string;
  group: string;
  hosts: string[];
  reads: string;
}

/** What `--inventory` backs up: the component configs, the plan and the warnings. */
export interface InventoryPlan {
  configs: ComponentConfig[];
  items: InventoryPlanItem[];
  warnings: string[];
}

/** SSH settings the command line gives for every host (inventory variables win per host). */
export interface InventorySshDefaults {
  privateKeyPath?: string;
  knownHostsPath?: string;
  acceptNewHostKey?: boolean;
}

function group(inventory: Inventory, name: string): InventoryGroup {
  let found = inventory.groups.get(name);
  if (!found) {
    found = { hosts: [], children: [], vars: {} };
    inventory.groups.set(name, found);
  }
  return found;
}

/** `"quoted value"`, `'x'`, numbers and booleans as Ansible's INI reader takes them. */
function iniValue(raw: string): unknown {
  if (/^".*"$|^'.*'$/.test(raw)) return raw.slice(1, -1);
  if (/^-?\d+$/.test(raw)) return Number(raw);
  if (/^(true|yes)$/i.test(raw)) return true;
  if (/^(false|no)$/i.test(raw)) return false;
  return raw;
}

/** `key=value key2="a b"` → vars. */
function iniPairs(text: string, where: string): InventoryVars {
  const vars: InventoryVars = {};
  for (const match of text.matchAll(/([A-Za-z_][\w.]*)=("[^"]*"|'[^']*'|\S+)/g)) {
    vars[match[1]!] = iniValue(match[2]!);
  }
  const rest = text.replace(/([A-Za-z_][\w.]*)=("[^"]*"|'[^']*'|\S+)/g, '').trim();
  if (rest !== '') throw new ConfigError(`${where}: cannot read "${rest}" (expected key=value pairs).`);
  return vars;
}

/** `web[01:03].example.com` → web01…web03 (numeric ranges, as Ansible expands them). */
function expandHost(pattern: string): string[] {
  const match = /^(.*)\[(\d+):(\d+)\](.*)$/.exec(pattern);
  if (!match) return [pattern];
  const [, head, from, to, tail] = match as unknown as [string, string, string, string, string];
  const names: string[] = [];
  for (let index = Number(from); index <= Number(to); index += 1) {
    names.push(`${head}${String(index).padStart(from.length, '0')}${tail}`);
  }
  return names.flatMap(expandHost);
}

/** Reads an INI inventory (`[group]`, `[group:vars]`, `[group:children]`, host lines with variables). */
export function parseIniInventory(text: string, file: string): Inventory {
  const inventory: Inventory = { groups: new Map(), hostVars: new Map() };
  group(inventory, 'all');
  let section = 'ungrouped';
  let mode: 'hosts' | 'vars' | 'children' = 'hosts';
  text.split('\n').forEach((raw, index) => {
    const line = raw.replace(/\s[#;].*$/, '').trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    const where = `${file}:${index + 1}`;
    const header = /^\[([^\]:]+)(?::(vars|children))?\]$/.exec(line);
    if (header) {
      section = header[1]!;
      mode = (header[2] as 'vars' | 'children' | undefined) ?? 'hosts';
      group(inventory, section);
      return;
    }
    if (mode === 'vars') {
      const pair = /^([A-Za-z_][\w.]*)\s*=\s*(.*)$/.exec(line);
      if (!pair)
        throw new ConfigError(`${where}: expected "name=value" in [${section}:vars], got "${line}".`);
      group(inventory, section).vars[pair[1]!] = iniValue(pair[2]!.trim());
      return;
    }
    if (mode === 'children') {
      group(inventory, section).children.push(line);
      group(inventory, line);
      return;
    }
    const [pattern, ...rest] = line.split(/\s+/);
    const vars = iniPairs(rest.join(' '), where);
    for (const host of expandHost(pattern!)) {
      group(inventory, section).hosts.push(host);
      inventory.hostVars.set(host, { ...inventory.hostVars.get(host), ...vars });
    }
  });
  return inventory;
}

/** Reads a YAML inventory (`all: { hosts, vars, children: { group: { hosts, vars, children } } }`). */
export function parseYamlInventory(text: string, file: string): Inventory {
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (error) {
    throw new ConfigError(`${file}: not valid YAML: ${(error as Error).message}`, { cause: error });
  }
  if (!isRecord(document))
    throw new ConfigError(`${file}: a YAML inventory must be a mapping of groups (e.g. "all:").`);
  const inventory: Inventory = { groups: new Map(), hostVars: new Map() };
  group(inventory, 'all');
  const walk = (name: string, body: unknown) => {
    const target = group(inventory, name);
    if (body === null || body === undefined) return;
    if (!isRecord(body))
      throw new ConfigError(`${file}: group "${name}" must be a mapping (hosts, vars, children).`);
    for (const key of Object.keys(body)) {
      if (!['hosts', 'vars', 'children'].includes(key)) {
        throw new ConfigError(
          `${file}: group "${name}" has "${key}"; a group holds only hosts, vars and children.`,
        );
      }
    }
    if (isRecord(body.vars)) Object.assign(target.vars, body.vars);
    if (isRecord(body.hosts)) {
      for (const [pattern, vars] of Object.entries(body.hosts)) {
        for (const host of expandHost(pattern)) {
          target.hosts.push(host);
          inventory.hostVars.set(host, { ...inventory.hostVars.get(host), ...(isRecord(vars) ? vars : {}) });
        }
      }
    }
    if (isRecord(body.children)) {
      for (const [child, childBody] of Object.entries(body.children)) {
        target.children.push(child);
        walk(child, childBody);
      }
    }
  };
  for (const [name, body] of Object.entries(document)) walk(name, body);
  return inventory;
}

/**
 * Reads an inventory file: YAML when it ends in `.yml`/`.yaml` or starts as a YAML mapping
 * (`all:`, `---`), INI otherwise.
 *
 * @throws {ConfigError} when the file cannot be read or parsed, naming the file (and line for INI).
 */
export async function readInventory(path: string): Promise<Inventory> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`Cannot read the inventory "${path}": ${(error as Error).message}`, {
      cause: error,
    });
  }
  const yaml = /\.ya?ml$/i.test(path) || /^(---|[\w-]+:\s*$)/m.test(text.trimStart().split('\n')[0] ?? '');
  return yaml ? parseYamlInventory(text, path) : parseIniInventory(text, path);
}

/** Every host of a group and of its children, each once, in order. */
function hostsOf(inventory: Inventory, name: string, seen = new Set<string>()): string[] {
  if (seen.has(name)) return [];
  seen.add(name);
  const found = inventory.groups.get(name);
  if (!found) return [];
  const hosts = [...found.hosts];
  for (const child of found.children) hosts.push(...hostsOf(inventory, child, seen));
  return [...new Set(hosts)];
}

/** A host's variables: `all`'s, then each group's that holds it (parents before children), then its own. */
function hostVars(inventory: Inventory, host: string): InventoryVars {
  const merged: InventoryVars = { ...inventory.groups.get('all')?.vars };
  for (const [name, found] of inventory.groups) {
    if (name === 'all') continue;
    if (hostsOf(inventory, name).includes(host)) Object.assign(merged, found.vars);
  }
  return { ...merged, ...inventory.hostVars.get(host) };
}

/** What one inventory group becomes. */
interface ComponentMapping {
  /** The component's type, as `--skip` and `--only` name it. */
  component: string;
  /** Inventory group names that mean this component. */
  groups: readonly string[];
  /** One config for the whole group (`cluster`) or one per host. */
  per: 'cluster' | 'host';
  build(hosts: InventoryHost[], ssh: InventorySshDefaults): Omit<ComponentConfig, 'name'>;
  reads(config: ComponentConfig): string;
}

const str = (value: unknown, fallback: string): string =>
  typeof value === 'string' && value !== '' ? value : typeof value === 'number' ? String(value) : fallback;
const num = (value: unknown, fallback: number): number =>
  typeof value === 'number'
    ? value
    : typeof value === 'string' && /^\d+$/.test(value)
      ? Number(value)
      : fallback;
const list = (value: unknown): string[] | undefined =>
  Array.isArray(value)
    ? value.map(String)
    : typeof value === 'string' && value !== ''
      ? value.split(',').map((item) => item.trim())
      : undefined;

/** The ssh component settings of a host: address, port, user, key, known_hosts. */
function sshOf(host: InventoryHost, defaults: InventorySshDefaults): Record<string, unknown> {
  const vars = host.vars;
  const key = vars.ansible_ssh_private_key_file ?? vars.ansible_private_key_file ?? defaults.privateKeyPath;
  const knownHosts = vars.bk_known_hosts_file ?? defaults.knownHostsPath;
  return {
    kind: 'ssh',
    host: host.address,
    ...(vars.ansible_port === undefined ? {} : { port: num(vars.ansible_port, 22) }),
    ...(vars.ansible_user === undefined ? {} : { username: str(vars.ansible_user, 'root') }),
    ...(key === undefined ? {} : { privateKeyPath: String(key) }),
    ...(knownHosts === undefined ? {} : { knownHostsPath: String(knownHosts) }),
    ...(defaults.acceptNewHostKey ? { acceptNewHostKey: true } : {}),
  };
}

/** Kubeadm files on a master, below `bk_kubernetes_root` (default `/`). */
export const KUBERNETES_MASTER_PATHS: readonly string[] = [
  '/etc/kubernetes/pki',
  '/etc/kubernetes/manifests',
  '/etc/kubernetes/admin.conf',
  '/etc/kubernetes/controller-manager.conf',
  '/etc/kubernetes/scheduler.conf',
  '/etc/kubernetes/kubelet.conf',
  '/etc/kubernetes/kubeadm-config.yaml',
  '/var/lib/kubelet/config.yaml',
  '/var/lib/kubelet/kubeadm-flags.env',
];

const url = (host: InventoryHost, variable: string, port: number, scheme = 'http') =>
  str(host.vars[variable], `${scheme}://${host.address}:${port}`);

/**
 * The inventory groups bk knows and the component each becomes (documented in the CLI README).
 * Variables of the group or host override the defaults.
 */
export const INVENTORY_COMPONENTS: readonly ComponentMapping[] = [
  {
    component: 'kubernetes-master',
    groups: ['kube_control_plane', 'kube-master', 'kube_master', 'masters', 'k8s_masters'],
    per: 'host',
    build: ([host], ssh) => {
      const root = str(host!.vars.bk_kubernetes_root, '/').replace(/\/+$/, '');
      const paths = list(host!.vars.bk_kubernetes_paths) ?? [...KUBERNETES_MASTER_PATHS];
      return { ...sshOf(host!, ssh), kind: 'ssh', paths: paths.map((path) => `${root}${path}`) };
    },
    reads: (config) => `over SSH: ${(config.paths as string[]).join(', ')}`,
  },
  {
    component: 'etcd',
    groups: ['etcd'],
    per: 'cluster',
    build: (hosts) => ({
      kind: 'etcd',
      endpoints: hosts.map(
        (host) =>
          `${str(host.vars.etcd_scheme, 'http')}://${host.address}:${num(host.vars.etcd_client_port, 2379)}`,
      ),
    }),
    reads: (config) => `snapshot from ${(config.endpoints as string[]).join(', ')}`,
  },
  {
    component: 'zookeeper',
    groups: ['zookeeper', 'zk'],
    per: 'cluster',
    build: (hosts) => ({
      kind: 'zookeeper',
      connectString: hosts
        .map((host) => `${host.address}:${num(host.vars.zookeeper_client_port, 2181)}`)
        .join(','),
    }),
    reads: (config) => `znode tree from ${String(config.connectString)}`,
  },
  {
    component: 'postgres',
    groups: ['postgres', 'postgresql', 'pg'],
    per: 'host',
    build: ([host]) => {
      const databases = list(host!.vars.postgresql_databases);
      return {
        kind: 'postgres',
        host: host!.address,
        port: num(host!.vars.postgresql_port, 5432),
        user: str(host!.vars.postgresql_user, 'postgres'),
        ...(host!.vars.postgresql_password === undefined
          ? {}
          : { password: String(host!.vars.postgresql_password) }),
        ...(databases ? { databases } : {}),
        ...(host!.vars.postgresql_bin === undefined ? {} : { pgBin: String(host!.vars.postgresql_bin) }),
      };
    },
    reads: (config) =>
      `pg_dump of ${config.databases ? (config.databases as string[]).join(', ') : 'every database'} on ${String(config.host)}:${String(config.port)}`,
  },
  {
    component: 'haproxy',
    groups: ['haproxy', 'lb', 'loadbalancer', 'balancers'],
    per: 'host',
    build: ([host], ssh) => {
      const dir = str(host!.vars.haproxy_config_dir, '/etc/haproxy');
      const check = host!.vars.bk_haproxy_check !== false;
      return {
        ...sshOf(host!, ssh),
        paths: [dir],
        ...(check
          ? { commands: [{ entry: 'haproxy-check.txt', command: `haproxy -c -f ${dir}/haproxy.cfg 2>&1` }] }
          : {}),
      };
    },
    reads: (config) =>
      `over SSH: ${(config.paths as string[]).join(', ')}${config.commands ? ' and `haproxy -c`' : ''}`,
  },
  {
    component: 'prometheus',
    groups: ['prometheus'],
    per: 'host',
    build: ([host]) => ({
      kind: 'prometheus',
      url: url(host!, 'prometheus_url', num(host!.vars.prometheus_port, 9090)),
    }),
    reads: (config) => `TSDB snapshot, config and rules from ${String(config.url)}`,
  },
  {
    component: 'alertmanager',
    groups: ['alertmanager'],
    per: 'host',
    build: ([host]) => ({
      kind: 'prometheus',
      service: 'alertmanager',
      url: url(host!, 'alertmanager_url', num(host!.vars.alertmanager_port, 9093)),
    }),
    reads: (config) => `configuration and silences from ${String(config.url)}`,
  },
  {
    component: 'grafana',
    groups: ['grafana'],
    per: 'host',
    build: ([host]) => ({
      kind: 'grafana',
      url: url(host!, 'grafana_url', num(host!.vars.grafana_port, 3000)),
      ...(host!.vars.grafana_token === undefined
        ? {
            username: str(host!.vars.grafana_admin_user, 'admin'),
            password: str(host!.vars.grafana_admin_password, ''),
          }
        : { token: String(host!.vars.grafana_token) }),
    }),
    reads: (config) => `dashboards, folders, data sources and alerting from ${String(config.url)}`,
  },
  {
    component: 'rabbitmq',
    groups: ['rabbitmq'],
    per: 'host',
    build: ([host]) => ({
      kind: 'rabbitmq',
      url: url(host!, 'rabbitmq_management_url', num(host!.vars.rabbitmq_management_port, 15672)),
      username: str(host!.vars.rabbitmq_user, 'guest'),
      password: str(host!.vars.rabbitmq_password, 'guest'),
    }),
    reads: (config) => `definitions from ${String(config.url)}`,
  },
  {
    component: 'kafka',
    groups: ['kafka', 'kafka_broker', 'kafka_brokers'],
    per: 'cluster',
    build: (hosts) => ({
      kind: 'kafka',
      brokers: hosts.map((host) => `${host.address}:${num(host.vars.kafka_port, 9092)}`),
    }),
    reads: (config) => `topics, records and group offsets from ${(config.brokers as string[]).join(', ')}`,
  },
  {
    component: 'elasticsearch',
    groups: ['elasticsearch', 'es', 'opensearch'],
    per: 'cluster',
    build: ([host]) => ({
      kind: 'elasticsearch',
      url: url(host!, 'elasticsearch_url', num(host!.vars.elasticsearch_port, 9200)),
    }),
    reads: (config) => `indices from ${String(config.url)}`,
  },
  {
    component: 'kibana',
    groups: ['kibana'],
    per: 'host',
    build: ([host]) => ({ kind: 'kibana', url: url(host!, 'kibana_url', num(host!.vars.kibana_port, 5601)) }),
    reads: (config) => `saved objects from ${String(config.url)}`,
  },
];

/** Groups Ansible and most inventories use for structure, never warned about. */
const STRUCTURAL_GROUPS = new Set(['all', 'ungrouped', 'k8s_cluster', 'k8s-cluster', 'cluster']);

/**
 * The components an inventory lists: each group with a mapping becomes one component (for the
 * group) or one per host, named `<component>` or `<component>-<host>`; `skip` and `only` select
 * by component type or name. A group with hosts and no mapping is named in a warning (unless
 * it only holds mapped groups).
 *
 * @throws {ConfigError} when `only` or `skip` names nothing the inventory has.
 */
export function planInventory(
  inventory: Inventory,
  options: { only?: string[]; skip?: string[]; ssh?: InventorySshDefaults } = {},
): InventoryPlan {
  const items: InventoryPlanItem[] = [];
  const configs: ComponentConfig[] = [];
  const warnings: string[] = [];
  const mappedGroups = new Set<string>();
  for (const mapping of INVENTORY_COMPONENTS) {
    for (const name of mapping.groups) {
      if (!inventory.groups.has(name)) continue;
      mappedGroups.add(name);
      const hosts = hostsOf(inventory, name).map((host) => {
        const vars = hostVars(inventory, host);
        return { name: host, address: str(vars.ansible_host, host), vars };
      });
      if (hosts.length === 0) continue;
      const sets = mapping.per === 'cluster' ? [hosts] : hosts.map((host) => [host]);
      for (const set of sets) {
        const componentName =
          mapping.per === 'cluster' ? mapping.component : `${mapping.component}-${set[0]!.name}`;
        const safeName = componentName.replace(/[^A-Za-z0-9_.-]/g, '-');
        if (configs.some((config) => config.name === safeName)) continue;
        const config = { ...mapping.build(set, options.ssh ?? {}), name: safeName } as ComponentConfig;
        configs.push(config);
        items.push({
          component: mapping.component,
          name: safeName,
          kind: config.kind,
          group: name,
          hosts: set.map((host) => host.name),
          reads: mapping.reads(config),
        });
      }
    }
  }
  const holdsMapped = (name: string, seen = new Set<string>()): boolean => {
    if (mappedGroups.has(name)) return true;
    if (seen.has(name)) return false;
    seen.add(name);
    const children = inventory.groups.get(name)?.children ?? [];
    return children.length > 0 && children.every((child) => holdsMapped(child, seen));
  };
  for (const [name, found] of inventory.groups) {
    if (STRUCTURAL_GROUPS.has(name) || holdsMapped(name)) continue;
    if (found.hosts.length === 0 && found.children.length === 0) continue;
    const hosts = hostsOf(inventory, name);
    const mappedElsewhere =
      hosts.length > 0 && found.children.length > 0 && found.children.some((child) => holdsMapped(child));
    if (mappedElsewhere) continue;
    warnings.push(
      `inventory group "${name}" (${hosts.join(', ') || 'no hosts'}) maps to no component bk knows; it is not backed up. Known groups: ${INVENTORY_COMPONENTS.map((mapping) => mapping.groups[0]).join(', ')}.`,
    );
  }
  const matches = (item: InventoryPlanItem, names: string[]) =>
    names.includes(item.component) || names.includes(item.name);
  for (const [flag, names] of [
    ['--only', options.only],
    ['--skip', options.skip],
  ] as const) {
    for (const name of names ?? []) {
      if (!items.some((item) => matches(item, [name]))) {
        throw new ConfigError(
          `${flag} ${name}: the inventory has no such component; it has ${[...new Set(items.flatMap((item) => [item.component, item.name]))].join(', ') || 'none'}.`,
        );
      }
    }
  }
  const kept = items.filter(
    (item) =>
      (!options.only || matches(item, options.only)) && !(options.skip && matches(item, options.skip)),
  );
  const keptNames = new Set(kept.map((item) => item.name));
  return { configs: configs.filter((config) => keptNames.has(config.name!)), items: kept, warnings };
}
