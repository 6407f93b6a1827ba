import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type GrafanaDouble, startGrafanaDouble } from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/index.ts';

let source: GrafanaDouble;
let target: GrafanaDouble;
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

async function post(grafana: GrafanaDouble, path: string, body: unknown): Promise<void> {
  const response = await fetch(`${grafana.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${grafana.token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(response.status).toBe(200);
}

beforeAll(async () => {
  source = await startGrafanaDouble();
  target = await startGrafanaDouble();
  directory = await mkdtemp(join(tmpdir(), 'bk-cli-grafana-'));
  for (const [file, grafana] of [
    ['source.json', source],
    ['target.json', target],
  ] as const) {
    await writeFile(
      join(directory, file),
      JSON.stringify({ components: [{ kind: 'grafana', url: grafana.url, token: grafana.token }] }),
    );
  }
  await post(source, '/api/folders', { uid: 'ops', title: 'Ops' });
  await post(source, '/api/datasources', {
    uid: 'prom',
    name: 'Prometheus',
    type: 'prometheus',
    access: 'proxy',
    url: 'http://127.0.0.1:9090',
    secureJsonData: { httpHeaderValue1: 'Bearer very-secret' },
    jsonData: { httpHeaderName1: 'Authorization' },
  });
  await post(source, '/api/dashboards/db', { dashboard: { uid: 'home', title: 'Home' }, folderUid: 'ops' });
});

afterAll(async () => {
  await source?.stop();
  await target?.stop();
  if (directory) await rm(directory, { recursive: true, force: true });
});

describe('bk with a "grafana" component', () => {
  it('backs up, lists the data source whose secret was not captured in inspect, and says so on restore', async () => {
    const backedUp = await run('backup', '--config', 'source.json', '--target', 'backups');
    expect(backedUp.code, backedUp.stderr).toBe(0);
    expect(backedUp.stdout + backedUp.stderr).not.toContain(source.token);

    const inspected = await run('inspect', '--target', 'backups');
    expect(inspected.code, inspected.stderr).toBe(0);
    expect(inspected.stdout).toMatch(/grafana {2}\(grafana\) {2}version 11\.3\.0/);
    expect(inspected.stdout).toContain(
      'not captured: secrets of data source "Prometheus" (uid prom, prometheus): httpHeaderValue1',
    );
    expect(inspected.stdout).not.toContain('very-secret');

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
      'data source "Prometheus" (uid prom) was restored without its secrets (httpHeaderValue1): re-enter them in Grafana',
    );
    expect(target.secrets('prom')).toEqual({});
  });
});
