import { ok } from 'node:assert/strict';
import { type KibanaDouble, type KibanaDoubleOptions, startKibanaDouble } from '@bk/test-servers';

/** A Kibana the tests talk to: the double, or a real one from `BK_TEST_KIBANA_URL`. */
export interface KibanaUnderTest {
  url: string;
  username: string;
  password: string;
  double?: KibanaDouble;
  stop(): Promise<void>;
}

/** Whether the suites run against a real Kibana (`BK_TEST_KIBANA_URL`). */
export const real = Boolean(process.env.BK_TEST_KIBANA_URL);

/** The space the tests create besides `default`. */
export const TEST_SPACE = 'bk-test-ops';

/**
 * A real Kibana when `BK_TEST_KIBANA_URL` is set (with `BK_TEST_KIBANA_USERNAME` and
 * `BK_TEST_KIBANA_PASSWORD`, a user with the kibana_admin role) — the same one for every call,
 * the tests' objects (ids starting `bk-test-`) and space deleted by {@link emptyKibana} —
 * otherwise a fresh double.
 */
export async function startKibana(options: KibanaDoubleOptions = {}): Promise<KibanaUnderTest> {
  const url = process.env.BK_TEST_KIBANA_URL;
  if (url) {
    const username = process.env.BK_TEST_KIBANA_USERNAME ?? '';
    const password = process.env.BK_TEST_KIBANA_PASSWORD ?? '';
    ok(username !== '' && password !== '', 'BK_TEST_KIBANA_URL needs BK_TEST_KIBANA_USERNAME and _PASSWORD');
    return { url: url.replace(/\/+$/, ''), username, password, stop: async () => {} };
  }
  const double = await startKibanaDouble(options);
  return {
    url: double.url,
    username: double.username,
    password: double.password,
    double,
    stop: () => double.stop(),
  };
}

