import { type ComponentInfo, ConfigError, IntegrityError, type Manifest } from '@bk/core';

/**
 * The time window an InfluxDB backup covers, as recorded in its manifest
 * (`components[].info.details.window`): ISO 8601 instants, `start` inclusive (`null` for a full
 * backup: everything before `end`), `end` exclusive (when the backup started). An incremental
 * chain's windows tile time: each incremental starts where its parent ended.
 */
export interface InfluxWindow {
  start: string | null;
  end: string;
}

/** Parses a `since`/window bound. @throws {ConfigError} for anything but a valid Date or ISO string. */
export function toDate(value: unknown, field: string): Date {
  const date =
    value instanceof Date
      ? new Date(value.getTime())
      : typeof value === 'string'
        ? new Date(value)
        : undefined;
  if (!date || Number.isNaN(date.getTime())) {
    throw new ConfigError(`"${field}" must be a Date or an ISO 8601 string, got ${JSON.stringify(value)}.`);
  }
  return date;
}

/** The window recorded in a component's info, or `undefined` for backups made before windows were recorded. */
export function influxWindow(info: ComponentInfo | undefined): InfluxWindow | undefined {
  const window = info?.details?.window as { start?: unknown; end?: unknown } | undefined;
  if (window === undefined || window === null) return undefined;
  if (typeof window.end !== 'string' || (window.start !== null && typeof window.start !== 'string')) {
    throw new IntegrityError(
      `The influx component's recorded window is malformed: ${JSON.stringify(window)}.`,
    );
  }
  return { start: window.start ?? null, end: window.end };
}

/** Whether the manifest records the component as an incremental (time-window) backup. */
export function isIncremental(info: ComponentInfo | undefined): boolean {
  return info?.details?.incremental === true;
}

/**
 * Where the next incremental after `parent` starts: the end of the window that `parent` recorded
 * for the influx component `component` (default `influx`). Pass it as `incremental.since` and
 * `parent.name` as the core `backup({ parent })`.
 *
 * @example
 * const parent = await inspect({ storage, name: 'latest' });
 * await backup({
 *   storage,
 *   parent: parent.name,
 *   components: [influx({ ...options, incremental: { since: incrementalSince(parent) } })],
 * });
 *
 * @throws {ConfigError} when the parent has no such influx component or recorded no window.
 */
export function incrementalSince(parent: Manifest, component = 'influx'): string {
  const recorded = parent.components.find((item) => item.name === component);
  if (recorded?.kind !== 'influx') {
    throw new ConfigError(`Backup "${parent.name}" has no influx component "${component}" to continue from.`);
  }
  const window = influxWindow(recorded.info);
  if (!window) {
    throw new ConfigError(
      `Backup "${parent.name}" recorded no time window for "${component}" (made by an older bk); take a new full backup to start a chain.`,
    );
  }
  return window.end;
}
