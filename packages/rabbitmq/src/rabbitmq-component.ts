import {
  type BackupContext,
  type Component,
  ComponentError,
  type ComponentInfo,
  ConfigError,
  ConflictError,
  checkComponentConfig,
  checkComponentName,
  collect,
  compareVersions,
  type Entry,
  isRecord,
  type OperationContext,
  type PreflightContext,
  type PreflightResult,
  parseVersion,
  type RestoreContext,
  type RestoreReport,
  refuseOlderTarget,
  throwIfAborted,
} from '@bk/core';
import {
  conflictsOf,
  countsOf,
  type Definitions,
  itemsOf,
  passwordHashesOf,
  withoutExisting,
  withoutNodeIdentity,
} from './definitions.ts';
import { ManagementApi } from './management-api.ts';

/**
 * Options of a {@link RabbitmqComponent}.
 *
 * @example
 * const options: RabbitmqOptions = {
 *   url: 'http://127.0.0.1:15672',
 *   username: 'backup',
 *   password: process.env.RABBITMQ_PASSWORD!,
 *   vhosts: ['app'],
 * };
 */
export interface RabbitmqOptions {
  /** The component's name, unique within one backup; default `rabbitmq`. */
  name?: string;
  /** Base URL of the management API (plugin `rabbitmq_management`), e.g. `http://127.0.0.1:15672`; no credentials in it. */
  url: string;
  /** A user tagged `administrator` (needed to export and import definitions). */
  username: string;
  /** Sent only in the `authorization` header; never logged or recorded. */
  password: string;
  /**
   * Back up only these vhosts, each with `GET /api/definitions/<vhost>` (queues, exchanges,
   * bindings, policies, parameters) plus its description and tags. Default: everything,
   * with `GET /api/definitions` (users, vhosts, permissions, … too).
   */
  vhosts?: string[];
  /** Timeout of one management API request in milliseconds; default 60 000. */
  timeoutMs?: number;
}

const CONFIG_FIELDS = ['kind', 'name', 'url', 'username', 'password', 'vhosts', 'timeoutMs'];

/** The entry holding the whole definitions document (no `vhosts` selection). */
export const DEFINITIONS_ENTRY = 'definitions.json';
/** The prefix of the per-vhost entries (`vhosts/<URI-encoded vhost>.json`). */
export const VHOST_PREFIX = 'vhosts/';

const NOT_CAPTURED = [
  'messages: queue contents are not exported by the management API; copy the stopped node’s RABBITMQ_MNESIA_BASE/<node> directory for them (see the README)',
  'connections, channels, consumers and other runtime state',
  'configuration files (rabbitmq.conf, advanced.config, enabled_plugins), the Erlang cookie and TLS material',
  'a vhost’s default queue type and tracing flag (3.10 definitions do not carry them)',
];
const NOT_CAPTURED_VHOSTS = [
  'users, permissions, topic permissions and global parameters: a vhost selection exports only what lives in those vhosts',
];

/** A vhost's description and tags, as recorded in the manifest and given to `PUT /api/vhosts/<vhost>`. */
interface VhostRecord {
  name: string;
  description?: string;
  tags?: string[];
}

/** One definitions document of the backup and the entry it is stored as. */
interface Document {
  path: string;
  /** Set for a per-vhost document. */
  vhost?: string;
  definitions: Definitions;
}

function entryPathOf(vhost: string): string {
  return `${VHOST_PREFIX}${encodeURIComponent(vhost)}.json`;
}

function vhostOf(path: string): string | undefined {
  if (!path.startsWith(VHOST_PREFIX) || !path.endsWith('.json')) return undefined;
  return decodeURIComponent(path.slice(VHOST_PREFIX.length, -'.json'.length));
}

function vhostRecordOf(value: unknown): VhostRecord | undefined {
  if (!isRecord(value) || typeof value.name !== 'string') return undefined;
  const record: VhostRecord = { name: value.name };
  if (typeof value.description === 'string') record.description = value.description;
  if (Array.isArray(value.tags)) record.tags = value.tags.map(String);
  else if (typeof value.tags === 'string') record.tags = value.tags.split(',').filter((tag) => tag !== '');
  return record;
}

function asDefinitions(value: unknown, what: string, component: string): Definitions {
  if (!isRecord(value)) throw new ComponentError(component, `${what} is not a JSON object.`);
  return value;
}

