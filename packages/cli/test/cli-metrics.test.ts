import { readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { dirname, join } from 'node:path';
import {
  listenOnFreePort,
  type PrometheusServer,
  type PushgatewayServer,
  startPrometheus,
  startPushgateway,
} from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, removeTempDirs, runBk, tempDir, waitFor } from './bk-process.ts';

let pushgateway: PushgatewayServer;
let prometheus: PrometheusServer;
let textfileServer: Server;
let textfile: string;

beforeAll(async () => {
  assertBuilt();
  textfile = join(await tempDir('metrics-textfile'), 'bk.prom');
  // Stands in for the node exporter's textfile collector: serves the file as it is now.
  textfileServer = createServer((_request, response) => {
    readFile(textfile, 'utf8').then(
      (text) => response.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(text),
      () => response.writeHead(200).end(''),
    );
  });
  const textfilePort = await listenOnFreePort(textfileServer);
  pushgateway = await startPushgateway();
  prometheus = await startPrometheus({
    scrapeSelf: false,
    scrape: [
      { job: 'textfile', targets: [`127.0.0.1:${textfilePort}`] },
      { job: 'pushgateway', targets: [`127.0.0.1:${pushgateway.port}`], honorLabels: true },
    ],
  });
}, 120_000);

afterAll(async () => {
  await prometheus?.stop();
  await pushgateway?.stop();
  await new Promise((resolve) => textfileServer?.close(resolve));
  await removeTempDirs();
});

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

async function query(expression: string): Promise<Sample[]> {
  const response = await fetch(`${prometheus.url}/api/v1/query?query=${encodeURIComponent(expression)}`);
  const body = (await response.json()) as { status: string; data: { result: Sample[] } };
  expect(body.status).toBe('success');
  return body.data.result;
}

/** Waits until Prometheus has scraped a sample of `expression` equal to `value`. */
async function scraped(expression: string, value: number): Promise<Sample> {
  let found: Sample | undefined;
  await waitFor(
    async () => {
      const [sample] = await query(expression);
      found = sample && Number(sample.value[1]) === value ? sample : undefined;
      return found !== undefined;
    },
    30_000,
    `${expression} == ${value} in Prometheus`,
  );
  return found!;
}

async function dataDir(): Promise<string> {
  const data = await tempDir('metrics-data');
  await writeFile(join(data, 'a.txt'), 'a'.repeat(1000));
  await writeFile(join(data, 'b.txt'), 'b'.repeat(500));
  return data;
}

describe('Prometheus metrics (end to end)', () => {
  it('writes a textfile that Prometheus scrapes; a failure keeps the last success and counts by code', async () => {
    const data = await dataDir();
    const target = await tempDir('metrics-target');
    const backup = await runBk([
      'backup',
      '--target',
      `file://${target}`,
      '--path',
      data,
      '--metrics-file',
      textfile,
    ]);
    expect(backup.code, backup.stderr).toBe(0);
    const text = await readFile(textfile, 'utf8');
    expect(text).toContain('# TYPE bk_last_success_timestamp_seconds gauge');
    // Written atomically: no temp file left next to it.
    expect(await readdir(dirname(textfile))).toEqual(['bk.prom']);
    const labels = `command="backup",target="file://${target}"`;
    const size = Number(/^bk_archive_size_bytes\{.*\} (\d+)$/m.exec(text)![1]);
    expect(size).toBeGreaterThan(0);
    await scraped(`bk_archive_size_bytes{${labels}}`, size);
    await scraped(`bk_entries{${labels}}`, 3);
    await scraped(`bk_component_bytes{${labels},component="files"}`, 1500);
    await scraped(`bk_last_run_success{${labels}}`, 1);
    const [success] = await query(`bk_last_success_timestamp_seconds{${labels}}`);
    const successAt = Number(success!.value[1]);
    expect(Math.abs(successAt - Date.now() / 1000)).toBeLessThan(120);

    // A failed backup to the same target: the last success's figures stay, the failure is counted.
    const failed = await runBk([
      'backup',
      '--target',
      `file://${target}`,
      '--path',
      join(data, 'missing'),
      '--metrics-file',
      textfile,
    ]);
    expect(failed.code).not.toBe(0);
    await scraped(`bk_last_run_success{${labels}}`, 0);
    const [failure] = await query(`bk_failures_total{${labels}}`);
    expect(failure!.metric.code).toMatch(/^BK_[A-Z_]+$/);
    expect(Number(failure!.value[1])).toBe(1);
    await scraped(`bk_last_success_timestamp_seconds{${labels}}`, successAt);
    await scraped(`bk_archive_size_bytes{${labels}}`, size);

    // Another command keeps its own series in the same file.
    const verify = await runBk(['verify', '--target', `file://${target}`, '--metrics-file', textfile]);
    expect(verify.code, verify.stderr).toBe(0);
    await scraped(`bk_bytes{command="verify",target="file://${target}"}`, 1500);
    await scraped(`bk_last_run_success{${labels}}`, 0);
  }, 120_000);

  it('pushes to a Pushgateway grouped by command and target, scraped by Prometheus', async () => {
    const data = await dataDir();
    const target = await tempDir('push-target');
    const backup = await runBk([
      'backup',
      '--target',
      `file://${target}`,
      '--path',
      data,
      '--pushgateway',
      pushgateway.url,
    ]);
    expect(backup.code, backup.stderr).toBe(0);
    expect(backup.stderr).not.toContain('warning');
    const exposed = await (await fetch(`${pushgateway.url}/metrics`)).text();
    expect(exposed).toMatch(
      new RegExp(`^bk_entries\\{command="backup",instance="",job="bk",target="file://${target}"\\} 3$`, 'm'),
    );
    const labels = `job="bk",command="backup",target="file://${target}"`;
    await scraped(`bk_entries{${labels}}`, 3);
    await scraped(`bk_component_entries{${labels},component="files"}`, 3);
    const [success] = await query(`bk_last_success_timestamp_seconds{${labels}}`);

    const failed = await runBk([
      'backup',
      '--target',
      `file://${target}`,
      '--path',
      join(data, 'missing'),
      '--pushgateway',
      pushgateway.url,
    ]);
    expect(failed.code).not.toBe(0);
    await scraped(`bk_last_run_success{${labels}}`, 0);
    const [failure] = await query(`bk_last_failure_timestamp_seconds{${labels}}`);
    expect(failure!.metric.code).toMatch(/^BK_[A-Z_]+$/);
    // The failure replaced only what it pushed: the last success is still there.
    await scraped(`bk_last_success_timestamp_seconds{${labels}}`, Number(success!.value[1]));
    await scraped(`bk_entries{${labels}}`, 3);
  }, 120_000);

  it('warns on stderr but keeps the exit code when the Pushgateway cannot be reached', async () => {
    const target = await tempDir('push-down');
    const run = await runBk([
      'ls',
      '--target',
      `file://${target}`,
      '--pushgateway',
      'http://user:hunter22@127.0.0.1:1',
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('bk: warning: could not push metrics to http://127.0.0.1:1/');
    expect(run.stderr).not.toContain('hunter22');
  });
});
