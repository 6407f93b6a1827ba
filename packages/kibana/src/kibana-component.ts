import {
  type BackupContext,
  type ByteStream,
  type Component,
  ComponentError,
  type ComponentInfo,
  ConfigError,
  ConflictError,
  checkComponentConfig,
  checkComponentName,
  collect,
  type Entry,
  fromBytes,
  isRecord,
  type OperationContext,
  type PreflightContext,
  type PreflightResult,
  type RestoreContext,
  type RestoreReport,
  throwIfAborted,
} from '@bk/core';
import {
  canonicalJson,
  checkKibanaUrl,
  compareVersions,
  KibanaApi,
  type KibanaAuth,
  messageOf,
} from './kibana-api.ts';

/**
 * Options of a {@link KibanaComponent}.
 *
 * @example
 * const options: KibanaOptions = {
 *   url: 'https://kibana.example.com:5601',
 *   username: 'bk',
 *   password: process.env.KIBANA_PASSWORD!,
 * };
 */
export interface KibanaOptions {
  /** The component's name, unique within one backup; default `kibana`. */
  name?: string;
  /** Base URL of Kibana, e.g. `http://127.0.0.1:5601` (a `server.basePath` is kept); no credentials in it. */
  url: string;
  /** Basic auth user (with `password`), e.g. a user with the `kibana_admin` role. */
  username?: string;
  /** Basic auth password; never logged. */
  password?: string;
  /** An Elasticsearch API key (the base64 `encoded` form), sent as `Authorization: ApiKey`; never logged. */
  apiKey?: string;
  /** Space ids to back up; default every space. */
  spaces?: string[];
  /**
   * Saved object types to back up; default {@link DEFAULT_TYPES}. Types the Kibana does not know
   * (or will not export) are left out and named in the manifest.
   */
  types?: string[];
  /**
   * Objects per `_find` page and per `_export` / `_import` request, default 1 000: keep it at or
   * below Kibana's `savedObjects.maxImportExportSize` (default 10 000).
   */
  batchSize?: number;
  /** Time each request may take, answer and body, in ms; default 60 000. */
  timeoutMs?: number;
}

/** Fields of a Kibana config entry for the `bk` CLI. */
export const CONFIG_FIELDS = [
  'kind',
  'name',
  'url',
  'username',
  'password',
  'apiKey',
  'spaces',
  'types',
  'batchSize',
  'timeoutMs',
];

/**
 * The saved object types backed up by default: the ones Kibana has long made importable and
 * exportable (data views, searches, visualizations, dashboards, Lens, maps, Canvas, queries,
 * tags, short URLs, connectors, rules, graph workspaces, advanced settings).
 */
export const DEFAULT_TYPES = [
  'config',
  'index-pattern',
  'tag',
  'query',
  'url',
  'search',
  'visualization',
  'lens',
  'map',
  'dashboard',
  'canvas-element',
  'canvas-workpad',
  'graph-workspace',
  'action',
  'alert',
];

/** The first entry: the spaces, as the spaces API returns them. */
export const SPACES_ENTRY = 'spaces.json';
/** Then one entry per space: `objects/<space>.ndjson`, an export without its details line. */
export const OBJECTS_PREFIX = 'objects/';

/** Largest entry read back on restore. */
const ENTRY_LIMIT = 256 * 1024 * 1024;
/** `_find` cannot page past this many hits of one query. */
const FIND_WINDOW = 10_000;

/** Attributes Kibana changes on a connector or rule by itself, or that an export clears. */
const VOLATILE_ATTRIBUTES: Record<string, string[]> = {
  action: ['isMissingSecrets'],
  alert: [
    'enabled',
    'apiKey',
    'apiKeyOwner',
    'apiKeyCreatedByUser',
    'executionStatus',
    'monitoring',
    'lastRun',
    'nextRun',
    'running',
    'scheduledTaskId',
    'updatedAt',
    'updatedBy',
    'revision',
    'snoozeSchedule',
  ],
};

