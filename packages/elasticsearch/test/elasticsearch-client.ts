import { ok } from 'node:assert/strict';
import {
  type ElasticsearchDouble,
  type ElasticsearchDoubleOptions,
  startElasticsearchDouble,
} from '@bk/test-servers';
import { Client } from '@elastic/elasticsearch';

/** A cluster the tests talk to: the double, or a real one from `BK_TEST_ELASTICSEARCH_URL`. */
export interface ClusterUnderTest {
  url: string;
  username?: string;
  password?: string;
  double?: ElasticsearchDouble;
  /** The official client, logged in. */
  client: Client;
  stop(): Promise<void>;
}

/** Whether the suites run against a real cluster (`BK_TEST_ELASTICSEARCH_URL`). */
export const real = Boolean(process.env.BK_TEST_ELASTICSEARCH_URL);

/**
 * A real cluster when `BK_TEST_ELASTICSEARCH_URL` is set (with `BK_TEST_ELASTICSEARCH_USERNAME`
 * and `BK_TEST_ELASTICSEARCH_PASSWORD` when security is on) — the same one for every call, the
 * tests' indices (prefixed `bk-test-`) deleted by {@link emptyCluster} — otherwise a fresh double.
 */
export async function startCluster(options: ElasticsearchDoubleOptions = {}): Promise<ClusterUnderTest> {
  const url = process.env.BK_TEST_ELASTICSEARCH_URL;
  if (url) {
    const username = process.env.BK_TEST_ELASTICSEARCH_USERNAME;
    const password = process.env.BK_TEST_ELASTICSEARCH_PASSWORD;
    ok(
      (username === undefined) === (password === undefined),
      'give both BK_TEST_ELASTICSEARCH_USERNAME and _PASSWORD',
    );
    const client = new Client({
      node: url,
      ...(username ? { auth: { username, password: password! } } : {}),
    });
    return {
      url: url.replace(/\/+$/, ''),
      ...(username ? { username, password: password! } : {}),
      client,
      stop: () => client.close(),
    };
  }
  const double = await startElasticsearchDouble(options);
  const client = new Client({
    node: double.url,
    auth: { username: double.username, password: double.password },
  });
  return {
    url: double.url,
    username: double.username,
    password: double.password,
    double,
    client,
    stop: async () => {
      await client.close();
      await double.stop();
    },
  };
}

/** Deletes the tests' indices (`bk-test-*`, and the renamed `restored-bk-test-*`). */
export async function emptyCluster(cluster: ClusterUnderTest): Promise<void> {
  await cluster.client.indices.delete({
    index: ['bk-test-*', 'restored-bk-test-*'],
    ignore_unavailable: true,
    allow_no_indices: true,
    expand_wildcards: 'all',
  });
}

/** An index with a mapping, settings, aliases and `count` documents (some routed), written with the official client's bulk helper. */
export async function seedIndex(cluster: ClusterUnderTest, index: string, count: number): Promise<void> {
  await cluster.client.indices.create({
    index,
    settings: {
      number_of_shards: 2,
      number_of_replicas: 0,
      analysis: {
        analyzer: {
          folded: { type: 'custom', tokenizer: 'standard', filter: ['lowercase', 'asciifolding'] },
        },
      },
    },
    mappings: {
      dynamic: 'strict',
      properties: {
        title: { type: 'text', analyzer: 'folded', fields: { raw: { type: 'keyword' } } },
        amount: { type: 'double' },
        at: { type: 'date' },
        tags: { type: 'keyword' },
        customer: { properties: { id: { type: 'keyword' }, city: { type: 'keyword' } } },
      },
    },
    aliases: {
      [`${index}-read`]: {},
      [`${index}-write`]: { is_write_index: true },
      [`${index}-big`]: { filter: { range: { amount: { gte: 500 } } } },
    },
  });
  await cluster.client.helpers.bulk({
    datasource: documents(count),
    onDocument: (document) => ({
      index: { _index: index, _id: document.id, ...(document.routing ? { routing: document.routing } : {}) },
    }),
    refreshOnCompletion: index,
    flushBytes: 1_000_000,
    concurrency: 2,
  });
}

interface SeedDocument {
  id: string;
  routing?: string;
  title: string;
  amount: number;
  at: string;
  tags: string[];
  customer: { id: string; city: string };
}

async function* documents(count: number): AsyncGenerator<SeedDocument> {
  for (let at = 0; at < count; at += 1) {
    yield {
      id: `doc-${at}`,
      ...(at % 7 === 0 ? { routing: `r${at % 3}` } : {}),
      title: `Ördre ${at} — ${'x'.repeat(at % 50)}`,
      amount: (at * 37) % 1000,
      at: new Date(Date.UTC(2026, 0, 1) + at * 60_000).toISOString(),
      tags: at % 2 === 0 ? ['even', `t${at % 5}`] : [],
      customer: { id: `c${at % 100}`, city: ['Zürich', 'Oslo', 'Lagos'][at % 3]! },
    };
  }
}

/**
 * Every document of `index` as `id → source` (through the official client's scroll helper),
 * and its mapping and aliases.
 */
export async function snapshotIndex(
  cluster: ClusterUnderTest,
  index: string,
): Promise<{
  documents: Map<string, unknown>;
  routing: Map<string, string>;
  mappings: unknown;
  aliases: unknown;
  settings: unknown;
}> {
  await cluster.client.indices.refresh({ index });
  const found = new Map<string, unknown>();
  const routing = new Map<string, string>();
  for await (const hit of cluster.client.helpers.scrollSearch({
    index,
    size: 500,
    query: { match_all: {} },
    sort: ['_doc'],
  })) {
    for (const document of hit.body.hits.hits) {
      found.set(document._id!, document._source);
      if (document._routing) routing.set(document._id!, document._routing);
    }
  }
  const definition = (await cluster.client.indices.get({ index }))[index]!;
  const settings = definition.settings?.index ?? {};
  return {
    documents: found,
    routing,
    mappings: definition.mappings,
    aliases: definition.aliases,
    settings: {
      number_of_shards: settings.number_of_shards,
      number_of_replicas: settings.number_of_replicas,
      analysis: settings.analysis,
      refresh_interval: settings.refresh_interval,
    },
  };
}
