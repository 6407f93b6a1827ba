import { ConfigError } from '@bk/core';

function isMissing(error: unknown, packageName: string): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (typeof message !== 'string' || !message.includes(packageName)) return false;
  return code === 'ERR_MODULE_NOT_FOUND' || /cannot find|failed to (load|resolve)/i.test(message);
}

/**
 * Imports an optional bk package (`@bk/storage-s3`, `@bk/influx`, …) by name. The specifier is
 * a variable on purpose: bundlers and `tsc` must not require packages the user did not install.
 *
 * @param purpose what needs the package, for the error message, e.g. `the target s3://bucket`.
 * @throws {ConfigError} telling which package to install when it is not installed.
 */
export async function importPlugin(packageName: string, purpose: string): Promise<Record<string, unknown>> {
  try {
    return (await import(packageName)) as Record<string, unknown>;
  } catch (error) {
    if (isMissing(error, packageName)) {
      throw new ConfigError(
        `${purpose} needs ${packageName}, which is not installed: install ${packageName}.`,
        {
          cause: error,
        },
      );
    }
    throw error;
  }
}
