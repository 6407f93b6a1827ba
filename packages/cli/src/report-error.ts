import { BkError, IntegrityError } from '@bk/core';
import type { CliIo } from './cli-io.ts';
import { type ExitCode, exitCodeFor } from './exit-codes.ts';

/** The shape of `--json` output when a command fails. */
export interface JsonError {
  error: { code: string; message: string; entry?: string };
}

function entryOf(error: unknown): string | undefined {
  if (error instanceof IntegrityError) return error.entry;
  if (BkError.isInstance(error) && error.code === 'BK_INTEGRITY') {
    const entry = (error as { entry?: unknown }).entry;
    return typeof entry === 'string' ? entry : undefined;
  }
  return undefined;
}

function messageOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const cause = error instanceof Error ? error.cause : undefined;
  // A storage or component error's cause is often the system error that says why (EACCES, ECONNREFUSED).
  const explains = !BkError.isInstance(error) || error.code === 'BK_STORAGE' || error.code === 'BK_COMPONENT';
  if (
    explains &&
    cause instanceof Error &&
    !BkError.isInstance(cause) &&
    cause.message &&
    !message.includes(cause.message)
  )
    return `${message} (${cause.message})`;
  return message;
}

function stackOf(error: unknown): string {
  const lines: string[] = [];
  for (let current: unknown = error, depth = 0; current !== undefined && depth < 10; depth += 1) {
    lines.push(current instanceof Error ? (current.stack ?? current.message) : String(current));
    current = current instanceof Error ? current.cause : undefined;
    if (current !== undefined) lines.push('caused by:');
  }
  return lines.join('\n');
}

/** A function that replaces every string in `secrets` by `***`, longest first. */
export function scrubber(secrets: Iterable<string>): (text: string) => string {
  const hidden = [...secrets].sort((a, b) => b.length - a.length);
  return (text) => hidden.reduce((result, secret) => result.replaceAll(secret, '***'), text);
}

/** A failed command's error as `--json` reports it: stable code, one-line message, damaged entry. */
export function describeError(error: unknown, secrets: Iterable<string> = []): JsonError['error'] {
  const code = BkError.isInstance(error) ? error.code : 'BK_UNEXPECTED';
  const message = scrubber(secrets)(messageOf(error).replace(/\s*\n\s*/g, ' '));
  const entry = entryOf(error);
  return { code, message, ...(entry === undefined ? {} : { entry }) };
}

/**
 * Reports a failed command and returns its exit code: `bk: <message>` on stderr (and
 * `entry: <name>` when an integrity error names one), with `--json` also `{"error": …}` on
 * stdout. Stack traces only with `BK_DEBUG=1`. Every string in `secrets` is replaced by `***`.
 */
export function reportError(
  error: unknown,
  io: CliIo,
  json: boolean,
  secrets: Iterable<string> = [],
): ExitCode {
  const scrub = scrubber(secrets);
  const { code, message, entry } = describeError(error, secrets);
  let text = `bk: ${message}\n`;
  if (entry !== undefined) text += `entry: ${entry}\n`;
  if (io.env.BK_DEBUG === '1') text += `${scrub(stackOf(error))}\n`;
  io.stderr.write(text);
  if (json) {
    const document: JsonError = { error: { code, message, ...(entry === undefined ? {} : { entry }) } };
    io.stdout.write(`${JSON.stringify(document)}\n`);
  }
  return exitCodeFor(error);
}
