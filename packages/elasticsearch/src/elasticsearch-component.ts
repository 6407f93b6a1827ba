import { StringDecoder } from 'node:string_decoder';
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
  throwIfAborted,
} from '@bk/core';
import {
  type ClusterInfo,
  checkBaseUrl,
  compareVersions,
  ElasticsearchApi,
  type ElasticsearchAuth,
  errorText,
} from './elasticsearch-api.ts';

/**
 * Options of an {@link ElasticsearchComponent}.
 *
 * @example
 * const options: ElasticsearchOptions = {
 *   url: 'https://es.example.com:9200',
 *   username: 'bk',
 *   password: process.env.ES_PASSWORD!,
 *   indices: ['logs-*', 'orders'],
 * };
 */
export interface ElasticsearchOptions {
  /** The component's name, unique within one backup; default `elasticsearch`. */
  name?: string;
  /** Base URL of the cluster, e.g. `https://es.example.com:9200`; no credentials in it. */
  url: string;
  /** Basic auth user (with `password`). */
  username?: string;
  /** Basic auth password; never logged. */
  password?: string;
  /** An API key, the base64 `id:api_key` Elasticsearch returns as `encoded`; never logged. */
  apiKey?: string;
  /**
   * Index patterns to back up, resolved as Elasticsearch resolves them (`logs-*`, `-logs-old`,
   * aliases); default `["*"]`: every open index that is not hidden or system.
   */
  indices?: string[];
  /**
   * How documents are read: `pit` (point in time + `search_after`, Elasticsearch 7.12+),
   * `scroll` (older versions, OpenSearch), or `auto` (default): `pit` where the cluster has it.
   */
  documents?: 'auto' | 'pit' | 'scroll';
  /** Documents per search page, default 1 000 (at most 10 000). One page is held at a time. */
  pageSize?: number;
  /** Time each request may take, answer and body, in ms; default 60 000. */
  timeoutMs?: number;
  /**
   * Restore settings. `renamePattern` / `renameReplacement`: a regular expression and its
   * replacement (`$1`, …) applied to every index name, as the snapshot restore API does.
   * `includeAliases` (default true): recreate the aliases. `bulkDocuments` (default 1 000) and
   * `bulkBytes` (default 5 MiB) bound one `_bulk` request; `concurrency` (default 2) requests
   * run at once; `maxRetries` (default 10) per request on 429 or 5xx.
   */
  restore?: {
    renamePattern?: string;
    renameReplacement?: string;
    includeAliases?: boolean;
    bulkDocuments?: number;
    bulkBytes?: number;
    concurrency?: number;
    maxRetries?: number;
  };
}

/** Fields of an Elasticsearch config entry for the `bk` CLI. */
export const CONFIG_FIELDS = [
  'kind',
  'mode',
  'name',
  'url',
  'username',
  'password',
  'apiKey',
  'indices',
  'documents',
  'pageSize',
  'timeoutMs',
  'restore',
];

/** The first entry: every index's mappings, settings and aliases. */
export const INDICES_ENTRY = 'indices.json';
/** Then one entry per index: `documents/<index>.ndjson`, one `{ _id, _source, _routing? }` per line. */
export const DOCUMENTS_PREFIX = 'documents/';

/** Largest `indices.json` read back on restore. */
const INDICES_LIMIT = 256 * 1024 * 1024;
/** Longest single document line accepted on restore (Elasticsearch's default `http.max_content_length`). */
const LINE_LIMIT = 100 * 1024 * 1024;
/** How long a point in time or scroll context is kept between two pages. */
const KEEP_ALIVE = '5m';

/** Index settings the cluster sets itself: never restored. */
const SERVER_SETTINGS = [
  'uuid',
  'creation_date',
  'creation_date_string',
  'provided_name',
  'version',
  'history_uuid',
  'resize',
  'shrink',
  'verified_before_close',
  'frozen',
  'search',
  'blocks',
];

const NOT_CAPTURED = [
  'closed indices (listed in details.closedIndices), hidden and system indices (.kibana, .security, …) unless named in "indices"',
  'data streams and their .ds-* backing indices, index and component templates, ingest pipelines, ILM/ISM policies, stored scripts, snapshot repositories, users and roles, cluster settings',
  'documents are read through a point in time (or scroll) opened per index: each index is consistent in itself, not with the others',
  '_version, _seq_no and _primary_term of documents (restored documents start at version 1)',
];

