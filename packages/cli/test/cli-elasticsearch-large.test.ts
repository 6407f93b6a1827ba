import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ElasticsearchDouble, startElasticsearchDouble } from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, removeTempDirs, startBk, tempDir } from './bk-process.ts';

/**
 * Runs only with `BK_TEST_LARGE=1` (it takes minutes and loads 400,000 documents into two
 * in-process doubles); the peak it measured is in @bk/elasticsearch's README.
 */
const large = Boolean(process.env.BK_TEST_LARGE);
const DOCUMENTS = 200_000;
/** The ceiling bk's process must stay under, backing up and restoring. */
const CEILING_MIB = 150;

let source: ElasticsearchDouble;
let target: ElasticsearchDouble;
let directory: string;

/** The fields of Elasticsearch's answers this test reads. */
interface Answer {
  errors?: boolean;
  _scroll_id?: string;
  hits: { hits: { _id: string; _source: unknown }[] };
  [index: string]: unknown;
}

function authorization(cluster: ElasticsearchDouble): string {
  return `Basic ${Buffer.from(`${cluster.username}:${cluster.password}`).toString('base64')}`;
}

async function call(
  cluster: ElasticsearchDouble,
  method: string,
  path: string,
  body?: unknown,
): Promise<Answer> {
  const response = await fetch(`${cluster.url}${path}`, {
    method,
    headers: {
      authorization: authorization(cluster),
      'content-type': typeof body === 'string' ? 'application/x-ndjson' : 'application/json',
    },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const json = await response.json();
  expect(response.status, JSON.stringify(json).slice(0, 300)).toBeLessThan(300);
  return json as Answer;
}

function documentOf(at: number): Record<string, unknown> {
  return { n: at, name: `document ${at}`, tags: [`t${at % 13}`], body: 'x'.repeat(at % 200) };
}

/** Every document of `index` as `id → JSON of its source`, read through scroll pages of 10 000. */
async function documents(cluster: ElasticsearchDouble, index: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  let page = await call(cluster, 'POST', `/${index}/_search?scroll=1m`, { size: 10_000, sort: ['_doc'] });
  while (page.hits.hits.length > 0) {
    for (const hit of page.hits.hits) found.set(hit._id, JSON.stringify(hit._source));
    page = await call(cluster, 'POST', '/_search/scroll', { scroll: '1m', scroll_id: page._scroll_id });
  }
  await call(cluster, 'DELETE', '/_search/scroll', { scroll_id: page._scroll_id });
  return found;
}

/** Runs the built `bk` and samples its peak resident set (VmHWM) until it exits. */
async function measuredBk(args: string[]): Promise<{ code: number | null; stderr: string; peakMiB: number }> {
  const run = startBk(args, { cwd: directory });
  let peakMiB = 0;
  const sample = () => {
    try {
      const status = readFileSync(`/proc/${run.child.pid}/status`, 'utf8');
      peakMiB = Math.max(peakMiB, Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024);
    } catch {
      // exited
    }
  };
  const timer = setInterval(sample, 50);
  const result = await run.done;
  clearInterval(timer);
  return { code: result.code, stderr: result.stderr, peakMiB };
}

beforeAll(async () => {
  if (!large) return;
  assertBuilt();
  source = await startElasticsearchDouble();
  target = await startElasticsearchDouble();
  directory = await tempDir('elasticsearch-large');
  for (const [file, cluster, restore] of [
    ['source.json', source, undefined],
    ['target.json', target, { renamePattern: '^(.*)$', renameReplacement: 'restored-$1' }],
  ] as const) {
    await writeFile(
      join(directory, file),
      JSON.stringify({
        components: [
          {
            kind: 'elasticsearch',
            url: cluster.url,
            username: cluster.username,
            password: cluster.password,
            ...(restore ? { restore } : {}),
          },
        ],
      }),
    );
  }
  await call(source, 'PUT', '/big', {
    settings: { number_of_shards: 3, number_of_replicas: 0 },
    mappings: {
      properties: {
        n: { type: 'long' },
        name: { type: 'keyword' },
        tags: { type: 'keyword' },
        body: { type: 'text' },
      },
    },
    aliases: { 'big-read': {} },
  });
  for (let start = 0; start < DOCUMENTS; start += 5_000) {
    let lines = '';
    for (let at = start; at < Math.min(start + 5_000, DOCUMENTS); at += 1)
      lines += `{"index":{"_id":"d${at}"}}\n${JSON.stringify(documentOf(at))}\n`;
    const answer = await call(source, 'POST', '/big/_bulk', lines);
    expect(answer.errors).toBe(false);
  }
  await call(source, 'POST', '/big/_refresh');
}, 300_000);

afterAll(async () => {
  await source?.stop();
  await target?.stop();
  await removeTempDirs();
});

describe.skipIf(!large)(`bk with an "elasticsearch" component on ${DOCUMENTS} documents`, () => {
  it(`backs up and restores them renamed with bk's memory under ${CEILING_MIB} MiB`, async () => {
    const backedUp = await measuredBk(['backup', '--config', 'source.json', '--target', 'backups']);
    expect(backedUp.code, backedUp.stderr).toBe(0);
    expect(source.openContexts()).toEqual({ pits: 0, scrolls: 0 });
    const restored = await measuredBk([
      'restore',
      '--config',
      'target.json',
      '--target',
      'backups',
      '--conflict',
      'fail',
    ]);
    expect(restored.code, restored.stderr).toBe(0);
    console.log(
      `bk peak RSS: backup ${backedUp.peakMiB.toFixed(1)} MiB, restore ${restored.peakMiB.toFixed(1)} MiB`,
    );
    expect(backedUp.peakMiB).toBeLessThan(CEILING_MIB);
    expect(restored.peakMiB).toBeLessThan(CEILING_MIB);

    const before = await documents(source, 'big');
    const after = await documents(target, 'restored-big');
    expect(after.size).toBe(DOCUMENTS);
    expect(after).toEqual(before);
    const [sourceMapping, targetMapping] = await Promise.all([
      call(source, 'GET', '/big/_mapping'),
      call(target, 'GET', '/restored-big/_mapping'),
    ]);
    expect(targetMapping['restored-big']).toEqual(sourceMapping.big);
    expect(Object.keys((await call(target, 'GET', '/restored-big/_alias'))['restored-big'].aliases)).toEqual([
      'big-read',
    ]);
  }, 600_000);
});