const NOT_CAPTURED = [
  "secrets of connectors (passwords, tokens, keys: Kibana's export leaves them out) — each connector is listed in details.connectorsWithoutSecrets; re-enter them after a restore",
  'rules are exported disabled and without their API key: enable each again after a restore (listed in details.rulesExportedDisabled)',
  'saved object types not in "types", objects of hidden types (Fleet, security solution, …), and anything outside saved objects: users and roles (Elasticsearch), Kibana settings in kibana.yml, reporting files, uploaded files',
];

/** A connector whose secrets the export left out. */
export interface ConnectorSecrets {
  space: string;
  id: string;
  name: string;
  actionTypeId: string;
}

interface SavedObjectRecord {
  type: string;
  id: string;
  attributes?: Record<string, unknown>;
  references?: unknown[];
  [key: string]: unknown;
}

interface Described {
  version: string;
  spaces: Record<string, unknown>[];
  types: string[];
  refusedTypes: string[];
  counts: Record<string, Record<string, number>>;
  connectors: ConnectorSecrets[];
  rules: { space: string; id: string; name: string }[];
}

/**
 * Backs up Kibana's saved objects, space by space, through the saved objects export API
 * (NDJSON, with `includeReferencesDeep`), paging with `_find` and exporting in batches so no
 * request exceeds `savedObjects.maxImportExportSize`. Restore creates missing spaces and imports
 * each space's objects with bk's conflict policy. Connectors come without their secrets and rules
 * disabled, as Kibana exports them; both are listed in the manifest and again on restore.
 *
 * @example
 * import { backup } from '@bk/core';
 * import { kibana } from '@bk/kibana';
 *
 * await backup({ storage, components: [kibana({ url: 'http://127.0.0.1:5601', username, password })] });
 */
export class KibanaComponent implements Component {
  readonly kind = 'kibana' as const;
  readonly name: string;
  /** The options without credentials (safe to log). */
  readonly options: Readonly<Omit<KibanaOptions, 'password' | 'apiKey'>>;
  readonly #api: KibanaApi;
  readonly #spaces: string[] | undefined;
  readonly #types: string[];
  readonly #batchSize: number;
  #described: Described | undefined;

