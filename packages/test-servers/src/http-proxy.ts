import { Agent, createServer, request as httpRequest, type IncomingMessage } from 'node:http';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { listenOnFreePort } from './process.ts';

/** What a {@link HttpProxyOptions.dropResponse} hook sees of a request. */
export interface ProxiedRequest {
  method: string;
  /** Path and query, e.g. `/bucket/key?uploads`. */
  url: string;
}

export interface HttpProxyOptions {
  /** Where requests go, e.g. `http://127.0.0.1:18080`. */
  upstream: string;
  /** Added before each request is forwarded (latency of a distant store). Default 0. */
  delayMs?: number;
  /**
   * Return `true` to forward a request but lose its response: the upstream handles it, then the
   * client's connection is closed without an answer (a response lost on the network).
   */
  dropResponse?: (request: ProxiedRequest) => boolean;
}

export interface HttpProxy {
  /** `http://127.0.0.1:<port>`. */
  endpoint: string;
  /** Requests seen so far, in order. */
  requests: ProxiedRequest[];
  stop(): Promise<void>;
}

/**
 * An HTTP proxy in front of a test server, in this process: adds latency to every request and
 * can lose chosen responses. Headers pass unchanged (the `Host` the client signed included), so
 * signature-checking servers such as Swift's s3api accept the proxied requests.
 */
export async function startHttpProxy(options: HttpProxyOptions): Promise<HttpProxy> {
  const upstream = new URL(options.upstream);
  const agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });
  const requests: ProxiedRequest[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((incoming, outgoing) => {
    const seen = { method: incoming.method ?? 'GET', url: incoming.url ?? '/' };
    requests.push(seen);
    const drop = options.dropResponse?.(seen) ?? false;
    void (async () => {
      if (options.delayMs) await sleep(options.delayMs);
      const forwarded = httpRequest(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: seen.method,
          path: seen.url,
          headers: incoming.headers,
          agent,
        },
        (response: IncomingMessage) => {
          if (drop) {
            response.resume();
            response.on('end', () => incoming.socket.destroy());
            return;
          }
          outgoing.writeHead(response.statusCode ?? 502, response.headers);
          response.pipe(outgoing);
        },
      );
      forwarded.on('error', () => incoming.socket.destroy());
      incoming.pipe(forwarded);
    })();
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const port = await listenOnFreePort(server);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    async stop() {
      for (const socket of sockets) socket.destroy();
      agent.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface SilentServer {
  /** `http://127.0.0.1:<port>`. */
  endpoint: string;
  port: number;
  /** Connections accepted so far. */
  connections: number;
  stop(): Promise<void>;
}

/**
 * A TCP server that accepts every connection, reads what is sent, and never answers: the
 * endpoint a client without request timeouts waits on for ever. With `send`, it answers each
 * connection's first bytes with `send` (e.g. response headers and part of a body) and then
 * stalls: a stream that stops mid-way.
 */
export async function startSilentServer(options: { send?: string } = {}): Promise<SilentServer> {
  const sockets = new Set<Socket>();
  const state = { connections: 0 };
  const server = createTcpServer((socket) => {
    state.connections += 1;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    if (options.send !== undefined) {
      const send = options.send;
      socket.once('data', () => socket.write(send));
    }
    socket.resume();
  });
  const port = await listenOnFreePort(server);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    get connections() {
      return state.connections;
    },
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