/** One index as `indices.json` records it. */
export interface IndexRecord {
  name: string;
  documents: number;
  settings: Record<string, unknown>;
  mappings: Record<string, unknown>;
  aliases: Record<string, unknown>;
}

interface IndicesDocument {
  format: 1;
  cluster: ClusterInfo;
  indices: IndexRecord[];
}

/**
 * Backs up Elasticsearch (or OpenSearch) indices logically over the REST API: each selected
 * index's mappings, settings and aliases in `indices.json`, then its documents as
 * `documents/<index>.ndjson`, read page by page through a point in time and `search_after` (or a
 * scroll), so memory holds one page whatever the index's size. Restore creates the indices
 * (optionally renamed), loads the documents through `_bulk` with bounded concurrency and
 * retries on 429, then sets the refresh interval and aliases back.
 *
 * @example
 * import { backup } from '@bk/core';
 * import { elasticsearch } from '@bk/elasticsearch';
 *
 * await backup({ storage, components: [elasticsearch({ url: 'http://127.0.0.1:9200', username, password })] });
 */
export class ElasticsearchComponent implements Component {
  readonly kind = 'elasticsearch' as const;
  readonly name: string;
  /** The options without credentials (safe to log). */
  readonly options: Readonly<Omit<ElasticsearchOptions, 'password' | 'apiKey'>>;
  readonly #api: ElasticsearchApi;
  readonly #patterns: string[];
  readonly #documents: 'auto' | 'pit' | 'scroll';
  readonly #pageSize: number;
  readonly #rename: { pattern: RegExp; replacement: string } | undefined;
  readonly #includeAliases: boolean;
  readonly #bulkDocuments: number;
  readonly #bulkBytes: number;
  readonly #concurrency: number;
  readonly #maxRetries: number;
  #described: { cluster: ClusterInfo; indices: IndexRecord[] } | undefined;

  /**
   * Validates the options; sends no request.
   *
   * @throws {ConfigError} naming the invalid option (never a credential's value).
   */
  constructor(options: ElasticsearchOptions) {
    if (!isRecord(options)) throw new ConfigError('elasticsearch component: the options must be an object.');
    const name = options.name ?? 'elasticsearch';
    if (typeof name !== 'string') throw new ConfigError('elasticsearch component: "name" must be a string.');
    checkComponentName(name);
    const where = `elasticsearch component "${name}"`;
    const url = checkBaseUrl(options.url, where, '"username" and "password", or "apiKey"');
    let auth: ElasticsearchAuth;
    if (options.apiKey !== undefined) {
      if (typeof options.apiKey !== 'string' || options.apiKey === '')
        throw new ConfigError(`${where}: "apiKey" must be a non-empty string.`);
      if (options.username !== undefined || options.password !== undefined)
        throw new ConfigError(`${where}: give either "apiKey" or "username" and "password", not both.`);
      auth = { apiKey: options.apiKey };
    } else if (options.username !== undefined || options.password !== undefined) {
      if (typeof options.username !== 'string' || typeof options.password !== 'string')
        throw new ConfigError(`${where}: "username" and "password" must both be strings.`);
      auth = { username: options.username, password: options.password };
    }
    const patterns = options.indices ?? ['*'];
    if (
      !Array.isArray(patterns) ||
      patterns.length === 0 ||
      patterns.some((item) => typeof item !== 'string' || item === '' || item.includes(','))
    )
      throw new ConfigError(
        `${where}: "indices" must be a non-empty list of index names or patterns (no commas).`,
      );
    const documents = options.documents ?? 'auto';
    if (!['auto', 'pit', 'scroll'].includes(documents))
      throw new ConfigError(`${where}: "documents" must be "auto", "pit" or "scroll".`);
    const positive = (
      value: unknown,
      field: string,
      fallback: number,
      max = Number.MAX_SAFE_INTEGER,
    ): number => {
      if (value === undefined) return fallback;
      if (!Number.isSafeInteger(value) || (value as number) < 1 || (value as number) > max)
        throw new ConfigError(`${where}: "${field}" must be an integer from 1 to ${max}.`);
      return value as number;
    };
    this.#pageSize = positive(options.pageSize, 'pageSize', 1000, 10_000);
    const timeoutMs = positive(options.timeoutMs, 'timeoutMs', 60_000);
    const restore = checkNestedConfig(
      options.restore,
      'restore',
      [
        'renamePattern',
        'renameReplacement',
        'includeAliases',
        'bulkDocuments',
        'bulkBytes',
        'concurrency',
        'maxRetries',
      ],
      where,
    );
    if ((restore?.renamePattern === undefined) !== (restore?.renameReplacement === undefined))
      throw new ConfigError(`${where}: "restore.renamePattern" and "restore.renameReplacement" go together.`);
    if (restore?.renamePattern !== undefined) {
      if (typeof restore.renamePattern !== 'string' || typeof restore.renameReplacement !== 'string')
        throw new ConfigError(
          `${where}: "restore.renamePattern" and "restore.renameReplacement" must be strings.`,
        );
      try {
        this.#rename = { pattern: new RegExp(restore.renamePattern), replacement: restore.renameReplacement };
      } catch (error) {
        throw new ConfigError(
          `${where}: "restore.renamePattern" is not a regular expression: ${(error as Error).message}`,
        );
      }
    }
    if (restore?.includeAliases !== undefined && typeof restore.includeAliases !== 'boolean')
      throw new ConfigError(`${where}: "restore.includeAliases" must be true or false.`);
    this.#includeAliases = restore?.includeAliases !== false;
    this.#bulkDocuments = positive(restore?.bulkDocuments, 'restore.bulkDocuments', 1000);
    this.#bulkBytes = positive(restore?.bulkBytes, 'restore.bulkBytes', 5 * 1024 * 1024);
    this.#concurrency = positive(restore?.concurrency, 'restore.concurrency', 2, 64);
    this.#maxRetries = positive(restore?.maxRetries, 'restore.maxRetries', 10, 100);
    this.name = name;
    this.#patterns = patterns;
    this.#documents = documents;
    const { password: _password, apiKey: _apiKey, ...safe } = options;
    this.options = { ...safe, name, url };
    this.#api = new ElasticsearchApi({ url, auth, component: name, timeoutMs });
  }

