import {
  type BackupContext,
  type Component,
  ComponentError,
  type ComponentInfo,
  ConfigError,
  ConflictError,
  checkComponentConfig,
  checkComponentName,
  checkNestedConfig,
  collect,
  type Entry,
  fromBytes,
  isRecord,
  type OperationContext,
  type PreflightContext,
  type PreflightResult,
  type RestoreContext,
  type RestoreReport,
  refuseOlderTarget,
  throwIfAborted,
} from '@bk/core';
import {
  type ContactPointSecrets,
  canonicalJson,
  contactPointKey,
  DASHBOARD_SERVER_FIELDS,
  DATASOURCE_SERVER_FIELDS,
  type DatasourceSecrets,
  type FolderRecord,
  type Item,
  isDefaultPolicy,
  LIBRARY_ELEMENT_SERVER_FIELDS,
  NAMED_SERVER_FIELDS,
  parentsFirst,
  postableContactPoint,
  RULE_SERVER_FIELDS,
  redactedSettingsOf,
  secureFieldsOf,
  without,
} from './documents.ts';
import { checkGrafanaUrl, GrafanaApi, type GrafanaAuth } from './grafana-api.ts';
import {
  FILES_CONFIG_FIELDS,
  GrafanaFilesComponent,
  type GrafanaFilesOptions,
} from './grafana-files-component.ts';

/**
 * Options of a {@link GrafanaComponent}.
 *
 * @example
 * const options: GrafanaOptions = {
 *   url: 'https://grafana.example.com',
 *   token: process.env.GRAFANA_TOKEN!,
 * };
 */
export interface GrafanaOptions {
  /** The component's name, unique within one backup; default `grafana`. */
  name?: string;
  /** Base URL of Grafana, e.g. `http://127.0.0.1:3000` (a sub-path is kept); no credentials in it. */
  url: string;
  /** A service account token with the Admin role (sent as `Authorization: Bearer`); never logged. */
  token?: string;
  /** Basic auth user, instead of a token (with `password`). */
  username?: string;
  /** Basic auth password; never logged. */
  password?: string;
  /** The organization to back up and restore into (`X-Grafana-Org-Id`); default: the token's or user's. */
  orgId?: number;
  /** Time each API request may take, answer and body, in ms; default 30 000. */
  timeoutMs?: number;
  /**
   * Restore settings. `folderMap`: folder UIDs of the backup mapped to folder UIDs on the target
   * (which must exist there); the mapped folders are not restored, and their dashboards, alert
   * rules and child folders land in the target folder instead.
   */
  restore?: { folderMap?: Record<string, string> };
}

/** Fields of a Grafana config entry for the `bk` CLI. */
export const CONFIG_FIELDS = [
  'kind',
  'mode',
  'name',
  'url',
  'token',
  'username',
  'password',
  'orgId',
  'timeoutMs',
  'restore',
];

/** Entries of a backup, in the order they are written and restored. */
export const FOLDERS_ENTRY = 'folders.json';
export const DATASOURCES_ENTRY = 'datasources.json';
export const LIBRARY_PANELS_ENTRY = 'library-panels.json';
export const DASHBOARDS_PREFIX = 'dashboards/';
export const ALERTING_ENTRIES = {
  templates: 'alerting/templates.json',
  muteTimings: 'alerting/mute-timings.json',
  contactPoints: 'alerting/contact-points.json',
  policies: 'alerting/policies.json',
  alertRules: 'alerting/alert-rules.json',
} as const;

/** Largest JSON document read back on restore. */
const DOCUMENT_LIMIT = 64 * 1024 * 1024;
/** Page size of `/api/search` and `/api/folders` (Grafana's maximum for search is 5000). */
const PAGE_SIZE = 1000;

const NOT_CAPTURED = [
  "data source secrets (secureJsonData: passwords, tokens, TLS keys): Grafana's API never returns them; each data source that had some is listed in this component's details.datasourcesWithoutSecrets and must have them re-entered after a restore",
  'secure settings of contact points (read back as [REDACTED]); those contact points are listed in details.contactPointsWithoutSecrets',
  'dashboard version history (only the current version of each dashboard), annotations, playlists, snapshots, public dashboards',
  'users, teams, organizations, service accounts, API keys and permissions (folder and dashboard ACLs)',
  'plugins, grafana.ini and provisioning files (use file mode or @bk/files for them)',
];

interface Backed {
  version: string;
  folders: FolderRecord[];
  datasources: Item[];
  libraryPanels: Item[];
  dashboardUids: string[];
  alerting: Record<keyof typeof ALERTING_ENTRIES, unknown>;
}

