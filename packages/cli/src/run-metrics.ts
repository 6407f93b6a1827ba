import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import type { ProgressListener } from '@bk/core';

/** What one `bk` run left to report to Prometheus. */
export interface RunOutcome {
  /** `backup`, `restore`, `verify`, `ls`, … */
  command: string;
  /** The target URL without credentials (see `redactUrl`); `''` when none was resolved. */
  target: string;
  /** When the run ended, in milliseconds since the epoch. */
  endedAt: number;
  durationSeconds: number;
  /** The bk error code when the run failed (`BK_STORAGE`, `BK_UNEXPECTED`, …). */
  errorCode?: string;
  /** Archive bytes written (backup). */
  archiveSize?: number;
  /** Entries and entry bytes moved (backup, restore, verify). */
  entries?: number;
  bytes?: number;
  /** Per component: entries and entry bytes. */
  components: Map<string, { entries: number; bytes: number }>;
}

/** Collects a run's figures from its progress events. */
export class RunRecorder {
  readonly components = new Map<string, { entries: number; bytes: number }>();
  archiveSize: number | undefined;
  entries: number | undefined;
  bytes: number | undefined;
  /** Pass this as (part of) `onProgress`. */
  readonly listener: ProgressListener = (event) => {
    switch (event.type) {
      case 'component-end':
        this.components.set(event.component, { entries: event.entries, bytes: event.bytes });
        break;
      case 'backup-end':
        this.archiveSize = event.size;
        this.entries = event.entries;
        this.bytes = [...this.components.values()].reduce((sum, component) => sum + component.bytes, 0);
        break;
      case 'restore-end':
      case 'verify-end':
        this.entries = event.entries;
        this.bytes = event.bytes;
        break;
      default:
        break;
    }
  };
}

type MetricType = 'gauge' | 'counter';

/** Every metric bk writes: name, type, help. The README's table lists the same. */
export const BK_METRICS: Record<string, { type: MetricType; help: string }> = {
  bk_last_run_timestamp_seconds: { type: 'gauge', help: 'When the last bk run ended, success or not.' },
  bk_last_run_success: { type: 'gauge', help: '1 if the last bk run succeeded, 0 if it failed.' },
  bk_last_run_duration_seconds: { type: 'gauge', help: 'How long the last bk run took.' },
  bk_last_success_timestamp_seconds: { type: 'gauge', help: 'When the last successful bk run ended.' },
  bk_last_failure_timestamp_seconds: {
    type: 'gauge',
    help: 'When the last failed bk run ended, by error code.',
  },
  bk_failures_total: { type: 'counter', help: 'Failed bk runs, by error code.' },
  bk_archive_size_bytes: { type: 'gauge', help: 'Archive size written by the last successful backup.' },
  bk_entries: { type: 'gauge', help: 'Entries moved by the last successful run.' },
  bk_bytes: { type: 'gauge', help: 'Entry bytes moved by the last successful run.' },
  bk_component_entries: { type: 'gauge', help: 'Entries of each component in the last successful run.' },
  bk_component_bytes: { type: 'gauge', help: 'Entry bytes of each component in the last successful run.' },
};

/** What describes the last success; replaced as a whole by the next success. */
const SUCCESS_METRICS = new Set([
  'bk_archive_size_bytes',
  'bk_entries',
  'bk_bytes',
  'bk_component_entries',
  'bk_component_bytes',
  'bk_last_success_timestamp_seconds',
]);

function escapeLabel(value: string): string {
  return value.replaceAll('\\', '\\\\').replaceAll('\n', '\\n').replaceAll('"', '\\"');
}

function labelText(labels: [string, string][]): string {
  return labels.map(([name, value]) => `${name}="${escapeLabel(value)}"`).join(',');
}

/** One sample, keyed by `name{labels}`. */
type Samples = Map<string, { name: string; value: number }>;

function add(samples: Samples, name: string, labels: [string, string][], value: number): void {
  samples.set(`${name}{${labelText(labels)}}`, { name, value });
}

/**
 * The samples of one run. `withGroup` is false for the Pushgateway, whose grouping key carries
 * `command` and `target`.
 */
