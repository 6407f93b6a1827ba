import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, inNewTempDir, startProcess } from './process.ts';

/** A private Prometheus (Debian `prometheus` 2.42) started by {@link startPrometheus}. */
export interface PrometheusServer {
  /** `http://127.0.0.1:PORT` (HTTP API, admin API and lifecycle endpoints enabled). */
  url: string;
  port: number;
  pid: number;
  /** `--storage.tsdb.path`. */
  dataDir: string;
  /** The `prometheus.yml` it was started with. */
  configFile: string;
  /** Absolute paths of the rule files written next to the config (`rules/<name>`). */
  ruleFiles: string[];
  /** The temp dir holding the config, `prometheus.log` (and the data dir unless one was given). */
  dir: string;
  /** Stops the server by PID (SIGTERM) and removes `dir` (a given `dataDir` outside it is kept). */
  stop(): Promise<void>;
}

/** Options of {@link startPrometheus}; all optional. */
export interface StartPrometheusOptions {
  /** An existing data dir (e.g. restored blocks); default: a new one in the temp dir. */
  dataDir?: string;
  /** Scrape itself every second (job `self`); default true. With false, nothing is scraped. */
  scrapeSelf?: boolean;
  /** Rule files to write under `<dir>/rules/<name>` and load (`rule_files: [rules/*.yml]`). */
  ruleFiles?: Record<string, string>;
  /**
   * More scrape jobs, each scraping `host:port` targets every second; `honorLabels` keeps the
   * scraped `job`/`instance` labels (as a Pushgateway needs).
   */
  scrape?: { job: string; targets: string[]; honorLabels?: boolean }[];
}

async function ready(url: string): Promise<boolean> {
  const response = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1_000) });
  await response.arrayBuffer();
  return response.status === 200;
}

/**
 * Starts a private `prometheus` on loopback at a free port below 32768, with the admin API and
 * lifecycle endpoints enabled, scraping itself every second (unless `scrapeSelf` is false). Ready
 * once `GET /-/ready` answers 200. Retries with a new port when the server fails to start.
 */
export async function startPrometheus(options: StartPrometheusOptions = {}): Promise<PrometheusServer> {
  return inNewTempDir('bk-prometheus-', async (dir) => {
    const dataDir = options.dataDir ?? join(dir, 'data');
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const configFile = join(dir, 'prometheus.yml');
    const ruleFiles: string[] = [];
    const names = Object.keys(options.ruleFiles ?? {});
    if (names.length > 0) {
      await mkdir(join(dir, 'rules'));
      for (const name of names) {
        const file = join(dir, 'rules', name);
        await writeFile(file, options.ruleFiles![name]!);
        ruleFiles.push(file);
      }
    }
    const lines = ['global:', '  scrape_interval: 1s', '  evaluation_interval: 1s'];
    if (names.length > 0) lines.push('rule_files:', ...names.map((name) => `  - rules/${name}`));
    const jobs = [
      ...((options.scrapeSelf ?? true) ? [{ job: 'self', targets: [`127.0.0.1:${port}`] }] : []),
      ...(options.scrape ?? []),
    ];
    if (jobs.length > 0) {
      lines.push('scrape_configs:');
      for (const { job, targets, honorLabels } of jobs) {
        lines.push(`  - job_name: ${JSON.stringify(job)}`);
        if (honorLabels) lines.push('    honor_labels: true');
        lines.push('    static_configs:', `      - targets: ${JSON.stringify(targets)}`);
      }
    } else {
      lines.push('scrape_configs: []');
    }
    await writeFile(configFile, `${lines.join('\n')}\n`);
    const server = await startProcess({
      command: 'prometheus',
      args: [
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${dataDir}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--web.enable-admin-api',
        '--web.enable-lifecycle',
        '--log.level=warn',
      ],
      logFile: join(dir, 'prometheus.log'),
      cwd: dir,
      ready: () => ready(url),
    });
    return {
      url,
      port,
      pid: server.pid,
      dataDir,
      configFile,
      ruleFiles,
      dir,
      stop: async () => {
        await server.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  });
}

/** A private Prometheus Pushgateway (Debian `prometheus-pushgateway`) started by {@link startPushgateway}. */
export interface PushgatewayServer {
  /** `http://127.0.0.1:PORT`; pushes go to `/metrics/job/<job>/…`, its own and pushed metrics are at `/metrics`. */
  url: string;
  port: number;
  pid: number;
  /** The temp dir holding its log. */
  dir: string;
  /** Stops the server by PID (SIGTERM) and removes `dir`. */
  stop(): Promise<void>;
}

/**
 * Starts a private `prometheus-pushgateway` on loopback at a free port below 32768, keeping
 * pushed metrics in memory only. Ready once `GET /-/ready` answers 200. Retries with a new port
 * when the server fails to start.
 */
export async function startPushgateway(): Promise<PushgatewayServer> {
  return inNewTempDir('bk-pushgateway-', async (dir) => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const server = await startProcess({
      command: 'prometheus-pushgateway',
      args: [`--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
      logFile: join(dir, 'pushgateway.log'),
      cwd: dir,
      ready: () => ready(url),
    });
    return {
      url,
      port,
      pid: server.pid,
      dir,
      stop: async () => {
        await server.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  });
}

/** A private Alertmanager (Debian `prometheus-alertmanager` 0.25) started by {@link startAlertmanager}. */
export interface AlertmanagerServer {
  /** `http://127.0.0.1:PORT` (API v2 under `/api/v2`). */
  url: string;
  port: number;
  pid: number;
  /** The `alertmanager.yml` it was started with (one `null` receiver). */
  configFile: string;
  /** `--storage.path` (silences and the notification log). */
  storageDir: string;
  /** The temp dir holding everything. */
  dir: string;
  /** Stops the server by PID (SIGTERM) and removes `dir`. */
  stop(): Promise<void>;
}

/**
 * Starts a private `prometheus-alertmanager` on loopback at a free port below 32768, with
 * clustering (gossip) disabled (`--cluster.listen-address=`). Ready once `GET /-/ready` answers
 * 200. Retries with a new port when the server fails to start.
 */
export async function startAlertmanager(): Promise<AlertmanagerServer> {
  return inNewTempDir('bk-alertmanager-', async (dir) => {
    const storageDir = join(dir, 'data');
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const configFile = join(dir, 'alertmanager.yml');
    await writeFile(configFile, "route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n");
    const server = await startProcess({
      command: 'prometheus-alertmanager',
      args: [
        `--config.file=${configFile}`,
        `--storage.path=${storageDir}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--cluster.listen-address=',
        '--log.level=warn',
      ],
      logFile: join(dir, 'alertmanager.log'),
      cwd: dir,
      ready: () => ready(url),
    });
    return {
      url,
      port,
      pid: server.pid,
      configFile,
      storageDir,
      dir,
      stop: async () => {
        await server.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  });
}
