import { deepStrictEqual, strictEqual } from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { backup, MemoryStorage, restore } from '@bk/core';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { elasticsearch } from '../src/index.ts';
import { type ClusterUnderTest, emptyCluster, real, startCluster } from './elasticsearch-client.ts';

const run = promisify(execFile);
const elasticdump = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  'node_modules',
  '.bin',
  'elasticdump',
);

let source: ClusterUnderTest;
let target: ClusterUnderTest;
let directory: string;

/** `http://user:password@host:port/index`, as elasticdump takes a cluster. */
function dumpUrl(cluster: ClusterUnderTest, index: string): string {
  const url = new URL(cluster.url);
  if (cluster.username) {
    url.username = cluster.username;
    url.password = cluster.password!;
  }
  return `${url.origin.replace('//', `//${url.username ? `${url.username}:${url.password}@` : ''}`)}/${index}`;
}

async function dump(input: string, output: string, type: 'mapping' | 'data'): Promise<void> {
  await run(
    elasticdump,
    [`--input=${input}`, `--output=${output}`, `--type=${type}`, '--limit=250', '--retryAttempts=1'],
    {
      timeout: 120_000,
    },
  );
}

beforeAll(async () => {
  source = await startCluster();
  target = real ? source : await startCluster();
  await emptyCluster(source);
  directory = await mkdtemp(join(tmpdir(), 'bk-elasticdump-'));
}, 60_000);

afterAll(async () => {
  if (real) await emptyCluster(source);
  await source?.stop();
  if (target !== source) await target?.stop();
  if (directory) await rm(directory, { recursive: true, force: true });
});

describe('elasticdump against the cluster bk talks to', () => {
  it('loads a mapping and documents with elasticdump, and dumps the same back after a bk backup and a renamed restore', async () => {
    const mapping = {
      'bk-test-dumped': {
        mappings: {
          properties: {
            name: { type: 'keyword' },
            note: { type: 'text' },
            size: { type: 'long' },
            nested: { properties: { deep: { type: 'boolean' } } },
          },
        },
      },
    };
    const lines: string[] = [];
    for (let at = 0; at < 1_200; at += 1) {
      lines.push(
        JSON.stringify({
          _index: 'bk-test-dumped',
          _id: `id-${at}`,
          _source: {
            name: `n${at}`,
            note: `note ${'ü'.repeat(at % 9)}`,
            size: at * 3,
            nested: { deep: at % 2 === 0 },
          },
        }),
      );
    }
    await writeFile(join(directory, 'mapping.json'), `${JSON.stringify(mapping)}\n`);
    await writeFile(join(directory, 'data.json'), `${lines.join('\n')}\n`);
    await dump(join(directory, 'mapping.json'), dumpUrl(source, 'bk-test-dumped'), 'mapping');
    await dump(join(directory, 'data.json'), dumpUrl(source, 'bk-test-dumped'), 'data');

    const options = {
      url: source.url,
      ...(source.username ? { username: source.username, password: source.password! } : {}),
      indices: ['bk-test-dumped'],
    };
    const storage = new MemoryStorage();
    const result = await backup({ storage, components: [elasticsearch({ ...options, pageSize: 200 })] });
    await restore({
      storage,
      name: result.name,
      restorers: [
        elasticsearch({
          url: target.url,
          ...(target.username ? { username: target.username, password: target.password! } : {}),
          restore: { renamePattern: '^bk-test-(.*)$', renameReplacement: 'restored-bk-test-$1' },
        }),
      ],
      conflict: 'fail',
    });

    await dump(dumpUrl(target, 'restored-bk-test-dumped'), join(directory, 'mapping-out.json'), 'mapping');
    await dump(dumpUrl(target, 'restored-bk-test-dumped'), join(directory, 'data-out.json'), 'data');
    const mappingOut = JSON.parse(await readFile(join(directory, 'mapping-out.json'), 'utf8'));
    deepStrictEqual(mappingOut, { 'restored-bk-test-dumped': mapping['bk-test-dumped'] });
    const documents = (await readFile(join(directory, 'data-out.json'), 'utf8'))
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as { _index: string; _id: string; _source: unknown });
    strictEqual(documents.length, 1_200);
    const byId = new Map(documents.map((document) => [document._id, document]));
    for (const line of lines) {
      const expected = JSON.parse(line) as { _id: string; _source: unknown };
      deepStrictEqual(byId.get(expected._id)?._source, expected._source, expected._id);
      strictEqual(byId.get(expected._id)?._index, 'restored-bk-test-dumped');
    }
  }, 180_000);
});