/** What the restore did with the objects of one kind. */
interface Tally {
  created: number;
  updated: number;
  unchanged: number;
  skipped: number;
}

/**
 * Backs up one Grafana organization over its HTTP API: folders (UIDs and nesting), library panels, dashboards by
 * UID (each as `dashboards/<uid>.json` with its folder and version), data sources (without
 * secrets: Grafana does not hand them out; the ones that had some are listed in the manifest),
 * and the alerting provisioning API's alert rules, contact points, notification policies, mute
 * timings and templates. Restore writes them back with the conflict policy, folders first.
 *
 * @example
 * import { backup } from '@bk/core';
 * import { grafana } from '@bk/grafana';
 *
 * await backup({ storage, components: [grafana({ url: 'http://127.0.0.1:3000', token })] });
 */
export class GrafanaComponent implements Component {
  readonly kind = 'grafana' as const;
  readonly name: string;
  /** The options without credentials (safe to log). */
  readonly options: Readonly<Omit<GrafanaOptions, 'token' | 'password'>>;
  readonly #api: GrafanaApi;
  readonly #folderMap: Map<string, string>;
  #backed: Backed | undefined;

  /**
   * Validates the options; sends no request.
   *
   * @throws {ConfigError} naming the invalid option (never a credential's value).
   */
  constructor(options: GrafanaOptions) {
    if (!isRecord(options)) throw new ConfigError('grafana component: the options must be an object.');
    const name = options.name ?? 'grafana';
    if (typeof name !== 'string') throw new ConfigError('grafana component: "name" must be a string.');
    checkComponentName(name);
    const where = `grafana component "${name}"`;
    const url = checkGrafanaUrl(options.url, where);
    let auth: GrafanaAuth;
    if (options.token !== undefined) {
      if (typeof options.token !== 'string' || options.token === '')
        throw new ConfigError(`${where}: "token" must be a non-empty string.`);
      if (options.username !== undefined || options.password !== undefined)
        throw new ConfigError(`${where}: give either "token" or "username" and "password", not both.`);
      auth = { token: options.token };
    } else if (typeof options.username === 'string' && typeof options.password === 'string') {
      auth = { username: options.username, password: options.password };
    } else {
      throw new ConfigError(
        `${where}: needs "token" (a service account token with the Admin role), or "username" and "password".`,
      );
    }
    if (options.orgId !== undefined && (!Number.isSafeInteger(options.orgId) || options.orgId < 1))
      throw new ConfigError(`${where}: "orgId" must be a positive integer.`);
    if (
      options.timeoutMs !== undefined &&
      (!Number.isSafeInteger(options.timeoutMs) || options.timeoutMs < 1)
    )
      throw new ConfigError(`${where}: "timeoutMs" must be a positive integer (milliseconds).`);
    const restore = checkNestedConfig(options.restore, 'restore', ['folderMap'], where);
    const folderMap = new Map<string, string>();
    if (restore?.folderMap !== undefined) {
      if (!isRecord(restore.folderMap))
        throw new ConfigError(`${where}: "restore.folderMap" must map folder UIDs to folder UIDs.`);
      for (const [from, to] of Object.entries(restore.folderMap)) {
        if (typeof to !== 'string' || to === '')
          throw new ConfigError(`${where}: "restore.folderMap.${from}" must be a folder UID.`);
        folderMap.set(from, to);
      }
    }
    this.name = name;
    this.#folderMap = folderMap;
    const { token: _token, password: _password, ...safe } = options;
    this.options = { ...safe, name, url };
    this.#api = new GrafanaApi({
      url,
      auth,
      component: name,
      timeoutMs: options.timeoutMs ?? 30_000,
      ...(options.orgId === undefined ? {} : { orgId: options.orgId }),
    });
  }

  /** Every folder, parents before children, following `parentUid` (nested folders). */
  async #folders(signal: AbortSignal): Promise<FolderRecord[]> {
    const found: FolderRecord[] = [];
    const seen = new Set<string>();
    const queue: (string | undefined)[] = [undefined];
    while (queue.length > 0) {
      const parentUid = queue.shift();
      for (let page = 1; ; page += 1) {
        const query = `limit=${PAGE_SIZE}&page=${page}${parentUid === undefined ? '' : `&parentUid=${encodeURIComponent(parentUid)}`}`;
        const list = await this.#api.get(`/api/folders?${query}`, signal);
        const items = Array.isArray(list) ? list.filter(isRecord) : [];
        for (const item of items) {
          const uid = String(item.uid ?? '');
          // Without nested folders Grafana ignores parentUid and lists every folder again.
          if (uid === '' || seen.has(uid)) continue;
          seen.add(uid);
          found.push({
            uid,
            title: String(item.title ?? ''),
            ...(parentUid === undefined ? {} : { parentUid }),
          });
          queue.push(uid);
        }
        if (items.length < PAGE_SIZE) break;
      }
    }
    return found;
  }

  /** UIDs of every dashboard (`/api/search?type=dash-db`, paged), sorted. */
  async #dashboardUids(signal: AbortSignal): Promise<string[]> {
    const uids = new Set<string>();
    for (let page = 1; ; page += 1) {
      const hits = await this.#api.get(`/api/search?type=dash-db&limit=${PAGE_SIZE}&page=${page}`, signal);
      const items = Array.isArray(hits) ? hits.filter(isRecord) : [];
      for (const hit of items) if (typeof hit.uid === 'string' && hit.uid !== '') uids.add(hit.uid);
      if (items.length < PAGE_SIZE) break;
    }
    return [...uids].sort();
  }

  /** Every data source as `GET /api/datasources/uid/:uid` returns it (with `secureJsonFields`). */
  async #datasources(signal: AbortSignal): Promise<Item[]> {
    const list = await this.#api.get('/api/datasources', signal);
    const datasources: Item[] = [];
    for (const listed of Array.isArray(list) ? list.filter(isRecord) : []) {
      if (typeof listed.uid !== 'string') continue;
      const full = await this.#api.find(`/api/datasources/uid/${encodeURIComponent(listed.uid)}`, signal);
      if (isRecord(full)) datasources.push(full);
    }
    return datasources.sort((a, b) => (String(a.uid) < String(b.uid) ? -1 : 1));
  }

  /** Every library element (`/api/library-elements`, paged). */
  async #libraryPanels(signal: AbortSignal): Promise<Item[]> {
    const elements: Item[] = [];
    for (let page = 1; ; page += 1) {
      const answer = await this.#api.get(`/api/library-elements?perPage=100&page=${page}`, signal);
      const result = isRecord(answer) && isRecord(answer.result) ? answer.result : {};
      const items = listOf(result.elements);
      elements.push(...items);
      if (items.length < 100) break;
    }
    return elements.sort((a, b) => (String(a.uid) < String(b.uid) ? -1 : 1));
  }

  async #alerting(signal: AbortSignal): Promise<Backed['alerting']> {
    const base = '/api/v1/provisioning';
    return {
      templates: await this.#api.get(`${base}/templates`, signal),
      muteTimings: await this.#api.get(`${base}/mute-timings`, signal),
      contactPoints: await this.#api.get(`${base}/contact-points`, signal),
      policies: await this.#api.get(`${base}/policies`, signal),
      alertRules: await this.#api.get(`${base}/alert-rules`, signal),
    };
  }

  async #read(signal: AbortSignal): Promise<Backed> {
    const health = await this.#api.get('/api/health', signal);
    const version = isRecord(health) && typeof health.version === 'string' ? health.version : 'unknown';
    return {
      version,
      folders: await this.#folders(signal),
      datasources: await this.#datasources(signal),
      libraryPanels: await this.#libraryPanels(signal),
      dashboardUids: await this.#dashboardUids(signal),
      alerting: await this.#alerting(signal),
    };
  }

  /**
   * Reads Grafana's version (`/api/health`), the folders, data sources, dashboard UIDs and the
   * alerting objects the backup will store; records counts and every data source and contact
   * point whose secrets are not captured (names and field names, never values).
   *
   * @throws {ComponentError} when Grafana cannot be reached or refuses the credentials.
   */
  async describe(context: OperationContext): Promise<ComponentInfo> {
    throwIfAborted(context.signal);
    const backed = await this.#read(context.signal);
    this.#backed = backed;
    const datasourcesWithoutSecrets: DatasourceSecrets[] = backed.datasources
      .map((datasource) => ({
        uid: String(datasource.uid),
        name: String(datasource.name ?? ''),
        type: String(datasource.type ?? ''),
        fields: secureFieldsOf(datasource),
      }))
      .filter((datasource) => datasource.fields.length > 0);
    const contactPointsWithoutSecrets: ContactPointSecrets[] = listOf(backed.alerting.contactPoints)
      .map((point) => ({
        uid: String(point.uid ?? ''),
        name: String(point.name ?? ''),
        type: String(point.type ?? ''),
        settings: redactedSettingsOf(point),
      }))
      .filter((point) => point.settings.length > 0);
    const notCaptured = [...NOT_CAPTURED];
    for (const datasource of datasourcesWithoutSecrets) {
      notCaptured.push(
        `secrets of data source "${datasource.name}" (uid ${datasource.uid}, ${datasource.type}): ${datasource.fields.join(', ')} — re-enter them after a restore`,
      );
    }
    for (const point of contactPointsWithoutSecrets) {
      notCaptured.push(
        `secure settings of contact point "${point.name}" (uid ${point.uid}, ${point.type}): ${point.settings.join(', ')} — re-enter them after a restore`,
      );
    }
    return {
      version: backed.version,
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
          ...datasourcesWithoutSecrets.map((datasource) => ({
            kind: 'password' as const,
            what: `secure fields of data source "${datasource.name}" (${datasource.fields.join(', ')}): the API never returns them`,
          })),
          ...contactPointsWithoutSecrets.map((point) => ({
            kind: 'token' as const,
            what: `secure settings of contact point "${point.name}" (${point.settings.join(', ')}): redacted by the API`,
          })),
          {
            kind: 'password-hash',
            what: "users' password hashes, API keys and service-account tokens: the API does not export them",
          },
        ],
      },
      details: {
        format: 'Grafana HTTP API JSON: folders, dashboards/<uid>.json, data sources, alerting provisioning',
        url: this.#api.url,
        ...(this.options.orgId === undefined ? {} : { orgId: this.options.orgId }),
        counts: {
          folders: backed.folders.length,
          dashboards: backed.dashboardUids.length,
          datasources: backed.datasources.length,
          libraryPanels: backed.libraryPanels.length,
          alertRules: listOf(backed.alerting.alertRules).length,
          contactPoints: listOf(backed.alerting.contactPoints).length,
          muteTimings: listOf(backed.alerting.muteTimings).length,
          templates: listOf(backed.alerting.templates).length,
        },
        datasourcesWithoutSecrets,
        contactPointsWithoutSecrets,
      },
    };
  }

  /**
   * `folders.json`, `datasources.json`, `library-panels.json`, then `dashboards/<uid>.json` per dashboard (read one at a
   * time, as `GET /api/dashboards/uid/:uid` returns it: `dashboard` and `meta`), then the
   * alerting documents under `alerting/`. A dashboard deleted between the listing and its read
   * is left out.
   */
  async *backup(context: BackupContext): AsyncIterable<Entry> {
    const backed = this.#backed ?? (await this.#read(context.signal));
    this.#backed = undefined;
    yield jsonEntry(FOLDERS_ENTRY, backed.folders);
    yield jsonEntry(
      DATASOURCES_ENTRY,
      backed.datasources.map((datasource) => without(datasource, ['secureJsonData'])),
    );
    yield jsonEntry(LIBRARY_PANELS_ENTRY, backed.libraryPanels);
    for (const uid of backed.dashboardUids) {
      throwIfAborted(context.signal);
      const dashboard = await this.#api.find(
        `/api/dashboards/uid/${encodeURIComponent(uid)}`,
        context.signal,
      );
      if (!isRecord(dashboard)) continue;
      yield jsonEntry(`${DASHBOARDS_PREFIX}${encodeURIComponent(uid)}.json`, dashboard);
    }
    for (const [key, path] of Object.entries(ALERTING_ENTRIES)) {
      yield jsonEntry(path, backed.alerting[key as keyof typeof ALERTING_ENTRIES]);
    }
  }

  /**
   * Writes the backup back: folders (parents first), data sources, library panels, dashboards, templates, mute
   * timings, contact points, the notification policy tree, alert rules. Every entry is read and
   * every conflict found before anything is written. An object that exists on the target as it
   * is in the backup is left alone (`unchanged`). One that exists with other content (same UID,
   * or same name for templates and mute timings): `fail` → `ConflictError`, nothing written;
   * `skip` → kept; `overwrite` → replaced (dashboards with `overwrite: true`). The policy tree is
   * a conflict only when the target has routes of its own. Data sources come back without
   * their secrets and contact points without their redacted settings: each is named in a
   * `warning` progress event and in the report's `details.secretsToReEnter`.
   *
   * @throws {ConflictError} under `fail`, before anything is written.
   * @throws {ComponentError} for an unreadable entry or a write Grafana refuses.
   */
  /**
   * The target's version (`/api/health`): dashboards and alerting from a newer Grafana major may
   * use a schema an older one cannot read (Grafana migrates forward only). Refused, forceable.
   */
  async preflight(context: PreflightContext): Promise<PreflightResult> {
    const health = await this.#api.get('/api/health', context.signal);
    const targetVersion = isRecord(health) && typeof health.version === 'string' ? health.version : undefined;
    if (targetVersion === undefined) return {};
    const refusal = refuseOlderTarget('Grafana', context.component.version, targetVersion, 'major');
    return { targetVersion, ...(refusal ? { refusal } : {}) };
  }

  async restore(entries: AsyncIterable<Entry>, context: RestoreContext): Promise<RestoreReport> {
    const signal = context.signal;
    let folders: FolderRecord[] = [];
    let datasources: Item[] = [];
    let libraryPanels: Item[] = [];
    const dashboards: Item[] = [];
    const alerting: Partial<Record<keyof typeof ALERTING_ENTRIES, unknown>> = {};
    let count = 0;
    let bytes = 0;
    for await (const entry of entries) {
      throwIfAborted(signal);
      if (entry.type !== undefined && entry.type !== 'file') continue;
      count += 1;
      const data = await collect(entry.body ?? fromBytes(new Uint8Array()), DOCUMENT_LIMIT);
      bytes += data.byteLength;
      let parsed: unknown;
      try {
        parsed = JSON.parse(Buffer.from(data).toString('utf8'));
      } catch (error) {
        throw new ComponentError(this.name, `entry "${entry.path}" is not JSON.`, { cause: error });
      }
      const alertingKey = Object.entries(ALERTING_ENTRIES).find(([, path]) => path === entry.path)?.[0];
      if (entry.path === FOLDERS_ENTRY) folders = listOf(parsed).map((item) => folderRecordOf(item));
      else if (entry.path === DATASOURCES_ENTRY) datasources = listOf(parsed);
      else if (entry.path === LIBRARY_PANELS_ENTRY) libraryPanels = listOf(parsed);
      else if (entry.path.startsWith(DASHBOARDS_PREFIX) && isRecord(parsed) && isRecord(parsed.dashboard))
        dashboards.push(parsed);
      else if (alertingKey !== undefined) alerting[alertingKey as keyof typeof ALERTING_ENTRIES] = parsed;
      else throw new ComponentError(this.name, `unexpected entry "${entry.path}" in the backup.`);
    }

    const mapFolder = (uid: string | undefined): string | undefined =>
      uid === undefined || uid === '' ? uid : (this.#folderMap.get(uid) ?? uid);
    for (const [from, to] of this.#folderMap) {
      if (!isRecord(await this.#api.find(`/api/folders/${encodeURIComponent(to)}`, signal)))
        throw new ConfigError(
          `grafana component "${this.name}": "restore.folderMap.${from}" names folder "${to}", which does not exist on ${this.#api.url}.`,
        );
    }

    // Plan every write against what the target holds now.
    const conflicts: string[] = [];
    const tallies: Record<string, Tally> = {};
    const tally = (kind: string): Tally => {
      tallies[kind] ??= { created: 0, updated: 0, unchanged: 0, skipped: 0 };
      return tallies[kind];
    };
    type Step = { kind: string; describe: string; action: 'create' | 'update'; run: () => Promise<unknown> };
    const steps: Step[] = [];
    const plan = (
      kind: string,
      describe: string,
      existing: boolean,
      same: boolean,
      create: () => Promise<unknown>,
      update: () => Promise<unknown>,
    ): void => {
      if (!existing) steps.push({ kind, describe, action: 'create', run: create });
      else if (same) tally(kind).unchanged += 1;
      else if (context.conflict === 'fail') conflicts.push(describe);
      else if (context.conflict === 'skip') tally(kind).skipped += 1;
      else steps.push({ kind, describe, action: 'update', run: update });
    };
    const base = '/api/v1/provisioning';

    for (const folder of parentsFirst(folders)) {
      if (this.#folderMap.has(folder.uid)) continue;
      const parentUid = mapFolder(folder.parentUid);
      const found = await this.#api.find(`/api/folders/${encodeURIComponent(folder.uid)}`, signal);
      const existing = isRecord(found);
      const same = existing && found.title === folder.title && (found.parentUid ?? undefined) === parentUid;
      plan(
        'folders',
        `folder "${folder.title}" (uid ${folder.uid})`,
        existing,
        same,
        () =>
          this.#api.request('POST', '/api/folders', {
            body: { uid: folder.uid, title: folder.title, ...(parentUid ? { parentUid } : {}) },
            signal,
          }),
        async () => {
          await this.#api.request('PUT', `/api/folders/${encodeURIComponent(folder.uid)}`, {
            body: { title: folder.title, overwrite: true },
            signal,
          });
          if (isRecord(found) && (found.parentUid ?? undefined) !== parentUid) {
            await this.#api.request('POST', `/api/folders/${encodeURIComponent(folder.uid)}/move`, {
              body: { parentUid: parentUid ?? '' },
              signal,
            });
          }
        },
      );
    }

    // Names Grafana keeps unique: a data source name, a dashboard title within its folder.
    const blocked: string[] = [];
    const datasourceNames = new Map(
      listOf(await this.#api.get('/api/datasources', signal)).map((item) => [
        String(item.name),
        String(item.uid),
      ]),
    );
    for (const datasource of datasources) {
      const uid = String(datasource.uid ?? '');
      const body = without(datasource, DATASOURCE_SERVER_FIELDS);
      const found = await this.#api.find(`/api/datasources/uid/${encodeURIComponent(uid)}`, signal);
      const existing = isRecord(found);
      const holder = datasourceNames.get(String(datasource.name));
      if (!existing && holder !== undefined && holder !== uid) {
        const what = `data source "${String(datasource.name)}" (uid ${uid}): the target has a data source of that name with uid ${holder}`;
        if (context.conflict === 'skip') tally('datasources').skipped += 1;
        else blocked.push(what);
        continue;
      }
      const same =
        existing && canonicalJson(without(found, DATASOURCE_SERVER_FIELDS)) === canonicalJson(body);
      plan(
        'datasources',
        `data source "${String(datasource.name)}" (uid ${uid})`,
        existing,
        same,
        () => this.#api.request('POST', '/api/datasources', { body, signal }),
        () => this.#api.request('PUT', `/api/datasources/uid/${encodeURIComponent(uid)}`, { body, signal }),
      );
    }

    for (const element of libraryPanels) {
      const uid = String(element.uid ?? '');
      const folderUid = mapFolder(typeof element.folderUid === 'string' ? element.folderUid : '') ?? '';
      const body = { ...without(element, [...LIBRARY_ELEMENT_SERVER_FIELDS, 'folderUid']), folderUid };
      const answer = await this.#api.find(`/api/library-elements/${encodeURIComponent(uid)}`, signal);
      const found = isRecord(answer) && isRecord(answer.result) ? answer.result : undefined;
      const same =
        found !== undefined &&
        canonicalJson({
          ...without(found, [...LIBRARY_ELEMENT_SERVER_FIELDS, 'folderUid']),
          folderUid: found.folderUid ?? '',
        }) === canonicalJson(body);
      plan(
        'libraryPanels',
        `library panel "${String(element.name)}" (uid ${uid})`,
        found !== undefined,
        same,
        () => this.#api.request('POST', '/api/library-elements', { body, signal }),
        () =>
          this.#api.request('PATCH', `/api/library-elements/${encodeURIComponent(uid)}`, {
            body: { ...body, version: found?.version },
            signal,
          }),
      );
    }

    const dashboardTitles = new Map<string, string>();
    for (let page = 1; ; page += 1) {
      const hits = listOf(
        await this.#api.get(`/api/search?type=dash-db&limit=${PAGE_SIZE}&page=${page}`, signal),
      );
      for (const hit of hits) {
        dashboardTitles.set(
          `${String(hit.folderUid ?? '')}\n${String(hit.title).toLowerCase()}`,
          String(hit.uid),
        );
      }
      if (hits.length < PAGE_SIZE) break;
    }
    for (const saved of dashboards) {
      const dashboard = saved.dashboard as Item;
      const meta = isRecord(saved.meta) ? saved.meta : {};
      const uid = String(dashboard.uid ?? '');
      const folderUid = mapFolder(typeof meta.folderUid === 'string' ? meta.folderUid : '') ?? '';
      const found = await this.#api.find(`/api/dashboards/uid/${encodeURIComponent(uid)}`, signal);
      const existing = isRecord(found) && isRecord(found.dashboard);
      const same =
        existing &&
        canonicalJson(without(found.dashboard as Item, DASHBOARD_SERVER_FIELDS)) ===
          canonicalJson(without(dashboard, DASHBOARD_SERVER_FIELDS)) &&
        (isRecord(found.meta) ? (found.meta.folderUid ?? '') : '') === folderUid;
      const save = (overwrite: boolean) => () =>
        this.#api.request('POST', '/api/dashboards/db', {
          body: {
            dashboard: { ...without(dashboard, DASHBOARD_SERVER_FIELDS), id: null },
            ...(folderUid === '' ? {} : { folderUid }),
            overwrite,
            message: `Restored from ${context.backupName}`,
          },
          signal,
        });
      const holder = dashboardTitles.get(`${folderUid}\n${String(dashboard.title).toLowerCase()}`);
      const describe = `dashboard "${String(dashboard.title)}" (uid ${uid})`;
      if (!existing && holder !== undefined && holder !== uid) {
        // Grafana refuses a second dashboard of that title in the folder; overwrite replaces it.
        if (context.conflict === 'fail')
          conflicts.push(`${describe}: the folder has a dashboard of that title with uid ${holder}`);
        else if (context.conflict === 'skip') tally('dashboards').skipped += 1;
        else steps.push({ kind: 'dashboards', describe, action: 'update', run: save(true) });
        continue;
      }
      plan('dashboards', describe, existing, same, save(false), save(true));
    }

    const named = async (kind: 'templates' | 'mute-timings', items: Item[]) => {
      const there = new Map(
        listOf(await this.#api.get(`${base}/${kind}`, signal)).map((item) => [String(item.name), item]),
      );
      for (const item of items) {
        const name = String(item.name ?? '');
        const body = without(item, NAMED_SERVER_FIELDS);
        const found = there.get(name);
        const path = `${base}/${kind}/${encodeURIComponent(name)}`;
        plan(
          kind,
          `${kind === 'templates' ? 'template' : 'mute timing'} "${name}"`,
          found !== undefined,
          found !== undefined && canonicalJson(without(found, NAMED_SERVER_FIELDS)) === canonicalJson(body),
          () =>
            kind === 'templates'
              ? this.#api.request('PUT', path, { body, signal })
              : this.#api.request('POST', `${base}/${kind}`, { body, signal }),
          () => this.#api.request('PUT', path, { body, signal }),
        );
      }
    };
    await named('templates', listOf(alerting.templates));
    await named('mute-timings', listOf(alerting.muteTimings));

    const contactPointsThere = listOf(await this.#api.get(`${base}/contact-points`, signal));
    const contactPointKeys = new Set(contactPointsThere.map(contactPointKey));
    const contactPointsNeedingSecrets: ContactPointSecrets[] = [];
    for (const point of listOf(alerting.contactPoints)) {
      const uid = String(point.uid ?? '');
      const found = contactPointsThere.find((other) => other.uid === uid);
      const same = contactPointKeys.has(contactPointKey(point));
      const body = postableContactPoint(point);
      const redacted = redactedSettingsOf(point);
      plan(
        'contactPoints',
        `contact point "${String(point.name)}" (uid ${uid})`,
        found !== undefined || same,
        same,
        async () => {
          await this.#api.request('POST', `${base}/contact-points`, { body, signal });
          if (redacted.length > 0)
            contactPointsNeedingSecrets.push({
              uid,
              name: String(point.name),
              type: String(point.type),
              settings: redacted,
            });
        },
        () => this.#api.request('PUT', `${base}/contact-points/${encodeURIComponent(uid)}`, { body, signal }),
      );
    }

    if (alerting.policies !== undefined) {
      const policies = alerting.policies;
      const found = await this.#api.get(`${base}/policies`, signal);
      const same =
        canonicalJson(without(asItem(found), ['provenance'])) ===
        canonicalJson(without(asItem(policies), ['provenance']));
      const write = () =>
        this.#api.request('PUT', `${base}/policies`, {
          body: without(asItem(policies), ['provenance']),
          signal,
        });
      // A fresh Grafana's tree (no routes) is replaced without asking.
      plan('policies', 'the notification policy tree', same || !isDefaultPolicy(found), same, write, write);
    }

    for (const rule of listOf(alerting.alertRules)) {
      const uid = String(rule.uid ?? '');
      const folderUID = mapFolder(typeof rule.folderUID === 'string' ? rule.folderUID : undefined);
      const compared = { ...without(rule, RULE_SERVER_FIELDS), ...(folderUID ? { folderUID } : {}) };
      // The provisioning API's rule model lists orgID as required: send the target organization's.
      const orgID = this.options.orgId ?? rule.orgID;
      const body = { ...compared, ...(orgID === undefined ? {} : { orgID }) };
      const found = await this.#api.find(`${base}/alert-rules/${encodeURIComponent(uid)}`, signal);
      const existing = isRecord(found);
      const same = existing && canonicalJson(without(found, RULE_SERVER_FIELDS)) === canonicalJson(compared);
      plan(
        'alertRules',
        `alert rule "${String(rule.title)}" (uid ${uid})`,
        existing,
        same,
        () => this.#api.request('POST', `${base}/alert-rules`, { body, signal }),
        () => this.#api.request('PUT', `${base}/alert-rules/${encodeURIComponent(uid)}`, { body, signal }),
      );
    }

    if (blocked.length > 0) {
      throw new ConflictError(
        blocked[0]!,
        `Grafana at ${this.#api.url} cannot take ${blocked.slice(0, 10).join('; ')}; nothing was written (rename or delete it there, or restore with "skip").`,
      );
    }
    if (conflicts.length > 0) {
      const shown = conflicts.slice(0, 10).join(', ');
      const more = conflicts.length > 10 ? ` and ${conflicts.length - 10} more` : '';
      throw new ConflictError(
        conflicts[0]!,
        `Grafana at ${this.#api.url} already has ${shown}${more} with other content, and the conflict policy is "fail"; nothing was written (restore with "skip" to keep them or "overwrite" to replace them).`,
      );
    }

    for (const step of steps) {
      throwIfAborted(signal);
      await step.run();
      tally(step.kind)[step.action === 'create' ? 'created' : 'updated'] += 1;
    }

    // Data sources written back (created or replaced) have no secrets unless the target kept them.
    const written = new Set(steps.filter((step) => step.kind === 'datasources').map((step) => step.describe));
    const datasourcesNeedingSecrets: DatasourceSecrets[] = datasources
      .filter((datasource) =>
        written.has(`data source "${String(datasource.name)}" (uid ${String(datasource.uid ?? '')})`),
      )
      .map((datasource) => ({
        uid: String(datasource.uid),
        name: String(datasource.name ?? ''),
        type: String(datasource.type ?? ''),
        fields: secureFieldsOf(datasource),
      }))
      .filter((datasource) => datasource.fields.length > 0);
    const warnings = [
      ...datasourcesNeedingSecrets.map(
        (datasource) =>
          `data source "${datasource.name}" (uid ${datasource.uid}) was restored without its secrets (${datasource.fields.join(', ')}): re-enter them in Grafana`,
      ),
      ...contactPointsNeedingSecrets.map(
        (point) =>
          `contact point "${point.name}" (uid ${point.uid}) was restored without its secure settings (${point.settings.join(', ')}): re-enter them in Grafana`,
      ),
    ];
    for (const message of warnings) context.progress({ type: 'warning', message, component: this.name });
    const skipped = Object.values(tallies).reduce((sum, each) => sum + each.skipped, 0);
    return {
      entries: count,
      bytes,
      skipped,
      details: {
        conflict: context.conflict,
        ...tallies,
        secretsToReEnter: {
          datasources: datasourcesNeedingSecrets,
          contactPoints: contactPointsNeedingSecrets,
        },
        ...(warnings.length > 0 ? { warnings } : {}),
        ...(context.component.version ? { sourceVersion: context.component.version } : {}),
      },
    };
  }
}

