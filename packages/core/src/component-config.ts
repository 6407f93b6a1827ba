import { ConfigError } from './errors.ts';

/** Whether `value` is a plain JSON object (not null, not an array). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The checks every component's `fromConfig` starts with: `config` is a JSON object, every field
 * is one of `fields`, and `kind`, when present, is `kind`. Returns the phrase that names the
 * config in further errors, e.g. `postgres component config`.
 *
 * @throws {ConfigError} naming the first unknown field or the wrong kind.
 * @example
 * const where = checkComponentConfig(config, 'postgres', ['kind', 'name', 'host', 'port']);
 */
export function checkComponentConfig(config: unknown, kind: string, fields: readonly string[]): string {
  const where = `${kind} component config`;
  if (!isRecord(config)) throw new ConfigError(`${where}: must be a JSON object.`);
  for (const field of Object.keys(config)) {
    if (!fields.includes(field)) {
      throw new ConfigError(
        `${where}: "${field}" is not a field of a ${kind} component; known fields: ${fields.join(', ')}.`,
      );
    }
  }
  if (config.kind !== undefined && config.kind !== kind) {
    throw new ConfigError(`${where}: "kind" must be "${kind}", got ${JSON.stringify(config.kind)}.`);
  }
  return where;
}

/**
 * Checks a nested object field of a component config, such as `restore`: when present it must be
 * a JSON object whose fields are all among `fields`. Returns it (or `undefined` when absent).
 *
 * @param path The field's name in messages, e.g. `restore` or `auth[0]`.
 * @param where The phrase {@link checkComponentConfig} returned.
 * @throws {ConfigError} when the value is not an object, or naming its first unknown field.
 * @example
 * const restore = checkNestedConfig(config.restore, 'restore', ['dataDir', 'name'], where);
 */
export function checkNestedConfig(
  value: unknown,
  path: string,
  fields: readonly string[],
  where: string,
): Record<string, unknown> | undefined {
  if (value === undefined) return undefined;
  if (!isRecord(value)) throw new ConfigError(`${where}: "${path}" must be an object.`);
  for (const field of Object.keys(value)) {
    if (!fields.includes(field))
      throw new ConfigError(`${where}: "${path}.${field}" is not known; known: ${fields.join(', ')}.`);
  }
  return value;
}
