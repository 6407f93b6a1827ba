import { ConfigError, StorageError, toAbortedError } from '@bk/core';

/**
 * How {@link SwiftStorage} gets a token and the account's storage URL.
 *
 * - `v1`: TempAuth / SwAuth style (`X-Auth-User`, `X-Auth-Key` → `X-Storage-Url`, `X-Auth-Token`).
 * - `keystone-v3`: password authentication against Keystone (`POST /v3/auth/tokens`), project
 *   scoped; the storage URL is the catalog's `object-store` endpoint for `interface` (default
 *   `public`) and, when given, `region`.
 * - `token`: a pre-issued token and storage URL; it cannot be renewed, so a 401 fails.
 */
export type SwiftAuth =
  | { kind: 'v1'; authUrl: string; user: string; key: string }
  | {
      kind: 'keystone-v3';
      /** The Keystone endpoint, e.g. `https://keystone.example.com:5000/v3` (`/v3` is added when missing). */
      authUrl: string;
      username: string;
      password: string;
      projectName: string;
      /** Default `Default`. */
      userDomainName?: string;
      /** Default `Default`. */
      projectDomainName?: string;
      /** The catalog region to use; default the first `object-store` endpoint with the interface. */
      region?: string;
      /** Default `public`. */
      interface?: 'public' | 'internal' | 'admin';
    }
  | { kind: 'token'; storageUrl: string; token: string };

/** A token and the account URL it works for. */
export interface SwiftSession {
  storageUrl: string;
  token: string;
}

interface CatalogEntry {
  type?: string;
  endpoints?: Array<{ interface?: string; region?: string; region_id?: string; url?: string }>;
}

function networkError(action: string, error: unknown, signal: AbortSignal | undefined): Error {
  if (signal?.aborted) return toAbortedError(signal);
  const detail = error instanceof Error ? error.message : String(error);
  return new StorageError(`Could not ${action}: ${detail}.`, { cause: error, retryable: true });
}

function failedStatus(action: string, status: number): StorageError {
  const hint = status === 401 || status === 403 ? ' (check the credentials)' : '';
  return new StorageError(`Could not ${action}: HTTP ${status}${hint}.`, {
    retryable: status >= 500 || status === 429,
  });
}

/**
 * Authenticates and returns a session. Error messages name the auth URL and user but never the
 * key, password or token.
 *
 * @throws {StorageError} When authentication fails (`retryable` for 5xx and network errors).
 * @throws {ConfigError} When Keystone's catalog has no usable `object-store` endpoint.
 */
export async function authenticate(
  auth: SwiftAuth,
  fetcher: typeof fetch,
  signal?: AbortSignal,
): Promise<SwiftSession> {
  if (auth.kind === 'token') return { storageUrl: auth.storageUrl.replace(/\/+$/, ''), token: auth.token };
  if (auth.kind === 'v1') {
    const action = `authenticate user "${auth.user}" at ${auth.authUrl}`;
    let response: Response;
    try {
      response = await fetcher(auth.authUrl, {
        headers: { 'X-Auth-User': auth.user, 'X-Auth-Key': auth.key },
        signal,
      });
    } catch (error) {
      throw networkError(action, error, signal);
    }
    await response.body?.cancel();
    const storageUrl = response.headers.get('x-storage-url');
    const token = response.headers.get('x-auth-token');
    if (!response.ok) throw failedStatus(action, response.status);
    if (!storageUrl || !token)
      throw new StorageError(`Could not ${action}: the reply has no X-Storage-Url or X-Auth-Token.`);
    return { storageUrl: storageUrl.replace(/\/+$/, ''), token };
  }
  const base = auth.authUrl.replace(/\/+$/, '');
  const url = `${/\/v3$/.test(base) ? base : `${base}/v3`}/auth/tokens`;
  const action = `authenticate user "${auth.username}" (project "${auth.projectName}") at ${url}`;
  const body = {
    auth: {
      identity: {
        methods: ['password'],
        password: {
          user: {
            name: auth.username,
            domain: { name: auth.userDomainName ?? 'Default' },
            password: auth.password,
          },
        },
      },
      scope: { project: { name: auth.projectName, domain: { name: auth.projectDomainName ?? 'Default' } } },
    },
  };
  let response: Response;
  let catalog: CatalogEntry[];
  try {
    response = await fetcher(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body),
      signal,
    });
    if (!response.ok) {
      await response.body?.cancel();
      throw failedStatus(action, response.status);
    }
    const reply = (await response.json()) as { token?: { catalog?: CatalogEntry[] } };
    catalog = reply.token?.catalog ?? [];
  } catch (error) {
    if (error instanceof StorageError) throw error;
    throw networkError(action, error, signal);
  }
  const token = response.headers.get('x-subject-token');
  if (!token) throw new StorageError(`Could not ${action}: the reply has no X-Subject-Token.`);
  const wanted = auth.interface ?? 'public';
  const endpoint = catalog
    .filter((entry) => entry.type === 'object-store')
    .flatMap((entry) => entry.endpoints ?? [])
    .find(
      (candidate) =>
        candidate.interface === wanted &&
        candidate.url &&
        (auth.region === undefined ||
          candidate.region === auth.region ||
          candidate.region_id === auth.region),
    );
  if (!endpoint?.url)
    throw new ConfigError(
      `Keystone at ${url} lists no ${wanted} object-store endpoint${auth.region ? ` in region "${auth.region}"` : ''}; check OS_REGION_NAME and the interface.`,
    );
  return { storageUrl: endpoint.url.replace(/\/+$/, ''), token };
}
