import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { listenOnFreePort } from './process.ts';

/**
 * A stand-in for Elasticsearch's REST API, written from its public reference
 * (elastic.co/docs/api/doc/elasticsearch) for exactly the endpoints bk and the clients that prove
 * it (elasticdump, `@elastic/elasticsearch`) call: cluster info, `_cluster/health`, index create /
 * get / delete / open / close with settings, mappings and aliases, `_mapping`, `_settings`,
 * `_alias`, `_aliases`, documents, `_bulk`, `_refresh`, `_count`, `_search` with `from`/`size`,
 * `sort`, `search_after`, point in time (`_pit`) and scroll, and `_cat/indices`.
 *
 * As Elasticsearch does: every answer carries `X-Elastic-Product: Elasticsearch` (the official
 * client's product check); errors are `{ error: { root_cause, type, reason }, status }`; a
 * search sees writes only after a refresh (explicit, `?refresh`, or each `refresh_interval`,
 * 1 s by default); a point in time and a scroll see the documents as they were when opened;
 * `_bulk` answers per item. Faults can be injected: whole `_bulk` requests or single items
 * rejected with 429 (`es_rejected_execution_exception`, `Retry-After`). State is in memory.
 */
export interface ElasticsearchDouble {
  /** `http://127.0.0.1:PORT`. */
  url: string;
  /** The `elastic` user's credentials, when the double was started with security on. */
  username: string;
  password: string;
  /** An API key the double accepts as `Authorization: ApiKey …`. */
  apiKey: string;
  /** The version `GET /` reports. */
  version: string;
  /** Requests served, as `METHOD /path`, in order. */
  requests: string[];
  /** Points in time and scroll contexts still open. */
  openContexts: () => { pits: number; scrolls: number };
  /** Answer the next `count` `_bulk` requests with 429 and `Retry-After: 0`. */
  rejectBulkRequests: (count: number) => void;
  /** Reject the next `count` `_bulk` items with a per-item 429. */
  rejectBulkItems: (count: number) => void;
  /** Largest number of `_bulk` requests served at the same time so far. */
  bulkConcurrency: () => number;
  stop: () => Promise<void>;
}

export interface ElasticsearchDoubleOptions {
  /** Version reported by `GET /`; default `8.15.0`. */
  version?: string;
  /** `opensearch` answers as OpenSearch does (`version.distribution`, no product header). */
  distribution?: 'elasticsearch' | 'opensearch';
  /** Require the `elastic` user's password (basic auth) or an API key; default `true`. */
  security?: boolean;
}

interface StoredDocument {
  id: string;
  source: Record<string, unknown>;
  routing?: string;
  version: number;
  seqNo: number;
}

interface Index {
  name: string;
  uuid: string;
  created: number;
  open: boolean;
  settings: Record<string, unknown>;
  mappings: Record<string, unknown>;
  aliases: Map<string, Record<string, unknown>>;
  documents: Map<string, StoredDocument>;
  /** What a search sees: the documents as of the last refresh. */
  searchable: StoredDocument[];
  dirty: boolean;
  lastRefresh: number;
}

interface Hit {
  index: string;
  document: StoredDocument;
}

class EsFailure extends Error {
  // Plain fields, not parameter properties: benchmarks import this package with Node's type stripping.
  readonly status: number;
  readonly type: string;
  readonly reason: string;
  readonly extra: Record<string, unknown>;
  readonly headers: Record<string, string>;
  constructor(
    status: number,
    type: string,
    reason: string,
    extra: Record<string, unknown> = {},
    headers: Record<string, string> = {},
  ) {
    super(reason);
    this.status = status;
    this.type = type;
    this.reason = reason;
    this.extra = extra;
    this.headers = headers;
  }
}

function fail(status: number, type: string, reason: string, extra: Record<string, unknown> = {}): never {
  throw new EsFailure(status, type, reason, extra);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function notFound(name: string): never {
  fail(404, 'index_not_found_exception', `no such index [${name}]`, {
    'resource.type': 'index_or_alias',
    'resource.id': name,
    index_uuid: '_na_',
    index: name,
  });
}

/** `1s`, `500ms`, `1m`, `-1` → milliseconds (`-1` → -1). */
function durationOf(value: unknown, fallback: number): number {
  if (value === undefined || value === null) return fallback;
  const text = String(value);
  if (text === '-1') return -1;
  const match = /^(\d+)(ms|s|m|h|d)?$/.exec(text);
  if (!match) fail(400, 'illegal_argument_exception', `failed to parse setting with value [${text}]`);
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  return Number(match[1]) * (units[match[2] ?? 'ms'] ?? 1);
}

/** `{ "index.number_of_shards": "1" }` and `{ index: { number_of_shards: 1 } }` → nested, string leaves. */
function nestedSettings(settings: Record<string, unknown>): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  const put = (path: string[], value: unknown) => {
    let node = result;
    for (const key of path.slice(0, -1)) {
      if (!isObject(node[key])) node[key] = {};
      node = node[key] as Record<string, unknown>;
    }
    node[path.at(-1)!] = value === null ? null : Array.isArray(value) ? value.map(String) : String(value);
  };
  const walk = (value: Record<string, unknown>, prefix: string[]) => {
    for (const [key, inner] of Object.entries(value)) {
      const path = [...prefix, ...key.split('.')];
      if (isObject(inner)) walk(inner, path);
      else put(path, inner);
    }
  };
  walk(settings, []);
  // Settings given without the `index.` prefix belong to it.
  for (const key of Object.keys(result)) {
    if (key === 'index') continue;
    if (!isObject(result.index)) result.index = {};
    (result.index as Record<string, unknown>)[key] = result[key];
    delete result[key];
  }
  return result;
}

function merge(target: Record<string, unknown>, update: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(update)) {
    if (value === null) delete target[key];
    else if (isObject(value) && isObject(target[key])) merge(target[key] as Record<string, unknown>, value);
    else target[key] = structuredClone(value);
  }
}