function runSamples(outcome: RunOutcome, withGroup: boolean): Samples {
  const group: [string, string][] = withGroup
    ? [
        ['command', outcome.command],
        ['target', outcome.target],
      ]
    : [];
  const samples: Samples = new Map();
  const seconds = outcome.endedAt / 1000;
  add(samples, 'bk_last_run_timestamp_seconds', group, seconds);
  add(samples, 'bk_last_run_success', group, outcome.errorCode === undefined ? 1 : 0);
  add(samples, 'bk_last_run_duration_seconds', group, outcome.durationSeconds);
  if (outcome.errorCode !== undefined) {
    add(samples, 'bk_last_failure_timestamp_seconds', [...group, ['code', outcome.errorCode]], seconds);
    return samples;
  }
  add(samples, 'bk_last_success_timestamp_seconds', group, seconds);
  if (outcome.archiveSize !== undefined) add(samples, 'bk_archive_size_bytes', group, outcome.archiveSize);
  if (outcome.entries !== undefined) add(samples, 'bk_entries', group, outcome.entries);
  if (outcome.bytes !== undefined) add(samples, 'bk_bytes', group, outcome.bytes);
  for (const [component, figures] of outcome.components) {
    add(samples, 'bk_component_entries', [...group, ['component', component]], figures.entries);
    add(samples, 'bk_component_bytes', [...group, ['component', component]], figures.bytes);
  }
  return samples;
}

/** Prometheus' text exposition format, HELP and TYPE once per metric. */
export function formatSamples(samples: Samples): string {
  const lines: string[] = [];
  for (const [name, { type, help }] of Object.entries(BK_METRICS)) {
    const mine = [...samples].filter(([, sample]) => sample.name === name);
    if (mine.length === 0) continue;
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [key, { value }] of mine.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      lines.push(`${key.replace(/\{\}$/, '')} ${value}`);
  }
  return `${lines.join('\n')}\n`;
}

function parseSamples(text: string): Samples {
  const samples: Samples = new Map();
  for (const line of text.split('\n')) {
    const match = /^(bk_[a-z_]+)(\{.*\})? (\S+)$/.exec(line);
    if (!match || !(match[1]! in BK_METRICS)) continue;
    const value = Number(match[3]);
    if (Number.isFinite(value)) samples.set(`${match[1]}${match[2] ?? '{}'}`, { name: match[1]!, value });
  }
  return samples;
}

/**
 * Writes the run's metrics into a node exporter textfile-collector file, atomically (a temp file
 * in the same directory, then rename). The file keeps the series of other commands and targets
 * written there before; for this command and target, a failure keeps the last success's figures
 * and counts up `bk_failures_total` for its code, and a success replaces them.
 */
export async function writeMetricsFile(path: string, outcome: RunOutcome): Promise<void> {
  let previous: Samples = new Map();
  try {
    previous = parseSamples(await readFile(path, 'utf8'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const group = `{${labelText([
    ['command', outcome.command],
    ['target', outcome.target],
  ])}`;
  const samples = runSamples(outcome, true);
  const merged: Samples = new Map();
  for (const [key, sample] of previous) {
    const same = key.startsWith(`${sample.name}${group}`);
    if (same && outcome.errorCode === undefined && SUCCESS_METRICS.has(sample.name)) continue;
    merged.set(key, sample);
  }
  for (const [key, sample] of samples) merged.set(key, sample);
  if (outcome.errorCode !== undefined) {
    const key = `bk_failures_total${group},${labelText([['code', outcome.errorCode]])}}`;
    merged.set(key, { name: 'bk_failures_total', value: (previous.get(key)?.value ?? 0) + 1 });
  }
  const temp = `${path}.${process.pid}.tmp`;
  try {
    await writeFile(temp, formatSamples(merged), { mode: 0o644 });
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

function base64Url(value: string): string {
  // The Pushgateway reads an empty value as `=`.
  return value === '' ? '=' : Buffer.from(value).toString('base64url');
}

/**
 * Pushes the run's metrics to a Prometheus Pushgateway, grouped by job `bk`, `command` and
 * `target` (`/metrics/job/bk/command/<command>/target@base64/<target>`). A success replaces the
 * group (PUT); a failure replaces only the metrics it sends (POST), so the last success's figures
 * stay. User and password in the URL are sent as basic auth.
 */
export async function pushMetrics(
  pushgateway: string,
  outcome: RunOutcome,
  { signal }: { signal?: AbortSignal } = {},
): Promise<void> {
  const parsed = new URL(pushgateway);
  const headers: Record<string, string> = { 'content-type': 'text/plain; version=0.0.4' };
  if (parsed.username || parsed.password) {
    // fetch refuses credentials in the URL; the Pushgateway's basic auth takes them as a header.
    const user = `${decodeURIComponent(parsed.username)}:${decodeURIComponent(parsed.password)}`;
    headers.authorization = `Basic ${Buffer.from(user).toString('base64')}`;
    parsed.username = '';
    parsed.password = '';
  }
  const base = parsed.href.replace(/\/+$/, '');
  const url = `${base}/metrics/job/bk/command/${encodeURIComponent(outcome.command)}/target@base64/${base64Url(outcome.target)}`;
  const response = await fetch(url, {
    method: outcome.errorCode === undefined ? 'PUT' : 'POST',
    headers,
    body: formatSamples(runSamples(outcome, false)),
    signal: signal ?? AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`HTTP ${response.status} ${text.trim().slice(0, 200)}`);
}