  /**
   * Validates the options; sends no request.
   *
   * @throws {ConfigError} naming the invalid option (never a credential's value).
   */
  constructor(options: KibanaOptions) {
    if (!isRecord(options)) throw new ConfigError('kibana component: the options must be an object.');
    const name = options.name ?? 'kibana';
    if (typeof name !== 'string') throw new ConfigError('kibana component: "name" must be a string.');
    checkComponentName(name);
    const where = `kibana component "${name}"`;
    const url = checkKibanaUrl(options.url, where);
    let auth: KibanaAuth;
    if (options.apiKey !== undefined) {
      if (typeof options.apiKey !== 'string' || options.apiKey === '')
        throw new ConfigError(`${where}: "apiKey" must be a non-empty string.`);
      if (options.username !== undefined || options.password !== undefined)
        throw new ConfigError(`${where}: give either "apiKey" or "username" and "password", not both.`);
      auth = { apiKey: options.apiKey };
    } else if (typeof options.username === 'string' && typeof options.password === 'string') {
      auth = { username: options.username, password: options.password };
    } else {
      throw new ConfigError(
        `${where}: needs "username" and "password" (a user with the kibana_admin role), or "apiKey".`,
      );
    }
    const list = (value: unknown, field: string): string[] | undefined => {
      if (value === undefined) return undefined;
      if (
        !Array.isArray(value) ||
        value.length === 0 ||
        value.some((item) => typeof item !== 'string' || item === '')
      )
        throw new ConfigError(`${where}: "${field}" must be a non-empty list of strings.`);
      return value as string[];
    };
    this.#spaces = list(options.spaces, 'spaces');
    this.#types = list(options.types, 'types') ?? DEFAULT_TYPES;
    const batchSize = options.batchSize ?? 1000;
    if (!Number.isSafeInteger(batchSize) || batchSize < 1 || batchSize > FIND_WINDOW)
      throw new ConfigError(`${where}: "batchSize" must be an integer from 1 to ${FIND_WINDOW}.`);
    this.#batchSize = batchSize;
    const timeoutMs = options.timeoutMs ?? 60_000;
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1)
      throw new ConfigError(`${where}: "timeoutMs" must be a positive integer (milliseconds).`);
    this.name = name;
    const { password: _password, apiKey: _apiKey, ...safe } = options;
    this.options = { ...safe, name, url };
    this.#api = new KibanaApi({ url, auth, component: name, timeoutMs });
  }

  async #version(signal: AbortSignal): Promise<string> {
    const status = await this.#api.get('/api/status', signal);
    return isRecord(status) && isRecord(status.version) && typeof status.version.number === 'string'
      ? status.version.number
      : 'unknown';
  }

  /** Every space (`GET /api/spaces/space`), or the default one where Kibana has no spaces. */
  async #allSpaces(signal: AbortSignal): Promise<Record<string, unknown>[]> {
    const answer = await this.#api.request('GET', '/api/spaces/space', { allow: [404], signal });
    if (answer.status === 404) return [{ id: 'default', name: 'Default' }];
    return Array.isArray(answer.body) ? answer.body.filter(isRecord) : [];
  }

  /** The path prefix of a space: nothing for `default`, `/s/<id>` otherwise. */
  #in(space: string): string {
    return space === 'default' ? '' : `/s/${encodeURIComponent(space)}`;
  }

  /**
   * `_find` of one type in one space, page by page. A type this Kibana refuses (400 naming it:
   * a plugin that is not installed) yields nothing and is added to `refused`.
   */
  async *#find(
    space: string,
    type: string,
    refused: Set<string>,
    signal: AbortSignal,
  ): AsyncGenerator<SavedObjectRecord[]> {
    for (let page = 1; ; page += 1) {
      if (page * this.#batchSize > FIND_WINDOW) {
        throw new ComponentError(
          this.name,
          `space "${space}" holds more than ${FIND_WINDOW - this.#batchSize} saved objects of type "${type}": Kibana's _find cannot page past ${FIND_WINDOW} hits. Lower "batchSize" so that pages reach further (at most ${FIND_WINDOW} objects in all), or leave the type out of "types" and export it from Kibana's UI.`,
        );
      }
      const answer = await this.#api.request(
        'GET',
        `${this.#in(space)}/api/saved_objects/_find?type=${encodeURIComponent(type)}&per_page=${this.#batchSize}&page=${page}&sort_field=updated_at&sort_order=asc`,
        { allow: [400], signal },
      );
      if (answer.status === 400) {
        const message = messageOf(answer.body, answer.text);
        if (!/type/i.test(message))
          throw new ComponentError(
            this.name,
            `GET /api/saved_objects/_find on ${this.#api.url} answered HTTP 400: ${message}`,
          );
        refused.add(type);
        return;
      }
      const body = answer.body;
      const found = isRecord(body) && Array.isArray(body.saved_objects) ? body.saved_objects : [];
      const items = found.filter(isRecord) as SavedObjectRecord[];
      if (items.length > 0) yield items;
      const total = isRecord(body) ? Number(body.total ?? 0) : 0;
      if (items.length < this.#batchSize || page * this.#batchSize >= total) return;
    }
  }

  async #read(signal: AbortSignal): Promise<Described> {
    const version = await this.#version(signal);
    let spaces = await this.#allSpaces(signal);
    if (this.#spaces !== undefined) {
      const known = new Set(spaces.map((space) => String(space.id)));
      const missing = this.#spaces.filter((id) => !known.has(id));
      if (missing.length > 0)
        throw new ConfigError(
          `${this.name}: Kibana at ${this.#api.url} has no space ${missing.map((id) => `"${id}"`).join(', ')}.`,
        );
      spaces = spaces.filter((space) => this.#spaces!.includes(String(space.id)));
    }
    const refused = new Set<string>();
    const counts: Record<string, Record<string, number>> = {};
    const connectors: ConnectorSecrets[] = [];
    const rules: { space: string; id: string; name: string }[] = [];
    for (const space of spaces) {
      const id = String(space.id);
      const perType: Record<string, number> = {};
      for (const type of this.#types) {
        let count = 0;
        for await (const page of this.#find(id, type, refused, signal)) {
          count += page.length;
          for (const object of page) {
            const attributes = isRecord(object.attributes) ? object.attributes : {};
            if (type === 'action')
              connectors.push({
                space: id,
                id: object.id,
                name: String(attributes.name ?? ''),
                actionTypeId: String(attributes.actionTypeId ?? ''),
              });
            if (type === 'alert')
              rules.push({ space: id, id: object.id, name: String(attributes.name ?? '') });
          }
        }
        if (count > 0) perType[type] = count;
      }
      counts[id] = perType;
    }
    const types = this.#types.filter((type) => !refused.has(type));
    return { version, spaces, types, refusedTypes: [...refused], counts, connectors, rules };
  }

  /**
   * Reads Kibana's version, the spaces and, per space and type, how many saved objects there
   * are; names every connector whose secrets the export leaves out and every rule it exports
   * disabled.
   *
   * @throws {ComponentError} when Kibana cannot be reached or refuses the credentials.
   */
  async describe(context: OperationContext): Promise<ComponentInfo> {
    throwIfAborted(context.signal);
    const described = await this.#read(context.signal);
    this.#described = described;
    const notCaptured = [...NOT_CAPTURED];
    if (described.refusedTypes.length > 0)
      notCaptured.push(
        `saved object types this Kibana does not export: ${described.refusedTypes.join(', ')}`,
      );
    for (const connector of described.connectors)
      notCaptured.push(
        `secrets of connector "${connector.name}" (id ${connector.id}, ${connector.actionTypeId}, space ${connector.space}) — re-enter them after a restore`,
      );
    return {
      version: described.version,
      capabilities: {
        incremental: false,
        pointInTime: false,
        consistentSnapshot: false,
        restoreIntoExisting: true,
        selectiveRestore: false,
      },
      notCaptured,
      secrets: {
        captured: [],
        notCaptured: [
          ...(described.connectors.length > 0
            ? [
                {
                  kind: 'credentials' as const,
                  what: `secrets of ${described.connectors.length} connector${described.connectors.length === 1 ? '' : 's'} (${described.connectors
                    .slice(0, 10)
                    .map((connector) => `"${connector.name}"`)
                    .join(
                      ', ',
                    )}${described.connectors.length > 10 ? ', …' : ''}): Kibana does not export them`,
                  count: described.connectors.length,
                },
              ]
            : []),
          ...(described.rules.length > 0
            ? [
                {
                  kind: 'token' as const,
                  what: `API keys of ${described.rules.length} rule${described.rules.length === 1 ? '' : 's'}: exported disabled, each gets a new key when enabled again`,
                  count: described.rules.length,
                },
              ]
            : []),
        ],
      },
      details: {
        format: 'Kibana saved objects export (NDJSON) per space, and spaces.json',
        url: this.#api.url,
        spaces: described.spaces.map((space) => String(space.id)),
        types: described.types,
        counts: described.counts,
        connectorsWithoutSecrets: described.connectors,
        rulesExportedDisabled: described.rules,
      },
    };
  }

  /** `spaces.json`, then `objects/<space>.ndjson` per space, exported batch by batch. */
  async *backup(context: BackupContext): AsyncIterable<Entry> {
    const described = this.#described ?? (await this.#read(context.signal));
    this.#described = undefined;
    const spaces = described.spaces.map((space) => {
      const { _reserved: _ignored, ...rest } = space;
      return rest;
    });
    const bytes = Buffer.from(`${JSON.stringify(spaces, null, 2)}\n`);
    yield { path: SPACES_ENTRY, type: 'file', size: bytes.byteLength, mode: 0o600, body: fromBytes(bytes) };
    for (const space of spaces) {
      const id = String(space.id);
      yield {
        path: `${OBJECTS_PREFIX}${encodeURIComponent(id)}.ndjson`,
        type: 'file',
        mode: 0o600,
        body: this.#exportSpace(id, described.types, context.signal),
      };
    }
  }

  /**
   * One space's objects: `_find` pages of ids, each exported with `includeReferencesDeep`
   * (references first, as Kibana orders an export); an object already written is not written
   * again. Memory: one batch's export, and the set of type:id written.
   */
  async *#exportSpace(space: string, types: string[], signal: AbortSignal): ByteStream {
    const written = new Set<string>();
    for (const type of types) {
      for await (const page of this.#find(space, type, new Set(), signal)) {
        const wanted = page.filter((object) => !written.has(`${object.type}:${object.id}`));
        if (wanted.length === 0) continue;
        const answer = await this.#api.request('POST', `${this.#in(space)}/api/saved_objects/_export`, {
          body: {
            objects: wanted.map((object) => ({ type: object.type, id: object.id })),
            includeReferencesDeep: true,
            excludeExportDetails: false,
          },
          signal,
        });
        let text = '';
        for (const line of answer.text.split('\n')) {
          if (line.trim() === '') continue;
          const parsed = JSON.parse(line) as Record<string, unknown>;
          if (typeof parsed.type !== 'string' || typeof parsed.id !== 'string') continue; // the details line
          const key = `${parsed.type}:${parsed.id}`;
          if (written.has(key)) continue;
          written.add(key);
          text += `${line}\n`;
        }
        if (text !== '') yield Buffer.from(text);
      }
    }
  }

  /**
   * Reads the target's version before anything is written. Kibana imports saved objects only
   * into the same version, a newer minor of the same major, or the next major: an older Kibana,
   * or one two majors ahead, is refused (not forceable: Kibana itself refuses the objects).
   *
   * @throws {ComponentError} when the target cannot be reached.
   */
  async preflight(context: PreflightContext): Promise<PreflightResult> {
    const version = await this.#version(context.signal);
    const from = context.component.version;
    if (from === undefined || from === 'unknown' || version === 'unknown') return { targetVersion: version };
    const sourceMajor = Number.parseInt(from, 10);
    const targetMajor = Number.parseInt(version, 10);
    if (compareVersions(version, from) >= 0 && targetMajor <= sourceMajor + 1)
      return { targetVersion: version };
    return {
      targetVersion: version,
      refusal: {
        reason: `Kibana imports saved objects only into the same version, a newer minor of the same major, or the next major; restore into Kibana ${from} up to ${sourceMajor + 1}.x`,
        forceable: false,
      },
    };
  }

  /**
   * Restores the spaces and their saved objects. Everything is read and compared with the target
   * before anything is written ({@link preflight} has checked Kibana's version): every object
   * that exists in its space. An object the target has with the
   * same content is left alone. One with other content: `fail` → `ConflictError`, nothing
   * written; `skip` → kept; `overwrite` → replaced (`_import?overwrite=true`). Missing spaces are
   * created; existing spaces keep their settings. Connectors come back without secrets and rules
   * disabled: each is named in a `warning` progress event and in the report.
   *
   * @throws {ConflictError} under `fail`, before anything is written.
   * @throws {ComponentError} for an unreadable entry or objects Kibana refuses to import.
   */
  async restore(entries: AsyncIterable<Entry>, context: RestoreContext): Promise<RestoreReport> {
    const signal = context.signal;
    let spaces: Record<string, unknown>[] | undefined;
    const objects = new Map<string, SavedObjectRecord[]>();
    let count = 0;
    let bytes = 0;
    for await (const entry of entries) {
      throwIfAborted(signal);
      if (entry.type !== undefined && entry.type !== 'file') continue;
      count += 1;
      const data = await collect(entry.body ?? fromBytes(new Uint8Array()), ENTRY_LIMIT);
      bytes += data.byteLength;
      const text = Buffer.from(data).toString('utf8');
      if (entry.path === SPACES_ENTRY) {
        const parsed = parseJson(text, entry.path, this.name);
        if (!Array.isArray(parsed))
          throw new ComponentError(this.name, `entry "${entry.path}" is not a list of spaces.`);
        spaces = parsed.filter(isRecord);
      } else if (entry.path.startsWith(OBJECTS_PREFIX) && entry.path.endsWith('.ndjson')) {
        const space = decodeURIComponent(entry.path.slice(OBJECTS_PREFIX.length, -'.ndjson'.length));
        const list: SavedObjectRecord[] = [];
        for (const line of text.split('\n')) {
          if (line.trim() === '') continue;
          const parsed = parseJson(line, entry.path, this.name);
          if (!isRecord(parsed) || typeof parsed.type !== 'string' || typeof parsed.id !== 'string')
            throw new ComponentError(
              this.name,
              `entry "${entry.path}" holds a line that is not a saved object.`,
            );
          list.push(parsed as SavedObjectRecord);
        }
        objects.set(space, list);
      } else {
        throw new ComponentError(this.name, `unexpected entry "${entry.path}" in the backup.`);
      }
    }
    if (spaces === undefined) throw new ComponentError(this.name, `the backup has no ${SPACES_ENTRY}.`);

    const from = context.component.version;

    // Plan: which spaces to create, which objects to import, which conflict.
    const there = new Set((await this.#allSpaces(signal)).map((space) => String(space.id)));
    const conflicts: string[] = [];
    const plans: {
      space: string;
      create?: Record<string, unknown>;
      importing: SavedObjectRecord[];
      unchanged: number;
      skipped: number;
      replacing: number;
    }[] = [];
    for (const space of spaces) {
      const id = String(space.id);
      const list = objects.get(id) ?? [];
      const plan = {
        space: id,
        importing: [] as SavedObjectRecord[],
        unchanged: 0,
        skipped: 0,
        replacing: 0,
        ...(there.has(id) ? {} : { create: space }),
      };
      const existing = new Map<string, SavedObjectRecord>();
      if (there.has(id)) {
        for (let at = 0; at < list.length; at += this.#batchSize) {
          const batch = list
            .slice(at, at + this.#batchSize)
            .map((object) => ({ type: object.type, id: object.id }));
          const answer = await this.#api.request('POST', `${this.#in(id)}/api/saved_objects/_bulk_get`, {
            body: batch,
            signal,
          });
          const found =
            isRecord(answer.body) && Array.isArray(answer.body.saved_objects)
              ? answer.body.saved_objects
              : [];
          for (const item of found.filter(isRecord)) {
            if (item.error === undefined && typeof item.type === 'string' && typeof item.id === 'string')
              existing.set(`${item.type}:${item.id}`, item as SavedObjectRecord);
          }
        }
      }
      for (const object of list) {
        const current = existing.get(`${object.type}:${object.id}`);
        if (current === undefined) plan.importing.push(object);
        else if (contentOf(current) === contentOf(object)) plan.unchanged += 1;
        else if (context.conflict === 'fail')
          conflicts.push(`${object.type} "${titleOf(object)}" (id ${object.id}, space ${id})`);
        else if (context.conflict === 'skip') plan.skipped += 1;
        else {
          plan.importing.push(object);
          plan.replacing += 1;
        }
      }
      plans.push(plan);
    }
    if (conflicts.length > 0) {
      const shown = conflicts.slice(0, 10).join(', ');
      const more = conflicts.length > 10 ? ` and ${conflicts.length - 10} more` : '';
      throw new ConflictError(
        conflicts[0]!,
        `Kibana at ${this.#api.url} already has ${shown}${more} with other content, and the conflict policy is "fail"; nothing was written (restore with "skip" to keep them or "overwrite" to replace them).`,
      );
    }

    const connectors: ConnectorSecrets[] = [];
    const rules: { space: string; id: string; name: string }[] = [];
    const report: Record<string, { created: number; updated: number; unchanged: number; skipped: number }> =
      {};
    const createdSpaces: string[] = [];
    for (const plan of plans) {
      throwIfAborted(signal);
      if (plan.create !== undefined) {
        const { _reserved: _ignored, ...body } = plan.create;
        await this.#api.request('POST', '/api/spaces/space', { body, signal });
        createdSpaces.push(plan.space);
      }
      for (let at = 0; at < plan.importing.length; at += this.#batchSize) {
        const batch = plan.importing.slice(at, at + this.#batchSize);
        const form = new FormData();
        form.append(
          'file',
          new Blob([`${batch.map((object) => JSON.stringify(object)).join('\n')}\n`], {
            type: 'application/ndjson',
          }),
          'export.ndjson',
        );
        const overwrite = context.conflict === 'overwrite';
        const answer = await this.#api.request(
          'POST',
          `${this.#in(plan.space)}/api/saved_objects/_import?overwrite=${overwrite}`,
          { body: form, signal },
        );
        const body = isRecord(answer.body) ? answer.body : {};
        const errors = Array.isArray(body.errors) ? body.errors.filter(isRecord) : [];
        if (errors.length > 0) {
          const described = errors
            .slice(0, 10)
            .map((error) => {
              const detail = isRecord(error.error) ? error.error : {};
              const refs = Array.isArray(detail.references)
                ? ` (${detail.references
                    .filter(isRecord)
                    .map((ref) => `${String(ref.type)} ${String(ref.id)}`)
                    .join(', ')})`
                : '';
              return `${String(error.type)} ${String(error.id)}: ${String(detail.type ?? 'error')}${refs}`;
            })
            .join('; ');
          throw new ComponentError(
            this.name,
            `Kibana at ${this.#api.url} refused ${errors.length} saved object(s) of space "${plan.space}": ${described}. ${at > 0 ? `The first ${at} objects of that space were imported. ` : ''}Objects of other spaces restored before it stay.`,
          );
        }
      }
      for (const object of plan.importing) {
        const attributes = isRecord(object.attributes) ? object.attributes : {};
        if (object.type === 'action')
          connectors.push({
            space: plan.space,
            id: object.id,
            name: String(attributes.name ?? ''),
            actionTypeId: String(attributes.actionTypeId ?? ''),
          });
        if (object.type === 'alert')
          rules.push({ space: plan.space, id: object.id, name: String(attributes.name ?? '') });
      }
      report[plan.space] = {
        created: plan.importing.length - plan.replacing,
        updated: plan.replacing,
        unchanged: plan.unchanged,
        skipped: plan.skipped,
      };
    }
    const warnings = [
      ...connectors.map(
        (connector) =>
          `connector "${connector.name}" (id ${connector.id}, space ${connector.space}) was restored without its secrets: re-enter them in Kibana (Stack Management → Connectors)`,
      ),
      ...rules.map(
        (rule) =>
          `rule "${rule.name}" (id ${rule.id}, space ${rule.space}) was restored disabled: enable it in Kibana`,
      ),
    ];
    for (const message of warnings) context.progress({ type: 'warning', message, component: this.name });
    const skipped = Object.values(report).reduce((sum, each) => sum + each.skipped, 0);
    return {
      entries: count,
      bytes,
      skipped,
      details: {
        conflict: context.conflict,
        createdSpaces,
        spaces: report,
        connectorsWithoutSecrets: connectors,
        rulesRestoredDisabled: rules,
        ...(warnings.length > 0 ? { warnings } : {}),
        ...(from ? { sourceVersion: from } : {}),
      },
    };
  }
}