/**
 * Backs up RabbitMQ's definitions (users with their password hashes, vhosts, permissions, topic
 * permissions, policies, queues, exchanges, bindings, parameters, global parameters) over the
 * management HTTP API, and imports them back. Messages are not captured.
 *
 * @example
 * import { backup } from '@bk/core';
 * import { rabbitmq } from '@bk/rabbitmq';
 *
 * await backup({
 *   storage,
 *   components: [rabbitmq({ url: 'http://127.0.0.1:15672', username: 'admin', password: process.env.RABBITMQ_PASSWORD! })],
 * });
 */
export class RabbitmqComponent implements Component {
  readonly kind = 'rabbitmq' as const;
  readonly name: string;
  /** The options without the password. */
  readonly options: Readonly<Omit<RabbitmqOptions, 'password'>>;
  readonly #api: ManagementApi;
  /** What `describe` exported, used by the `backup` that follows it. */
  #documents: Document[] | undefined;

  /**
   * Validates the options; opens no connection.
   *
   * @throws {ConfigError} naming the invalid option (never echoing the password).
   */
  constructor(options: RabbitmqOptions) {
    const where = 'rabbitmq component';
    if (!isRecord(options)) throw new ConfigError(`${where}: the options must be an object.`);
    const name = options.name ?? 'rabbitmq';
    if (typeof name !== 'string') {
      throw new ConfigError(`${where}: "name" must be a string, got ${JSON.stringify(name)}.`);
    }
    checkComponentName(name);
    const context = `rabbitmq component "${name}"`;
    if (typeof options.url !== 'string' || options.url === '') {
      throw new ConfigError(
        `${context}: "url" must be the management API's base URL, e.g. "http://127.0.0.1:15672".`,
      );
    }
    let url: URL;
    try {
      url = new URL(options.url);
    } catch {
      throw new ConfigError(`${context}: "url" is not a valid URL.`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new ConfigError(`${context}: "url" must be http: or https:, got "${url.protocol}".`);
    }
    if (url.username !== '' || url.password !== '') {
      throw new ConfigError(`${context}: "url" must not hold credentials; use "username" and "password".`);
    }
    if (url.search !== '' || url.hash !== '') {
      throw new ConfigError(`${context}: "url" must not have a query or fragment.`);
    }
    if (typeof options.username !== 'string' || options.username === '') {
      throw new ConfigError(`${context}: "username" must be a non-empty string.`);
    }
    if (typeof options.password !== 'string') {
      throw new ConfigError(`${context}: "password" must be a string.`);
    }
    if (options.vhosts !== undefined) {
      if (
        !Array.isArray(options.vhosts) ||
        options.vhosts.length === 0 ||
        !options.vhosts.every((vhost) => typeof vhost === 'string' && vhost !== '')
      ) {
        throw new ConfigError(`${context}: "vhosts" must be a non-empty array of vhost names.`);
      }
      if (new Set(options.vhosts).size !== options.vhosts.length) {
        throw new ConfigError(`${context}: "vhosts" lists a vhost twice.`);
      }
    }
    if (
      options.timeoutMs !== undefined &&
      (!Number.isSafeInteger(options.timeoutMs) || options.timeoutMs < 1)
    ) {
      throw new ConfigError(`${context}: "timeoutMs" must be a positive integer.`);
    }
    const base = `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
    this.name = name;
    this.options = {
      name,
      url: base,
      username: options.username,
      ...(options.vhosts ? { vhosts: [...options.vhosts] } : {}),
      ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
    };
    this.#api = new ManagementApi({
      url: base,
      username: options.username,
      password: options.password,
      component: name,
      timeoutMs: options.timeoutMs ?? 60_000,
    });
  }

  /** `vhost` URI-encoded for a path segment (`/` → `%2F`). */
  #segment(vhost: string): string {
    return encodeURIComponent(vhost);
  }

  /** Every vhost's description and tags, by name. */
  async #vhostRecords(signal: AbortSignal): Promise<Map<string, VhostRecord>> {
    const list = await this.#api.get('vhosts', signal);
    const records = new Map<string, VhostRecord>();
    for (const value of Array.isArray(list) ? list : []) {
      const record = vhostRecordOf(value);
      if (record) records.set(record.name, record);
    }
    return records;
  }

  /**
   * `GET /api/definitions`, its vhosts completed with their description and tags from
   * `GET /api/vhosts` (3.10's export leaves them out; its import reads them).
   */
  async #exportAll(signal: AbortSignal): Promise<Definitions> {
    const definitions = asDefinitions(
      await this.#api.get('definitions', signal),
      'GET /api/definitions',
      this.name,
    );
    for (const hash of passwordHashesOf(definitions)) this.#api.secrets.add(hash);
    const records = await this.#vhostRecords(signal);
    if (Array.isArray(definitions.vhosts)) {
      definitions.vhosts = itemsOf(definitions, 'vhosts').map((vhost) => {
        const record = records.get(String(vhost.name));
        return record ? { ...vhost, ...record } : vhost;
      });
    }
    return definitions;
  }

  /** A vhost's record, or `undefined` when it does not exist. */
  async #vhostRecord(vhost: string, signal: AbortSignal): Promise<VhostRecord | undefined> {
    const response = await this.#api.request('GET', `vhosts/${this.#segment(vhost)}`, {
      allow: [404],
      signal,
    });
    return response.status === 404 ? undefined : vhostRecordOf(response.body);
  }

