import { isRecord } from '@bk/core';

/** A JSON object as Grafana's API returns it. */
export type Item = Record<string, unknown>;

/** Contact point settings Grafana read back in place of a secret. */
export const REDACTED = '[REDACTED]';

/** A folder as the backup records it: uid, title and parent (nested folders). */
export interface FolderRecord {
  uid: string;
  title: string;
  parentUid?: string;
}

/** A data source whose `secureJsonData` Grafana would not hand out. */
export interface DatasourceSecrets {
  uid: string;
  name: string;
  type: string;
  /** The `secureJsonFields` that were set: their values are not in the backup. */
  fields: string[];
}

/** A contact point whose secure settings Grafana read back as `[REDACTED]`. */
export interface ContactPointSecrets {
  uid: string;
  name: string;
  type: string;
  settings: string[];
}

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

/** `item` without `keys` (server-assigned fields). */
export function without(item: Item, keys: readonly string[]): Item {
  const copy: Item = {};
  for (const [key, value] of Object.entries(item)) if (!keys.includes(key)) copy[key] = value;
  return copy;
}

/** Server-assigned fields of a data source, left out when it is written back or compared. */
export const DATASOURCE_SERVER_FIELDS = [
  'id',
  'orgId',
  'version',
  'readOnly',
  'secureJsonFields',
  'typeLogoUrl',
];
/** Server-assigned fields of an alert rule. */
export const RULE_SERVER_FIELDS = ['id', 'orgID', 'updated', 'provenance'];
/** Server-assigned fields of a mute timing or a template. */
export const NAMED_SERVER_FIELDS = ['version', 'provenance'];
/** Server-assigned fields of a library element (library panel). */
export const LIBRARY_ELEMENT_SERVER_FIELDS = [
  'id',
  'orgId',
  'folderId',
  'version',
  'meta',
  'type',
  'description',
];
/** Server-assigned fields of a dashboard's JSON. */
export const DASHBOARD_SERVER_FIELDS = ['id', 'version'];

/** The secure fields that were set on a data source (`secureJsonFields` entries that are `true`). */
export function secureFieldsOf(datasource: Item): string[] {
  const fields = datasource.secureJsonFields;
  if (!isRecord(fields)) return [];
  return Object.keys(fields)
    .filter((key) => fields[key] === true)
    .sort();
}

/** The settings of a contact point that read back as `[REDACTED]`. */
export function redactedSettingsOf(contactPoint: Item): string[] {
  const settings = contactPoint.settings;
  if (!isRecord(settings)) return [];
  return Object.keys(settings)
    .filter((key) => settings[key] === REDACTED)
    .sort();
}

/** A contact point as it is written back: without the settings Grafana redacted. */
export function postableContactPoint(contactPoint: Item): Item {
  const settings = isRecord(contactPoint.settings) ? contactPoint.settings : {};
  const kept: Item = {};
  for (const [key, value] of Object.entries(settings)) if (value !== REDACTED) kept[key] = value;
  return { ...without(contactPoint, ['provenance']), settings: kept };
}

/** What makes two contact points the same: name, type and the settings that were readable. */
export function contactPointKey(contactPoint: Item): string {
  const postable = postableContactPoint(contactPoint);
  return canonicalJson([
    postable.name,
    postable.type,
    postable.settings,
    postable.disableResolveMessage === true,
  ]);
}

/**
 * Orders folders so that every parent comes before its children (a backup records them that
 * way; this also repairs a hand-edited list). Folders whose parent is not in the list keep it.
 */
export function parentsFirst(folders: readonly FolderRecord[]): FolderRecord[] {
  const byUid = new Map(folders.map((folder) => [folder.uid, folder]));
  const ordered: FolderRecord[] = [];
  const placed = new Set<string>();
  const visit = (folder: FolderRecord, depth: number): void => {
    if (placed.has(folder.uid) || depth > folders.length) return;
    const parent = folder.parentUid === undefined ? undefined : byUid.get(folder.parentUid);
    if (parent) visit(parent, depth + 1);
    placed.add(folder.uid);
    ordered.push(folder);
  };
  for (const folder of folders) visit(folder, 0);
  return ordered;
}

/** The receivers a notification policy tree refers to. */
export function receiversOf(route: unknown): string[] {
  if (!isRecord(route)) return [];
  const found = typeof route.receiver === 'string' ? [route.receiver] : [];
  for (const child of Array.isArray(route.routes) ? route.routes : []) found.push(...receiversOf(child));
  return found;
}

/** Whether a policy tree is the one a fresh Grafana has: no child routes. */
export function isDefaultPolicy(route: unknown): boolean {
  return isRecord(route) && (!Array.isArray(route.routes) || route.routes.length === 0);
}
