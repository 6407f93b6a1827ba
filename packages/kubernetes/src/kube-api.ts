import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { ComponentError, ConfigError, isRecord, throwIfAborted } from '@bk/core';
import { KubeConfig } from '@kubernetes/client-node';

/** Where the API server and the credentials come from. */
export interface KubeConnection {
  /** A kubeconfig file. Default: `KUBECONFIG`, then `~/.kube/config`, then the in-cluster service account. */
  kubeconfig?: string;
  /** The context of the kubeconfig to use; default its `current-context`. */
  context?: string;
  /** Use the pod's service account (`/var/run/secrets/kubernetes.io/serviceaccount`) whatever else is set. */
  inCluster?: boolean;
}

/** A JSON answer of the API server. */
export interface KubeAnswer {
  status: number;
  body: Record<string, unknown>;
}

/** Largest JSON document read from the API server (one list page or object). */
const ANSWER_LIMIT = 256 * 1024 * 1024;

/**
 * Requests to the API server with the connection, TLS and credentials `@kubernetes/client-node`'s
 * `KubeConfig` resolves (certificates, tokens, exec plugins, in-cluster). Bodies go and come as
 * raw JSON: the client's typed models keep only the fields the client version knows, and a backup
 * must keep every field of every object, whatever the cluster's version and its custom resources.
 */
export class KubeApi {
  readonly server: string;
  readonly #config: KubeConfig;
  readonly #component: string;
  readonly #timeoutMs: number;

  /** @throws {ConfigError} when no kubeconfig or in-cluster account can be loaded. */
  constructor(connection: KubeConnection, component: string, timeoutMs: number) {
    const config = new KubeConfig();
    const where = `kubernetes resources component "${component}"`;
    try {
      if (connection.inCluster) config.loadFromCluster();
      else if (connection.kubeconfig !== undefined) config.loadFromFile(connection.kubeconfig);
      else config.loadFromDefault();
      if (connection.context !== undefined) config.setCurrentContext(connection.context);
    } catch (error) {
      throw new ConfigError(
        `${where}: cannot load the cluster's connection (${connection.inCluster ? 'in-cluster service account' : (connection.kubeconfig ?? 'KUBECONFIG or ~/.kube/config')}): ${(error as Error).message}`,
        { cause: error },
      );
    }
    const cluster = config.getCurrentCluster();
    if (!cluster) {
      throw new ConfigError(
        `${where}: the kubeconfig names no cluster for context "${config.getCurrentContext()}"; set "kubeconfig" or "context".`,
      );
    }
    this.server = cluster.server.replace(/\/+$/, '');
    this.#config = config;
    this.#component = component;
    this.#timeoutMs = timeoutMs;
  }

  /**
   * Sends one request; answers with any status (the caller decides what a 404 or 409 means).
   *
   * @throws {ComponentError} (retryable) when the server cannot be reached or answers something that is not JSON.
   */
  async call(
    method: string,
    path: string,
    signal: AbortSignal,
    body?: unknown,
    contentType = 'application/json',
  ): Promise<KubeAnswer> {
    throwIfAborted(signal);
    const url = new URL(this.server + path);
    const options: RequestOptions = {
      method,
      headers: {
        accept: 'application/json',
        ...(body === undefined ? {} : { 'content-type': contentType }),
      },
      signal,
      timeout: this.#timeoutMs,
    };
    await this.#config.applyToHTTPSOptions(options);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const send = url.protocol === 'http:' ? httpRequest : httpsRequest;
    return await new Promise<KubeAnswer>((resolve, reject) => {
      const request = send(url, options, (response) => {
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.byteLength;
          if (size > ANSWER_LIMIT) {
            request.destroy(new Error(`answer larger than ${ANSWER_LIMIT} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        response.on('error', reject);
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = text === '' ? {} : JSON.parse(text);
          } catch {
            reject(
              new ComponentError(
                this.#component,
                `${method} ${path} on ${this.server} answered ${response.statusCode} with a body that is not JSON: ${text.slice(0, 200)}`,
                { retryable: (response.statusCode ?? 500) >= 500 },
              ),
            );
            return;
          }
          resolve({ status: response.statusCode ?? 0, body: isRecord(parsed) ? parsed : {} });
        });
      });
      request.on('timeout', () => request.destroy(new Error(`no answer within ${this.#timeoutMs} ms`)));
      request.on('error', (error) => {
        if (signal.aborted) reject(signal.reason);
        else
          reject(
            new ComponentError(
              this.#component,
              `cannot reach the Kubernetes API server at ${this.server} (${method} ${path}): ${error.message}. Check the kubeconfig's server and that the cluster is up.`,
              { cause: error, retryable: true },
            ),
          );
      });
      request.end(payload);
    });
  }

  /**
   * A request that must succeed (2xx).
   *
   * @throws {ComponentError} naming the request and the server's `Status` message otherwise.
   */
  async expect(method: string, path: string, signal: AbortSignal, body?: unknown, contentType?: string) {
    const answer = await this.call(method, path, signal, body, contentType);
    if (answer.status < 200 || answer.status > 299) throw this.failure(method, path, answer);
    return answer.body;
  }

  /** The error for an answer that is not what was wanted: the server's reason and message. */
  failure(method: string, path: string, answer: KubeAnswer): ComponentError {
    const message =
      typeof answer.body.message === 'string'
        ? answer.body.message
        : JSON.stringify(answer.body).slice(0, 300);
    const hint =
      answer.status === 401
        ? ' Check the credentials in the kubeconfig.'
        : answer.status === 403
          ? ' The account lacks the RBAC permission for this; grant it (get/list for backup, create/patch for restore).'
          : '';
    return new ComponentError(
      this.#component,
      `${method} ${path} on ${this.server} failed with ${answer.status}${typeof answer.body.reason === 'string' ? ` ${answer.body.reason}` : ''}: ${message}.${hint}`,
      { retryable: answer.status >= 500 || answer.status === 429 },
    );
  }
}