  async #exportVhost(vhost: string, signal: AbortSignal): Promise<Definitions> {
    return asDefinitions(
      await this.#api.get(`definitions/${this.#segment(vhost)}`, signal),
      `GET /api/definitions/${this.#segment(vhost)}`,
      this.name,
    );
  }

  /**
   * Reads the server version (`GET /api/overview`) and exports the definitions the backup will
   * store, recording counts, vhosts and the users' password hashing algorithms (never a hash).
   *
   * @throws {ConfigError} when a selected vhost does not exist.
   * @throws {ComponentError} when the management API cannot be reached or refuses the user.
   */
  async describe(context: OperationContext): Promise<ComponentInfo> {
    throwIfAborted(context.signal);
    const overview = await this.#api.get('overview', context.signal);
    const version = isRecord(overview) ? String(overview.rabbitmq_version ?? '') : '';
    const documents: Document[] = [];
    let vhostRecords: VhostRecord[];
    if (this.options.vhosts === undefined) {
      const definitions = await this.#exportAll(context.signal);
      documents.push({ path: DEFINITIONS_ENTRY, definitions });
      vhostRecords = itemsOf(definitions, 'vhosts').map((vhost) => vhostRecordOf(vhost)!);
    } else {
      vhostRecords = [];
      for (const vhost of this.options.vhosts) {
        const record = await this.#vhostRecord(vhost, context.signal);
        if (!record) {
          throw new ConfigError(
            `rabbitmq component "${this.name}": vhost ${JSON.stringify(vhost)} does not exist on ${this.options.url}.`,
          );
        }
        vhostRecords.push(record);
        documents.push({
          path: entryPathOf(vhost),
          vhost,
          definitions: await this.#exportVhost(vhost, context.signal),
        });
      }
    }
    this.#documents = documents;
    const users = documents.flatMap((document) => itemsOf(document.definitions, 'users'));
    const hashingAlgorithms = [
      ...new Set(users.map((user) => String(user.hashing_algorithm ?? 'unknown'))),
    ].sort();
    const counts: Record<string, number> = {};
    for (const document of documents) {
      for (const [category, count] of Object.entries(countsOf(document.definitions))) {
        counts[category] = (counts[category] ?? 0) + count;
      }
    }
    return {
      ...(version ? { version } : {}),
      capabilities: {
        incremental: false,
        pointInTime: false,
        consistentSnapshot: false,
        restoreIntoExisting: true,
        selectiveRestore: false,
      },
      notCaptured: [...NOT_CAPTURED, ...(this.options.vhosts ? NOT_CAPTURED_VHOSTS : [])],
      secrets: {
        captured: [
          ...(users.length > 0
            ? [
                {
                  kind: 'password-hash' as const,
                  what: `password hashes of ${users.length} RabbitMQ user${users.length === 1 ? '' : 's'} (${hashingAlgorithms.join(', ')})`,
                  paths: documents.map((document) => document.path),
                },
              ]
            : []),
          {
            kind: 'credentials',
            what: 'URIs of shovels and federation upstreams, with the passwords they carry (parameters)',
            paths: documents.map((document) => document.path),
          },
        ],
        notCaptured: [
          {
            kind: 'token',
            what: "the Erlang cookie and the nodes' TLS keys: files on each node, outside the definitions",
          },
        ],
      },
      details: {
        format:
          this.options.vhosts === undefined
            ? 'RabbitMQ definitions JSON (GET /api/definitions, vhosts with description and tags)'
            : 'RabbitMQ per-vhost definitions JSON (GET /api/definitions/<vhost>)',
        managementUrl: this.options.url,
        rabbitmqVersion: version,
        ...(isRecord(overview) && typeof overview.erlang_version === 'string'
          ? { erlangVersion: overview.erlang_version }
          : {}),
        ...(isRecord(overview) && typeof overview.cluster_name === 'string'
          ? { clusterName: overview.cluster_name }
          : {}),
        scope: this.options.vhosts === undefined ? 'all' : 'vhosts',
        vhosts: vhostRecords,
        entries: documents.map((document) => document.path),
        counts,
        passwordHashes: users.length > 0,
        hashingAlgorithms,
      },
    };
  }

  /** `definitions.json`, or `vhosts/<vhost>.json` per selected vhost; JSON documents of known size. */
  async *backup(context: BackupContext): AsyncIterable<Entry> {
    let documents = this.#documents;
    this.#documents = undefined;
    if (!documents) {
      await this.describe(context);
      documents = this.#documents ?? [];
      this.#documents = undefined;
    }
    for (const document of documents) {
      throwIfAborted(context.signal);
      const bytes = Buffer.from(`${JSON.stringify(document.definitions, null, 2)}\n`);
      yield {
        path: document.path,
        type: 'file',
        size: bytes.length,
        mode: 0o600,
        body: (async function* () {
          yield bytes;
        })(),
      };
    }
  }

  /**
   * Imports the backup's definitions with `POST /api/definitions` (or `/api/definitions/<vhost>`
   * per vhost entry, creating a missing vhost first). Every entry is read and checked before
   * anything is imported. RabbitMQ's import only adds and updates: nothing on the target is
   * deleted. `fail`: a vhost, user, queue or exchange of the backup that exists on the target
   * with other properties throws `ConflictError` (identical objects are no conflict); `skip`:
   * only objects missing on the target are imported; `overwrite`: everything is imported, but
   * existing queues and exchanges keep their properties (RabbitMQ cannot change them in place;
   * they are listed in the report's `details.notUpdated`).
   * The source node's `internal_cluster_id` is never imported.
   *
   * @throws {ConflictError} under `fail`, before anything is imported.
   * @throws {ComponentError} for an unreadable entry or a refused import (scrubbed of password hashes).
   */
  /**
   * The target's version (`GET /api/overview`). Users hashed with SHA-256 or SHA-512 need
   * RabbitMQ 3.6 or newer (older servers know only MD5, and the users could not log in): refused,
   * not forceable. Definitions from a newer major than the target may hold what it lacks:
   * refused, forceable.
   */
  async preflight(context: PreflightContext): Promise<PreflightResult> {
    const overview = await this.#api.get('overview', context.signal);
    const targetVersion = isRecord(overview)
      ? String(overview.rabbitmq_version ?? '') || undefined
      : undefined;
    if (targetVersion === undefined) return {};
    const target = parseVersion(targetVersion);
    const recorded = context.component.info.details?.hashingAlgorithms;
    const algorithms = Array.isArray(recorded) ? recorded.map(String) : [];
    const modern = algorithms.filter((algorithm) => /sha(256|512)/.test(algorithm));
    if (target && modern.length > 0 && compareVersions(target, { major: 3, minor: 6, patch: 0 }) < 0) {
      return {
        targetVersion,
        refusal: {
          reason: `the users' passwords are hashed with ${modern.join(', ')}, which RabbitMQ before 3.6 cannot check; restore into RabbitMQ 3.6 or newer`,
          forceable: false,
        },
      };
    }
    const refusal = refuseOlderTarget('RabbitMQ', context.component.version, targetVersion, 'major');
    return { targetVersion, ...(refusal ? { refusal } : {}) };
  }

  async restore(entries: AsyncIterable<Entry>, context: RestoreContext): Promise<RestoreReport> {
    const signal = context.signal;
    const documents: Document[] = [];
    let bytes = 0;
    for await (const entry of entries) {
      throwIfAborted(signal);
      if (entry.type !== undefined && entry.type !== 'file') continue;
      const vhost = entry.path === DEFINITIONS_ENTRY ? undefined : vhostOf(entry.path);
      if (entry.path !== DEFINITIONS_ENTRY && vhost === undefined) {
        throw new ComponentError(this.name, `unexpected entry "${entry.path}" in the backup.`);
      }
      const data = entry.body ? await collect(entry.body) : new Uint8Array();
      bytes += data.byteLength;
      let parsed: unknown;
      try {
        parsed = JSON.parse(Buffer.from(data).toString('utf8'));
      } catch (error) {
        throw new ComponentError(
          this.name,
          `entry "${entry.path}" is not valid JSON: ${(error as Error).message}`,
        );
      }
      const definitions = asDefinitions(parsed, `entry "${entry.path}"`, this.name);
      for (const hash of passwordHashesOf(definitions)) this.#api.secrets.add(hash);
      documents.push({ path: entry.path, ...(vhost === undefined ? {} : { vhost }), definitions });
    }
    if (documents.length === 0) throw new ComponentError(this.name, 'the backup holds no definitions.');

    const recorded = new Map<string, VhostRecord>();
    const details = context.component.info.details;
    for (const value of Array.isArray(details?.vhosts) ? details.vhosts : []) {
      const record = vhostRecordOf(value);
      if (record) recorded.set(record.name, record);
    }

    // Each document next to what the target holds now, in the same shape.
    const plans: { document: Document; backup: Definitions; target: Definitions; vhostExists: boolean }[] =
      [];
    for (const document of documents) {
      if (document.vhost === undefined) {
        plans.push({
          document,
          backup: document.definitions,
          target: await this.#exportAll(signal),
          vhostExists: true,
        });
        continue;
      }
      const existing = await this.#vhostRecord(document.vhost, signal);
      const wanted = recorded.get(document.vhost) ?? { name: document.vhost };
      plans.push({
        document,
        backup: { ...document.definitions, vhosts: [wanted] },
        target: existing
          ? { ...(await this.#exportVhost(document.vhost, signal)), vhosts: [existing] }
          : { vhosts: [] },
        vhostExists: existing !== undefined,
      });
    }

    if (context.conflict === 'fail') {
      const conflicts = plans.flatMap((plan) => conflictsOf(plan.backup, plan.target, plan.document.vhost));
      if (conflicts.length > 0) {
        const shown = conflicts.slice(0, 10).join(', ');
        const more = conflicts.length > 10 ? ` and ${conflicts.length - 10} more` : '';
        throw new ConflictError(
          conflicts[0]!,
          `RabbitMQ at ${this.options.url} already has ${shown}${more} with other properties, and the conflict policy is "fail"; nothing was imported (restore with "skip" or "overwrite").`,
        );
      }
    }

    // RabbitMQ cannot redeclare a queue or exchange with other properties: the import keeps them.
    const notUpdated =
      context.conflict === 'overwrite'
        ? plans.flatMap((plan) =>
            conflictsOf(plan.backup, plan.target, plan.document.vhost, ['queues', 'exchanges']),
          )
        : [];
    let skipped = 0;
    const imported: Record<string, number> = {};
    const vhostsCreated: string[] = [];
    for (const plan of plans) {
      throwIfAborted(signal);
      let definitions = withoutNodeIdentity(plan.backup);
      if (context.conflict === 'skip') {
        const filtered = withoutExisting(definitions, plan.target, plan.document.vhost);
        definitions = filtered.definitions;
        skipped += filtered.skipped;
      }
      for (const [category, count] of Object.entries(countsOf(definitions))) {
        imported[category] = (imported[category] ?? 0) + count;
      }
      const vhost = plan.document.vhost;
      if (vhost === undefined) {
        await this.#api.request('POST', 'definitions', { body: definitions, signal });
        continue;
      }
      const { vhosts, ...inVhost } = definitions;
      const record = itemsOf({ vhosts }, 'vhosts')[0];
      if (!plan.vhostExists || (record && context.conflict === 'overwrite')) {
        const wanted = vhostRecordOf(record) ?? { name: vhost };
        await this.#api.request('PUT', `vhosts/${this.#segment(vhost)}`, {
          body: { description: wanted.description ?? '', tags: (wanted.tags ?? []).join(',') },
          signal,
        });
        if (!plan.vhostExists) vhostsCreated.push(vhost);
      }
      await this.#api.request('POST', `definitions/${this.#segment(vhost)}`, { body: inVhost, signal });
    }
    return {
      entries: documents.length,
      bytes,
      skipped,
      details: {
        conflict: context.conflict,
        imported,
        ...(vhostsCreated.length > 0 ? { vhostsCreated } : {}),
        ...(notUpdated.length > 0 ? { notUpdated } : {}),
        ...(context.component.version ? { sourceVersion: context.component.version } : {}),
      },
    };
  }
}

/** Same as `new RabbitmqComponent(options)`. */
export function rabbitmq(options: RabbitmqOptions): RabbitmqComponent {
  return new RabbitmqComponent(options);
}

/**
 * Builds the component from the CLI's JSON config
 * (`{ "kind": "rabbitmq", "url": "http://127.0.0.1:15672", "username": "admin", "password": "…" }`).
 *
 * @throws {ConfigError} naming an unknown or invalid field.
 */
export function fromConfig(config: Record<string, unknown>): RabbitmqComponent {
  checkComponentConfig(config, 'rabbitmq', CONFIG_FIELDS);
  const { kind: _kind, ...options } = config;
  return new RabbitmqComponent(options as unknown as RabbitmqOptions);
}
