import { ok } from 'node:assert/strict';
import { type GrafanaDouble, startGrafanaDouble } from '@bk/test-servers';

/** A Grafana the tests talk to: the double, or a real one from `BK_TEST_GRAFANA_URL`. */
export interface GrafanaUnderTest {
  url: string;
  token: string;
  double?: GrafanaDouble;
  stop(): Promise<void>;
}

/**
 * A real Grafana when `BK_TEST_GRAFANA_URL` (and `BK_TEST_GRAFANA_TOKEN`, a service account token
 * with the Admin role) is set — the same one for every call, emptied by {@link emptyGrafana} —
 * otherwise a fresh double.
 */
export async function startGrafana(): Promise<GrafanaUnderTest> {
  const url = process.env.BK_TEST_GRAFANA_URL;
  if (url) {
    const token = process.env.BK_TEST_GRAFANA_TOKEN ?? '';
    ok(token !== '', 'BK_TEST_GRAFANA_URL needs BK_TEST_GRAFANA_TOKEN');
    return { url: url.replace(/\/+$/, ''), token, stop: async () => {} };
  }
  const double = await startGrafanaDouble();
  return { url: double.url, token: double.token, double, stop: () => double.stop() };
}

/** Calls Grafana's API with the test token; throws unless the status is 2xx or in `allow`. */
export async function call(
  grafana: GrafanaUnderTest,
  method: string,
  path: string,
  body?: unknown,
  allow: number[] = [],
): Promise<unknown> {
  const response = await fetch(`${grafana.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${grafana.token}`,
      'x-disable-provenance': 'true',
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(20_000),
  });
  const text = await response.text();
  ok(
    (response.status >= 200 && response.status < 300) || allow.includes(response.status),
    `${method} ${path} answered ${response.status}: ${text}`,
  );
  return text === '' ? undefined : JSON.parse(text);
}

/** The status Grafana answers `GET path` with. */
export async function statusOf(grafana: GrafanaUnderTest, path: string): Promise<number> {
  const response = await fetch(`${grafana.url}${path}`, {
    headers: { authorization: `Bearer ${grafana.token}` },
    signal: AbortSignal.timeout(20_000),
  });
  await response.arrayBuffer();
  return response.status;
}

type Item = Record<string, unknown>;

async function list(grafana: GrafanaUnderTest, path: string): Promise<Item[]> {
  return (await call(grafana, 'GET', path)) as Item[];
}

async function libraryElements(grafana: GrafanaUnderTest): Promise<Item[]> {
  const answer = (await call(grafana, 'GET', '/api/library-elements?perPage=500')) as {
    result: { elements: Item[] };
  };
  return answer.result.elements;
}

/** Deletes everything the seed can create, leaving what a fresh Grafana has. */
export async function emptyGrafana(grafana: GrafanaUnderTest): Promise<void> {
  const base = '/api/v1/provisioning';
  for (const rule of await list(grafana, `${base}/alert-rules`))
    await call(grafana, 'DELETE', `${base}/alert-rules/${rule.uid}`);
  await call(grafana, 'DELETE', `${base}/policies`);
  for (const point of await list(grafana, `${base}/contact-points`)) {
    if (point.name !== 'grafana-default-email')
      await call(grafana, 'DELETE', `${base}/contact-points/${point.uid}`);
  }
  for (const timing of await list(grafana, `${base}/mute-timings`))
    await call(grafana, 'DELETE', `${base}/mute-timings/${encodeURIComponent(String(timing.name))}`);
  for (const template of await list(grafana, `${base}/templates`))
    await call(grafana, 'DELETE', `${base}/templates/${encodeURIComponent(String(template.name))}`);
  for (const dashboard of await list(grafana, '/api/search?type=dash-db&limit=5000'))
    await call(grafana, 'DELETE', `/api/dashboards/uid/${dashboard.uid}`, undefined, [404]);
  for (const element of await libraryElements(grafana))
    await call(grafana, 'DELETE', `/api/library-elements/${element.uid}`, undefined, [404]);
  for (const folder of await list(grafana, '/api/folders?limit=1000'))
    await call(grafana, 'DELETE', `/api/folders/${folder.uid}?forceDeleteRules=true`, undefined, [404]);
  for (const datasource of await list(grafana, '/api/datasources'))
    await call(grafana, 'DELETE', `/api/datasources/uid/${datasource.uid}`);
}

