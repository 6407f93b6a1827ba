import type { ProgressEvent, ProgressListener } from '@bk/core';
import { formatBytes } from './format-bytes.ts';
import { formatDuration } from './format-duration.ts';
import { formatEntries } from './format-entries.ts';
import type { OutputStream } from './output-stream.ts';
import { type ProgressSnapshot, ProgressTracker } from './progress-tracker.ts';

/** Options of {@link ProgressLog}. */
export interface ProgressLogOptions {
  /** Milliseconds between progress lines while a run is under way; default 5000. `0`: none. */
  intervalMs?: number;
  /** The clock in milliseconds; tests pass a fake one. */
  now?: () => number;
}

/** One progress line: phase, component, bytes (of the total, with percentage and ETA), rate. */
export function formatProgressLine(snapshot: ProgressSnapshot): string {
  const { phase, component, bytes, totalBytes, rate, etaMs } = snapshot;
  let done = formatBytes(bytes);
  if (totalBytes !== undefined) {
    const percent = totalBytes === 0 ? 100 : Math.floor(Math.min(bytes / totalBytes, 1) * 100);
    done += ` of ${formatBytes(totalBytes)} (${percent}%)`;
  }
  const parts = [`${phase}: ${component || 'starting'}`, done, `${formatBytes(rate)}/s`];
  if (etaMs !== undefined) parts.push(`ETA ${formatDuration(etaMs)}`);
  return parts.join(', ');
}

/**
 * Progress for logs and pipes: while a run is under way, one line every `intervalMs` (component,
 * bytes, rate, and percentage and ETA when the total is known), one line per finished component
 * and a summary at the end; no control characters.
 *
 * @example
 * const log = new ProgressLog(process.stderr);
 * try { await backup({ ..., onProgress: log.listener }); } finally { log.finish(); }
 * // backup: haproxy, 1.2 MiB, 410.0 KiB/s
 * // haproxy: 12 entries, 3.4 MiB
 * // backup backup_20261121_101500: 12 entries, 1.1 MiB archive, 6.4 s
 */
export class ProgressLog {
  /** Pass this as `onProgress`. */
  readonly listener: ProgressListener = (event) => this.#handle(event);
  readonly #stream: OutputStream;
  readonly #now: () => number;
  readonly #intervalMs: number;
  readonly #tracker: ProgressTracker;
  #startedAt: number;
  #timer: NodeJS.Timeout | undefined;

  constructor(stream: OutputStream, options: ProgressLogOptions = {}) {
    this.#stream = stream;
    this.#now = options.now ?? (() => performance.now());
    this.#intervalMs = options.intervalMs ?? 5000;
    this.#tracker = new ProgressTracker(this.#now);
    this.#startedAt = this.#now();
  }

  /** Stops the periodic lines. Call it when the run ends, however it ends. */
  finish(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #elapsed(): string {
    return `${((this.#now() - this.#startedAt) / 1000).toFixed(1)} s`;
  }

  #handle(event: ProgressEvent): void {
    const change = this.#tracker.update(event);
    if (change === 'start') {
      this.#startedAt = this.#now();
      this.finish();
      if (this.#intervalMs > 0) {
        this.#timer = setInterval(
          () => this.#stream.write(`${formatProgressLine(this.#tracker.snapshot())}\n`),
          this.#intervalMs,
        ).unref();
      }
    } else if (change === 'end') {
      this.finish();
    }
    switch (event.type) {
      case 'component-end':
        this.#stream.write(
          `${event.component}: ${formatEntries(event.entries)}, ${formatBytes(event.bytes)}\n`,
        );
        break;
      case 'backup-end':
        this.#stream.write(
          `backup ${event.backup}: ${formatEntries(event.entries)}, ${formatBytes(event.size)} archive, ${this.#elapsed()}\n`,
        );
        break;
      case 'restore-end':
        this.#stream.write(
          `restore ${event.backup}: ${formatEntries(event.entries)}, ${formatBytes(event.bytes)}, ${this.#elapsed()}\n`,
        );
        break;
      case 'verify-end':
        this.#stream.write(
          `verify ${event.backup}: ${formatEntries(event.entries)}, ${formatBytes(event.bytes)}, ${this.#elapsed()}\n`,
        );
        break;
      case 'warning':
        this.#stream.write(`bk: warning: ${event.component ? `${event.component}: ` : ''}${event.message}\n`);
        break;
      default:
        break;
    }
  }
}
