/**
 * Typed progress events, named noun–verb. A backup emits, in order: `backup-start`, then per
 * component `component-start`, per entry `entry-start` / `entry-end`, `component-end`, with
 * `bytes` events in between, then `backup-end`. Restore and verify emit the `restore-` and
 * `verify-` variants. The CLI renders them as bars; services forward them to logs or metrics.
 */
export type ProgressEvent =
  | { type: 'backup-start'; backup: string; components: string[] }
  | { type: 'backup-end'; backup: string; key: string; size: number; sha256: string; entries: number }
  | { type: 'restore-start'; backup: string; components: string[]; totalBytes: number }
  | { type: 'restore-end'; backup: string; entries: number; bytes: number }
  | { type: 'verify-start'; backup: string; totalBytes: number }
  | { type: 'verify-end'; backup: string; entries: number; bytes: number }
  | { type: 'component-start'; component: string; kind: string }
  | { type: 'component-end'; component: string; entries: number; bytes: number }
  | { type: 'entry-start'; component: string; path: string; size?: number }
  | { type: 'entry-end'; component: string; path: string; size: number; sha256?: string }
  /** Entry bytes read or written since the previous `bytes` event. */
  | { type: 'bytes'; component: string; path: string; bytes: number }
  /** Archive bytes stored (backup) or fetched (restore, verify) since the previous event. */
  | { type: 'archive-bytes'; bytes: number }
  | { type: 'warning'; message: string; component?: string };

export type ProgressListener = (event: ProgressEvent) => void;

/** A listener that ignores every event. */
export const ignoreProgress: ProgressListener = () => {};
