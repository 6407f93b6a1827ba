import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ElasticsearchDouble, startElasticsearchDouble } from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/index.ts';

let source: ElasticsearchDouble;
let target: ElasticsearchDouble;
let directory: string;

async function run(...argv: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, {
    stdout: { write: (chunk: string) => (stdout += chunk) },
    stderr: { write: (chunk: string) => (stderr += chunk) },
    env: {},
    cwd: directory,
  });
  return { code, stdout, stderr };
}

async function call(cluster: ElasticsearchDouble, method: string, path: string, body?: unknown) {
  const response = await fetch(`${cluster.url}${path}`, {
    method,
    headers: {
      authorization: `Basic ${Buffer.from(`${cluster.username}:${cluster.password}`).toString('base64')}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  expect(response.status).toBeLessThan(300);
  return response.json();
}

beforeAll(async () => {
  source = await startElasticsearchDouble();
  target = await startElasticsearchDouble();
  directory = await mkdtemp(join(tmpdir(), 'bk-cli-elasticsearch-'));
  for (const [file, cluster, restore] of [
    ['source.json', source, undefined],
    ['target.json', target, { renamePattern: '^(.*)$', renameReplacement: 'copy-$1' }],
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
  await call(source, 'PUT', '/logs', {
    mappings: { properties: { line: { type: 'text' } } },
    aliases: { current: {} },
  });
  for (let at = 0; at < 30; at += 1) await call(source, 'PUT', `/logs/_doc/${at}`, { line: `line ${at}` });
  await call(source, 'POST', '/logs/_refresh');
});

afterAll(async () => {
  await source?.stop();
  await target?.stop();
  if (directory) await rm(directory, { recursive: true, force: true });
});

describe('bk with an "elasticsearch" component', () => {
  it('backs up, inspects and restores under a new name', async () => {
    const backedUp = await run('backup', '--config', 'source.json', '--target', 'backups');
    expect(backedUp.code, backedUp.stderr).toBe(0);
    expect(backedUp.stdout + backedUp.stderr).not.toContain(source.password);

    const inspected = await run('inspect', '--target', 'backups');
    expect(inspected.code, inspected.stderr).toBe(0);
    expect(inspected.stdout).toMatch(/elasticsearch {2}\(elasticsearch\) {2}version 8\.15\.0/);
    expect(inspected.stdout).toContain('not captured: data streams');

    const restored = await run(
      'restore',
      '--config',
      'target.json',
      '--target',
      'backups',
      '--conflict',
      'fail',
    );
    expect(restored.code, restored.stderr).toBe(0);
    const count = (await call(target, 'GET', '/copy-logs/_count')) as { count: number };
    expect(count.count).toBe(30);
    const aliases = (await call(target, 'GET', '/copy-logs/_alias')) as Record<string, { aliases: object }>;
    expect(Object.keys(aliases['copy-logs']!.aliases)).toEqual(['current']);

    const again = await run(
      'restore',
      '--config',
      'target.json',
      '--target',
      'backups',
      '--conflict',
      'fail',
    );
    expect(again.code).toBe(5);
    expect(again.stderr).toContain('already has index "copy-logs"');
  });
});