  /** Every selected open index with its mappings, settings (server-set ones removed) and aliases. */
  async #read(
    signal: AbortSignal,
  ): Promise<{ cluster: ClusterInfo; indices: IndexRecord[]; closed: string[] }> {
    const cluster = await this.#api.info(signal);
    const expression = this.#patterns.map(encodeURIComponent).join(',');
    const answer = await this.#api.request(
      'GET',
      `/${expression}?expand_wildcards=open&allow_no_indices=true`,
      {
        signal,
      },
    );
    const found = isRecord(answer.body) ? answer.body : {};
    const counts = await this.#api.get(
      `/_cat/indices/${expression}?format=json&h=index,status,docs.count&expand_wildcards=all`,
      signal,
    );
    const rows = Array.isArray(counts) ? counts.filter(isRecord) : [];
    const closed = rows
      .filter((row) => row.status === 'close')
      .map((row) => String(row.index))
      .sort();
    const indices: IndexRecord[] = Object.keys(found)
      .sort()
      .map((name) => {
        const definition = isRecord(found[name]) ? found[name] : {};
        const row = rows.find((item) => item.index === name);
        return {
          name,
          documents: Number(row?.['docs.count'] ?? 0) || 0,
          settings: portableSettings(isRecord(definition.settings) ? definition.settings : {}),
          mappings: isRecord(definition.mappings) ? definition.mappings : {},
          aliases: isRecord(definition.aliases) ? definition.aliases : {},
        };
      });
    return { cluster, indices, closed };
  }

  #mode(cluster: ClusterInfo): 'pit' | 'scroll' {
    if (this.#documents !== 'auto') return this.#documents;
    return cluster.distribution === 'elasticsearch' && compareVersions(cluster.version, '7.12.0') >= 0
      ? 'pit'
      : 'scroll';
  }

  /**
   * Reads the cluster's version and the selected indices with their document counts; records
   * the indices, the closed ones left out, and what logical mode does not capture.
   *
   * @throws {ComponentError} when the cluster cannot be reached or refuses the credentials.
   */
  async describe(context: OperationContext): Promise<ComponentInfo> {
    throwIfAborted(context.signal);
    const read = await this.#read(context.signal);
    this.#described = { cluster: read.cluster, indices: read.indices };
    const notCaptured = [...NOT_CAPTURED];
    for (const name of read.closed) notCaptured.push(`closed index "${name}": open it to back it up`);
    return {
      version: read.cluster.version,
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
          {
            kind: 'credentials',
            what: 'users, roles, role mappings and API keys of the cluster (its security index is not backed up)',
          },
        ],
      },
      details: {
        format: 'logical: indices.json (mappings, settings, aliases) and documents/<index>.ndjson',
        mode: 'logical',
        distribution: read.cluster.distribution,
        clusterName: read.cluster.clusterName,
        url: this.#api.url,
        documentsRead: this.#mode(read.cluster),
        indices: read.indices.map((index) => ({
          name: index.name,
          documents: index.documents,
          aliases: Object.keys(index.aliases),
        })),
        closedIndices: read.closed,
      },
    };
  }

  /** `indices.json`, then `documents/<index>.ndjson` per index, streamed page by page. */
  async *backup(context: BackupContext): AsyncIterable<Entry> {
    const described = this.#described ?? (await this.#read(context.signal));
    this.#described = undefined;
    const document: IndicesDocument = { format: 1, cluster: described.cluster, indices: described.indices };
    const bytes = Buffer.from(`${JSON.stringify(document, null, 2)}\n`);
    yield { path: INDICES_ENTRY, type: 'file', size: bytes.byteLength, mode: 0o600, body: fromBytes(bytes) };
    const mode = this.#mode(described.cluster);
    for (const index of described.indices) {
      throwIfAborted(context.signal);
      yield {
        path: `${DOCUMENTS_PREFIX}${encodeURIComponent(index.name)}.ndjson`,
        type: 'file',
        mode: 0o600,
        body:
          mode === 'pit'
            ? this.#pitDocuments(index.name, context.signal)
            : this.#scrollDocuments(index.name, context.signal),
      };
    }
  }

  /** Documents of `index` through a point in time, sorted by `_shard_doc`, one page at a time. The PIT is closed in every case. */
  async *#pitDocuments(index: string, signal: AbortSignal): ByteStream {
    const opened = await this.#api.request(
      'POST',
      `/${encodeURIComponent(index)}/_pit?keep_alive=${KEEP_ALIVE}`,
      {
        signal,
      },
    );
    let pitId = isRecord(opened.body) ? String(opened.body.id ?? '') : '';
    if (pitId === '')
      throw new ComponentError(this.name, `POST /${index}/_pit answered without a point in time id.`);
    try {
      let after: unknown[] | undefined;
      for (;;) {
        const answer = await this.#api.request(
          'POST',
          '/_search?filter_path=pit_id,hits.hits._id,hits.hits._source,hits.hits._routing,hits.hits.sort',
          {
            body: {
              size: this.#pageSize,
              query: { match_all: {} },
              pit: { id: pitId, keep_alive: KEEP_ALIVE },
              sort: [{ _shard_doc: 'asc' }],
              track_total_hits: false,
              ...(after === undefined ? {} : { search_after: after }),
            },
            signal,
          },
        );
        const body = isRecord(answer.body) ? answer.body : {};
        if (typeof body.pit_id === 'string') pitId = body.pit_id;
        const hits = hitsOf(body);
        if (hits.length === 0) return;
        yield linesOf(hits);
        const last = hits.at(-1)!;
        if (!Array.isArray(last.sort))
          throw new ComponentError(this.name, `a page of "${index}" came back without sort values.`);
        after = last.sort;
        if (hits.length < this.#pageSize) return;
      }
    } finally {
      await this.#api
        .request('DELETE', '/_pit', {
          body: { id: pitId },
          allow: [404],
          signal: AbortSignal.timeout(10_000),
        })
        .catch(() => undefined);
    }
  }

  /** Documents of `index` through a scroll sorted by `_doc`; the scroll is cleared in every case. */
  async *#scrollDocuments(index: string, signal: AbortSignal): ByteStream {
    let scrollId: string | undefined;
    try {
      let answer = await this.#api.request(
        'POST',
        `/${encodeURIComponent(index)}/_search?scroll=${KEEP_ALIVE}`,
        {
          body: { size: this.#pageSize, query: { match_all: {} }, sort: ['_doc'] },
          signal,
        },
      );
      for (;;) {
        const body = isRecord(answer.body) ? answer.body : {};
        if (typeof body._scroll_id === 'string') scrollId = body._scroll_id;
        const hits = hitsOf(body);
        if (hits.length === 0) return;
        yield linesOf(hits);
        if (scrollId === undefined)
          throw new ComponentError(this.name, `a scroll over "${index}" came back without a scroll id.`);
        answer = await this.#api.request('POST', '/_search/scroll', {
          body: { scroll: KEEP_ALIVE, scroll_id: scrollId },
          signal,
        });
      }
    } finally {
      if (scrollId !== undefined)
        await this.#api
          .request('DELETE', '/_search/scroll', {
            body: { scroll_id: scrollId },
            allow: [404],
            signal: AbortSignal.timeout(10_000),
          })
          .catch(() => undefined);
    }
  }

  /**
   * Reads the target's version before anything is written: a restore into an older version of
   * the same distribution is refused (forceable: documents go back through `_bulk`, so an older
   * cluster may take them if it knows every mapping and setting). Across Elasticsearch and
   * OpenSearch the cluster itself is left to judge.
   *
   * @throws {ComponentError} when the target cannot be reached.
   */
  async preflight(context: PreflightContext): Promise<PreflightResult> {
    const cluster = await this.#api.info(context.signal);
    const details = context.component.info.details ?? {};
    const distribution = details.distribution === 'opensearch' ? 'opensearch' : 'elasticsearch';
    const from = context.component.version;
    if (from === undefined || from === 'unknown' || cluster.distribution !== distribution)
      return { targetVersion: cluster.version };
    if (compareVersions(cluster.version, from) >= 0) return { targetVersion: cluster.version };
    return {
      targetVersion: cluster.version,
      refusal: {
        reason: `${this.#api.url} runs ${distribution} ${cluster.version}, older than the ${from} the backup was taken from, and may not know its mappings and settings; restore into ${distribution} ${from} or newer`,
        forceable: true,
      },
    };
  }

  #targetName(name: string): string {
    return this.#rename ? name.replace(this.#rename.pattern, this.#rename.replacement) : name;
  }

  /**
   * Restores the indices: `indices.json` first (every target index is planned before anything
   * is written; {@link preflight} has checked the version), then each index's documents through `_bulk`. An index
   * that exists on the target (or an alias of that name): `fail` → `ConflictError`, nothing
   * written; `skip` → left alone, its documents skipped; `overwrite` → deleted and recreated.
   * Indices are created with `refresh_interval: -1` and get theirs back, with their aliases,
   * once their documents are in.
   *
   * @throws {ConflictError} under `fail`, before anything is written.
   * @throws {ComponentError} for an unreadable entry, a document the target refuses, or a
   *   request still rejected after `maxRetries`.
   */
  async restore(entries: AsyncIterable<Entry>, context: RestoreContext): Promise<RestoreReport> {
    const signal = context.signal;
    let plan: Map<string, { record: IndexRecord; target: string; action: 'create' | 'skip' }> | undefined;
    let count = 0;
    let bytes = 0;
    let documents = 0;
    let retries = 0;
    const created: string[] = [];
    const skipped: string[] = [];
    for await (const entry of entries) {
      throwIfAborted(signal);
      if (entry.type !== undefined && entry.type !== 'file') continue;
      count += 1;
      const body = entry.body ?? fromBytes(new Uint8Array());
      if (entry.path === INDICES_ENTRY) {
        const data = await collect(body, INDICES_LIMIT);
        bytes += data.byteLength;
        let parsed: unknown;
        try {
          parsed = JSON.parse(Buffer.from(data).toString('utf8'));
        } catch (error) {
          throw new ComponentError(this.name, `entry "${entry.path}" is not JSON.`, { cause: error });
        }
        if (
          !isRecord(parsed) ||
          parsed.format !== 1 ||
          !Array.isArray(parsed.indices) ||
          !isRecord(parsed.cluster)
        )
          throw new ComponentError(
            this.name,
            `entry "${entry.path}" is not an index list this version of bk reads.`,
          );
        plan = await this.#plan(parsed as unknown as IndicesDocument, context);
        for (const item of plan.values()) {
          if (item.action === 'skip') skipped.push(item.target);
          else {
            await this.#createIndex(item.record, item.target, signal);
            created.push(item.target);
          }
        }
        continue;
      }
      if (!entry.path.startsWith(DOCUMENTS_PREFIX) || !entry.path.endsWith('.ndjson'))
        throw new ComponentError(this.name, `unexpected entry "${entry.path}" in the backup.`);
      if (plan === undefined)
        throw new ComponentError(
          this.name,
          `entry "${entry.path}" comes before ${INDICES_ENTRY}; the backup is damaged.`,
        );
      const source = decodeURIComponent(entry.path.slice(DOCUMENTS_PREFIX.length, -'.ndjson'.length));
      const item = plan.get(source);
      if (item === undefined)
        throw new ComponentError(
          this.name,
          `entry "${entry.path}" names an index ${INDICES_ENTRY} does not list.`,
        );
      const counted = countingBytes(body, (size) => {
        bytes += size;
      });
      if (item.action === 'skip') {
        for await (const _chunk of counted) throwIfAborted(signal);
        continue;
      }
      const loaded = await this.#load(item.target, counted, signal);
      documents += loaded.documents;
      retries += loaded.retries;
      await this.#finishIndex(item.record, item.target, signal);
    }
    // Indices whose documents entry was empty (no documents) still get their settings and aliases.
    for (const item of plan?.values() ?? []) {
      if (item.action === 'create' && !this.#finished.has(item.target))
        await this.#finishIndex(item.record, item.target, signal);
    }
    this.#finished.clear();
    return {
      entries: count,
      bytes,
      skipped: skipped.length,
      details: {
        conflict: context.conflict,
        created,
        skipped,
        documents,
        retries,
        ...(context.component.version ? { sourceVersion: context.component.version } : {}),
      },
    };
  }

  readonly #finished = new Set<string>();

  /** Checks every target index before anything is written. */
  async #plan(
    backed: IndicesDocument,
    context: RestoreContext,
  ): Promise<Map<string, { record: IndexRecord; target: string; action: 'create' | 'skip' }>> {
    const signal = context.signal;
    const plan = new Map<string, { record: IndexRecord; target: string; action: 'create' | 'skip' }>();
    const targets = new Set<string>();
    const conflicts: string[] = [];
    for (const record of backed.indices) {
      const target = this.#targetName(record.name);
      if (
        target === '' ||
        target !== target.toLowerCase() ||
        /[\\/*?"<>| ,#]/.test(target) ||
        /^[-_+]/.test(target)
      )
        throw new ConfigError(
          `${this.name}: the rename turns index "${record.name}" into "${target}", which is not a valid index name.`,
        );
      if (targets.has(target))
        throw new ConfigError(
          `${this.name}: the rename turns two indices into "${target}"; change "restore.renamePattern".`,
        );
      targets.add(target);
      const found = await this.#api.request(
        'GET',
        `/${encodeURIComponent(target)}?expand_wildcards=all&filter_path=*.settings.index.uuid`,
        {
          allow: [404],
          signal,
        },
      );
      const exists = found.status !== 404;
      let action: 'create' | 'skip' = 'create';
      if (exists) {
        const isAlias = isRecord(found.body) && !(target in found.body);
        const what = isAlias
          ? `alias "${target}" (of ${Object.keys(found.body as object).join(', ')})`
          : `index "${target}"`;
        if (context.conflict === 'fail' || isAlias) conflicts.push(what);
        else if (context.conflict === 'skip') action = 'skip';
      }
      plan.set(record.name, { record, target, action });
    }
    if (conflicts.length > 0) {
      const shown = conflicts.slice(0, 10).join(', ');
      const more = conflicts.length > 10 ? ` and ${conflicts.length - 10} more` : '';
      throw new ConflictError(
        conflicts[0]!,
        `${this.#api.url} already has ${shown}${more}; nothing was written. Restore under another name ("restore.renamePattern" and "restore.renameReplacement"), delete or close it there, or restore with "skip" (keep it) or "overwrite" (delete and recreate it).`,
      );
    }
    return plan;
  }

  async #createIndex(record: IndexRecord, target: string, signal: AbortSignal): Promise<void> {
    const existing = await this.#api.request('HEAD', `/${encodeURIComponent(target)}`, {
      allow: [404],
      signal,
    });
    if (existing.status !== 404)
      await this.#api.request('DELETE', `/${encodeURIComponent(target)}`, { signal });
    const index = isRecord(record.settings.index) ? record.settings.index : {};
    await this.#api.request('PUT', `/${encodeURIComponent(target)}`, {
      body: {
        settings: { index: { ...index, refresh_interval: '-1' } },
        mappings: record.mappings,
      },
      signal,
    });
  }

  /** Puts the index's refresh interval back, refreshes it and adds its aliases. */
  async #finishIndex(record: IndexRecord, target: string, signal: AbortSignal): Promise<void> {
    const index = isRecord(record.settings.index) ? record.settings.index : {};
    await this.#api.request('PUT', `/${encodeURIComponent(target)}/_settings`, {
      body: { index: { refresh_interval: index.refresh_interval ?? null } },
      signal,
    });
    await this.#api.request('POST', `/${encodeURIComponent(target)}/_refresh`, { signal });
    const aliases = Object.entries(record.aliases);
    if (this.#includeAliases && aliases.length > 0) {
      await this.#api.request('POST', '/_aliases', {
        body: {
          actions: aliases.map(([alias, definition]) => ({
            add: { index: target, alias, ...(isRecord(definition) ? definition : {}) },
          })),
        },
        signal,
      });
    }
    this.#finished.add(target);
  }

  /**
   * Streams `body`'s NDJSON lines into `_bulk` requests of at most `bulkDocuments` documents and
   * `bulkBytes` bytes, `concurrency` at a time. Memory: about `concurrency + 1` requests' bodies.
   */
  async #load(
    target: string,
    body: ByteStream,
    signal: AbortSignal,
  ): Promise<{ documents: number; retries: number }> {
    const batches = this.#batches(target, body);
    let documents = 0;
    let retries = 0;
    const controller = new AbortController();
    const both = AbortSignal.any([signal, controller.signal]);
    const worker = async () => {
      for (;;) {
        throwIfAborted(both);
        const next = await batches.next();
        if (next.done) return;
        const sent = await this.#sendBulk(target, next.value, both);
        documents += next.value.length;
        retries += sent;
      }
    };
    const workers = Array.from({ length: this.#concurrency }, () =>
      worker().catch((error: unknown) => {
        controller.abort(error);
        throw error;
      }),
    );
    const results = await Promise.allSettled(workers);
    await batches.return(undefined);
    const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failed) {
      // The first failure, not the aborts it caused in the other workers.
      const reason = signal.aborted ? signal.reason : (controller.signal.reason ?? failed.reason);
      throw reason;
    }
    return { documents, retries };
  }

  /** Batches of `[action line, source line]` pairs from the NDJSON body. */
  async *#batches(target: string, body: ByteStream): AsyncGenerator<string[][], void, undefined> {
    let batch: string[][] = [];
    let size = 0;
    for await (const line of ndjsonLines(body)) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch (error) {
        throw new ComponentError(this.name, `a document line of index "${target}" is not JSON.`, {
          cause: error,
        });
      }
      if (!isRecord(parsed) || typeof parsed._id !== 'string' || !isRecord(parsed._source))
        throw new ComponentError(this.name, `a document line of index "${target}" has no _id or _source.`);
      const action = JSON.stringify({
        index: {
          _index: target,
          _id: parsed._id,
          ...(typeof parsed._routing === 'string' ? { routing: parsed._routing } : {}),
        },
      });
      const source = JSON.stringify(parsed._source);
      const pairSize = action.length + source.length + 2;
      if (batch.length > 0 && (batch.length >= this.#bulkDocuments || size + pairSize > this.#bulkBytes)) {
        yield batch;
        batch = [];
        size = 0;
      }
      batch.push([action, source]);
      size += pairSize;
    }
    if (batch.length > 0) yield batch;
  }

  /**
   * Sends one batch; on a 429 / 5xx answer, or items rejected with 429, waits (`Retry-After`, or
   * exponential backoff from 100 ms to 10 s with jitter) and resends what was not taken.
   * Returns the number of retries.
   */
  async #sendBulk(target: string, batch: string[][], signal: AbortSignal): Promise<number> {
    let pending = batch;
    for (let attempt = 0; ; attempt += 1) {
      throwIfAborted(signal);
      const text = `${pending.map((pair) => `${pair[0]}\n${pair[1]}`).join('\n')}\n`;
      let answer: Awaited<ReturnType<ElasticsearchApi['request']>> | undefined;
      let retryAfter: number | undefined;
      try {
        answer = await this.#api.request('POST', '/_bulk', { body: text, allow: [429], signal });
        if (answer.status === 429) retryAfter = retryAfterMs(answer.headers.get('retry-after'));
      } catch (error) {
        if (
          !(isRecord(error) && (error as { retryable?: boolean }).retryable === true) ||
          attempt >= this.#maxRetries
        )
          throw error;
      }
      if (answer !== undefined && answer.status !== 429) {
        const body = isRecord(answer.body) ? answer.body : {};
        if (body.errors !== true) return attempt;
        const items = Array.isArray(body.items) ? body.items : [];
        const again: string[][] = [];
        for (let at = 0; at < items.length; at += 1) {
          const item = isRecord(items[at])
            ? (Object.values(items[at] as object)[0] as Record<string, unknown>)
            : {};
          const status = Number(item.status ?? 0);
          if (status < 300) continue;
          if (status === 429 || status === 503) {
            again.push(pending[at]!);
            continue;
          }
          throw new ComponentError(
            this.name,
            `index "${target}" refused document "${String(item._id)}": HTTP ${status} ${errorText({ error: item.error })}. Check that the target's mappings accept the backup's documents.`,
          );
        }
        if (again.length === 0) return attempt;
        pending = again;
      }
      if (attempt >= this.#maxRetries)
        throw new ComponentError(
          this.name,
          `_bulk into "${target}" was still rejected after ${this.#maxRetries} retries (the cluster is overloaded: lower "restore.concurrency" or "restore.bulkDocuments", or raise "restore.maxRetries").`,
          { retryable: true },
        );
      const backoff = Math.min(10_000, 100 * 2 ** attempt);
      await sleep(retryAfter ?? backoff / 2 + Math.random() * (backoff / 2), signal);
    }
  }
}

