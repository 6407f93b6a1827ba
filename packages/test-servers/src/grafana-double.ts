import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { listenOnFreePort } from './process.ts';

/**
 * A small stand-in for Grafana's HTTP API, written from its public documentation
 * (grafana.com/docs/grafana/latest/developers/http_api/) for exactly the endpoints bk uses:
 * health, folders (nested through `parentUid`), search, dashboards by UID, library elements, data sources, and the
 * alerting provisioning API (alert rules, contact points, notification policies, mute timings,
 * templates). Errors have Grafana's shapes: `{ message }` with 401 on bad credentials, 404 for a
 * missing object, 409 for a data source name in use, 412 `{ status: "version-mismatch" |
 * "name-exists" }` for dashboards. As in Grafana, `secureJsonData` is write-only (reads show
 * `secureJsonFields`), contact points' secure settings read back as `[REDACTED]`, and a fresh
 * instance holds the default email contact point and notification policy. State is in memory.
 */
export interface GrafanaDouble {
  /** `http://127.0.0.1:PORT`. */
  url: string;
  /** The service account token the double accepts as `Authorization: Bearer …`. */
  token: string;
  /** Basic auth user (`admin`) and password accepted too. */
  username: string;
  password: string;
  /** The version `/api/health` reports. */
  version: string;
  /** Every data source's stored secrets, by uid (what Grafana keeps encrypted and never returns). */
  secrets: (uid: string) => Record<string, string> | undefined;
  /** Requests served, as `METHOD /path`, in order. */
  requests: string[];
  stop: () => Promise<void>;
}

interface Folder {
  id: number;
  uid: string;
  title: string;
  parentUid?: string;
  version: number;
}

interface Dashboard {
  id: number;
  uid: string;
  title: string;
  version: number;
  folderUid: string;
  body: Record<string, unknown>;
}

interface Datasource {
  id: number;
  uid: string;
  name: string;
  fields: Record<string, unknown>;
  secure: Record<string, string>;
  version: number;
}

interface ContactPoint {
  uid: string;
  name: string;
  type: string;
  settings: Record<string, unknown>;
  disableResolveMessage: boolean;
}

/** Settings Grafana stores encrypted for a contact point and reads back as `[REDACTED]`. */
const SECURE_SETTINGS = ['password', 'token', 'authorization_credentials', 'apiKey', 'secret'];
const REDACTED = '[REDACTED]';

const DEFAULT_POLICY = {
  receiver: 'grafana-default-email',
  group_by: ['grafana_folder', 'alertname'],
};

class HttpFailure extends Error {
  // Plain fields, not parameter properties: benchmarks import this package with Node's type stripping.
  readonly status: number;
  readonly body: Record<string, unknown>;
  constructor(status: number, body: Record<string, unknown>) {
    super(String(body.message));
    this.status = status;
    this.body = body;
  }
}

function fail(status: number, message: string, extra: Record<string, unknown> = {}): never {
  throw new HttpFailure(status, { message, ...extra });
}

function newUid(): string {
  return randomBytes(7).toString('base64url');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function slugOf(title: string): string {
  return title
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '');
}

