import type { ProgressEvent, ProgressListener } from '@bk/core';
import { formatBytes } from './format-bytes.ts';
import { formatDuration } from './format-duration.ts';
import type { OutputStream } from './output-stream.ts';

export interface ProgressBarOptions {
  /** Milliseconds between redraws; default 100 (10 per second). */
  intervalMs?: number;
  /** The clock in milliseconds; tests pass a fake one. */
  now?: () => number;
  /** Width of the `[####----]` part. */
  barWidth?: number;
}

const CLEAR_LINE = '\r\x1b[K';

/**
 * A one-line progress bar for a terminal, redrawn in place at most every `intervalMs`: phase,
 * a bar and percentage when the total is known (restore, verify), bytes done and the rate, the
 * time left (ETA, at the average rate so far) when the total is known, then
 * the current `component/entry`, cut from the left to fit the terminal.
 *
 * @example
 * const bar = new ProgressBar(process.stderr);
 * try { await restore({ ..., onProgress: bar.listener }); } finally { bar.finish(); }
 */
export class ProgressBar {
  /** Pass this as `onProgress`. */
  readonly listener: ProgressListener = (event) => this.#handle(event);
  readonly #stream: OutputStream;
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #barWidth: number;
  #phase = '';
  #current = '';
  #bytes = 0;
  #total: number | undefined;
  #startedAt: number;
  #lastDraw = Number.NEGATIVE_INFINITY;
  #timer: NodeJS.Timeout | undefined;
  #visible = false;
  #finished = false;

  constructor(stream: OutputStream, options: ProgressBarOptions = {}) {
    this.#stream = stream;
    this.#intervalMs = options.intervalMs ?? 100;
    this.#now = options.now ?? (() => performance.now());
    this.#barWidth = options.barWidth ?? 20;
    this.#startedAt = this.#now();
  }

  /** Removes the bar from the terminal and stops redrawing. Call it before printing results. */
  finish(): void {
    this.#finished = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#visible) this.#stream.write(CLEAR_LINE);
    this.#visible = false;
  }

  /** The line as it would be drawn now, without control characters. */
  line(): string {
    const elapsed = Math.max((this.#now() - this.#startedAt) / 1000, 0.001);
    const bytesPerSecond = this.#bytes / elapsed;
    const rate = `${formatBytes(bytesPerSecond)}/s`;
    const parts = [this.#phase || 'starting'];
    let eta = '';
    if (this.#total !== undefined) {
      const fraction = this.#total === 0 ? 1 : Math.min(this.#bytes / this.#total, 1);
      const filled = Math.round(fraction * this.#barWidth);
      parts.push(
        `[${'#'.repeat(filled)}${'-'.repeat(this.#barWidth - filled)}]`,
        `${Math.floor(fraction * 100)
          .toString()
          .padStart(3)}%`,
        `${formatBytes(this.#bytes)} / ${formatBytes(this.#total)}`,
      );
      if (bytesPerSecond > 0 && this.#bytes < this.#total)
        eta = `ETA ${formatDuration(((this.#total - this.#bytes) / bytesPerSecond) * 1000)}`;
    } else {
      parts.push(formatBytes(this.#bytes));
    }
    parts.push(rate);
    if (eta) parts.push(eta);
    const head = parts.join('  ');
    const columns = this.#stream.columns || 80;
    const room = columns - 1 - head.length - 2;
    if (!this.#current || room < 8) return head.slice(0, columns - 1);
    const current = this.#current.length <= room ? this.#current : `…${this.#current.slice(-(room - 1))}`;
    return `${head}  ${current}`;
  }

  #handle(event: ProgressEvent): void {
    if (this.#finished) return;
    switch (event.type) {
      case 'backup-start':
        this.#start('backup', undefined);
        break;
      case 'restore-start':
        this.#start('restore', event.totalBytes);
        break;
      case 'verify-start':
        this.#start('verify', event.totalBytes);
        break;
      case 'component-start':
        this.#current = event.component;
        break;
      case 'entry-start':
        this.#current = `${event.component}/${event.path}`;
        break;
      case 'bytes':
        this.#bytes += event.bytes;
        this.#current = `${event.component}/${event.path}`;
        break;
      case 'warning':
        this.#stream.write(
          `${this.#visible ? CLEAR_LINE : ''}bk: warning: ${event.component ? `${event.component}: ` : ''}${event.message}\n`,
        );
        this.#visible = false;
        this.#draw();
        return;
      default:
        break;
    }
    this.#schedule();
  }

  #start(phase: string, total: number | undefined): void {
    this.#phase = phase;
    this.#total = total;
    this.#bytes = 0;
    this.#startedAt = this.#now();
  }

  #schedule(): void {
    const wait = this.#lastDraw + this.#intervalMs - this.#now();
    if (wait <= 0) {
      this.#draw();
      return;
    }
    // A trailing redraw, so the last events before a pause still show.
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.#draw();
    }, wait).unref();
  }

  #draw(): void {
    if (this.#finished) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#lastDraw = this.#now();
    this.#stream.write(`${CLEAR_LINE}${this.line()}`);
    this.#visible = true;
  }
}
