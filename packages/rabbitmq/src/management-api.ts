import { ComponentError, throwIfAborted } from '@bk/core';
import { redact } from './definitions.ts';

/** Most response text kept for an error message. */
const ERROR_TEXT_LIMIT = 2_000;

/** A response of the management API: status and parsed JSON body (`undefined` when empty). */
export interface ApiResponse {
  status: number;
  body: unknown;
}

/**
 * A minimal client of the RabbitMQ management HTTP API over `fetch`, with Basic auth. The
 * credentials travel only in the `authorization` header; error messages name the method and
 * path (never the credentials) and are scrubbed of password hashes.
 */
export class ManagementApi {
  readonly #base: string;
  readonly #authorization: string;
  readonly #component: string;
  readonly #timeoutMs: number;
  /** Password hashes seen so far, removed from any error text. */
  readonly secrets = new Set<string>();

  constructor(options: {
    url: string;
    username: string;
    password: string;
    component: string;
    timeoutMs: number;
  }) {
    this.#base = options.url.replace(/\/+$/, '');
    this.#authorization = `Basic ${Buffer.from(`${options.username}:${options.password}`).toString('base64')}`;
    this.#component = options.component;
    this.#timeoutMs = options.timeoutMs;
  }

  /**
   * `method /api/<path>`. Resolves for 2xx and for the statuses in `allow` (e.g. 404);
   * anything else is a `ComponentError` (retryable for 5xx and network failures).
   */
  async request(
    method: string,
    path: string,
    options: { body?: unknown; allow?: number[]; signal: AbortSignal },
  ): Promise<ApiResponse> {
    throwIfAborted(options.signal);
    const where = `${method} /api/${path}`;
    let response: Response;
    let text: string;
    try {
      response = await fetch(`${this.#base}/api/${path}`, {
        method,
        headers: {
          authorization: this.#authorization,
          accept: 'application/json',
          ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal: AbortSignal.any([options.signal, AbortSignal.timeout(this.#timeoutMs)]),
      });
      text = await response.text();
    } catch (error) {
      throwIfAborted(options.signal);
      const reason = error instanceof Error ? `${error.message}${causeText(error)}` : String(error);
      throw new ComponentError(this.#component, `${where} on ${this.#base} failed: ${reason}`, {
        cause: error,
        retryable: true,
      });
    }
    if (response.status >= 200 && response.status < 300)
      return { status: response.status, body: parse(text) };
    if (options.allow?.includes(response.status)) return { status: response.status, body: parse(text) };
    const detail = redact(text, this.secrets).slice(0, ERROR_TEXT_LIMIT);
    const hint =
      response.status === 401
        ? ' (check "username" and "password"; the user needs the administrator tag, and guest may only log in from localhost)'
        : '';
    throw new ComponentError(this.#component, `${where} answered ${response.status}${hint}: ${detail}`, {
      retryable: response.status >= 500,
    });
  }

  /** `GET /api/<path>` parsed as JSON. */
  async get(path: string, signal: AbortSignal): Promise<unknown> {
    return (await this.request('GET', path, { signal })).body;
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

function causeText(error: Error): string {
  const cause = (error as { cause?: unknown }).cause;
  return cause instanceof Error ? ` (${cause.message})` : '';
}