/** Calls Kibana's API; throws unless the status is 2xx or in `allow`. */
export async function call(
  kibana: KibanaUnderTest,
  method: string,
  path: string,
  body?: unknown,
  allow: number[] = [],
): Promise<unknown> {
  const response = await fetch(`${kibana.url}${path}`, {
    method,
    headers: {
      authorization: `Basic ${Buffer.from(`${kibana.username}:${kibana.password}`).toString('base64')}`,
      'kbn-xsrf': 'bk-test',
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

const SEEDED_TYPES = ['index-pattern', 'tag', 'visualization', 'dashboard', 'search', 'action'];

function prefix(space: string): string {
  return space === 'default' ? '' : `/s/${space}`;
}

/** Deletes the tests' objects in `default` and the test space itself. */
export async function emptyKibana(kibana: KibanaUnderTest): Promise<void> {
  await call(kibana, 'DELETE', `/api/spaces/space/${TEST_SPACE}`, undefined, [404]);
  for (const type of SEEDED_TYPES) {
    const found = (await call(kibana, 'GET', `/api/saved_objects/_find?type=${type}&per_page=1000`)) as {
      saved_objects: { id: string }[];
    };
    for (const object of found.saved_objects) {
      if (!object.id.startsWith('bk-test-')) continue;
      if (type === 'action')
        await call(kibana, 'DELETE', `/api/actions/connector/${object.id}`, undefined, [404]);
      else await call(kibana, 'DELETE', `/api/saved_objects/${type}/${object.id}`, undefined, [404]);
    }
  }
}

async function create(
  kibana: KibanaUnderTest,
  space: string,
  type: string,
  id: string,
  attributes: Record<string, unknown>,
  references: { type: string; id: string; name: string }[] = [],
): Promise<void> {
  await call(kibana, 'POST', `${prefix(space)}/api/saved_objects/${type}/${id}`, { attributes, references });
}

/**
 * In `default` and the test space: a data view, a tag, a saved search and a visualization on the
 * data view, a dashboard referencing the visualization, the search and the tag; in the test
 * space also a webhook connector with a secret. `visualizations` more visualizations in `default`.
 */
export async function seedKibana(kibana: KibanaUnderTest, visualizations = 0): Promise<void> {
  await call(kibana, 'POST', '/api/spaces/space', {
    id: TEST_SPACE,
    name: 'bk test ops',
    description: 'Operations',
    color: '#aabbcc',
    disabledFeatures: ['canvas'],
  });
  for (const space of ['default', TEST_SPACE]) {
    await create(kibana, space, 'index-pattern', 'bk-test-logs', {
      title: 'logs-*',
      timeFieldName: '@timestamp',
    });
    await create(kibana, space, 'tag', 'bk-test-tag', {
      name: `prod ${space}`,
      description: '',
      color: '#ff0000',
    });
    await create(
      kibana,
      space,
      'search',
      'bk-test-errors',
      { title: `Errors in ${space}`, columns: ['message'], sort: [] },
      [{ type: 'index-pattern', id: 'bk-test-logs', name: 'kibanaSavedObjectMeta.searchSourceJSON.index' }],
    );
    await create(
      kibana,
      space,
      'visualization',
      'bk-test-vis',
      {
        title: `Requests ${space}`,
        visState: '{"type":"line"}',
        uiStateJSON: '{}',
        description: '',
        version: 1,
      },
      [{ type: 'index-pattern', id: 'bk-test-logs', name: 'kibanaSavedObjectMeta.searchSourceJSON.index' }],
    );
    await create(
      kibana,
      space,
      'dashboard',
      'bk-test-dash',
      {
        title: `Overview ${space}`,
        panelsJSON: '[{"panelRefName":"panel_0"},{"panelRefName":"panel_1"}]',
        optionsJSON: '{}',
      },
      [
        { type: 'visualization', id: 'bk-test-vis', name: 'panel_0' },
        { type: 'search', id: 'bk-test-errors', name: 'panel_1' },
        { type: 'tag', id: 'bk-test-tag', name: 'tag-ref-bk-test-tag' },
      ],
    );
  }
  await call(kibana, 'POST', `${prefix(TEST_SPACE)}/api/actions/connector/bk-test-hook`, {
    name: 'bk on-call hook',
    connector_type_id: '.webhook',
    config: { url: 'https://hooks.example.com/bk', method: 'post', hasAuth: true },
    secrets: { user: 'bk', password: 'hook-secret-password' },
  });
  for (let at = 0; at < visualizations; at += 1) {
    await create(
      kibana,
      'default',
      'visualization',
      `bk-test-vis-${String(at).padStart(4, '0')}`,
      { title: `Vis ${at}`, visState: '{}', uiStateJSON: '{}', description: '', version: 1 },
      [{ type: 'index-pattern', id: 'bk-test-logs', name: 'kibanaSavedObjectMeta.searchSourceJSON.index' }],
    );
  }
}

/** The tests' objects of both spaces (attributes and references by type and id), and the test space. */
export async function snapshotKibana(kibana: KibanaUnderTest): Promise<unknown> {
  const snapshot: Record<string, unknown> = {};
  const spaces = (await call(kibana, 'GET', '/api/spaces/space')) as { id: string }[];
  const space = spaces.find((item) => item.id === TEST_SPACE) as Record<string, unknown> | undefined;
  snapshot.space = space && {
    id: space.id,
    name: space.name,
    description: space.description,
    color: space.color,
    disabledFeatures: space.disabledFeatures,
  };
  for (const id of ['default', TEST_SPACE]) {
    if (id !== 'default' && !space) continue;
    const objects: Record<string, unknown> = {};
    for (const type of SEEDED_TYPES) {
      for (let page = 1; ; page += 1) {
        const found = (await call(
          kibana,
          'GET',
          `${prefix(id)}/api/saved_objects/_find?type=${type}&per_page=500&page=${page}`,
        )) as {
          saved_objects: { id: string; attributes: Record<string, unknown>; references: unknown[] }[];
        };
        for (const object of found.saved_objects) {
          if (!object.id.startsWith('bk-test-')) continue;
          const { isMissingSecrets: _ignored, ...attributes } = object.attributes;
          objects[`${type}:${object.id}`] = { attributes, references: object.references };
        }
        if (found.saved_objects.length < 500) break;
      }
    }
    snapshot[id] = objects;
  }
  return snapshot;
}
