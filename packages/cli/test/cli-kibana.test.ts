import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type KibanaDouble, startKibanaDouble } from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/index.ts';

let source: KibanaDouble;
let target: KibanaDouble;
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

async function call(kibana: KibanaDouble, method: string, path: string, body?: unknown) {
  const response = await fetch(`${kibana.url}${path}`, {
    method,
    headers: {
      authorization: `Basic ${Buffer.from(`${kibana.username}:${kibana.password}`).toString('base64')}`,
      'kbn-xsrf': 'test',
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  expect(response.status).toBeLessThan(300);
  return response.json();
}

beforeAll(async () => {
  source = await startKibanaDouble();
  target = await startKibanaDouble();
  directory = await mkdtemp(join(tmpdir(), 'bk-cli-kibana-'));
  for (const [file, kibana] of [
    ['source.json', source],
    ['target.json', target],
  ] as const) {
    await writeFile(
      join(directory, file),
      JSON.stringify({
        components: [
          { kind: 'kibana', url: kibana.url, username: kibana.username, password: kibana.password },
        ],
      }),
    );
  }
  await call(source, 'POST', '/api/spaces/space', { id: 'ops', name: 'Ops' });
  await call(source, 'POST', '/s/ops/api/saved_objects/index-pattern/logs', {
    attributes: { title: 'logs-*' },
  });
  await call(source, 'POST', '/s/ops/api/actions/connector/pager', {
    name: 'Pager',
    connector_type_id: '.webhook',
    config: { url: 'https://pager.example.com' },
    secrets: { password: 'very-secret' },
  });
});

afterAll(async () => {
  await source?.stop();
  await target?.stop();
  if (directory) await rm(directory, { recursive: true, force: true });
});

describe('bk with a "kibana" component', () => {
  it('backs up, lists the connector whose secrets were not captured in inspect, and says so on restore', async () => {
    const backedUp = await run('backup', '--config', 'source.json', '--target', 'backups');
    expect(backedUp.code, backedUp.stderr).toBe(0);
    expect(backedUp.stdout + backedUp.stderr).not.toContain(source.password);

    const inspected = await run('inspect', '--target', 'backups');
    expect(inspected.code, inspected.stderr).toBe(0);
    expect(inspected.stdout).toMatch(/kibana {2}\(kibana\) {2}version 8\.15\.0/);
    expect(inspected.stdout).toContain(
      'not captured: secrets of connector "Pager" (id pager, .webhook, space ops)',
    );

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
    expect(restored.stderr).toContain(
      'connector "Pager" (id pager, space ops) was restored without its secrets',
    );
    const found = (await call(target, 'GET', '/s/ops/api/saved_objects/index-pattern/logs')) as {
      attributes: object;
    };
    expect(found.attributes).toEqual({ title: 'logs-*' });
  });
});