/** Index settings without what the cluster sets itself, nested under `index`. */
function portableSettings(settings: Record<string, unknown>): Record<string, unknown> {
  const index = isRecord(settings.index) ? { ...settings.index } : {};
  for (const key of SERVER_SETTINGS) delete index[key];
  if (isRecord(index.routing) && isRecord(index.routing.allocation)) {
    const allocation = { ...index.routing.allocation };
    delete allocation.initial_recovery;
    index.routing = { ...index.routing, allocation };
  }
  return { index };
}

function hitsOf(body: Record<string, unknown>): Record<string, unknown>[] {
  const hits = isRecord(body.hits) && Array.isArray(body.hits.hits) ? body.hits.hits : [];
  return hits.filter(isRecord);
}

function linesOf(hits: Record<string, unknown>[]): Uint8Array {
  let text = '';
  for (const hit of hits) {
    text += `${JSON.stringify({
      _id: hit._id,
      ...(typeof hit._routing === 'string' ? { _routing: hit._routing } : {}),
      _source: hit._source ?? {},
    })}\n`;
  }
  return Buffer.from(text);
}

async function* countingBytes(body: ByteStream, onBytes: (size: number) => void): ByteStream {
  for await (const chunk of body) {
    onBytes(chunk.byteLength);
    yield chunk;
  }
}

