import { type Component, ConfigError, type ProgressListener, type Storage } from '@bk/core';
import type { CliIo } from './cli-io.ts';
import { type ComponentRegistry, createComponentRegistry } from './component-registry.ts';
import type { JsonEventStream } from './json-event-stream.ts';
import { type BkConfig, type ComponentConfig, loadConfig } from './load-config.ts';
import { ProgressBar } from './progress-bar.ts';
import { ProgressLog } from './progress-log.ts';
import { redactUrl } from './redact-url.ts';
import type { RunRecorder } from './run-metrics.ts';
import { createStorageRegistry, type StorageRegistry } from './storage-registry.ts';
import { toTargetUrl } from './target-url.ts';

/** The options every command accepts. */
export interface GlobalOptions {
  config?: string;
  target?: string;
  prefix?: string;
  json?: boolean;
  quiet?: boolean;
  /** `false` with `--no-progress`. */
  progress?: boolean;
  /** `--json-events`: NDJSON events on stdout. */
  jsonEvents?: boolean;
  /** `--progress-interval`, in milliseconds. */
  progressInterval?: number;
  /** `--metrics-file`: a node exporter textfile to write after the run. */
  metricsFile?: string;
  /** `--pushgateway`: a Prometheus Pushgateway URL to push to after the run. */
  pushgateway?: string;
}

/** The default of `--progress-interval`. */
export const DEFAULT_PROGRESS_INTERVAL_MS = 5000;

/** What `main` keeps of a command's run, beyond its exit code. */
export interface CommandRun {
  /** With `--json-events`: where events, the result and the error go. */
  events?: JsonEventStream;
  /** The command's name (`backup`, …), once it is about to run. */
  command?: string;
  /** Its options, global ones included. */
  options?: GlobalOptions;
  /** With `--metrics-file` or `--pushgateway`: the run's figures. */
  recorder?: RunRecorder;
  /** The target, redacted, once resolved: the `target` label of the metrics. */
  target?: string;
}

/** Progress output for one run; `finish` clears a bar before results are printed. */
export interface ProgressReporter {
  listener: ProgressListener | undefined;
  finish(): void;
}

/** What a command needs: its output, the config, the target storage and the component kinds. */
export class CommandContext {
  readonly io: CliIo;
  readonly options: GlobalOptions;
  readonly signal: AbortSignal;
  readonly #storages: StorageRegistry;
  readonly #components: ComponentRegistry;
  readonly #secrets: Set<string>;
  readonly #run: CommandRun;
  #config: Promise<BkConfig> | undefined;

  /**
   * @param secrets collects the credentials found in the target URL, so that error reports can
   *   blank them out of messages written by storage packages.
   */
  constructor(io: CliIo, options: GlobalOptions, secrets = new Set<string>(), run: CommandRun = {}) {
    this.io = io;
    this.options = options;
    this.#secrets = secrets;
    this.#run = run;
    this.signal = io.signal ?? new AbortController().signal;
    this.#storages = io.storages ?? createStorageRegistry();
    this.#components = io.components ?? createComponentRegistry();
  }

  /** Whether `--json` was given: one JSON document on stdout, nothing else. */
  get json(): boolean {
    return this.options.json === true;
  }

  /** The config file (`--config`, or `./bk.config.json` when present), read once. */
  config(): Promise<BkConfig> {
    this.#config ??= loadConfig({
      ...(this.options.config === undefined ? {} : { file: this.options.config }),
      cwd: this.io.cwd,
    });
    return this.#config;
  }

  /** Blanks `secret` (a passphrase, say) out of every error report and log line of this run. */
  addSecret(secret: string): void {
    if (secret.length >= 3) this.#secrets.add(secret);
  }

  /** `--target`, else the config's `target`. */
  async target(): Promise<URL> {
    const target =
      this.options.target === undefined
        ? (await this.config()).target
        : toTargetUrl(this.options.target, this.io.cwd, '--target');
    if (target) {
      this.#run.target = redactUrl(target);
      const parts = [target.username, target.password, target.search.slice(1), target.hash.slice(1)];
      for (const part of [...parts, ...target.searchParams.values()]) {
        if (part.length < 3) continue;
        this.#secrets.add(part);
        try {
          this.#secrets.add(decodeURIComponent(part));
        } catch {}
      }
      return target;
    }
    const config = await this.config();
    throw new ConfigError(
      `No target: pass --target <url> or set "target" in ${config.file ?? 'a bk.config.json config file'}.`,
    );
  }

  /** `--prefix`, else the config's `prefix`. */
  async prefix(): Promise<string | undefined> {
    return this.options.prefix ?? (await this.config()).prefix;
  }

  /** Opens the target storage. */
  async storage(): Promise<Storage> {
    return this.#storages.open(await this.target());
  }

  /** Where an object of the target lives, for printing: the redacted target URL plus the key. */
  async location(key: string): Promise<string> {
    return `${redactUrl(await this.target()).replace(/\/+$/, '')}/${key}`;
  }

  /** Builds components from config entries. */
  async components(configs: ComponentConfig[]): Promise<Component[]> {
    const components: Component[] = [];
    for (const config of configs) components.push(await this.#components.create(config));
    return components;
  }

  /**
   * Progress for a run: a bar on a terminal; otherwise a line every `--progress-interval`, one
   * per component and a summary; NDJSON events on stdout with `--json-events`; nothing with
   * `--json` or `--quiet`. `--no-progress` turns a bar into lines.
   */
  progress(): ProgressReporter {
    const reporter = this.#reporter();
    const recorder = this.#run.recorder?.listener;
    if (!recorder) return reporter;
    const shown = reporter.listener;
    return {
      listener: shown
        ? (event) => {
            recorder(event);
            shown(event);
          }
        : recorder,
      finish: () => reporter.finish(),
    };
  }

  #reporter(): ProgressReporter {
    const { stderr } = this.io;
    const events = this.#run.events;
    if (events) return { listener: events.listener, finish: () => events.finish() };
    if (this.json || this.options.quiet) return { listener: undefined, finish() {} };
    if (stderr.isTTY && this.options.progress !== false) {
      const bar = new ProgressBar(stderr);
      return { listener: bar.listener, finish: () => bar.finish() };
    }
    const log = new ProgressLog(stderr, {
      intervalMs: this.options.progressInterval ?? DEFAULT_PROGRESS_INTERVAL_MS,
    });
    return { listener: log.listener, finish: () => log.finish() };
  }

  /** Writes one line of human output to stdout (nothing with `--json` or `--json-events`). */
  print(line: string): void {
    if (!this.json && !this.#run.events) this.io.stdout.write(`${line}\n`);
  }

  /** Writes a note to stderr unless `--quiet` or `--json`. */
  note(line: string): void {
    if (!this.json && !this.options.quiet) this.io.stderr.write(`${line}\n`);
  }

  /**
   * Writes the command's one JSON document to stdout with `--json`; with `--json-events`, the
   * last event, `{"type":"result","result":…}`.
   */
  printJson(value: unknown): void {
    this.#run.events?.write('result', { result: value });
    if (this.json) this.io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }
}
