import { ComponentError, ConfigError, isRecord, throwIfAborted, toAbortedError } from '@bk/core';

/** Most of an error answer kept for a message. */
const ERROR_TEXT_LIMIT = 1_000;

/** An answer of Kibana's HTTP API: status, the body as text, and parsed JSON when it is JSON. */
export interface KibanaAnswer {
  status: number;
  text: string;
  body: unknown;
}

/** How the client authenticates: basic auth, or an Elasticsearch API key (the base64 `encoded` form). */
export type KibanaAuth = { username: string; password: string } | { apiKey: string };

/**
 * A minimal client of Kibana's HTTP API over `fetch`. Sends `kbn-xsrf` on every request (Kibana
 * refuses writes without it). Credentials travel only in the `authorization` header and never
 * appear in a message; every request must complete within `timeoutMs`.
 */
export class KibanaApi {
  readonly url: string;
  readonly #authorization: string;
  readonly #component: string;
  readonly #timeoutMs: number;

  constructor(options: { url: string; auth: KibanaAuth; component: string; timeoutMs: number }) {
    this.url = options.url;
    this.#authorization =
      'apiKey' in options.auth
        ? `ApiKey ${options.auth.apiKey}`
        : `Basic ${Buffer.from(`${options.auth.username}:${options.auth.password}`).toString('base64')}`;
    this.#component = options.component;
    this.#timeoutMs = options.timeoutMs;
  }

  /**
   * `method path`. Resolves for 2xx and the statuses in `allow`; anything else is a
   * `ComponentError` with Kibana's `message` (retryable for 429, 5xx and network failures).
   * `body` is sent as JSON, or as is when it is `FormData`.
   *
   * @throws {AbortedError} when `signal` aborts.
   */
  async request(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    options: { body?: unknown; allow?: number[]; signal: AbortSignal },
  ): Promise<KibanaAnswer> {
    throwIfAborted(options.signal);
    const where = `${method} ${path.split('?')[0]}`;
    const signal = AbortSignal.any([options.signal, AbortSignal.timeout(this.#timeoutMs)]);
    const form = options.body instanceof FormData;
    let response: Response;
    let text: string;
    try {
      response = await fetch(`${this.url}${path}`, {
        method,
        headers: {
          authorization: this.#authorization,
          'kbn-xsrf': 'bk',
          accept: 'application/json',
          ...(options.body === undefined || form ? {} : { 'content-type': 'application/json' }),
        },
        body:
          options.body === undefined
            ? undefined
            : form
              ? (options.body as FormData)
              : JSON.stringify(options.body),
        signal,
      });
      text = await response.text();
    } catch (error) {
      if (options.signal.aborted) throw toAbortedError(options.signal);
      const reason =
        (error as Error).name === 'TimeoutError'
          ? `no complete answer within ${this.#timeoutMs} ms (raise "timeoutMs" for a slow server)`
          : `${(error as Error).message}${(error as Error).cause ? ` (${String((error as { cause: unknown }).cause)})` : ''}`;
      throw new ComponentError(this.#component, `${where} on ${this.url} failed: ${reason}.`, {
        cause: error,
        retryable: true,
      });
    }
    const body = parse(text);
    if ((response.status >= 200 && response.status < 300) || options.allow?.includes(response.status)) {
      return { status: response.status, text, body };
    }
    const hint =
      response.status === 401
        ? ' (check "username" and "password", or "apiKey")'
        : response.status === 403
          ? ' (the user needs the saved objects management and spaces privileges)'
          : '';
    throw new ComponentError(
      this.#component,
      `${where} on ${this.url} answered HTTP ${response.status}${hint}: ${messageOf(body, text)}`,
      { retryable: response.status >= 500 || response.status === 429 },
    );
  }

  /** `GET path`, the JSON answer. */
  async get(path: string, signal: AbortSignal): Promise<unknown> {
    return (await this.request('GET', path, { signal })).body;
  }
}

/** Kibana's `message` of an error answer, or its text. */
export function messageOf(body: unknown, text: string): string {
  const message = isRecord(body) && typeof body.message === 'string' ? body.message : text;
  return message.slice(0, ERROR_TEXT_LIMIT).trim();
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
 * Checks Kibana's base URL: `http:` or `https:`, no credentials, query or fragment. Returns it
 * without a trailing `/` (a `server.basePath` such as `/kibana` is kept).
 *
 * @throws {ConfigError}
 */
export function checkKibanaUrl(value: unknown, where: string): string {
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
    throw new ConfigError(
      `${where}: "url" must not contain credentials; use "username" and "password", or "apiKey".`,
    );
  }
  if (parsed.search !== '' || parsed.hash !== '') {
    throw new ConfigError(`${where}: "url" must not have a query or a fragment.`);
  }
  return `${parsed.origin}${parsed.pathname.replace(/\/+$/, '')}`;
}

/** Compares dotted versions numerically (`8.9.0` < `8.15.0`). */
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

/** JSON with object keys sorted, to compare two values by content. */
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
