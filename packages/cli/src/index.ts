export type { CliIo } from './cli-io.ts';
export { CommandContext, type GlobalOptions, type ProgressReporter } from './command-context.ts';
export { type ComponentFactory, ComponentRegistry, createComponentRegistry } from './component-registry.ts';
export { EXIT_CODES, type ExitCode, exitCodeFor } from './exit-codes.ts';
export { formatBytes } from './format-bytes.ts';
export { formatEntries } from './format-entries.ts';
export { JsonEventStream, type JsonEventStreamOptions } from './json-event-stream.ts';
export {
  type BkConfig,
  type ComponentConfig,
  DEFAULT_CONFIG_FILE,
  loadConfig,
  parseConfig,
} from './load-config.ts';
export { main } from './main.ts';
export type { OutputStream } from './output-stream.ts';
export { ProgressBar, type ProgressBarOptions } from './progress-bar.ts';
export { ProgressLog, type ProgressLogOptions } from './progress-log.ts';
export { redactUrl } from './redact-url.ts';
export { type JsonError, reportError } from './report-error.ts';
export { createStorageRegistry, type StorageFactory, StorageRegistry } from './storage-registry.ts';
export { toTargetUrl } from './target-url.ts';
