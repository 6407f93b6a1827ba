import type { ProgressEvent } from '@bk/core';

/** Where a run stands, as {@link ProgressTracker} sums it from progress events. */
export interface ProgressSnapshot {
  /** `backup`, `restore` or `verify`; `''` before the run starts. */
  phase: string;
  /** The component being worked on; `''` before the first one. */
  component: string;
  /** Entry bytes read or written since the phase started. */
  bytes: number;
  /** Entry bytes the phase will move, when known (restore, verify). */
  totalBytes: number | undefined;
  /** Bytes per second since the previous snapshot (the whole run for the first one). */
  rate: number;
  /** Milliseconds still to go at `rate`, when the total is known and the rate is not zero. */
  etaMs: number | undefined;
}

/**
 * Sums progress events into periodic snapshots, for the line-per-interval log and the
 * `progress` events of `--json-events`.
 */
export class ProgressTracker {
  readonly #now: () => number;
  #phase = '';
  #component = '';
  #bytes = 0;
  #totalBytes: number | undefined;
  #lastAt: number;
  #lastBytes = 0;

  constructor(now: () => number) {
    this.#now = now;
    this.#lastAt = now();
  }

  /** Whether a phase has started (and not ended). */
  get active(): boolean {
    return this.#phase !== '';
  }

  /** Feeds one event; returns `start` or `end` when a phase starts or ends. */
  update(event: ProgressEvent): 'start' | 'end' | undefined {
    switch (event.type) {
      case 'backup-start':
      case 'restore-start':
      case 'verify-start':
        this.#phase = event.type.slice(0, -'-start'.length);
        this.#totalBytes = event.type === 'backup-start' ? undefined : event.totalBytes;
        this.#bytes = 0;
        this.#lastBytes = 0;
        this.#lastAt = this.#now();
        return 'start';
      case 'backup-end':
      case 'restore-end':
      case 'verify-end':
        this.#phase = '';
        return 'end';
      case 'component-start':
        this.#component = event.component;
        return undefined;
      case 'bytes':
        this.#bytes += event.bytes;
        this.#component = event.component;
        return undefined;
      default:
        return undefined;
    }
  }

  /** Where the run stands now; the rate is measured since the previous snapshot. */
  snapshot(): ProgressSnapshot {
    const now = this.#now();
    const seconds = Math.max((now - this.#lastAt) / 1000, 0.001);
    const rate = (this.#bytes - this.#lastBytes) / seconds;
    this.#lastAt = now;
    this.#lastBytes = this.#bytes;
    const left = this.#totalBytes === undefined ? undefined : Math.max(this.#totalBytes - this.#bytes, 0);
    return {
      phase: this.#phase,
      component: this.#component,
      bytes: this.#bytes,
      totalBytes: this.#totalBytes,
      rate,
      etaMs: left === undefined || rate <= 0 ? undefined : (left / rate) * 1000,
    };
  }
}