function flatten(value: Record<string, unknown>, prefix = ''): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) {
    if (isObject(inner)) Object.assign(result, flatten(inner, `${prefix}${key}.`));
    else result[`${prefix}${key}`] = inner;
  }
  return result;
}

/** Elasticsearch's index name rules. */
function checkIndexName(name: string): void {
  const bad =
    name === '' ||
    name !== name.toLowerCase() ||
    /[\\/*?"<>| ,#:]/.test(name) ||
    /^[-_+]/.test(name) ||
    name === '.' ||
    name === '..' ||
    Buffer.byteLength(name) > 255;
  if (bad)
    fail(400, 'invalid_index_name_exception', `Invalid index name [${name}], must be lowercase`, {
      index: name,
      index_uuid: '_na_',
    });
}

/** Infers a mapping for fields a document brings that the mapping does not have (dynamic mapping). */
function dynamicMapping(properties: Record<string, unknown>, source: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(source)) {
    if (value === null || properties[key] !== undefined) continue;
    if (isObject(value)) {
      const inner: Record<string, unknown> = {};
      dynamicMapping(inner, value);
      properties[key] = { properties: inner };
    } else if (typeof value === 'number') {
      properties[key] = { type: Number.isInteger(value) ? 'long' : 'float' };
    } else if (typeof value === 'boolean') {
      properties[key] = { type: 'boolean' };
    } else if (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}(T|$)/.test(value)) {
      properties[key] = { type: 'date' };
    } else {
      properties[key] = { type: 'text', fields: { keyword: { type: 'keyword', ignore_above: 256 } } };
    }
  }
}