function parseJson(text: string, path: string, component: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ComponentError(component, `entry "${path}" is not JSON.`, { cause: error });
  }
}

/** What a restore compares: attributes (without what Kibana changes by itself) and references. */
function contentOf(object: SavedObjectRecord): string {
  const attributes = { ...(isRecord(object.attributes) ? object.attributes : {}) };
  for (const key of VOLATILE_ATTRIBUTES[object.type] ?? []) delete attributes[key];
  const references = (Array.isArray(object.references) ? object.references.filter(isRecord) : [])
    .map((reference) => ({ type: reference.type, id: reference.id, name: reference.name }))
    .sort((a, b) => (canonicalJson(a) < canonicalJson(b) ? -1 : 1));
  return canonicalJson({ attributes, references });
}

function titleOf(object: SavedObjectRecord): string {
  const attributes = isRecord(object.attributes) ? object.attributes : {};
  return String(attributes.title ?? attributes.name ?? object.id);
}

/** Same as `new KibanaComponent(options)`. */
export function kibana(options: KibanaOptions): KibanaComponent {
  return new KibanaComponent(options);
}

/**
 * Builds the component from the CLI's JSON config
 * (`{ "kind": "kibana", "url": "http://127.0.0.1:5601", "username": "bk", "password": "…" }`).
 *
 * @throws {ConfigError} naming an unknown or invalid field.
 */
export function fromConfig(config: Record<string, unknown>): KibanaComponent {
  checkComponentConfig(config, 'kibana', CONFIG_FIELDS);
  const { kind: _kind, ...options } = config;
  return new KibanaComponent(options as unknown as KibanaOptions);
}
