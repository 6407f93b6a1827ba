import { createConnection } from 'node:net';

/** What the `srvr` four-letter word tells (the only one ZooKeeper 3.5+ whitelists by default). */
export interface ServerStatus {
  /** `3.8.0`, from `Zookeeper version: 3.8.0-<hash>, built on …`. */
  version?: string;
  /** The whole version line's value. */
  build?: string;
  /** `standalone`, `leader`, `follower`, … */
  mode?: string;
  /** Every znode on the server, including `/zookeeper`'s and ephemeral ones. */
  nodeCount?: number;
  /** `host:port` that answered. */
  server: string;
}

/**
 * Sends a four-letter word and resolves with the whole answer (the server closes the
 * connection after it). Rejects after `timeoutMs`: such a probe can hang on a starting server.
 */
export function fourLetterWord(
  host: string,
  port: number,
  word: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host, port });
    let answer = '';
    const finish = (error?: Error) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      if (error) reject(error);
      else resolve(answer);
    };
    const onAbort = () => finish(new Error('aborted'));
    const timer = setTimeout(
      () => finish(new Error(`"${word}" to ${host}:${port} got no answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.end(word));
    socket.on('data', (chunk: string) => {
      answer += chunk;
    });
    socket.on('error', (error) => finish(error));
    socket.on('close', () => finish());
  });
}

/** Parses a `srvr` answer. */
export function parseSrvr(answer: string, server: string): ServerStatus {
  const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(answer)?.[1]?.trim();
  const build = field('Zookeeper version');
  const count = field('Node count');
  const status: ServerStatus = { server };
  if (build !== undefined) {
    status.build = build;
    const version = /^(\d+\.\d+\.\d+)/.exec(build)?.[1];
    if (version) status.version = version;
  }
  const mode = field('Mode');
  if (mode !== undefined) status.mode = mode;
  if (count !== undefined && /^\d+$/.test(count)) status.nodeCount = Number(count);
  return status;
}

/** `host:port` pairs of a connect string (`a:2181,b:2181`; a missing port means 2181). */
export function serversOf(connectString: string): { host: string; port: number }[] {
  return connectString.split(',').map((part) => {
    const trimmed = part.trim();
    const match = /^(.*):(\d+)$/.exec(trimmed);
    const host = (match ? match[1]! : trimmed).replace(/^\[(.*)\]$/, '$1');
    return { host, port: match ? Number(match[2]) : 2181 };
  });
}

/**
 * Asks each server of the connect string for `srvr` (each with `timeoutMs`) and returns the
 * first answer that names a version, or the reasons none did.
 */
export async function readServerStatus(
  connectString: string,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<ServerStatus | { failures: string[] }> {
  const failures: string[] = [];
  for (const { host, port } of serversOf(connectString)) {
    const server = `${host}:${port}`;
    try {
      const status = parseSrvr(await fourLetterWord(host, port, 'srvr', timeoutMs, signal), server);
      if (status.version !== undefined) return status;
      failures.push(`${server}: srvr gave no version (is "srvr" in 4lw.commands.whitelist?)`);
    } catch (error) {
      failures.push(`${server}: ${(error as Error).message}`);
    }
  }
  return { failures };
}