/** Starts the double on a free loopback port. */
export async function startElasticsearchDouble(
  options: ElasticsearchDoubleOptions = {},
): Promise<ElasticsearchDouble> {
  const version = options.version ?? '8.15.0';
  const opensearch = options.distribution === 'opensearch';
  const security = options.security ?? true;
  const password = randomBytes(9).toString('base64url');
  const apiKey = Buffer.from(`bk-double:${randomBytes(12).toString('hex')}`).toString('base64');
  const clusterUuid = randomUUID().replaceAll('-', '').slice(0, 22);
  const requests: string[] = [];
  const indices = new Map<string, Index>();
  const pits = new Map<string, { hits: Hit[]; expires: number }>();
  const scrolls = new Map<string, { hits: Hit[]; position: number; expires: number; size: number }>();
  let seqNo = 0;
  let rejectRequests = 0;
  let rejectItems = 0;
  let bulkRunning = 0;
  let bulkPeak = 0;

  function refresh(index: Index): void {
    index.searchable = [...index.documents.values()];
    index.dirty = false;
    index.lastRefresh = Date.now();
  }

  /** Refreshes every index whose `refresh_interval` has passed since its last refresh. */
  function periodicRefresh(): void {
    const now = Date.now();
    for (const index of indices.values()) {
      if (!index.dirty) continue;
      const settings = index.settings.index as Record<string, unknown>;
      const interval = durationOf(settings.refresh_interval, 1000);
      if (interval >= 0 && now - index.lastRefresh >= interval) refresh(index);
    }
  }

  function expireContexts(): void {
    const now = Date.now();
    for (const [id, pit] of pits) if (pit.expires < now) pits.delete(id);
    for (const [id, scroll] of scrolls) if (scroll.expires < now) scrolls.delete(id);
  }

  /** Names of the open or closed indices an expression (`a,b*,alias`) resolves to. */
  function resolve(expression: string, query: URLSearchParams, allowMissing = false): string[] {
    const expand = query.get('expand_wildcards') ?? 'open';
    const ignoreUnavailable = query.get('ignore_unavailable') === 'true';
    const found = new Set<string>();
    for (const part of expression.split(',')) {
      const exclude = part.startsWith('-');
      const pattern = exclude ? part.slice(1) : part;
      let matched: string[];
      if (pattern === '_all' || pattern.includes('*')) {
        const regex = new RegExp(
          `^${pattern === '_all' ? '.*' : pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replaceAll('*', '.*')}$`,
        );
        matched = [...indices.values()]
          .filter((index) => {
            if (!regex.test(index.name)) return false;
            const hidden = (index.settings.index as Record<string, unknown>).hidden === 'true';
            if (expand === 'all') return true;
            if (hidden || (index.name.startsWith('.') && !pattern.startsWith('.'))) return false;
            return index.open ? expand.includes('open') : expand.includes('closed');
          })
          .map((index) => index.name);
      } else if (indices.has(pattern)) {
        matched = [pattern];
      } else {
        matched = [...indices.values()]
          .filter((index) => index.aliases.has(pattern))
          .map((index) => index.name);
        if (matched.length === 0 && !exclude && !ignoreUnavailable && !allowMissing) notFound(pattern);
      }
      for (const name of matched) {
        if (exclude) found.delete(name);
        else found.add(name);
      }
    }
    return [...found].sort();
  }

  function indexOf(name: string): Index {
    const index = indices.get(name);
    if (!index) notFound(name);
    return index;
  }

  function openIndex(name: string): Index {
    const index = indexOf(name);
    if (!index.open)
      fail(400, 'index_closed_exception', 'closed', { index_uuid: index.uuid, index: index.name });
    return index;
  }

  function createIndex(name: string, body: Record<string, unknown>): Index {
    checkIndexName(name);
    if (indices.has(name))
      fail(
        400,
        'resource_already_exists_exception',
        `index [${name}/${indices.get(name)!.uuid}] already exists`,
        {
          index_uuid: indices.get(name)!.uuid,
          index: name,
        },
      );
    for (const index of indices.values()) {
      if (index.aliases.has(name))
        fail(400, 'invalid_index_name_exception', `Invalid index name [${name}], already exists as alias`, {
          index: name,
        });
    }
    const given = isObject(body.settings) ? nestedSettings(body.settings) : {};
    const indexSettings = (isObject(given.index) ? given.index : {}) as Record<string, unknown>;
    const uuid = randomBytes(16).toString('base64url').slice(0, 22);
    const created = Date.now();
    const settings = {
      index: {
        number_of_shards: '1',
        number_of_replicas: '1',
        routing: { allocation: { include: { _tier_preference: 'data_content' } } },
        ...indexSettings,
        provided_name: name,
        creation_date: String(created),
        uuid,
        version: { created: opensearch ? '136387827' : '8512000' },
      },
    };
    if (!/^[1-9]\d*$/.test(String(settings.index.number_of_shards)))
      fail(400, 'illegal_argument_exception', 'Failed to parse value for setting [index.number_of_shards]');
    const mappings = isObject(body.mappings) ? structuredClone(body.mappings) : {};
    const index: Index = {
      name,
      uuid,
      created,
      open: true,
      settings,
      mappings,
      aliases: new Map(),
      documents: new Map(),
      searchable: [],
      dirty: false,
      lastRefresh: created,
    };
    if (isObject(body.aliases)) {
      for (const [alias, definition] of Object.entries(body.aliases))
        addAlias(index, alias, isObject(definition) ? definition : {});
    }
    indices.set(name, index);
    return index;
  }

  function addAlias(index: Index, alias: string, definition: Record<string, unknown>): void {
    if (indices.has(alias))
      fail(
        400,
        'invalid_alias_name_exception',
        `Invalid alias name [${alias}]: an index or data stream exists with the same name as the alias`,
      );
    if (definition.is_write_index === true) {
      for (const other of indices.values()) {
        if (other !== index && other.aliases.get(alias)?.is_write_index === true)
          fail(
            400,
            'illegal_state_exception',
            `alias [${alias}] has more than one write index [${other.name},${index.name}]`,
          );
      }
    }
    const stored: Record<string, unknown> = {};
    for (const key of [
      'filter',
      'routing',
      'index_routing',
      'search_routing',
      'is_write_index',
      'is_hidden',
    ]) {
      if (definition[key] !== undefined) stored[key] = structuredClone(definition[key]);
    }
    if (typeof stored.routing === 'string') {
      stored.index_routing ??= stored.routing;
      stored.search_routing ??= stored.routing;
      delete stored.routing;
    }
    index.aliases.set(alias, stored);
  }

  function aliasesJson(index: Index): Record<string, unknown> {
    return Object.fromEntries([...index.aliases].sort(([a], [b]) => (a < b ? -1 : 1)));
  }

  function settingsJson(index: Index, query: URLSearchParams): Record<string, unknown> {
    return query.get('flat_settings') === 'true' ? flatten(index.settings) : structuredClone(index.settings);
  }

  function putDocument(
    index: Index,
    id: string,
    source: Record<string, unknown>,
    routing?: string,
  ): StoredDocument {
    if (!isObject(index.mappings.properties)) index.mappings.properties = {};
    if (
      index.mappings.dynamic !== 'strict' &&
      index.mappings.dynamic !== false &&
      index.mappings.dynamic !== 'false'
    )
      dynamicMapping(index.mappings.properties as Record<string, unknown>, source);
    const existing = index.documents.get(id);
    seqNo += 1;
    const stored: StoredDocument = {
      id,
      source,
      version: (existing?.version ?? 0) + 1,
      seqNo,
      ...(routing === undefined ? {} : { routing }),
    };
    index.documents.set(id, stored);
    index.dirty = true;
    return stored;
  }

  function hitJson(hit: Hit, sort: unknown[] | undefined, withSource: boolean): Record<string, unknown> {
    return {
      _index: hit.index,
      _id: hit.document.id,
      _score: sort === undefined ? 1 : null,
      ...(hit.document.routing === undefined ? {} : { _routing: hit.document.routing }),
      ...(withSource ? { _source: hit.document.source } : {}),
      ...(sort === undefined ? {} : { sort }),
    };
  }

  function matches(document: StoredDocument, query: unknown): boolean {
    if (query === undefined || !isObject(query) || isObject(query.match_all)) return true;
    if (isObject(query.ids)) return (query.ids.values as unknown[]).includes(document.id);
    if (isObject(query.term)) {
      const [field, wanted] = Object.entries(query.term)[0] ?? [];
      const value = isObject(wanted) ? wanted.value : wanted;
      return field !== undefined && document.source[field.replace(/\.keyword$/, '')] === value;
    }
    fail(400, 'parsing_exception', `unknown query [${Object.keys(query)[0]}]`);
  }

  type SortKey = (hit: Hit, position: number) => unknown;

  function sortKeysOf(sort: unknown): { keys: SortKey[]; descending: boolean[] } | undefined {
    if (sort === undefined) return undefined;
    const list = Array.isArray(sort) ? sort : [sort];
    const keys: SortKey[] = [];
    const descending: boolean[] = [];
    for (const item of list) {
      const [field, order] =
        typeof item === 'string' ? [item, 'asc'] : (Object.entries(item as object)[0] ?? []);
      const direction = isObject(order) ? order.order : order;
      descending.push(direction === 'desc');
      if (field === '_doc' || field === '_shard_doc') keys.push((hit) => hit.document.seqNo);
      else if (field === '_id') keys.push((hit) => hit.document.id);
      else if (typeof field === 'string') keys.push((hit) => hit.document.source[field] ?? null);
      else fail(400, 'parsing_exception', 'malformed sort');
    }
    return { keys, descending };
  }

  function compare(a: unknown[], b: unknown[], descending: boolean[]): number {
    for (let at = 0; at < a.length; at += 1) {
      const left = a[at] as string | number | null;
      const right = b[at] as string | number | null;
      if (left === right) continue;
      const order = left === null ? 1 : right === null ? -1 : left < right ? -1 : 1;
      return descending[at] ? -order : order;
    }
    return 0;
  }

  function hitsOf(names: string[], query: unknown): Hit[] {
    const hits: Hit[] = [];
    for (const name of names) {
      const index = openIndex(name);
      for (const document of index.searchable) {
        if (matches(document, query)) hits.push({ index: name, document });
      }
    }
    return hits;
  }

  function search(
    names: string[] | undefined,
    body: Record<string, unknown>,
    query: URLSearchParams,
  ): Record<string, unknown> {
    const started = Date.now();
    const size = Number(query.get('size') ?? body.size ?? 10);
    const from = Number(query.get('from') ?? body.from ?? 0);
    const withSource = body._source !== false && query.get('_source') !== 'false';
    let hits: Hit[];
    let pitId: string | undefined;
    if (isObject(body.pit)) {
      if (names !== undefined)
        fail(
          400,
          'action_request_validation_exception',
          'Validation Failed: 1: [indices] cannot be used with point in time. Do not specify any index with point in time.;',
        );
      pitId = String(body.pit.id);
      const pit = pits.get(pitId);
      if (!pit)
        fail(
          404,
          'search_context_missing_exception',
          `No search context found for id [${pitId.slice(0, 20)}]`,
        );
      pit.expires = Date.now() + durationOf(body.pit.keep_alive, 60_000);
      hits =
        body.query === undefined || (isObject(body.query) && isObject(body.query.match_all))
          ? pit.hits
          : pit.hits.filter((hit) => matches(hit.document, body.query));
    } else {
      hits = hitsOf(names ?? resolve('_all', query), body.query);
    }
    if (size > 10_000 || (from + size > 10_000 && query.get('scroll') === null))
      fail(
        400,
        'illegal_argument_exception',
        `Result window is too large, from + size must be less than or equal to: [10000] but was [${from + size}]. See the scroll api for a more efficient way to request large data sets.`,
      );
    const sort = sortKeysOf(body.sort ?? query.get('sort') ?? undefined);
    let sorted: { hit: Hit; sort?: unknown[] }[];
    const shardDoc =
      pitId !== undefined &&
      sort?.keys.length === 1 &&
      !sort.descending[0] &&
      JSON.stringify(body.sort).includes('_shard_doc') &&
      (body.query === undefined || (isObject(body.query) && isObject(body.query.match_all)));
    if (shardDoc) {
      // The point in time's hits are in `_shard_doc` order already: find the page, sort nothing.
      const after = Array.isArray(body.search_after) ? Number(body.search_after[0]) : -1;
      let low = 0;
      let high = hits.length;
      while (low < high) {
        const middle = (low + high) >> 1;
        if (hits[middle]!.document.seqNo <= after) low = middle + 1;
        else high = middle;
      }
      sorted = hits.slice(low, low + from + size).map((hit) => ({ hit, sort: [hit.document.seqNo] }));
    } else if (sort) {
      sorted = hits.map((hit, position) => ({ hit, sort: sort.keys.map((key) => key(hit, position)) }));
      sorted.sort((a, b) => compare(a.sort!, b.sort!, sort.descending));
      if (Array.isArray(body.search_after)) {
        const after = body.search_after;
        if (after.length !== sort.keys.length)
          fail(
            400,
            'illegal_argument_exception',
            `search_after has ${after.length} value(s) but sort has ${sort.keys.length}.`,
          );
        sorted = sorted.filter((item) => compare(item.sort!, after, sort.descending) > 0);
      }
    } else {
      if (body.search_after !== undefined)
        fail(
          400,
          'action_request_validation_exception',
          'Validation Failed: 1: [search_after] requires a sort;',
        );
      sorted = hits.map((hit) => ({ hit }));
    }
    const total = shardDoc ? hits.length : sorted.length;
    const scroll = query.get('scroll');
    const answer: Record<string, unknown> = {};
    if (scroll !== null) {
      const id = Buffer.from(`scroll:${randomUUID()}`).toString('base64url');
      const context = { hits: sorted.map((item) => item.hit), position: from, expires: 0, size };
      context.expires = Date.now() + durationOf(scroll, 60_000);
      scrolls.set(id, context);
      answer._scroll_id = id;
    }
    const page = sorted.slice(from, from + size);
    if (scroll !== null) scrolls.get(answer._scroll_id as string)!.position = from + page.length;
    if (pitId !== undefined) answer.pit_id = pitId;
    const trackTotal = body.track_total_hits ?? query.get('track_total_hits') ?? true;
    Object.assign(answer, {
      took: Date.now() - started,
      timed_out: false,
      _shards: { total: 1, successful: 1, skipped: 0, failed: 0 },
      hits: {
        ...(trackTotal === false || trackTotal === 'false'
          ? {}
          : {
              total: {
                value: Math.min(total, trackTotal === true || trackTotal === 'true' ? total : 10_000),
                relation: 'eq',
              },
            }),
        max_score: sort ? null : page.length > 0 ? 1 : null,
        hits: page.map((item) => hitJson(item.hit, item.sort, withSource)),
      },
    });
    return answer;
  }

  function scrollPage(body: Record<string, unknown>, query: URLSearchParams): Record<string, unknown> {
    const id = String(body.scroll_id ?? query.get('scroll_id') ?? '');
    const context = scrolls.get(id);
    if (!context)
      fail(404, 'search_phase_execution_exception', 'all shards failed', {
        phase: 'query',
        grouped: true,
        failed_shards: [
          {
            shard: -1,
            index: null,
            reason: {
              type: 'search_context_missing_exception',
              reason: `No search context found for id [${id.slice(0, 12)}]`,
            },
          },
        ],
      });
    context.expires = Date.now() + durationOf(body.scroll ?? query.get('scroll'), 60_000);
    const page = context.hits.slice(context.position, context.position + context.size);
    context.position += page.length;
    return {
      _scroll_id: id,
      took: 0,
      timed_out: false,
      _shards: { total: 1, successful: 1, skipped: 0, failed: 0 },
      hits: {
        total: { value: context.hits.length, relation: 'eq' },
        max_score: null,
        hits: page.map((hit) => hitJson(hit, undefined, true)),
      },
    };
  }

  function bulk(
    defaultIndex: string | undefined,
    text: string,
    query: URLSearchParams,
  ): Record<string, unknown> {
    const started = Date.now();
    const lines = text.split('\n');
    if (lines.at(-1) !== '' && text !== '')
      fail(400, 'illegal_argument_exception', 'The bulk request must be terminated by a newline [\\n]');
    const items: Record<string, unknown>[] = [];
    const touched = new Set<Index>();
    let errors = false;
    for (let at = 0; at < lines.length; at += 1) {
      const line = lines[at]!;
      if (line.trim() === '') continue;
      let action: Record<string, unknown>;
      try {
        action = JSON.parse(line);
      } catch {
        fail(400, 'x_content_parse_exception', `[1:1] Malformed action/metadata line [${at + 1}]`);
      }
      const [operation, meta] = Object.entries(action)[0] ?? [];
      if (!operation || !['index', 'create', 'update', 'delete'].includes(operation) || !isObject(meta))
        fail(
          400,
          'illegal_argument_exception',
          `Malformed action/metadata line [${at + 1}], expected one of [create, delete, index, update] but found [${operation}]`,
        );
      let source: Record<string, unknown> | undefined;
      if (operation !== 'delete') {
        at += 1;
        try {
          source = JSON.parse(lines[at] ?? '');
        } catch {
          fail(400, 'x_content_parse_exception', `[1:1] Malformed document at line [${at + 1}]`);
        }
      }
      const indexName = String(meta._index ?? defaultIndex ?? '');
      const id =
        meta._id === undefined ? randomBytes(15).toString('base64url').slice(0, 20) : String(meta._id);
      const routing = meta.routing ?? meta._routing;
      const item: Record<string, unknown> = { _index: indexName, _id: id };
      items.push({ [operation]: item });
      try {
        if (indexName === '')
          fail(400, 'action_request_validation_exception', 'Validation Failed: 1: index is missing;');
        if (rejectItems > 0) {
          rejectItems -= 1;
          fail(
            429,
            'es_rejected_execution_exception',
            'rejected execution of primary operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, primary_operation_bytes=0, max_coordinating_and_primary_bytes=0]',
          );
        }
        let index = indices.get(indexName);
        if (!index) {
          const viaAlias = [...indices.values()].filter((other) => other.aliases.has(indexName));
          const writeIndex =
            viaAlias.find((other) => other.aliases.get(indexName)?.is_write_index === true) ??
            (viaAlias.length === 1 ? viaAlias[0] : undefined);
          if (viaAlias.length > 0 && !writeIndex)
            fail(400, 'illegal_argument_exception', `no write index is defined for alias [${indexName}]`);
          index = writeIndex ?? (operation === 'delete' ? notFound(indexName) : createIndex(indexName, {}));
          item._index = index.name;
        }
        if (!index.open) fail(400, 'index_closed_exception', 'closed', { index: index.name });
        touched.add(index);
        const existing = index.documents.get(id);
        let result: string;
        let stored: StoredDocument | undefined;
        if (operation === 'delete') {
          if (existing) {
            index.documents.delete(id);
            index.dirty = true;
            seqNo += 1;
          }
          result = existing ? 'deleted' : 'not_found';
          item._version = (existing?.version ?? 0) + 1;
          item.status = existing ? 200 : 404;
        } else if (operation === 'update') {
          if (!existing)
            fail(404, 'document_missing_exception', `[${id}]: document missing`, {
              index: index.name,
              shard: '0',
            });
          const merged = structuredClone(existing.source);
          if (isObject(source?.doc)) merge(merged, source.doc);
          stored = putDocument(index, id, merged, existing.routing);
          result = 'updated';
          item.status = 200;
        } else {
          if (!isObject(source)) fail(400, 'mapper_parsing_exception', 'failed to parse');
          if (operation === 'create' && existing)
            fail(
              409,
              'version_conflict_engine_exception',
              `[${id}]: version conflict, document already exists (current version [${existing.version}])`,
              { index: index.name, shard: '0' },
            );
          stored = putDocument(index, id, source, routing === undefined ? undefined : String(routing));
          result = existing ? 'updated' : 'created';
          item.status = existing ? 200 : 201;
        }
        Object.assign(item, {
          _version: stored?.version ?? item._version,
          result,
          _shards: { total: 2, successful: 1, failed: 0 },
          _seq_no: stored?.seqNo ?? seqNo,
          _primary_term: 1,
        });
      } catch (error) {
        if (!(error instanceof EsFailure)) throw error;
        errors = true;
        item.status = error.status;
        item.error = { type: error.type, reason: error.reason, ...error.extra };
      }
    }
    const mode = query.get('refresh');
    if (mode === 'true' || mode === '' || mode === 'wait_for') for (const index of touched) refresh(index);
    return { errors, took: Date.now() - started, items };
  }

  function catIndices(names: string[], query: URLSearchParams): [number, unknown, string?] {
    const rows = names.map((name) => {
      const index = indices.get(name)!;
      const settings = index.settings.index as Record<string, unknown>;
      const bytes = index.open
        ? [...index.documents.values()].reduce(
            (sum, document) => sum + JSON.stringify(document.source).length,
            0,
          )
        : 0;
      return {
        health: index.open ? (settings.number_of_replicas === '0' ? 'green' : 'yellow') : null,
        status: index.open ? 'open' : 'close',
        index: name,
        uuid: index.uuid,
        pri: String(settings.number_of_shards),
        rep: String(settings.number_of_replicas),
        'docs.count': index.open ? String(index.searchable.length) : null,
        'docs.deleted': index.open ? '0' : null,
        'store.size': index.open ? `${bytes}b` : null,
        'pri.store.size': index.open ? `${bytes}b` : null,
        'dataset.size': index.open ? `${bytes}b` : null,
      };
    });
    const columns =
      query.get('h')?.split(',') ??
      Object.keys(
        rows[0] ?? {
          health: 0,
          status: 0,
          index: 0,
          uuid: 0,
          pri: 0,
          rep: 0,
          'docs.count': 0,
          'docs.deleted': 0,
          'store.size': 0,
          'pri.store.size': 0,
        },
      );
    const picked = rows.map((row) =>
      Object.fromEntries(columns.map((column) => [column, row[column as keyof typeof row] ?? null])),
    );
    if (query.get('format') === 'json') return [200, picked];
    const text = picked.map((row) => columns.map((column) => String(row[column] ?? '')).join(' ')).join('\n');
    const header = query.has('v') ? `${columns.join(' ')}\n` : '';
    return [200, undefined, `${header}${text}${text === '' ? '' : '\n'}`];
  }

  function info(): Record<string, unknown> {
    return {
      name: 'bk-double',
      cluster_name: 'bk-double',
      cluster_uuid: clusterUuid,
      version: opensearch
        ? {
            distribution: 'opensearch',
            number: version,
            build_type: 'tar',
            build_hash: 'double',
            build_date: '2026-01-01T00:00:00.000Z',
            build_snapshot: false,
            lucene_version: '9.12.0',
            minimum_wire_compatibility_version: '7.10.0',
            minimum_index_compatibility_version: '7.0.0',
          }
        : {
            number: version,
            build_flavor: 'default',
            build_type: 'tar',
            build_hash: 'double',
            build_date: '2026-01-01T00:00:00.000Z',
            build_snapshot: false,
            lucene_version: '9.11.1',
            minimum_wire_compatibility_version: `${Number(version.split('.')[0]) - 1}.17.0`,
            minimum_index_compatibility_version: `${Number(version.split('.')[0]) - 1}.0.0`,
          },
      tagline: opensearch ? 'The OpenSearch Project: https://opensearch.org/' : 'You Know, for Search',
    };
  }

  function handle(
    method: string,
    path: string,
    query: URLSearchParams,
    raw: string,
  ): [number, unknown, string?] {
    const segments = path
      .split('/')
      .filter((part) => part !== '')
      .map(decodeURIComponent);
    const json = (): Record<string, unknown> => {
      if (raw.trim() === '') return {};
      try {
        const parsed = JSON.parse(raw);
        if (!isObject(parsed)) fail(400, 'parsing_exception', 'request body must be an object');
        return parsed;
      } catch (error) {
        if (error instanceof EsFailure) throw error;
        fail(400, 'x_content_parse_exception', `[1:1] Unexpected character: ${(error as Error).message}`);
      }
    };
    const [first, second, third, fourth] = segments;
    const read = method === 'GET' || method === 'HEAD';
    const write = method === 'PUT' || method === 'POST';

    if (segments.length === 0 && read) return [200, info()];
    if (first === '_cluster' && second === 'health' && read)
      return [
        200,
        {
          cluster_name: 'bk-double',
          status: 'green',
          timed_out: false,
          number_of_nodes: 1,
          number_of_data_nodes: 1,
          active_primary_shards: indices.size,
          active_shards: indices.size,
          relocating_shards: 0,
          initializing_shards: 0,
          unassigned_shards: 0,
        },
      ];
    if (first === '_cat' && second === 'indices' && read)
      return catIndices(
        resolve(
          third ?? '*',
          new URLSearchParams({ expand_wildcards: query.get('expand_wildcards') ?? 'all' }),
          true,
        ),
        query,
      );
    if (first === '_bulk' && write) return [200, bulk(undefined, raw, query)];
    if (first === '_refresh' && (write || method === 'GET')) {
      for (const index of indices.values()) if (index.open) refresh(index);
      return [200, { _shards: { total: indices.size, successful: indices.size, failed: 0 } }];
    }
    if (first === '_search' && second === 'scroll') {
      if (method === 'DELETE') {
        const body = json();
        const ids =
          third === '_all'
            ? [...scrolls.keys()]
            : [body.scroll_id ?? query.get('scroll_id')].flat().map(String);
        let freed = 0;
        for (const id of ids) if (scrolls.delete(id)) freed += 1;
        return [freed > 0 || ids.length === 0 ? 200 : 404, { succeeded: true, num_freed: freed }];
      }
      return [200, scrollPage(json(), query)];
    }
    if (first === '_search' && (read || method === 'POST')) return [200, search(undefined, json(), query)];
    if (first === '_pit' && method === 'DELETE') {
      const body = json();
      const freed = pits.delete(String(body.id)) ? 1 : 0;
      return [freed ? 200 : 404, { succeeded: true, num_freed: freed }];
    }
    if (first === '_aliases' && write) {
      const actions = json().actions;
      for (const entry of Array.isArray(actions) ? actions : []) {
        const [kind, spec] = Object.entries(entry as object)[0] ?? [];
        if (!isObject(spec)) fail(400, 'parsing_exception', 'malformed alias action');
        const targets = [spec.index, spec.indices]
          .flat()
          .filter((value) => typeof value === 'string') as string[];
        const aliases = [spec.alias, spec.aliases]
          .flat()
          .filter((value) => typeof value === 'string') as string[];
        for (const target of targets.flatMap((name) => resolve(name, query))) {
          const index = indexOf(target);
          for (const alias of aliases) {
            if (kind === 'add') addAlias(index, alias, spec);
            else if (kind === 'remove') {
              if (!index.aliases.delete(alias))
                fail(404, 'aliases_not_found_exception', `aliases [${alias}] missing`, {
                  'resource.type': 'aliases',
                  'resource.id': alias,
                });
            } else if (kind === 'remove_index') indices.delete(index.name);
          }
          if (kind === 'remove_index') indices.delete(index.name);
        }
      }
      return [200, { acknowledged: true, errors: false }];
    }
    if (
      (first === '_mapping' || first === '_settings' || first === '_alias' || first === '_aliases') &&
      read
    ) {
      return handle(method, `/_all/${segments.join('/')}`, query, raw);
    }
    if (first === undefined || first.startsWith('_'))
      fail(400, 'illegal_argument_exception', `no handler found for uri [${path}] and method [${method}]`);

    // Index-level endpoints: /<target>[/...]
    const target = first;
    if (second === undefined) {
      if (method === 'PUT') {
        const index = createIndex(target, json());
        return [200, { acknowledged: true, shards_acknowledged: true, index: index.name }];
      }
      if (read) {
        const names = resolve(target, query);
        return [
          200,
          Object.fromEntries(
            names.map((name) => {
              const index = indices.get(name)!;
              return [
                name,
                {
                  aliases: aliasesJson(index),
                  mappings: structuredClone(index.mappings),
                  settings: settingsJson(index, query),
                },
              ];
            }),
          ),
        ];
      }
      if (method === 'DELETE') {
        if (target.includes('*') || target === '_all') {
          if (query.get('expand_wildcards') === null && target !== '*') {
            // Elasticsearch refuses wildcard deletes unless action.destructive_requires_name is false;
            // the double allows them, as a test cluster commonly does.
          }
        }
        for (const name of resolve(target, query)) indices.delete(name);
        return [200, { acknowledged: true }];
      }
    }
    if (second === '_mapping') {
      if (read) {
        const names = resolve(target, query);
        return [
          200,
          Object.fromEntries(
            names.map((name) => [name, { mappings: structuredClone(indices.get(name)!.mappings) }]),
          ),
        ];
      }
      if (write) {
        const body = json();
        for (const name of resolve(target, query)) {
          const index = indexOf(name);
          if (isObject(body.properties)) {
            if (!isObject(index.mappings.properties)) index.mappings.properties = {};
            const properties = index.mappings.properties as Record<string, unknown>;
            for (const [field, mapping] of Object.entries(body.properties)) {
              const existing = properties[field];
              if (
                isObject(existing) &&
                isObject(mapping) &&
                existing.type !== undefined &&
                mapping.type !== undefined &&
                existing.type !== mapping.type
              )
                fail(
                  400,
                  'illegal_argument_exception',
                  `mapper [${field}] cannot be changed from type [${String(existing.type)}] to [${String(mapping.type)}]`,
                );
              properties[field] = structuredClone(mapping);
            }
          }
          for (const [key, value] of Object.entries(body))
            if (key !== 'properties') index.mappings[key] = structuredClone(value);
        }
        return [200, { acknowledged: true }];
      }
    }
    if (second === '_settings') {
      if (read) {
        const names = resolve(target, query);
        return [
          200,
          Object.fromEntries(
            names.map((name) => [name, { settings: settingsJson(indices.get(name)!, query) }]),
          ),
        ];
      }
      if (method === 'PUT') {
        const update = nestedSettings(json());
        const indexUpdate = (isObject(update.index) ? update.index : {}) as Record<string, unknown>;
        for (const key of ['number_of_shards', 'uuid', 'creation_date', 'provided_name', 'version'])
          if (key in indexUpdate)
            fail(400, 'illegal_argument_exception', `final index setting [index.${key}], not updateable`);
        for (const name of resolve(target, query)) {
          const index = indexOf(name);
          merge(index.settings.index as Record<string, unknown>, indexUpdate);
        }
        return [200, { acknowledged: true }];
      }
    }
    if (second === '_alias' || second === '_aliases') {
      if (read) {
        const names = resolve(target, query);
        const only = third?.split(',');
        const result: Record<string, unknown> = {};
        for (const name of names) {
          const index = indices.get(name)!;
          const aliases = Object.fromEntries(
            Object.entries(aliasesJson(index)).filter(([alias]) => !only || only.includes(alias)),
          );
          if (!only || Object.keys(aliases).length > 0) result[name] = { aliases };
        }
        if (only && Object.keys(result).length === 0)
          return [404, { error: `alias [${third}] missing`, status: 404 }];
        return [200, result];
      }
      if (write && third !== undefined) {
        for (const name of resolve(target, query)) addAlias(indexOf(name), third, json());
        return [200, { acknowledged: true, errors: false }];
      }
      if (method === 'DELETE' && third !== undefined) {
        for (const name of resolve(target, query)) indexOf(name).aliases.delete(third);
        return [200, { acknowledged: true, errors: false }];
      }
    }
    if ((second === '_close' || second === '_open') && method === 'POST') {
      const names = resolve(target, new URLSearchParams({ expand_wildcards: 'all' }));
      for (const name of names) {
        const index = indexOf(name);
        index.open = second === '_open';
        if (index.open) refresh(index);
      }
      return [
        200,
        {
          acknowledged: true,
          shards_acknowledged: true,
          ...(second === '_close'
            ? { indices: Object.fromEntries(names.map((name) => [name, { closed: true }])) }
            : {}),
        },
      ];
    }
    if (second === '_refresh' && (write || method === 'GET')) {
      const names = resolve(target, query);
      for (const name of names) refresh(openIndex(name));
      return [200, { _shards: { total: names.length * 2, successful: names.length, failed: 0 } }];
    }
    if (second === '_count' && (read || method === 'POST')) {
      const body = json();
      return [
        200,
        {
          count: hitsOf(resolve(target, query), body.query).length,
          _shards: { total: 1, successful: 1, skipped: 0, failed: 0 },
        },
      ];
    }
    if (second === '_bulk' && write) return [200, bulk(target, raw, query)];
    if (second === '_search' && (read || method === 'POST')) {
      if (third === 'point_in_time' && method === 'POST' && opensearch) {
        const id = openPit(target, query);
        return [
          200,
          {
            pit_id: id,
            _shards: { total: 1, successful: 1, skipped: 0, failed: 0 },
            creation_time: Date.now(),
          },
        ];
      }
      return [200, search(resolve(target, query), json(), query)];
    }
    if (second === '_pit' && method === 'POST' && !opensearch) {
      const id = openPit(target, query);
      return [200, { id, _shards: { total: 1, successful: 1, skipped: 0, failed: 0 } }];
    }
    if (second === '_doc' || second === '_create') {
      const id = third;
      if (write) {
        const index = indices.get(target) ?? createIndex(target, {});
        openIndex(index.name);
        const body = json();
        const docId = id ?? randomBytes(15).toString('base64url').slice(0, 20);
        const existed = index.documents.has(docId);
        if ((second === '_create' || query.get('op_type') === 'create') && existed)
          fail(
            409,
            'version_conflict_engine_exception',
            `[${docId}]: version conflict, document already exists`,
            { index: index.name, shard: '0' },
          );
        const stored = putDocument(index, docId, body, query.get('routing') ?? undefined);
        const mode = query.get('refresh');
        if (mode === 'true' || mode === '' || mode === 'wait_for') refresh(index);
        return [
          existed ? 200 : 201,
          {
            _index: index.name,
            _id: docId,
            _version: stored.version,
            result: existed ? 'updated' : 'created',
            _shards: { total: 2, successful: 1, failed: 0 },
            _seq_no: stored.seqNo,
            _primary_term: 1,
          },
        ];
      }
      if (read && id !== undefined) {
        const index = openIndex(resolve(target, query)[0] ?? target);
        const document = index.documents.get(id);
        if (!document) return [404, { _index: index.name, _id: id, found: false }];
        return [
          200,
          {
            _index: index.name,
            _id: id,
            _version: document.version,
            _seq_no: document.seqNo,
            _primary_term: 1,
            found: true,
            ...(document.routing ? { _routing: document.routing } : {}),
            _source: document.source,
          },
        ];
      }
      if (method === 'DELETE' && id !== undefined) {
        const index = openIndex(target);
        const existed = index.documents.delete(id);
        index.dirty = true;
        return [
          existed ? 200 : 404,
          { _index: index.name, _id: id, result: existed ? 'deleted' : 'not_found' },
        ];
      }
    }
    void fourth;
    fail(405, 'illegal_argument_exception', `Incorrect HTTP method for uri [${path}] and method [${method}]`);
  }

  function openPit(target: string, query: URLSearchParams): string {
    if (query.get('keep_alive') === null)
      fail(
        400,
        'action_request_validation_exception',
        'Validation Failed: 1: [keep_alive] is not specified;',
      );
    const names = resolve(target, query);
    const hits: Hit[] = [];
    for (const name of names) {
      const index = openIndex(name);
      for (const document of index.searchable) hits.push({ index: name, document });
    }
    // In `_shard_doc` order once, so that each page is found by a binary search.
    hits.sort((a, b) => a.document.seqNo - b.document.seqNo);
    const id = Buffer.from(`pit:${randomUUID()}:${names.join(',')}`).toString('base64url');
    pits.set(id, { hits, expires: Date.now() + durationOf(query.get('keep_alive'), 60_000) });
    return id;
  }

  function authorized(request: IncomingMessage): boolean {
    if (!security) return true;
    const header = request.headers.authorization ?? '';
    if (header === `ApiKey ${apiKey}`) return true;
    return header === `Basic ${Buffer.from(`elastic:${password}`).toString('base64')}`;
  }

  async function serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://double');
    const method = request.method ?? 'GET';
    requests.push(`${method} ${url.pathname}`);
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    let raw = Buffer.concat(chunks);
    if (request.headers['content-encoding'] === 'gzip' && raw.byteLength > 0) raw = gunzipSync(raw);
    const isBulk = url.pathname.endsWith('/_bulk');
    let status: number;
    let answer: unknown;
    let text: string | undefined;
    const headers: Record<string, string> = opensearch ? {} : { 'x-elastic-product': 'Elasticsearch' };
    if (isBulk) {
      bulkRunning += 1;
      bulkPeak = Math.max(bulkPeak, bulkRunning);
      // Let concurrent bulk requests overlap as they would on a real node.
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    try {
      periodicRefresh();
      expireContexts();
      if (!authorized(request))
        throw new EsFailure(
          401,
          'security_exception',
          `missing authentication credentials for REST request [${url.pathname}]`,
          { header: { 'WWW-Authenticate': ['Basic realm="security" charset="UTF-8"', 'ApiKey'] } },
          { 'www-authenticate': 'Basic realm="security" charset="UTF-8"' },
        );
      if (isBulk && rejectRequests > 0) {
        rejectRequests -= 1;
        throw new EsFailure(
          429,
          'es_rejected_execution_exception',
          'rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=0, max_coordinating_and_primary_bytes=0]',
          {},
          { 'retry-after': '0' },
        );
      }
      [status, answer, text] = handle(method, url.pathname, url.searchParams, raw.toString('utf8'));
    } catch (error) {
      if (!(error instanceof EsFailure)) throw error;
      status = error.status;
      Object.assign(headers, error.headers);
      const cause = { type: error.type, reason: error.reason, ...error.extra };
      answer = { error: { root_cause: [cause], ...cause }, status: error.status };
    } finally {
      if (isBulk) bulkRunning -= 1;
    }
    if (method === 'HEAD') {
      response.writeHead(status, headers);
      response.end();
      return;
    }
    if (text !== undefined) {
      response.writeHead(status, { ...headers, 'content-type': 'text/plain; charset=UTF-8' });
      response.end(text);
      return;
    }
    const accept = String(request.headers.accept ?? '');
    const contentType = accept.includes('vnd.elasticsearch+json')
      ? `application/vnd.elasticsearch+json;compatible-with=${version.split('.')[0]}`
      : 'application/json';
    const body = JSON.stringify(answer);
    response.writeHead(status, {
      ...headers,
      'content-type': contentType,
      'content-length': Buffer.byteLength(body),
    });
    response.end(body);
  }

  const server: Server = createServer((request, response) => {
    serve(request, response).catch((error: unknown) => {
      response.writeHead(500, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ error: { type: 'exception', reason: String(error) }, status: 500 }));
    });
  });
  server.keepAliveTimeout = 60_000;
  const port = await listenOnFreePort(server);
  return {
    url: `http://127.0.0.1:${port}`,
    username: 'elastic',
    password,
    apiKey,
    version,
    requests,
    openContexts: () => {
      expireContexts();
      return { pits: pits.size, scrolls: scrolls.size };
    },
    rejectBulkRequests: (count) => {
      rejectRequests = count;
    },
    rejectBulkItems: (count) => {
      rejectItems = count;
    },
    bulkConcurrency: () => bulkPeak,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
