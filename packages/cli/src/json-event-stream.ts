import type { ProgressEvent, ProgressListener } from '@bk/core';
import type { OutputStream } from './output-stream.ts';
import { ProgressTracker } from './progress-tracker.ts';

/** Options of {@link JsonEventStream}. */
export interface JsonEventStreamOptions {
  /** Milliseconds between `progress` events while a run is under way; default 5000. `0`: none. */
  intervalMs?: number;
  /** Wall-clock time for the `time` field; tests pass a fake one. */
  clock?: () => Date;
  /** The monotonic clock in milliseconds the rate is measured with. */
  now?: () => number;
  /** Applied to every line before it is written: blanks out credentials. */
  scrub?: (line: string) => string;
}

/** The run's events that go out as they are (plus `time`); entries and byte counts are summed instead. */
const PASSED_ON = new Set<ProgressEvent['type']>([
  'backup-start',
  'backup-end',
  'restore-start',
  'restore-end',
  'verify-start',
  'verify-end',
  'component-start',
  'component-end',
  'warning',
]);

/**
 * `--json-events`: one JSON object per line (NDJSON) for each step of a run, a `progress` object
 * every `intervalMs` while it is under way, and a last `result` or `error` object. Per-entry and
 * per-chunk events are not written one by one (a backup of a million files would write millions
 * of lines): they are summed into `progress` and `component-end`. Every object has `type` and
 * `time` (ISO 8601 UTC).
 *
 * @example
 * const events = new JsonEventStream(process.stdout);
 * try { events.result(await backup({ ..., onProgress: events.listener })); } finally { events.finish(); }
 * // {"type":"backup-start","time":"2026-11-21T10:15:00.000Z","backup":"backup_20261121_101500","components":["etc"]}
 */
export class JsonEventStream {
  /** Pass this as `onProgress`. */
  readonly listener: ProgressListener = (event) => this.#handle(event);
  readonly #stream: OutputStream;
  readonly #intervalMs: number;
  readonly #clock: () => Date;
  readonly #scrub: (line: string) => string;
  readonly #tracker: ProgressTracker;
  #timer: NodeJS.Timeout | undefined;

  constructor(stream: OutputStream, options: JsonEventStreamOptions = {}) {
    this.#stream = stream;
    this.#intervalMs = options.intervalMs ?? 5000;
    this.#clock = options.clock ?? (() => new Date());
    this.#scrub = options.scrub ?? ((line) => line);
    this.#tracker = new ProgressTracker(options.now ?? (() => performance.now()));
  }

  /** Writes one event: `{ type, time, ...fields }` on its own line. */
  write(type: string, fields: Record<string, unknown> = {}): void {
    const line = JSON.stringify({ type, time: this.#clock().toISOString(), ...fields });
    this.#stream.write(`${this.#scrub(line)}\n`);
  }

  /** Stops the periodic `progress` events. Call it when the run ends, however it ends. */
  finish(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #progress(): void {
    const { phase, component, bytes, totalBytes, rate, etaMs } = this.#tracker.snapshot();
    this.write('progress', {
      phase,
      component,
      bytes,
      ...(totalBytes === undefined ? {} : { totalBytes }),
      bytesPerSecond: Math.round(rate),
      ...(etaMs === undefined ? {} : { etaSeconds: Math.round(etaMs / 1000) }),
    });
  }

  #handle(event: ProgressEvent): void {
    const change = this.#tracker.update(event);
    if (change === 'start') {
      this.finish();
      if (this.#intervalMs > 0) this.#timer = setInterval(() => this.#progress(), this.#intervalMs).unref();
    } else if (change === 'end') {
      this.finish();
    }
    if (!PASSED_ON.has(event.type)) return;
    const { type, ...fields } = event;
    this.write(type, fields);
  }
}
