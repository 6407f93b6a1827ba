import { isRecord } from '@bk/core';

/** A RabbitMQ definitions document, as `GET /api/definitions[/<vhost>]` returns it. */
export type Definitions = Record<string, unknown>;

/** The object lists of a definitions document, in the order RabbitMQ exports them. */
export const CATEGORIES = [
  'users',
  'vhosts',
  'permissions',
  'topic_permissions',
  'parameters',
  'global_parameters',
  'policies',
  'queues',
  'exchanges',
  'bindings',
] as const;

export type Category = (typeof CATEGORIES)[number];

/** The categories whose existing objects make a restore with conflict `fail` refuse. */
export const FAIL_CATEGORIES: readonly Category[] = ['vhosts', 'users', 'queues', 'exchanges'];

/** Global parameters that name the node's own cluster; never imported onto another node. */
export const NODE_IDENTITY_PARAMETERS = ['internal_cluster_id'];

type Item = Record<string, unknown>;

/** JSON with object keys sorted, so equal values give equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (!isRecord(value)) return value;
  const sorted: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) sorted[key] = sortKeys(value[key]);
  return sorted;
}

/** The items of one category (an empty list when absent or not a list). */
export function itemsOf(definitions: Definitions, category: Category): Item[] {
  const items = definitions[category];
  return Array.isArray(items) ? items.filter(isRecord) : [];
}

/**
 * The identity of an object within its category. `vhost` fills in the vhost of a per-vhost
 * document, whose queues, exchanges and bindings carry none.
 */
export function keyOf(category: Category, item: Item, vhost?: string): string {
  const inVhost = item.vhost ?? vhost;
  switch (category) {
    case 'users':
    case 'vhosts':
    case 'global_parameters':
      return canonicalJson([item.name]);
    case 'permissions':
      return canonicalJson([item.user, inVhost]);
    case 'topic_permissions':
      return canonicalJson([item.user, inVhost, item.exchange]);
    case 'parameters':
      return canonicalJson([inVhost, item.component, item.name]);
    case 'policies':
    case 'queues':
    case 'exchanges':
      return canonicalJson([inVhost, item.name]);
    case 'bindings':
      return canonicalJson([
        inVhost,
        item.source,
        item.destination,
        item.destination_type,
        item.routing_key,
        item.arguments ?? {},
      ]);
  }
}

/** What an object is called in messages, e.g. `queue "q1" in vhost "app"`. */
export function describeItem(category: Category, item: Item, vhost?: string): string {
  const inVhost = JSON.stringify(item.vhost ?? vhost);
  switch (category) {
    case 'users':
      return `user ${JSON.stringify(item.name)}`;
    case 'vhosts':
      return `vhost ${JSON.stringify(item.name)}`;
    case 'queues':
      return `queue ${JSON.stringify(item.name)} in vhost ${inVhost}`;
    case 'exchanges':
      return `exchange ${JSON.stringify(item.name)} in vhost ${inVhost}`;
    default:
      return `${category} ${keyOf(category, item, vhost)}`;
  }
}

/** Keys of every object of `definitions`, per category. */
export function keysOf(definitions: Definitions, vhost?: string): Map<Category, Map<string, string>> {
  const keys = new Map<Category, Map<string, string>>();
  for (const category of CATEGORIES) {
    const byKey = new Map<string, string>();
    for (const item of itemsOf(definitions, category)) {
      byKey.set(keyOf(category, item, vhost), canonicalJson(item));
    }
    keys.set(category, byKey);
  }
  return keys;
}

/**
 * The objects of `backup` (of `categories`, default vhosts, users, queues, exchanges) that exist
 * in `target` with other properties, described for a message. An existing object identical to the backup's is no conflict: importing it changes
 * nothing (the default vhost `/` of a fresh node, for instance).
 */
export function conflictsOf(
  backup: Definitions,
  target: Definitions,
  vhost?: string,
  categories: readonly Category[] = FAIL_CATEGORIES,
): string[] {
  const existing = keysOf(target, vhost);
  const conflicts: string[] = [];
  for (const category of categories) {
    const there = existing.get(category)!;
    for (const item of itemsOf(backup, category)) {
      const found = there.get(keyOf(category, item, vhost));
      if (found !== undefined && found !== canonicalJson(item)) {
        conflicts.push(describeItem(category, item, vhost));
      }
    }
  }
  return conflicts;
}

/**
 * A copy of `backup` holding only the objects `target` does not have (conflict `skip`), and the
 * number of objects left out.
 */
export function withoutExisting(
  backup: Definitions,
  target: Definitions,
  vhost?: string,
): { definitions: Definitions; skipped: number } {
  const existing = keysOf(target, vhost);
  const definitions: Definitions = { ...backup };
  let skipped = 0;
  for (const category of CATEGORIES) {
    if (!Array.isArray(backup[category])) continue;
    const there = existing.get(category)!;
    const kept = itemsOf(backup, category).filter((item) => !there.has(keyOf(category, item, vhost)));
    skipped += itemsOf(backup, category).length - kept.length;
    definitions[category] = kept;
  }
  return { definitions, skipped };
}

/** A copy without the global parameters that identify the source node (`internal_cluster_id`). */
export function withoutNodeIdentity(definitions: Definitions): Definitions {
  if (!Array.isArray(definitions.global_parameters)) return definitions;
  return {
    ...definitions,
    global_parameters: itemsOf(definitions, 'global_parameters').filter(
      (item) => !NODE_IDENTITY_PARAMETERS.includes(String(item.name)),
    ),
  };
}

/** Objects per category, e.g. `{ users: 2, queues: 5 }` (categories present in the document only). */
export function countsOf(definitions: Definitions): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const category of CATEGORIES) {
    if (Array.isArray(definitions[category])) counts[category] = itemsOf(definitions, category).length;
  }
  return counts;
}

/**
 * The document with every list sorted by object identity and every object's keys sorted, so two
 * exports can be compared with deep equality. The version fields are kept; compare without them
 * across versions.
 */
export function sortDefinitions(definitions: Definitions, vhost?: string): Definitions {
  const sorted = sortKeys(definitions) as Definitions;
  for (const category of CATEGORIES) {
    if (!Array.isArray(sorted[category])) continue;
    sorted[category] = itemsOf(sorted, category)
      .map((item) => [keyOf(category, item, vhost), item] as const)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, item]) => item);
  }
  return sorted;
}

/** Every `password_hash` in a document (so error texts can be scrubbed of them). */
export function passwordHashesOf(definitions: Definitions): string[] {
  return itemsOf(definitions, 'users')
    .map((user) => user.password_hash)
    .filter((hash): hash is string => typeof hash === 'string' && hash !== '');
}

/** `text` with every `secret` and any `"password_hash": "…"` value replaced by `[redacted]`. */
export function redact(text: string, secrets: Iterable<string>): string {
  let result = text;
  for (const secret of secrets) {
    if (secret.length >= 4) result = result.split(secret).join('[redacted]');
  }
  return result.replace(/("?password_hash"?\s*[:=,]\s*"?)[^"\s,}\]]+/gi, '$1[redacted]');
}
