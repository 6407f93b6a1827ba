import type { ProgressEvent, ProgressListener } from '@bk/core';
import { formatBytes } from './format-bytes.ts';
import { formatEntries } from './format-entries.ts';
import type { OutputStream } from './output-stream.ts';

/**
 * Progress for logs and pipes: one line per finished component and a summary at the end, no
 * control characters.
 *
 * @example
 * await backup({ ..., onProgress: new ProgressLog(process.stderr).listener });
 * // haproxy: 12 entries, 3.4 MiB
 * // backup backup_20261121_101500: 12 entries, 1.1 MiB archive, 0.4 s
 */
export class ProgressLog {
  /** Pass this as `onProgress`. */
  readonly listener: ProgressListener = (event) => this.#handle(event);
  readonly #stream: OutputStream;
  readonly #now: () => number;
  #startedAt: number;

  constructor(stream: OutputStream, options: { now?: () => number } = {}) {
    this.#stream = stream;
    this.#now = options.now ?? (() => performance.now());
    this.#startedAt = this.#now();
  }

  #elapsed(): string {
    return `${((this.#now() - this.#startedAt) / 1000).toFixed(1)} s`;
  }

  #handle(event: ProgressEvent): void {
    switch (event.type) {
      case 'backup-start':
      case 'restore-start':
      case 'verify-start':
        this.#startedAt = this.#now();
        break;
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