/** Lines of an NDJSON stream (empty lines skipped), each decoded whole; a line longer than {@link LINE_LIMIT} fails. */
export async function* ndjsonLines(body: ByteStream): AsyncGenerator<string> {
  const decoder = new StringDecoder('utf8');
  let rest = '';
  for await (const chunk of body) {
    rest += decoder.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    let start = 0;
    for (let end = rest.indexOf('\n'); end >= 0; end = rest.indexOf('\n', start)) {
      const line = rest.slice(start, end);
      start = end + 1;
      if (line.trim() !== '') yield line;
    }
    rest = rest.slice(start);
    if (rest.length > LINE_LIMIT)
      throw new ComponentError('elasticsearch', `a line longer than ${LINE_LIMIT} bytes.`);
  }
  rest += decoder.end();
  if (rest.trim() !== '') yield rest;
}

function retryAfterMs(value: string | null): number | undefined {
  if (value === null) return undefined;
  const seconds = Number(value);
  return Number.isFinite(seconds) && seconds >= 0 ? Math.min(seconds * 1000, 60_000) : undefined;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Same as `new ElasticsearchComponent(options)`. */
export function elasticsearch(options: ElasticsearchOptions): ElasticsearchComponent {
  return new ElasticsearchComponent(options);
}

/**
 * Builds the component from the CLI's JSON config
 * (`{ "kind": "elasticsearch", "url": "http://127.0.0.1:9200", "username": "bk", "password": "…" }`).
 *
 * @throws {ConfigError} naming an unknown or invalid field.
 */
export function fromConfig(config: Record<string, unknown>): ElasticsearchComponent {
  if (isRecord(config) && config.mode !== undefined && config.mode !== 'logical') {
    throw new ConfigError(
      `elasticsearch component config: "mode" must be "logical" (snapshot mode is not available yet), got ${JSON.stringify(config.mode)}.`,
    );
  }
  checkComponentConfig(config, 'elasticsearch', CONFIG_FIELDS);
  const { kind: _kind, mode: _mode, ...options } = config;
  return new ElasticsearchComponent(options as unknown as ElasticsearchOptions);
}
