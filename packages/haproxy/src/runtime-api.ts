import { createConnection } from 'node:net';
import { ComponentError, toAbortedError } from '@bk/core';

/**
 * Sends one command to the HAProxy runtime API (the `stats socket`) and resolves with the whole
 * answer; HAProxy closes the connection after answering one command line.
 *
 * @throws {ComponentError} when the socket cannot be reached or does not answer in `timeoutMs`.
 * @throws {AbortedError} when `signal` is aborted.
 */
export function runtimeCommand(
  component: string,
  socketPath: string,
  line: string,
  options: { timeoutMs: number; signal?: AbortSignal },
): Promise<string> {
  const { signal } = options;
  if (signal?.aborted) return Promise.reject(toAbortedError(signal));
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (error: Error | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      if (error) reject(error);
      else resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const onAbort = () => finish(toAbortedError(signal!));
    const timer = setTimeout(
      () =>
        finish(
          new ComponentError(
            component,
            `the HAProxy runtime API at "${socketPath}" did not answer "${line.split(' ').slice(0, 3).join(' ')}" within ${options.timeoutMs} ms.`,
            { retryable: true },
          ),
        ),
      options.timeoutMs,
    );
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('data', (data: Buffer) => chunks.push(data));
    socket.on('error', (error) =>
      finish(
        new ComponentError(
          component,
          `cannot talk to the HAProxy runtime API at "${socketPath}": ${error.message}`,
          { cause: error, retryable: true },
        ),
      ),
    );
    socket.on('end', () => finish(undefined));
    socket.write(`${line}\n`);
  });
}

/** `show info` as `{ Name: 'HAProxy', Version: '2.6.12-1+deb12u4', … }`. */
export function parseInfo(answer: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of answer.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
  }
  return fields;
}

/** One server line of `show servers state`, by column name. */
export type ServerStateRow = Record<string, string>;

/**
 * Parses `show servers state` (format version 1): the version line, a `# column …` header, then
 * one line per server. Returns `undefined` when the text is not in that format.
 */
export function parseServersState(text: string): { version: string; rows: ServerStateRow[] } | undefined {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  const version = lines[0]?.trim();
  const header = lines[1];
  if (version !== '1' || !header?.startsWith('#')) return undefined;
  const columns = header.slice(1).trim().split(/\s+/);
  const rows: ServerStateRow[] = [];
  for (const line of lines.slice(2)) {
    if (line.startsWith('#')) continue;
    const values = line.trim().split(/\s+/);
    const row: ServerStateRow = {};
    columns.forEach((column, index) => {
      row[column] = values[index] ?? '';
    });
    rows.push(row);
  }
  return { version, rows };
}

/** `srv_admin_state` bits (HAProxy's `SRV_ADMF_*`). */
const FORCED_MAINT = 0x01;
const CONFIG_MAINT = 0x04;
const FORCED_DRAIN = 0x08;

/** The `set server … state` argument that gives a server the backed-up admin state. */
export function adminStateCommand(adminState: number): 'maint' | 'drain' | 'ready' {
  if (adminState & (FORCED_MAINT | CONFIG_MAINT)) return 'maint';
  if (adminState & FORCED_DRAIN) return 'drain';
  return 'ready';
}