/** Starts the double on a free loopback port. */
export async function startGrafanaDouble(options: { version?: string } = {}): Promise<GrafanaDouble> {
  const version = options.version ?? '11.3.0';
  const token = `glsa_${randomBytes(16).toString('hex')}`;
  const password = randomBytes(8).toString('hex');
  const requests: string[] = [];
  let nextId = 1;
  const folders = new Map<string, Folder>();
  const dashboards = new Map<string, Dashboard>();
  const datasources = new Map<string, Datasource>();
  const rules = new Map<string, Record<string, unknown>>();
  const contactPoints = new Map<string, ContactPoint>();
  const muteTimings = new Map<string, Record<string, unknown>>();
  const templates = new Map<string, Record<string, unknown>>();
  const libraryElements = new Map<string, Record<string, unknown>>();
  let policy: Record<string, unknown> = structuredClone(DEFAULT_POLICY);
  const defaultContactPoint: ContactPoint = {
    uid: newUid(),
    name: 'grafana-default-email',
    type: 'email',
    settings: { addresses: '<example@email.com>' },
    disableResolveMessage: false,
  };
  contactPoints.set(defaultContactPoint.uid, defaultContactPoint);

  function folderJson(folder: Folder): Record<string, unknown> {
    const parents: Record<string, unknown>[] = [];
    for (let parent = folder.parentUid; parent !== undefined; ) {
      const found = folders.get(parent);
      if (!found) break;
      parents.unshift({ uid: found.uid, title: found.title });
      parent = found.parentUid;
    }
    return {
      id: folder.id,
      uid: folder.uid,
      title: folder.title,
      url: `/dashboards/f/${folder.uid}/${slugOf(folder.title)}`,
      ...(folder.parentUid ? { parentUid: folder.parentUid } : {}),
      ...(parents.length > 0 ? { parents } : {}),
      version: folder.version,
      canSave: true,
    };
  }

  function datasourceJson(datasource: Datasource): Record<string, unknown> {
    const secureJsonFields: Record<string, boolean> = {};
    for (const key of Object.keys(datasource.secure)) secureJsonFields[key] = true;
    return {
      id: datasource.id,
      uid: datasource.uid,
      orgId: 1,
      name: datasource.name,
      type: 'prometheus',
      access: 'proxy',
      url: '',
      basicAuth: false,
      isDefault: false,
      jsonData: {},
      readOnly: false,
      ...datasource.fields,
      secureJsonFields,
      version: datasource.version,
    };
  }

  function contactPointJson(point: ContactPoint): Record<string, unknown> {
    const settings: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(point.settings)) {
      settings[key] = SECURE_SETTINGS.includes(key) ? REDACTED : value;
    }
    return {
      uid: point.uid,
      name: point.name,
      type: point.type,
      settings,
      disableResolveMessage: point.disableResolveMessage,
    };
  }

  function deleteFolder(uid: string): void {
    for (const child of [...folders.values()].filter((folder) => folder.parentUid === uid))
      deleteFolder(child.uid);
    for (const dashboard of [...dashboards.values()])
      if (dashboard.folderUid === uid) dashboards.delete(dashboard.uid);
    for (const [ruleUid, rule] of [...rules]) if (rule.folderUID === uid) rules.delete(ruleUid);
    for (const [elementUid, element] of [...libraryElements])
      if (element.folderUid === uid) libraryElements.delete(elementUid);
    folders.delete(uid);
  }

  function saveDashboard(body: Record<string, unknown>): Record<string, unknown> {
    const dashboard = body.dashboard;
    if (!isObject(dashboard) || typeof dashboard.title !== 'string' || dashboard.title === '')
      fail(400, 'Dashboard title cannot be empty');
    const folderUid = typeof body.folderUid === 'string' ? body.folderUid : '';
    if (folderUid !== '' && !folders.has(folderUid)) fail(400, 'folder not found');
    const overwrite = body.overwrite === true;
    const uid = typeof dashboard.uid === 'string' && dashboard.uid !== '' ? dashboard.uid : newUid();
    const existing = dashboards.get(uid);
    const sameTitle = [...dashboards.values()].find(
      (other) =>
        other.uid !== uid &&
        other.folderUid === folderUid &&
        other.title.toLowerCase() === String(dashboard.title).toLowerCase(),
    );
    if (sameTitle) {
      if (!overwrite)
        fail(412, 'A dashboard with the same name in the folder already exists', { status: 'name-exists' });
      dashboards.delete(sameTitle.uid);
    }
    if (existing && !overwrite) {
      if (dashboard.version !== existing.version)
        fail(412, 'The dashboard has been changed by someone else', { status: 'version-mismatch' });
    }
    const version = existing ? existing.version + 1 : 1;
    const id = existing?.id ?? nextId++;
    const stored: Dashboard = {
      id,
      uid,
      title: String(dashboard.title),
      version,
      folderUid,
      body: { ...structuredClone(dashboard), id, uid, version },
    };
    dashboards.set(uid, stored);
    return {
      id,
      uid,
      url: `/d/${uid}/${slugOf(stored.title)}`,
      status: 'success',
      version,
      slug: slugOf(stored.title),
    };
  }

  function handle(method: string, path: string, query: URLSearchParams, body: unknown): [number, unknown] {
    const segments = path
      .split('/')
      .filter((part) => part !== '')
      .map(decodeURIComponent);
    const route = `${method} /${segments.map((part, index) => (index < 2 ? part : ':')).join('/')}`;
    const object = isObject(body) ? body : {};
    const [, area, a, b] = segments; // segments[0] === 'api'
    if (segments[0] !== 'api') fail(404, 'Not found');

    // Health and version.
    if (route === 'GET /api/health') return [200, { commit: 'double', database: 'ok', version }];

    // Folders.
    if (area === 'folders') {
      if (method === 'GET' && a === undefined) {
        const parentUid = query.get('parentUid') ?? undefined;
        if (parentUid && !folders.has(parentUid)) fail(404, 'folder not found');
        return [
          200,
          [...folders.values()]
            .filter((folder) => folder.parentUid === (parentUid || undefined))
            .map((folder) => ({ id: folder.id, uid: folder.uid, title: folder.title })),
        ];
      }
      if (method === 'POST' && a === undefined) {
        if (typeof object.title !== 'string' || object.title === '')
          fail(400, 'folder title cannot be empty');
        const uid = typeof object.uid === 'string' && object.uid !== '' ? object.uid : newUid();
        if (folders.has(uid)) fail(409, 'a folder with the same uid already exists');
        const parentUid =
          typeof object.parentUid === 'string' && object.parentUid !== '' ? object.parentUid : undefined;
        if (parentUid && !folders.has(parentUid)) fail(404, 'parent folder not found');
        for (const other of folders.values()) {
          if (other.parentUid === parentUid && other.title === object.title)
            fail(409, 'a folder with the same name already exists in the parent folder');
        }
        const folder: Folder = {
          id: nextId++,
          uid,
          title: object.title,
          version: 1,
          ...(parentUid ? { parentUid } : {}),
        };
        folders.set(uid, folder);
        return [200, folderJson(folder)];
      }
      const folder = a === undefined ? undefined : folders.get(a);
      if (!folder) fail(404, 'folder not found');
      if (method === 'GET' && b === undefined) return [200, folderJson(folder)];
      if (method === 'PUT' && b === undefined) {
        if (object.overwrite !== true && object.version !== folder.version)
          fail(412, 'the folder has been changed by someone else', { status: 'version-mismatch' });
        if (typeof object.title === 'string' && object.title !== '') folder.title = object.title;
        folder.version += 1;
        return [200, folderJson(folder)];
      }
      if (method === 'POST' && b === 'move') {
        const parentUid =
          typeof object.parentUid === 'string' && object.parentUid !== '' ? object.parentUid : undefined;
        if (parentUid && !folders.has(parentUid)) fail(404, 'parent folder not found');
        if (parentUid) folder.parentUid = parentUid;
        else delete folder.parentUid;
        return [200, folderJson(folder)];
      }
      if (method === 'DELETE' && b === undefined) {
        deleteFolder(folder.uid);
        return [200, { message: 'Folder deleted', title: folder.title }];
      }
    }

    // Search.
    if (route === 'GET /api/search') {
      const type = query.get('type');
      const limit = Math.min(Number(query.get('limit') ?? 1000) || 1000, 5000);
      const page = Math.max(Number(query.get('page') ?? 1) || 1, 1);
      const hits: Record<string, unknown>[] = [];
      if (type === null || type === 'dash-folder') {
        for (const folder of folders.values())
          hits.push({ id: folder.id, uid: folder.uid, title: folder.title, type: 'dash-folder' });
      }
      if (type === null || type === 'dash-db') {
        for (const dashboard of dashboards.values()) {
          const folder = folders.get(dashboard.folderUid);
          hits.push({
            id: dashboard.id,
            uid: dashboard.uid,
            title: dashboard.title,
            type: 'dash-db',
            url: `/d/${dashboard.uid}/${slugOf(dashboard.title)}`,
            ...(folder ? { folderUid: folder.uid, folderTitle: folder.title } : {}),
          });
        }
      }
      hits.sort((x, y) => String(x.title).localeCompare(String(y.title)));
      return [200, hits.slice((page - 1) * limit, page * limit)];
    }

    // Dashboards.
    if (area === 'dashboards') {
      if (method === 'POST' && a === 'db' && b === undefined) return [200, saveDashboard(object)];
      if (a === 'uid' && b !== undefined) {
        const dashboard = dashboards.get(b);
        if (!dashboard) fail(404, 'Dashboard not found');
        if (method === 'GET') {
          const folder = folders.get(dashboard.folderUid);
          return [
            200,
            {
              dashboard: structuredClone(dashboard.body),
              meta: {
                type: 'db',
                slug: slugOf(dashboard.title),
                url: `/d/${dashboard.uid}/${slugOf(dashboard.title)}`,
                version: dashboard.version,
                folderId: folder?.id ?? 0,
                folderUid: folder?.uid ?? '',
                folderTitle: folder?.title ?? 'General',
                provisioned: false,
              },
            },
          ];
        }
        if (method === 'DELETE') {
          dashboards.delete(b);
          return [
            200,
            { title: dashboard.title, message: `Dashboard ${dashboard.title} deleted`, id: dashboard.id },
          ];
        }
      }
    }

    // Library elements (library panels).
    if (area === 'library-elements') {
      const fieldsOf = (element: Record<string, unknown>) => {
        const folder = folders.get(String(element.folderUid ?? ''));
        return {
          ...element,
          folderId: folder?.id ?? 0,
          meta: {
            folderUid: folder?.uid ?? '',
            folderName: folder?.title ?? 'General',
            connectedDashboards: 0,
          },
        };
      };
      const check = (name: unknown, folderUid: string, uid: string) => {
        if (typeof name !== 'string' || name === '') fail(400, 'library element name cannot be empty');
        if (folderUid !== '' && !folders.has(folderUid)) fail(400, 'folder not found');
        for (const other of libraryElements.values()) {
          if (other.uid !== uid && other.name === name && (other.folderUid ?? '') === folderUid)
            fail(400, 'library element with that name already exists');
        }
      };
      if (method === 'GET' && a === undefined) {
        const perPage = Math.max(Number(query.get('perPage') ?? 100) || 100, 1);
        const page = Math.max(Number(query.get('page') ?? 1) || 1, 1);
        const all = [...libraryElements.values()].sort((x, y) =>
          String(x.name).localeCompare(String(y.name)),
        );
        return [
          200,
          {
            result: {
              totalCount: all.length,
              elements: all.slice((page - 1) * perPage, page * perPage).map(fieldsOf),
              page,
              perPage,
            },
          },
        ];
      }
      if (method === 'POST' && a === undefined) {
        const uid = typeof object.uid === 'string' && object.uid !== '' ? object.uid : newUid();
        if (libraryElements.has(uid)) fail(400, 'library element with that uid already exists');
        const folderUid = typeof object.folderUid === 'string' ? object.folderUid : '';
        check(object.name, folderUid, uid);
        const element = {
          id: nextId++,
          orgId: 1,
          uid,
          folderUid,
          name: object.name,
          kind: object.kind ?? 1,
          type: isObject(object.model) ? object.model.type : undefined,
          description: isObject(object.model) ? (object.model.description ?? '') : '',
          model: object.model ?? {},
          version: 1,
        };
        libraryElements.set(uid, element);
        return [200, { result: fieldsOf(element) }];
      }
      const element = a === undefined ? undefined : libraryElements.get(a);
      if (!element) fail(404, 'library element could not be found');
      if (method === 'GET') return [200, { result: fieldsOf(element) }];
      if (method === 'PATCH') {
        if (object.version !== element.version)
          fail(412, 'the library element has been changed by someone else');
        const folderUid =
          typeof object.folderUid === 'string' ? object.folderUid : String(element.folderUid ?? '');
        const name = object.name ?? element.name;
        check(name, folderUid, String(element.uid));
        const updated = {
          ...element,
          folderUid,
          name,
          kind: object.kind ?? element.kind,
          model: object.model ?? element.model,
          version: Number(element.version) + 1,
        };
        libraryElements.set(String(element.uid), updated);
        return [200, { result: fieldsOf(updated) }];
      }
      if (method === 'DELETE') {
        libraryElements.delete(String(element.uid));
        return [200, { message: 'Library element deleted', id: element.id }];
      }
    }

    // Data sources.
    if (area === 'datasources') {
      if (method === 'GET' && a === undefined) {
        return [
          200,
          [...datasources.values()].map((datasource) => {
            const { secureJsonFields: _fields, version: _version, ...listed } = datasourceJson(datasource);
            return listed;
          }),
        ];
      }
      if (method === 'POST' && a === undefined) {
        if (typeof object.name !== 'string' || object.name === '') fail(400, 'Required field "name" missing');
        if (typeof object.type !== 'string' || object.type === '') fail(400, 'Required field "type" missing');
        for (const other of datasources.values())
          if (other.name === object.name) fail(409, 'data source with the same name already exists');
        const uid = typeof object.uid === 'string' && object.uid !== '' ? object.uid : newUid();
        if (datasources.has(uid)) fail(409, 'data source with the same uid already exists');
        const {
          secureJsonData,
          id: _id,
          uid: _uid,
          version: _version,
          secureJsonFields: _f,
          ...fields
        } = object;
        const datasource: Datasource = {
          id: nextId++,
          uid,
          name: object.name,
          fields,
          secure: isObject(secureJsonData) ? (secureJsonData as Record<string, string>) : {},
          version: 1,
        };
        datasources.set(uid, datasource);
        return [
          200,
          {
            datasource: datasourceJson(datasource),
            id: datasource.id,
            message: 'Datasource added',
            name: datasource.name,
          },
        ];
      }
      if (a === 'uid' && b !== undefined) {
        const datasource = datasources.get(b);
        if (!datasource) fail(404, 'Data source not found');
        if (method === 'GET') return [200, datasourceJson(datasource)];
        if (method === 'PUT') {
          const {
            secureJsonData,
            id: _id,
            uid: _uid,
            version: _version,
            secureJsonFields: _f,
            ...fields
          } = object;
          for (const other of datasources.values())
            if (other.uid !== b && other.name === object.name)
              fail(409, 'data source with the same name already exists');
          datasource.fields = fields;
          if (typeof object.name === 'string') datasource.name = object.name;
          if (isObject(secureJsonData))
            datasource.secure = { ...datasource.secure, ...(secureJsonData as Record<string, string>) };
          datasource.version += 1;
          return [
            200,
            {
              datasource: datasourceJson(datasource),
              id: datasource.id,
              message: 'Datasource updated',
              name: datasource.name,
            },
          ];
        }
        if (method === 'DELETE') {
          datasources.delete(b);
          return [200, { message: 'Data source deleted' }];
        }
      }
    }

    // Alerting provisioning API.
    if (area === 'v1' && a === 'provisioning') {
      const kind = b;
      const key = segments[4];
      if (kind === 'alert-rules') {
        if (method === 'GET' && key === undefined) return [200, [...rules.values()]];
        if (method === 'POST' && key === undefined) {
          for (const field of ['title', 'folderUID', 'ruleGroup', 'condition', 'data'])
            if (object[field] === undefined) fail(400, `invalid alert rule: missing ${field}`);
          if (!folders.has(String(object.folderUID))) fail(400, 'invalid alert rule: folder does not exist');
          const uid = typeof object.uid === 'string' && object.uid !== '' ? object.uid : newUid();
          if (rules.has(uid)) fail(409, 'an alert rule with this uid already exists');
          const rule = {
            ...object,
            id: nextId++,
            uid,
            orgID: 1,
            updated: new Date().toISOString(),
            provenance: '',
          };
          rules.set(uid, rule);
          return [201, rule];
        }
        const rule = key === undefined ? undefined : rules.get(key);
        if (!rule) fail(404, 'alert rule not found');
        if (method === 'GET') return [200, rule];
        if (method === 'PUT') {
          const updated = {
            ...object,
            id: rule.id,
            uid: rule.uid,
            orgID: 1,
            updated: new Date().toISOString(),
            provenance: '',
          };
          rules.set(rule.uid as string, updated);
          return [200, updated];
        }
        if (method === 'DELETE') {
          rules.delete(rule.uid as string);
          return [204, undefined];
        }
      }
      if (kind === 'contact-points') {
        if (method === 'GET' && key === undefined) {
          const name = query.get('name');
          return [
            200,
            [...contactPoints.values()]
              .filter((point) => name === null || point.name === name)
              .map(contactPointJson),
          ];
        }
        const write = (uid: string): ContactPoint => {
          if (typeof object.type !== 'string' || object.type === '')
            fail(400, 'invalid contact point: missing type');
          if (typeof object.name !== 'string' || object.name === '')
            fail(400, 'invalid contact point: missing name');
          if (!isObject(object.settings)) fail(400, 'invalid contact point: missing settings');
          return {
            uid,
            name: object.name,
            type: object.type,
            settings: structuredClone(object.settings),
            disableResolveMessage: object.disableResolveMessage === true,
          };
        };
        if (method === 'POST' && key === undefined) {
          const uid = typeof object.uid === 'string' && object.uid !== '' ? object.uid : newUid();
          if (contactPoints.has(uid)) fail(400, 'contact point with this uid already exists');
          const point = write(uid);
          contactPoints.set(uid, point);
          return [202, contactPointJson(point)];
        }
        const point = key === undefined ? undefined : contactPoints.get(key);
        if (!point) fail(404, 'contact point not found');
        if (method === 'PUT') {
          const updated = write(point.uid);
          // Grafana keeps a secure setting that is sent back redacted or left out.
          for (const setting of SECURE_SETTINGS) {
            if (
              (updated.settings[setting] === undefined || updated.settings[setting] === REDACTED) &&
              point.settings[setting] !== undefined
            )
              updated.settings[setting] = point.settings[setting];
          }
          contactPoints.set(point.uid, updated);
          return [202, { message: 'contactpoint updated' }];
        }
        if (method === 'DELETE') {
          if (
            policyUses(policy, point.name) &&
            [...contactPoints.values()].filter((other) => other.name === point.name).length === 1
          )
            fail(400, 'contact point is referenced by a notification policy');
          contactPoints.delete(point.uid);
          return [202, { message: 'contactpoint deleted' }];
        }
      }
      if (kind === 'policies' && key === undefined) {
        if (method === 'GET') return [200, policy];
        if (method === 'PUT') {
          if (typeof object.receiver !== 'string') fail(400, 'invalid notification policy: missing receiver');
          for (const receiver of receiversOf(object)) {
            if (![...contactPoints.values()].some((point) => point.name === receiver))
              fail(400, `invalid object specification: receiver '${receiver}' does not exist`);
          }
          policy = structuredClone(object);
          return [202, { message: 'policies updated' }];
        }
        if (method === 'DELETE') {
          policy = structuredClone(DEFAULT_POLICY);
          return [202, { message: 'policies resetted' }];
        }
      }
      if (kind === 'mute-timings' || kind === 'templates') {
        const store = kind === 'mute-timings' ? muteTimings : templates;
        const what = kind === 'mute-timings' ? 'mute timing' : 'template';
        if (method === 'GET' && key === undefined) return [200, [...store.values()]];
        if (method === 'POST' && key === undefined && kind === 'mute-timings') {
          if (typeof object.name !== 'string' || object.name === '')
            fail(400, 'invalid mute timing: missing name');
          if (store.has(object.name)) fail(409, 'a mute timing with this name already exists');
          const timing = {
            name: object.name,
            time_intervals: object.time_intervals ?? [],
            version: newUid(),
            provenance: '',
          };
          store.set(object.name, timing);
          return [201, timing];
        }
        if (key === undefined) fail(404, 'Not found');
        if (method === 'GET') {
          const found = store.get(key);
          if (!found) fail(404, `${what} not found`);
          return [200, found];
        }
        if (method === 'PUT') {
          if (kind === 'templates') {
            if (typeof object.template !== 'string') fail(400, 'invalid template: missing template');
            const template = { name: key, template: object.template, version: newUid(), provenance: '' };
            store.set(key, template);
            return [202, template];
          }
          if (!store.has(key)) fail(404, 'mute timing not found');
          const timing = {
            name: key,
            time_intervals: object.time_intervals ?? [],
            version: newUid(),
            provenance: '',
          };
          store.set(key, timing);
          return [202, timing];
        }
        if (method === 'DELETE') {
          store.delete(key);
          return [204, undefined];
        }
      }
    }
    fail(404, 'Not found');
  }

  function authorized(request: IncomingMessage): boolean {
    const header = request.headers.authorization ?? '';
    if (header === `Bearer ${token}`) return true;
    return header === `Basic ${Buffer.from(`admin:${password}`).toString('base64')}`;
  }

  async function serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://double');
    const method = request.method ?? 'GET';
    requests.push(`${method} ${url.pathname}`);
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    let status: number;
    let answer: unknown;
    try {
      if (!authorized(request)) fail(401, 'Unauthorized');
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      if (text !== '') {
        try {
          body = JSON.parse(text);
        } catch {
          fail(400, 'bad request data');
        }
      }
      [status, answer] = handle(method, url.pathname, url.searchParams, body);
    } catch (error) {
      if (!(error instanceof HttpFailure)) throw error;
      [status, answer] = [error.status, error.body];
    }
    const text = answer === undefined ? '' : JSON.stringify(answer);
    response.writeHead(status, answer === undefined ? {} : { 'content-type': 'application/json' });
    response.end(text);
  }

  const server: Server = createServer((request, response) => {
    serve(request, response).catch((error: unknown) => {
      response.writeHead(500, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ message: String(error) }));
    });
  });
  const port = await listenOnFreePort(server);
  return {
    url: `http://127.0.0.1:${port}`,
    token,
    username: 'admin',
    password,
    version,
    secrets: (uid) => {
      const found = datasources.get(uid);
      return found ? { ...found.secure } : undefined;
    },
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function receiversOf(route: Record<string, unknown>): string[] {
  const found = typeof route.receiver === 'string' ? [route.receiver] : [];
  for (const child of Array.isArray(route.routes) ? route.routes : []) {
    if (isObject(child)) found.push(...receiversOf(child));
  }
  return found;
}

function policyUses(route: Record<string, unknown>, name: string): boolean {
  return receiversOf(route).includes(name);
}
