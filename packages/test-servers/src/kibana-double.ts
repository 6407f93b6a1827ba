import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { listenOnFreePort } from './process.ts';

/**
 * A stand-in for Kibana's HTTP API, written from its public reference
 * (elastic.co/docs/api/doc/kibana) for exactly the endpoints `@bk/kibana` uses: `GET /api/status`,
 * the spaces API (`/api/spaces/space`), and per space (`/s/<space>/…`) the saved objects API:
 * create, get, delete, `_find`, `_bulk_get`, `_export` (NDJSON, `includeReferencesDeep`, the
 * export details line) and `_import` (multipart/form-data, `overwrite`, per-object `conflict`
 * and `missing_references` errors).
 *
 * As Kibana does: every request but a `GET` needs a `kbn-xsrf` header; an export or import of
 * more than `maxImportExportSize` objects is refused with 400; `_find` refuses to page past
 * 10 000 hits; connectors (`action`) are exported without their `secrets` and imported with
 * `isMissingSecrets: true` and an `action_required` warning; rules (`alert`) are exported
 * disabled and without their API key; errors are `{ statusCode, error, message }`. State is in
 * memory.
 */
export interface KibanaDouble {
  /** `http://127.0.0.1:PORT`. */
  url: string;
  /** The `elastic` user's credentials (basic auth). */
  username: string;
  password: string;
  /** The version `/api/status` reports. */
  version: string;
  /** Requests served, as `METHOD /path`, in order. */
  requests: string[];
  /** The connector secrets Kibana keeps (encrypted) and never exports, by space and id. */
  secrets: (space: string, id: string) => Record<string, unknown> | undefined;
  stop: () => Promise<void>;
}

export interface KibanaDoubleOptions {
  /** Version reported by `/api/status`; default `8.15.0`. */
  version?: string;
  /** `savedObjects.maxImportExportSize`; default 10 000. */
  maxImportExportSize?: number;
}

/** Types this double lets through `_export` and `_import` (Kibana's importable and exportable ones it knows). */
const EXPORTABLE = new Set([
  'config',
  'index-pattern',
  'search',
  'visualization',
  'dashboard',
  'lens',
  'map',
  'canvas-workpad',
  'canvas-element',
  'query',
  'tag',
  'url',
  'action',
  'alert',
  'graph-workspace',
]);

interface SavedObject {
  type: string;
  id: string;
  attributes: Record<string, unknown>;
  references: { type: string; id: string; name: string }[];
  secrets?: Record<string, unknown>;
  created_at: string;
  updated_at: string;
  version: number;
}

class KibanaFailure extends Error {
  // A plain field, not a parameter property: benchmarks import this package with Node's type stripping.
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

const ERROR_NAMES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
};

function fail(status: number, message: string): never {
  throw new KibanaFailure(status, message);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The parts of a `multipart/form-data` body, by field name. */
function multipart(body: Buffer, contentType: string): Map<string, Buffer> {
  const boundary = /boundary=(?:"([^"]+)"|([^;]+))/.exec(contentType);
  if (!boundary) fail(400, 'Unsupported Media Type: expected multipart/form-data');
  const delimiter = Buffer.from(`--${boundary[1] ?? boundary[2]}`);
  const parts = new Map<string, Buffer>();
  let at = body.indexOf(delimiter);
  while (at >= 0) {
    const start = at + delimiter.length;
    if (body.subarray(start, start + 2).toString() === '--') break;
    const next = body.indexOf(delimiter, start);
    if (next < 0) break;
    const part = body.subarray(start + 2, next - 2); // skip CRLF after the delimiter and before the next
    const split = part.indexOf('\r\n\r\n');
    const headers = part.subarray(0, split).toString('utf8');
    const name = /name="([^"]*)"/.exec(headers)?.[1];
    if (name !== undefined) parts.set(name, part.subarray(split + 4));
    at = next;
  }
  return parts;
}

