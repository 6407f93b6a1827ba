import { isAbsolute } from 'node:path';
import { ComponentError, ConfigError, throwIfAborted, toAbortedError } from '@bk/core';

/** Most of an error response's body kept for an error message. */
const ERROR_BODY_LIMIT = 2_000;

/**
 * A server's HTTP API as a component sees it: the base URL, extra headers (credentials: never
 * logged or recorded) and a per-request timeout.
 */
export class HttpApi {
  readonly url: string;
  readonly #headers: Record<string, string>;
  readonly #timeoutMs: number;
  readonly #component: string;

  /** @throws {ConfigError} for a URL that is not http(s), or that holds credentials. */
  constructor(
    component: string,
    url: string,
    headers: Record<string, string> | undefined,
    timeoutMs: number,
  ) {
    this.#component = component;
    this.url = checkUrl(url, `${component}: "url"`);
    this.#headers = { ...headers };
    this.#timeoutMs = timeoutMs;
  }

  /**
   * Sends a request and parses the JSON answer.
   *
   * @throws {ComponentError} on a network error (retryable), a timeout (retryable), a non-2xx
   *   status (retryable for 5xx; the message carries the server's answer, never the headers) or
   *   a body that is not JSON.
   * @throws {AbortedError} when `signal` aborts.
   */
  async json<T>(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    options: { body?: unknown; signal: AbortSignal; timeoutMs?: number },
  ): Promise<T> {
    throwIfAborted(options.signal);
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    const signal = AbortSignal.any([options.signal, AbortSignal.timeout(timeoutMs)]);
    const what = `${method} ${path}`;
    let response: Response;
    try {
      response = await fetch(`${this.url}${path}`, {
        method,
        headers: {
          accept: 'application/json',
          ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
          ...this.#headers,
        },
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal,
      });
    } catch (error) {
      if (options.signal.aborted) throw toAbortedError(options.signal);
      const reason =
        (error as Error).name === 'TimeoutError'
          ? `no answer within ${timeoutMs} ms`
          : `${(error as Error).message}${(error as Error).cause ? ` (${String((error as { cause: unknown }).cause)})` : ''}`;
      throw new ComponentError(this.#component, `${what} on ${this.url} failed: ${reason}.`, {
        cause: error,
        retryable: true,
      });
    }
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      if (options.signal.aborted) throw toAbortedError(options.signal);
      throw new ComponentError(
        this.#component,
        `${what}: reading the answer failed: ${(error as Error).message}`,
        {
          cause: error,
          retryable: true,
        },
      );
    }
    if (!response.ok) {
      throw new ComponentError(
        this.#component,
        `${what} on ${this.url} answered HTTP ${response.status}: ${text.slice(0, ERROR_BODY_LIMIT).trim()}`,
        { retryable: response.status >= 500 || response.status === 429 },
      );
    }
    try {
      return JSON.parse(text) as T;
    } catch (error) {
      throw new ComponentError(this.#component, `${what} answered something that is not JSON.`, {
        cause: error,
      });
    }
  }

  /** A Prometheus-style `{ status: "success", data }` answer's `data`. */
  async data<T>(
    method: 'GET' | 'POST',
    path: string,
    options: { signal: AbortSignal; timeoutMs?: number },
  ): Promise<T> {
    const answer = await this.json<{ status?: unknown; data?: unknown; error?: unknown }>(
      method,
      path,
      options,
    );
    if (answer.status !== 'success' || answer.data === undefined) {
      throw new ComponentError(
        this.#component,
        `${method} ${path} did not succeed: ${String(answer.error ?? JSON.stringify(answer).slice(0, ERROR_BODY_LIMIT))}`,
      );
    }
    return answer.data as T;
  }
}

/**
 * Checks a server URL: `http:` or `https:`, no credentials in it (pass them as headers), no
 * query or fragment. Returns it without a trailing `/`.
 *
 * @throws {ConfigError}
 */
export function checkUrl(value: unknown, where: string): string {
  if (typeof value !== 'string' || value === '')
    throw new ConfigError(`${where} must be a non-empty URL string.`);
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    throw new ConfigError(`${where} is not a URL.`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new ConfigError(`${where} must be an http:// or https:// URL, got "${parsed.protocol}".`);
  }
  if (parsed.username !== '' || parsed.password !== '') {
    throw new ConfigError(
      `${where} must not contain credentials; pass them in "headers" (e.g. Authorization).`,
    );
  }
  if (parsed.search !== '' || parsed.hash !== '') {
    throw new ConfigError(`${where} must not have a query or a fragment.`);
  }
  return `${parsed.origin}${parsed.pathname.replace(/\/+$/, '')}`;
}

/**
 * Checks `headers`: an object of string values.
 *
 * @throws {ConfigError} naming the field, never a value.
 */
export function checkHeaders(value: unknown, where: string): Record<string, string> | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(`${where}: "headers" must be an object of header names to string values.`);
  }
  for (const [name, header] of Object.entries(value)) {
    if (typeof header !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
      throw new ConfigError(`${where}: "headers.${name}" must be a valid header name with a string value.`);
    }
  }
  return value as Record<string, string>;
}

/**
 * Checks a path option: absent (unless `required`), or an absolute path.
 *
 * @throws {ConfigError} naming the field.
 */
export function checkAbsolutePath(value: unknown, field: string, where: string, required = false): void {
  if (value === undefined && !required) return;
  if (typeof value !== 'string' || !isAbsolute(value))
    throw new ConfigError(`${where}: "${field}" must be an absolute path.`);
}

/**
 * Checks an optional positive integer of milliseconds.
 *
 * @throws {ConfigError}
 */
export function checkTimeout(value: unknown, field: string, where: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || (value as number) <= 0) {
    throw new ConfigError(
      `${where}: "${field}" must be a positive integer (milliseconds), got ${JSON.stringify(value)}.`,
    );
  }
  return value as number;
}
