import type { ComponentRegistry } from './component-registry.ts';
import type { OutputStream } from './output-stream.ts';
import type { StorageRegistry } from './storage-registry.ts';

/**
 * Everything `main` touches outside itself. Each field defaults to the process's own; tests and
 * services embedding the CLI pass their own.
 */
export interface CliIo {
  stdout: OutputStream;
  stderr: OutputStream;
  env: Record<string, string | undefined>;
  /** Relative paths on the command line resolve against this. */
  cwd: string;
  /** Abort it to interrupt the running command: it cleans up and `main` returns 130. */
  signal?: AbortSignal;
  /** Storage backends by URL scheme; default {@link createStorageRegistry}. */
  storages?: StorageRegistry;
  /** Component kinds; default {@link createComponentRegistry}. */
  components?: ComponentRegistry;
}