/** Starts the double on a free loopback port. */
export async function startKibanaDouble(options: KibanaDoubleOptions = {}): Promise<KibanaDouble> {
  const version = options.version ?? '8.15.0';
  const maxSize = options.maxImportExportSize ?? 10_000;
  const password = randomBytes(9).toString('base64url');
  const requests: string[] = [];
  const spaces = new Map<string, Record<string, unknown>>([
    [
      'default',
      {
        id: 'default',
        name: 'Default',
        description: 'This is your default space!',
        color: '#00bfb3',
        disabledFeatures: [],
        _reserved: true,
      },
    ],
  ]);
  const objects = new Map<string, Map<string, SavedObject>>([['default', new Map()]]);
  let counter = 0;

  function inSpace(space: string): Map<string, SavedObject> {
    const found = objects.get(space);
    if (!found) fail(404, `Saved object [space/${space}] not found`);
    return found;
  }

  function key(type: string, id: string): string {
    return `${type}:${id}`;
  }

  function objectJson(object: SavedObject, space: string): Record<string, unknown> {
    return {
      type: object.type,
      id: object.id,
      namespaces: [space],
      attributes: structuredClone(object.attributes),
      references: structuredClone(object.references),
      managed: false,
      coreMigrationVersion: '8.8.0',
      typeMigrationVersion: '8.0.0',
      created_at: object.created_at,
      updated_at: object.updated_at,
      version: Buffer.from(JSON.stringify([object.version, 1])).toString('base64'),
    };
  }

  /** An object as `_export` writes it: no namespaces, connectors without secrets, rules disabled. */
  function exportJson(object: SavedObject, space: string): Record<string, unknown> {
    const json = objectJson(object, space);
    delete json.namespaces;
    if (object.type === 'alert') {
      json.attributes = { ...(json.attributes as object), enabled: false, apiKey: null, apiKeyOwner: null };
    }
    return json;
  }

  function save(
    space: string,
    object: Omit<SavedObject, 'created_at' | 'updated_at' | 'version'>,
  ): SavedObject {
    const store = inSpace(space);
    const existing = store.get(key(object.type, object.id));
    const now = new Date(Date.UTC(2026, 0, 1) + counter++ * 1000).toISOString();
    const saved: SavedObject = {
      ...structuredClone(object),
      created_at: existing?.created_at ?? now,
      updated_at: now,
      version: (existing?.version ?? 0) + 1,
    };
    store.set(key(object.type, object.id), saved);
    return saved;
  }

  function exportObjects(space: string, body: Record<string, unknown>): string {
    const store = inSpace(space);
    let roots: SavedObject[];
    if (Array.isArray(body.objects)) {
      roots = [];
      const missing: string[] = [];
      for (const wanted of body.objects) {
        if (!isObject(wanted)) continue;
        const found = store.get(key(String(wanted.type), String(wanted.id)));
        if (!found) missing.push(`${String(wanted.type)}:${String(wanted.id)}`);
        else roots.push(found);
      }
      const refused = [...new Set(roots.map((object) => object.type))].filter(
        (type) => !EXPORTABLE.has(type),
      );
      if (refused.length > 0)
        fail(400, `Trying to export object(s) with non-exportable types: ${refused.join(', ')}`);
      if (missing.length > 0) fail(400, `Error fetching objects to export: ${missing.join(', ')} not found`);
    } else if (body.type !== undefined) {
      const types = [body.type].flat().map(String);
      const refused = types.filter((type) => !EXPORTABLE.has(type));
      if (refused.length > 0) fail(400, `Trying to export non-exportable type(s): ${refused.join(', ')}`);
      roots = [...store.values()].filter((object) => types.includes(object.type));
    } else {
      fail(400, 'Either `type` or `objects` are required.');
    }
    if (roots.length > maxSize)
      fail(
        400,
        `Can't export more than ${maxSize} objects. If your server has enough memory, this limit can be increased by adjusting the "savedObjects.maxImportExportSize" setting.`,
      );
    const included = new Map<string, SavedObject>();
    const missingReferences: { type: string; id: string }[] = [];
    const visit = (object: SavedObject) => {
      if (included.has(key(object.type, object.id))) return;
      included.set(key(object.type, object.id), object);
      if (body.includeReferencesDeep !== true) return;
      for (const reference of object.references) {
        const target = store.get(key(reference.type, reference.id));
        if (target) visit(target);
        else missingReferences.push({ type: reference.type, id: reference.id });
      }
    };
    for (const root of roots.sort((a, b) => (key(a.type, a.id) < key(b.type, b.id) ? -1 : 1))) visit(root);
    // Referenced objects before the objects that reference them, as Kibana sorts an export.
    const sorted: SavedObject[] = [];
    const placed = new Set<string>();
    const place = (object: SavedObject, path: Set<string>) => {
      const id = key(object.type, object.id);
      if (placed.has(id) || path.has(id)) return;
      path.add(id);
      for (const reference of object.references) {
        const target = included.get(key(reference.type, reference.id));
        if (target) place(target, path);
      }
      placed.add(id);
      sorted.push(object);
    };
    for (const object of included.values()) place(object, new Set());
    const lines = sorted.map((object) => JSON.stringify(exportJson(object, space)));
    if (body.excludeExportDetails !== true) {
      lines.push(
        JSON.stringify({
          excludedObjects: [],
          excludedObjectsCount: 0,
          exportedCount: sorted.length,
          missingRefCount: missingReferences.length,
          missingReferences,
        }),
      );
    }
    return `${lines.join('\n')}\n`;
  }

  function importObjects(space: string, file: Buffer, query: URLSearchParams): Record<string, unknown> {
    const store = inSpace(space);
    const overwrite = query.get('overwrite') === 'true';
    if (overwrite && query.get('createNewCopies') === 'true')
      fail(400, '[request query]: cannot use [overwrite] with [createNewCopies]');
    const lines = file
      .toString('utf8')
      .split('\n')
      .filter((line) => line.trim() !== '');
    const incoming: Record<string, unknown>[] = [];
    for (const line of lines) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        fail(400, `Unexpected token in JSON: ${line.slice(0, 40)}`);
      }
      if (isObject(parsed) && typeof parsed.type === 'string' && typeof parsed.id === 'string')
        incoming.push(parsed);
    }
    if (incoming.length > maxSize) fail(400, `Can't import more than ${maxSize} objects`);
    const inFile = new Set(incoming.map((object) => key(String(object.type), String(object.id))));
    const errors: Record<string, unknown>[] = [];
    const successResults: Record<string, unknown>[] = [];
    const warnings: Record<string, unknown>[] = [];
    let connectors = 0;
    for (const object of incoming) {
      const type = String(object.type);
      const id = String(object.id);
      const attributes = isObject(object.attributes) ? object.attributes : {};
      const meta = { title: String(attributes.title ?? attributes.name ?? id), icon: type };
      if (!EXPORTABLE.has(type)) {
        errors.push({ id, type, meta, error: { type: 'unsupported_type' } });
        continue;
      }
      const references = Array.isArray(object.references) ? object.references.filter(isObject) : [];
      const blocking = references.filter((reference) => {
        const target = key(String(reference.type), String(reference.id));
        return !inFile.has(target) && !store.has(target);
      });
      if (blocking.length > 0) {
        errors.push({
          id,
          type,
          meta,
          error: {
            type: 'missing_references',
            references: blocking.map((reference) => ({ type: reference.type, id: reference.id })),
          },
        });
        continue;
      }
      const existing = store.get(key(type, id));
      if (existing && !overwrite) {
        errors.push({ id, type, meta, error: { type: 'conflict' } });
        continue;
      }
      const stored = {
        ...attributes,
        ...(type === 'action' ? { isMissingSecrets: true } : {}),
      };
      save(space, {
        type,
        id,
        attributes: stored,
        references: references.map((reference) => ({
          type: String(reference.type),
          id: String(reference.id),
          name: String(reference.name ?? ''),
        })),
      });
      if (type === 'action') connectors += 1;
      successResults.push({ type, id, meta, ...(existing ? { overwrite: true } : {}) });
    }
    if (connectors > 0) {
      warnings.push({
        type: 'action_required',
        message: `${connectors} connector${connectors === 1 ? ' has' : 's have'} sensitive information that require updates.`,
        actionPath: '/app/management/insightsAndAlerting/triggersActionsConnectors/connectors',
        buttonLabel: 'Go to connectors',
      });
    }
    return {
      success: errors.length === 0,
      successCount: successResults.length,
      ...(errors.length > 0 ? { errors } : {}),
      successResults,
      warnings,
    };
  }

  function handle(
    method: string,
    path: string,
    query: URLSearchParams,
    raw: Buffer,
    contentType: string,
  ): [number, unknown, string?] {
    let segments = path
      .split('/')
      .filter((part) => part !== '')
      .map(decodeURIComponent);
    let space = 'default';
    if (segments[0] === 's' && segments[1] !== undefined) {
      space = segments[1];
      segments = segments.slice(2);
      if (!spaces.has(space)) fail(404, 'Not Found');
    }
    const json = (): unknown => {
      const text = raw.toString('utf8');
      if (text.trim() === '') return {};
      try {
        return JSON.parse(text);
      } catch {
        fail(400, 'Invalid JSON payload');
      }
    };
    const route = segments.join('/');
    if (method === 'GET' && route === 'api/status') {
      return [
        200,
        {
          name: 'bk-double',
          uuid: '5b2de169-2785-441b-ae8c-186a1936b17d',
          version: { number: version, build_hash: 'double', build_number: 1, build_snapshot: false },
          status: { overall: { level: 'available', summary: 'All services and plugins are available' } },
        },
      ];
    }
    if (segments[0] === 'api' && segments[1] === 'spaces' && segments[2] === 'space') {
      const id = segments[3];
      if (method === 'GET' && id === undefined) return [200, [...spaces.values()]];
      if (method === 'GET') {
        const found = spaces.get(id!);
        if (!found) fail(404, 'Not Found');
        return [200, found];
      }
      if (method === 'POST' && id === undefined) {
        const body = json();
        if (!isObject(body) || typeof body.id !== 'string' || typeof body.name !== 'string')
          fail(400, '[request body.id]: expected value of type [string]');
        if (!/^[a-z0-9_-]+$/.test(body.id))
          fail(400, "[request body.id]: must be lower case, a-z, 0-9, '_', and '-' are allowed");
        if (spaces.has(body.id)) fail(409, `A space with the identifier ${body.id} already exists.`);
        const stored = { disabledFeatures: [], ...structuredClone(body) };
        spaces.set(body.id, stored);
        objects.set(body.id, new Map());
        return [200, stored];
      }
      if (method === 'PUT' && id !== undefined) {
        if (!spaces.has(id)) fail(404, 'Not Found');
        const body = json();
        if (!isObject(body)) fail(400, 'invalid body');
        const stored = { ...structuredClone(body), id, ...(id === 'default' ? { _reserved: true } : {}) };
        spaces.set(id, stored);
        return [200, stored];
      }
      if (method === 'DELETE' && id !== undefined) {
        if (id === 'default') fail(400, 'The default space cannot be deleted because it is reserved.');
        if (!spaces.delete(id)) fail(404, 'Not Found');
        objects.delete(id);
        return [204, undefined];
      }
    }
    if (
      segments[0] === 'api' &&
      segments[1] === 'actions' &&
      segments[2] === 'connector' &&
      method === 'DELETE'
    ) {
      const id = String(segments[3]);
      if (!inSpace(space).delete(key('action', id))) fail(404, `Saved object [action/${id}] not found`);
      return [204, undefined];
    }
    if (
      segments[0] === 'api' &&
      segments[1] === 'actions' &&
      segments[2] === 'connector' &&
      method === 'POST'
    ) {
      const body = json();
      if (!isObject(body) || typeof body.name !== 'string' || typeof body.connector_type_id !== 'string')
        fail(400, '[request body.name]: expected value of type [string]');
      const id = segments[3] ?? randomUUID();
      if (inSpace(space).has(key('action', id))) fail(409, `Saved object [action/${id}] conflict`);
      save(space, {
        type: 'action',
        id,
        attributes: {
          actionTypeId: body.connector_type_id,
          name: body.name,
          isMissingSecrets: false,
          config: isObject(body.config) ? structuredClone(body.config) : {},
        },
        references: [],
        ...(isObject(body.secrets) ? { secrets: structuredClone(body.secrets) } : {}),
      });
      return [
        200,
        {
          id,
          name: body.name,
          connector_type_id: body.connector_type_id,
          config: body.config ?? {},
          is_preconfigured: false,
          is_deprecated: false,
          is_missing_secrets: false,
          is_system_action: false,
        },
      ];
    }
    if (segments[0] === 'api' && segments[1] === 'saved_objects') {
      const store = inSpace(space);
      const [, , first, second] = segments;
      if (first === '_export' && method === 'POST') {
        const body = json();
        return [200, undefined, exportObjects(space, isObject(body) ? body : {})];
      }
      if (first === '_import' && method === 'POST') {
        const file = multipart(raw, contentType).get('file');
        if (!file) fail(400, '[request body.file]: expected value of type [Stream] but got [undefined]');
        return [200, importObjects(space, file, query)];
      }
      if (first === '_find' && method === 'GET') {
        const types = query.getAll('type');
        if (types.length === 0)
          fail(400, '[request query.type]: expected at least one defined value but got [undefined]');
        const unsupported = types.filter((type) => !EXPORTABLE.has(type));
        if (unsupported.length > 0) fail(400, `Unsupported saved object type(s): ${unsupported.join(', ')}`);
        const perPage = Number(query.get('per_page') ?? 20);
        const page = Number(query.get('page') ?? 1);
        if (perPage * page > 10_000)
          fail(
            400,
            `Result window is too large, from + size must be less than or equal to: [10000] but was [${perPage * page}].`,
          );
        const matching = [...store.values()]
          .filter((object) => types.includes(object.type))
          .sort((a, b) => (key(a.type, a.id) < key(b.type, b.id) ? -1 : 1));
        return [
          200,
          {
            page,
            per_page: perPage,
            total: matching.length,
            saved_objects: matching
              .slice((page - 1) * perPage, page * perPage)
              .map((object) => ({ ...objectJson(object, space), score: 0 })),
          },
        ];
      }
      if (first === '_bulk_get' && method === 'POST') {
        const body = json();
        if (!Array.isArray(body)) fail(400, '[request body]: expected value of type [array]');
        return [
          200,
          {
            saved_objects: body.filter(isObject).map((wanted) => {
              const found = store.get(key(String(wanted.type), String(wanted.id)));
              return found
                ? objectJson(found, space)
                : {
                    id: wanted.id,
                    type: wanted.type,
                    error: {
                      statusCode: 404,
                      error: 'Not Found',
                      message: `Saved object [${String(wanted.type)}/${String(wanted.id)}] not found`,
                    },
                  };
            }),
          },
        ];
      }
      if (first !== undefined && !first.startsWith('_')) {
        const type = first;
        const id = second ?? randomUUID();
        const existing = store.get(key(type, id));
        if (method === 'GET') {
          if (!existing || second === undefined) fail(404, `Saved object [${type}/${id}] not found`);
          return [200, objectJson(existing, space)];
        }
        if (method === 'DELETE') {
          if (!existing) fail(404, `Saved object [${type}/${id}] not found`);
          store.delete(key(type, id));
          return [200, {}];
        }
        if (method === 'POST') {
          if (existing && query.get('overwrite') !== 'true')
            fail(409, `Saved object [${type}/${id}] conflict`);
          const body = json();
          if (!isObject(body) || !isObject(body.attributes))
            fail(400, '[request body.attributes]: expected value of type [object]');
          const { secrets, ...attributes } = body.attributes;
          const saved = save(space, {
            type,
            id,
            attributes,
            references: Array.isArray(body.references)
              ? body.references.filter(isObject).map((reference) => ({
                  type: String(reference.type),
                  id: String(reference.id),
                  name: String(reference.name ?? ''),
                }))
              : [],
            ...(isObject(secrets) ? { secrets } : {}),
          });
          return [200, objectJson(saved, space)];
        }
      }
    }
    fail(404, 'Not Found');
  }

  async function serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://double');
    const method = request.method ?? 'GET';
    requests.push(`${method} ${url.pathname}`);
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    let status: number;
    let answer: unknown;
    let ndjson: string | undefined;
    try {
      const header = request.headers.authorization ?? '';
      if (header !== `Basic ${Buffer.from(`elastic:${password}`).toString('base64')}`)
        fail(
          401,
          '[security_exception]: unable to authenticate user [elastic] for REST request [/internal/security/me]',
        );
      if (method !== 'GET' && method !== 'HEAD' && request.headers['kbn-xsrf'] === undefined)
        fail(400, 'Request must contain a kbn-xsrf header.');
      [status, answer, ndjson] = handle(
        method,
        url.pathname,
        url.searchParams,
        Buffer.concat(chunks),
        String(request.headers['content-type'] ?? ''),
      );
    } catch (error) {
      if (!(error instanceof KibanaFailure)) throw error;
      status = error.status;
      answer = {
        statusCode: error.status,
        error: ERROR_NAMES[error.status] ?? 'Error',
        message: error.message,
      };
    }
    if (ndjson !== undefined) {
      response.writeHead(status, {
        'content-type': 'application/ndjson',
        'content-disposition': 'attachment; filename="export.ndjson"',
      });
      response.end(ndjson);
      return;
    }
    const text = answer === undefined ? '' : JSON.stringify(answer);
    response.writeHead(
      status,
      answer === undefined ? {} : { 'content-type': 'application/json; charset=utf-8' },
    );
    response.end(text);
  }

  const server: Server = createServer((request, response) => {
    serve(request, response).catch((error: unknown) => {
      response.writeHead(500, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify({ statusCode: 500, error: 'Internal Server Error', message: String(error) }),
      );
    });
  });
  const port = await listenOnFreePort(server);
  return {
    url: `http://127.0.0.1:${port}`,
    username: 'elastic',
    password,
    version,
    requests,
    secrets: (space, id) => {
      const found = objects.get(space)?.get(key('action', id));
      return found?.secrets ? structuredClone(found.secrets) : undefined;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
