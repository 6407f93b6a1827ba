import { ComponentError, ConfigError, isRecord, throwIfAborted, toAbortedError } from '@bk/core';

/** Most of an error answer kept for a message. */
const ERROR_TEXT_LIMIT = 1_000;

/** An answer of Grafana's HTTP API: status and parsed JSON body (`undefined` when empty). */
export interface GrafanaAnswer {
  status: number;
  body: unknown;
}

/** How the client authenticates: a service account token, or a user and password. */
export type GrafanaAuth = { token: string } | { username: string; password: string };

/**
 * A minimal client of Grafana's HTTP API over `fetch`. Credentials travel only in the
 * `authorization` header and never appear in a message; every request (answer and body) must
 * complete within `timeoutMs`, so a silent server fails the run instead of hanging it.
 */
export class GrafanaApi {
  readonly url: string;
  readonly #authorization: string;
  readonly #component: string;
  readonly #timeoutMs: number;
  readonly #orgId: number | undefined;

  constructor(options: {
    url: string;
    auth: GrafanaAuth;
    component: string;
    timeoutMs: number;
    orgId?: number;
  }) {
    this.url = options.url;
    this.#authorization =
      'token' in options.auth
        ? `Bearer ${options.auth.token}`
        : `Basic ${Buffer.from(`${options.auth.username}:${options.auth.password}`).toString('base64')}`;
    this.#component = options.component;
    this.#timeoutMs = options.timeoutMs;
    this.#orgId = options.orgId;
  }

  /**
   * `method path` (path starts with `/api/`). Resolves for 2xx and the statuses in `allow`;
   * anything else is a `ComponentError` carrying Grafana's `message` (retryable for 5xx, 429 and
   * network failures or timeouts).
   *
   * @throws {AbortedError} when `signal` aborts.
   */
  async request(
    method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
    path: string,
    options: { body?: unknown; allow?: number[]; signal: AbortSignal },
  ): Promise<GrafanaAnswer> {
    throwIfAborted(options.signal);
    const where = `${method} ${path.split('?')[0]}`;
    const signal = AbortSignal.any([options.signal, AbortSignal.timeout(this.#timeoutMs)]);
    let response: Response;
    let text: string;
    try {
      response = await fetch(`${this.url}${path}`, {
        method,
        headers: {
          authorization: this.#authorization,
          accept: 'application/json',
          // Provisioned alerting objects stay editable in Grafana's UI.
          'x-disable-provenance': 'true',
          ...(this.#orgId === undefined ? {} : { 'x-grafana-org-id': String(this.#orgId) }),
          ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
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
      return { status: response.status, body };
    }
    const message = isRecord(body) && typeof body.message === 'string' ? body.message : text;
    const hint =
      response.status === 401
        ? ' (check "token", or "username" and "password")'
        : response.status === 403
          ? ' (the token or user needs the Admin role of the organization)'
          : '';
    throw new ComponentError(
      this.#component,
      `${where} on ${this.url} answered HTTP ${response.status}${hint}: ${message.slice(0, ERROR_TEXT_LIMIT).trim()}`,
      { retryable: response.status >= 500 || response.status === 429 },
    );
  }

  /** `GET path`, the JSON answer. */
  async get(path: string, signal: AbortSignal): Promise<unknown> {
    return (await this.request('GET', path, { signal })).body;
  }

  /** `GET path`, or `undefined` when Grafana answers 404. */
  async find(path: string, signal: AbortSignal): Promise<unknown> {
    const answer = await this.request('GET', path, { allow: [404], signal });
    return answer.status === 404 ? undefined : answer.body;
  }
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
 * Checks Grafana's base URL: `http:` or `https:`, no credentials, query or fragment. Returns it
 * without a trailing `/` (a sub-path such as `https://host/grafana` is kept).
 *
 * @throws {ConfigError}
 */
export function checkGrafanaUrl(value: unknown, where: string): string {
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
      `${where}: "url" must not contain credentials; use "token", or "username" and "password".`,
    );
  }
  if (parsed.search !== '' || parsed.hash !== '') {
    throw new ConfigError(`${where}: "url" must not have a query or a fragment.`);
  }
  return `${parsed.origin}${parsed.pathname.replace(/\/+$/, '')}`;
}