function jsonEntry(path: string, value: unknown): Entry {
  const bytes = Buffer.from(`${JSON.stringify(value, null, 2)}\n`);
  return { path, type: 'file', size: bytes.byteLength, mode: 0o600, body: fromBytes(bytes) };
}

function listOf(value: unknown): Item[] {
  return Array.isArray(value) ? value.filter(isRecord) : [];
}

function asItem(value: unknown): Item {
  return isRecord(value) ? value : {};
}

function folderRecordOf(item: Item): FolderRecord {
  return {
    uid: String(item.uid ?? ''),
    title: String(item.title ?? ''),
    ...(typeof item.parentUid === 'string' && item.parentUid !== '' ? { parentUid: item.parentUid } : {}),
  };
}

/** Same as `new GrafanaComponent(options)`. */
export function grafana(options: GrafanaOptions): GrafanaComponent {
  return new GrafanaComponent(options);
}

/**
 * Builds the component from the CLI's JSON config: API mode
 * (`{ "kind": "grafana", "url": "http://127.0.0.1:3000", "token": "…" }`) or, with
 * `"mode": "file"`, file mode (`{ "kind": "grafana", "mode": "file", "database": "/var/lib/grafana/grafana.db" }`).
 *
 * @throws {ConfigError} naming an unknown or invalid field.
 */
export function fromConfig(config: Record<string, unknown>): GrafanaComponent | GrafanaFilesComponent {
  if (isRecord(config) && config.mode !== undefined && config.mode !== 'api' && config.mode !== 'file') {
    throw new ConfigError(
      `grafana component config: "mode" must be "api" or "file", got ${JSON.stringify(config.mode)}.`,
    );
  }
  if (isRecord(config) && config.mode === 'file') {
    checkComponentConfig(config, 'grafana', FILES_CONFIG_FIELDS);
    const { kind: _kind, mode: _mode, ...options } = config;
    return new GrafanaFilesComponent(options as unknown as GrafanaFilesOptions);
  }
  checkComponentConfig(config, 'grafana', CONFIG_FIELDS);
  const { kind: _kind, mode: _mode, ...options } = config;
  return new GrafanaComponent(options as unknown as GrafanaOptions);
}