/** Nested folders, dashboards in and out of them, a data source with a secret, alerting objects. */
export async function seedGrafana(grafana: GrafanaUnderTest, tag = 'bk'): Promise<void> {
  await call(grafana, 'POST', '/api/folders', { uid: `${tag}-ops`, title: 'Ops' });
  await call(grafana, 'POST', '/api/folders', {
    uid: `${tag}-ops-db`,
    title: 'Databases',
    parentUid: `${tag}-ops`,
  });
  await call(grafana, 'POST', '/api/folders', {
    uid: `${tag}-ops-db-pg`,
    title: 'PostgreSQL',
    parentUid: `${tag}-ops-db`,
  });
  await call(grafana, 'POST', '/api/folders', { uid: `${tag}-team`, title: 'Team' });
  await call(grafana, 'POST', '/api/datasources', {
    uid: `${tag}-prom`,
    name: `Prometheus ${tag}`,
    type: 'prometheus',
    access: 'proxy',
    url: 'http://127.0.0.1:9090',
    basicAuth: true,
    basicAuthUser: 'reader',
    jsonData: { httpMethod: 'POST', timeInterval: '15s' },
    secureJsonData: { basicAuthPassword: 'prom-secret-password' },
  });
  await call(grafana, 'POST', '/api/datasources', {
    uid: `${tag}-loki`,
    name: `Loki ${tag}`,
    type: 'loki',
    access: 'proxy',
    url: 'http://127.0.0.1:3100',
    jsonData: { maxLines: 1000 },
  });
  await call(grafana, 'POST', '/api/library-elements', {
    uid: `${tag}-lib-latency`,
    folderUid: `${tag}-ops`,
    name: 'Latency',
    kind: 1,
    model: {
      type: 'timeseries',
      title: 'Latency',
      targets: [{ refId: 'A', expr: 'histogram_quantile(0.99, x)' }],
    },
  });
  const dashboards: [string, string, string | undefined][] = [
    [`${tag}-overview`, 'Overview', undefined],
    [`${tag}-pg-main`, 'PostgreSQL main', `${tag}-ops-db-pg`],
    [`${tag}-ops-home`, 'Ops home', `${tag}-ops`],
    [`${tag}-team-board`, 'Team board', `${tag}-team`],
  ];
  for (const [uid, title, folderUid] of dashboards) {
    await call(grafana, 'POST', '/api/dashboards/db', {
      dashboard: {
        uid,
        title,
        tags: ['bk', tag],
        timezone: 'utc',
        schemaVersion: 39,
        panels: [
          {
            id: 1,
            type: 'timeseries',
            title: `${title} requests`,
            gridPos: { x: 0, y: 0, w: 12, h: 8 },
            datasource: { type: 'prometheus', uid: `${tag}-prom` },
            targets: [{ refId: 'A', expr: 'sum(rate(http_requests_total[5m]))' }],
          },
          {
            id: 2,
            gridPos: { x: 12, y: 0, w: 12, h: 8 },
            libraryPanel: { uid: `${tag}-lib-latency`, name: 'Latency' },
          },
        ],
      },
      ...(folderUid ? { folderUid } : {}),
      overwrite: false,
    });
  }
  const base = '/api/v1/provisioning';
  await call(grafana, 'PUT', `${base}/templates/${tag}-title`, {
    template: `{{ define "${tag}-title" }}[{{ .Status }}] {{ .CommonLabels.alertname }}{{ end }}`,
  });
  await call(grafana, 'POST', `${base}/mute-timings`, {
    name: `${tag}-weekends`,
    time_intervals: [{ weekdays: ['saturday', 'sunday'] }],
  });
  await call(grafana, 'POST', `${base}/contact-points`, {
    uid: `${tag}-oncall`,
    name: `${tag} on-call`,
    type: 'webhook',
    settings: {
      url: 'http://127.0.0.1:9999/hook',
      httpMethod: 'POST',
      username: 'bk',
      password: 'hook-secret',
    },
    disableResolveMessage: false,
  });
  await call(grafana, 'PUT', `${base}/policies`, {
    receiver: 'grafana-default-email',
    group_by: ['grafana_folder', 'alertname'],
    routes: [
      {
        receiver: `${tag} on-call`,
        object_matchers: [['severity', '=', 'critical']],
        mute_time_intervals: [`${tag}-weekends`],
      },
    ],
  });
  await call(grafana, 'POST', `${base}/alert-rules`, {
    uid: `${tag}-high-errors`,
    title: 'High error rate',
    ruleGroup: 'availability',
    folderUID: `${tag}-ops-db-pg`,
    condition: 'B',
    noDataState: 'NoData',
    execErrState: 'Error',
    for: '5m',
    labels: { severity: 'critical' },
    annotations: { summary: 'Errors above 5 %' },
    data: [
      {
        refId: 'A',
        datasourceUid: `${tag}-prom`,
        relativeTimeRange: { from: 600, to: 0 },
        model: { refId: 'A', expr: 'sum(rate(errors_total[5m]))' },
      },
      {
        refId: 'B',
        datasourceUid: '__expr__',
        relativeTimeRange: { from: 0, to: 0 },
        model: {
          refId: 'B',
          type: 'threshold',
          expression: 'A',
          conditions: [{ evaluator: { type: 'gt', params: [5] } }],
        },
      },
    ],
  });
}

