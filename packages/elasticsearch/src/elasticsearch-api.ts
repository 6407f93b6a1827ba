import { ComponentError, ConfigError, isRecord, throwIfAborted, toAbortedError } from '@bk/core';

/** Most of an error answer kept for a message. */
const ERROR_TEXT_LIMIT = 1_000;

/** An answer of the REST API: status, parsed JSON body (`undefined` when empty) and headers. */
export interface ElasticsearchAnswer {
  status: number;
  body: unknown;
  headers: Headers;
}

/** How the client authenticates: basic auth, an API key (`id:key` base64, as Kibana shows it), or a bearer token. */
export type ElasticsearchAuth =
  | { username: string; password: string }
  | { apiKey: string }
  | { bearer: string }
  | undefined;

/** What `GET /` tells about the cluster. */
export interface ClusterInfo {
  version: string;
  distribution: 'elasticsearch' | 'opensearch';
  clusterName: string;
  clusterUuid: string;
}

/**
 * A minimal client of the Elasticsearch / OpenSearch REST API over `fetch`: one code path for
 * both (the official `@elastic/elasticsearch` client refuses OpenSearch after its product check,
 * and `@opensearch-project/opensearch` lacks Elasticsearch 8's point in time), and the bodies
 * are streamed NDJSON bk builds anyway. Credentials travel only in the `authorization` header
 * and never appear in a message; every request must complete within `timeoutMs`.
 */
export class ElasticsearchApi {
  readonly url: string;
  readonly #authorization: string | undefined;
  readonly #component: string;
  readonly #timeoutMs: number;

  constructor(options: { url: string; auth: ElasticsearchAuth; component: string; timeoutMs: number }) {
    this.url = options.url;
    const auth = options.auth;
    this.#authorization =
      auth === undefined
        ? undefined
        : 'apiKey' in auth
          ? `ApiKey ${auth.apiKey}`
          : 'bearer' in auth
            ? `Bearer ${auth.bearer}`
            : `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
    this.#component = options.component;
    this.#timeoutMs = options.timeoutMs;
  }

  /**
   * `method path`. Resolves for 2xx and the statuses in `allow`; anything else is a
   * `ComponentError` carrying Elasticsearch's error type and reason (retryable for 429, 5xx and
   * network failures or timeouts). `body` is sent as JSON, or as is when it is a string (NDJSON).
   *
   * @throws {AbortedError} when `signal` aborts.
   */
  async request(
    method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    options: { body?: unknown; allow?: number[]; signal: AbortSignal },
  ): Promise<ElasticsearchAnswer> {
    throwIfAborted(options.signal);
    const where = `${method} ${path.split('?')[0]}`;
    const signal = AbortSignal.any([options.signal, AbortSignal.timeout(this.#timeoutMs)]);
    const ndjson = typeof options.body === 'string';
    let response: Response;
    let text: string;
    try {
      response = await fetch(`${this.url}${path}`, {
        method,
        headers: {
          accept: 'application/json',
          ...(this.#authorization === undefined ? {} : { authorization: this.#authorization }),
          ...(options.body === undefined
            ? {}
            : { 'content-type': ndjson ? 'application/x-ndjson' : 'application/json' }),
        },
        body:
          options.body === undefined
            ? undefined
            : ndjson
              ? (options.body as string)
              : JSON.stringify(options.body),
        signal,
      });
      text = await response.text();
    } catch (error) {
      if (options.signal.aborted) throw toAbortedError(options.signal);
      const reason =
        (error as Error).name === 'TimeoutError'
          ? `no complete answer within ${this.#timeoutMs} ms (raise "timeoutMs" for a slow cluster)`
          : `${(error as Error).message}${(error as Error).cause ? ` (${String((error as { cause: unknown }).cause)})` : ''}`;
      throw new ComponentError(this.#component, `${where} on ${this.url} failed: ${reason}.`, {
        cause: error,
        retryable: true,
      });
    }
    const body = parse(text);
    if ((response.status >= 200 && response.status < 300) || options.allow?.includes(response.status)) {
      return { status: response.status, body, headers: response.headers };
    }
    const hint =
      response.status === 401
        ? ' (check "username" and "password", or "apiKey")'
        : response.status === 403
          ? ' (the user or API key lacks a privilege this needs: see the README for the roles)'
          : '';
    throw new ComponentError(
      this.#component,
      `${where} on ${this.url} answered HTTP ${response.status}${hint}: ${errorText(body, text)}`,
      { retryable: response.status >= 500 || response.status === 429 },
    );
  }

  /** `GET path`, the JSON answer. */
  async get(path: string, signal: AbortSignal): Promise<unknown> {
    return (await this.request('GET', path, { signal })).body;
  }

  /** `GET /`: version, distribution and cluster name. */
  async info(signal: AbortSignal): Promise<ClusterInfo> {
    const body = await this.get('/', signal);
    const version = isRecord(body) && isRecord(body.version) ? body.version : {};
    return {
      version: typeof version.number === 'string' ? version.number : 'unknown',
      distribution: version.distribution === 'opensearch' ? 'opensearch' : 'elasticsearch',
      clusterName: isRecord(body) ? String(body.cluster_name ?? '') : '',
      clusterUuid: isRecord(body) ? String(body.cluster_uuid ?? '') : '',
    };
  }
}

/** `type: reason` of an Elasticsearch error answer, or its text. */
export function errorText(body: unknown, text = ''): string {
  if (isRecord(body) && isRecord(body.error)) {
    const error = body.error;
    return `${String(error.type ?? 'error')}: ${String(error.reason ?? '')}`.slice(0, ERROR_TEXT_LIMIT);
  }
  if (isRecord(body) && typeof body.error === 'string') return body.error.slice(0, ERROR_TEXT_LIMIT);
  return text.slice(0, ERROR_TEXT_LIMIT).trim();
}

function parse(text: string): unknown {
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * Checks a base URL: `http:` or `https:`, no credentials, query or fragment. Returns it without
 * a trailing `/` (a sub-path behind a proxy is kept).
 *
 * @throws {ConfigError}
 */
export function checkBaseUrl(value: unknown, where: string, credentialsHint: string): string {
  if (typeof value !== 'string' || value === '')
    throw new ConfigError(`${where}: "url" must be a non-empty URL.`);
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    throw new ConfigError(`${where}: "url" is not a URL.`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new ConfigError(`${where}: "url" must be http:// or https://, got "${parsed.protocol}".`);
  }
  if (parsed.username !== '' || parsed.password !== '') {
    throw new ConfigError(`${where}: "url" must not contain credentials; use ${credentialsHint}.`);
  }
  if (parsed.search !== '' || parsed.hash !== '') {
    throw new ConfigError(`${where}: "url" must not have a query or a fragment.`);
  }
  return `${parsed.origin}${parsed.pathname.replace(/\/+$/, '')}`;
}

/** Compares dotted versions numerically (`8.9.0` < `8.15.0`); a missing part counts as 0. */
export function compareVersions(a: string, b: string): number {
  const left = a.split(/[.-]/).map((part) => Number.parseInt(part, 10));
  const right = b.split(/[.-]/).map((part) => Number.parseInt(part, 10));
  for (let at = 0; at < 3; at += 1) {
    const difference =
      (Number.isNaN(left[at]) ? 0 : (left[at] ?? 0)) - (Number.isNaN(right[at]) ? 0 : (right[at] ?? 0));
    if (difference !== 0) return Math.sign(difference);
  }
  return 0;
}