/** Everything a restore must bring back, in a comparable shape (no server-assigned ids). */
export async function snapshotGrafana(grafana: GrafanaUnderTest): Promise<unknown> {
  const base = '/api/v1/provisioning';
  const folders: Item[] = [];
  const queue: (string | undefined)[] = [undefined];
  while (queue.length > 0) {
    const parent = queue.shift();
    for (const folder of await list(
      grafana,
      `/api/folders?limit=1000${parent ? `&parentUid=${parent}` : ''}`,
    )) {
      if (folders.some((known) => known.uid === folder.uid)) continue;
      folders.push({ uid: folder.uid, title: folder.title, parentUid: parent ?? null });
      queue.push(String(folder.uid));
    }
  }
  const dashboards: Item[] = [];
  for (const hit of await list(grafana, '/api/search?type=dash-db&limit=5000')) {
    const { dashboard, meta } = (await call(grafana, 'GET', `/api/dashboards/uid/${hit.uid}`)) as {
      dashboard: Item;
      meta: Item;
    };
    const { id: _id, version: _version, ...rest } = dashboard;
    dashboards.push({ ...rest, folderUid: meta.folderUid ?? '' });
  }
  const datasources: Item[] = [];
  for (const listed of await list(grafana, '/api/datasources')) {
    const full = (await call(grafana, 'GET', `/api/datasources/uid/${listed.uid}`)) as Item;
    const { id: _id, version: _version, secureJsonFields: _fields, orgId: _orgId, ...rest } = full;
    datasources.push(rest);
  }
  const strip = (items: Item[], keys: string[]) =>
    items.map((item) => Object.fromEntries(Object.entries(item).filter(([key]) => !keys.includes(key))));
  const byKey = (key: string) => (a: Item, b: Item) => (String(a[key]) < String(b[key]) ? -1 : 1);
  const contactPoints = strip(await list(grafana, `${base}/contact-points`), ['provenance'])
    .map((point) => (point.name === 'grafana-default-email' ? { ...point, uid: 'default' } : point))
    // Secure settings read back redacted: what they were is not visible, so not compared here.
    .map((point) => ({
      ...point,
      settings: Object.fromEntries(
        Object.entries(point.settings as Item).filter(([, value]) => value !== '[REDACTED]'),
      ),
    }))
    .sort(byKey('uid'));
  const libraryPanels = strip(await libraryElements(grafana), ['id', 'orgId', 'folderId', 'version', 'meta']);
  return {
    folders: folders.sort(byKey('uid')),
    libraryPanels: libraryPanels.sort(byKey('uid')),
    dashboards: dashboards.sort(byKey('uid')),
    datasources: datasources.sort(byKey('uid')),
    alertRules: strip(await list(grafana, `${base}/alert-rules`), [
      'id',
      'updated',
      'provenance',
      'orgID',
    ]).sort(byKey('uid')),
    contactPoints,
    policies: await call(grafana, 'GET', `${base}/policies`),
    muteTimings: strip(await list(grafana, `${base}/mute-timings`), ['version', 'provenance']).sort(
      byKey('name'),
    ),
    templates: strip(await list(grafana, `${base}/templates`), ['version', 'provenance']).sort(byKey('name')),
  };
}
