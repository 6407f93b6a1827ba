import { createRequire } from 'node:module';

/**
 * The slice of `node-zookeeper-client` (a pure-JS client without type declarations) that bk
 * uses, loaded through `createRequire` and typed here.
 */
interface RawId {
  scheme: string;
  id: string;
}
interface RawAcl {
  permission: number;
  id: RawId;
}
/** A znode's stat as the client decodes it: 64-bit fields are 8-byte big-endian buffers. */
export interface RawStat {
  czxid: Buffer;
  mzxid: Buffer;
  ctime: Buffer;
  mtime: Buffer;
  version: number;
  cversion: number;
  aversion: number;
  ephemeralOwner: Buffer;
  dataLength: number;
  numChildren: number;
  pzxid: Buffer;
}
type Callback<T> = (error: ZookeeperException | null | undefined, result: T, stat?: RawStat) => void;
interface RawClient {
  connect(): void;
  close(): void;
  once(event: 'connected' | 'authenticationFailed' | 'expired' | 'disconnected', listener: () => void): void;
  removeListener(event: string, listener: () => void): void;
  addAuthInfo(scheme: string, auth: Buffer): void;
  create(
    path: string,
    data: Buffer | undefined,
    acls: RawAcl[],
    mode: number,
    callback: Callback<string>,
  ): void;
  setData(path: string, data: Buffer, version: number, callback: Callback<RawStat>): void;
  setACL(path: string, acls: RawAcl[], version: number, callback: Callback<RawStat>): void;
  getData(path: string, callback: Callback<Buffer | undefined>): void;
  getACL(path: string, callback: Callback<RawAcl[]>): void;
  getChildren(path: string, callback: Callback<string[]>): void;
  exists(path: string, callback: Callback<RawStat | null>): void;
  remove(path: string, version: number, callback: Callback<void>): void;
  transaction(): RawTransaction;
}
interface RawTransaction {
  create(path: string, data: Buffer | undefined, acls: RawAcl[], mode: number): RawTransaction;
  remove(path: string, version: number): RawTransaction;
  commit(callback: (error: ZookeeperException | null | undefined, results: unknown) => void): void;
}
interface RawModule {
  createClient(
    connectString: string,
    options: { sessionTimeout: number; spinDelay: number; retries: number },
  ): RawClient;
  ACL: new (permission: number, id: RawId) => RawAcl;
  Id: new (scheme: string, id: string) => RawId;
  CreateMode: {
    PERSISTENT: number;
    PERSISTENT_SEQUENTIAL: number;
    EPHEMERAL: number;
    EPHEMERAL_SEQUENTIAL: number;
  };
  Exception: { NO_NODE: number; NODE_EXISTS: number; NO_AUTH: number };
}

const zookeeper = createRequire(import.meta.url)('node-zookeeper-client') as RawModule;

/** An error from the server, as the client reports it (`code` is ZooKeeper's, e.g. -101). */
export interface ZookeeperException extends Error {
  code: number;
  path?: string;
}

/** ZooKeeper's create modes. */
export const CREATE_MODES = {
  PERSISTENT: zookeeper.CreateMode.PERSISTENT,
  PERSISTENT_SEQUENTIAL: zookeeper.CreateMode.PERSISTENT_SEQUENTIAL,
  EPHEMERAL: zookeeper.CreateMode.EPHEMERAL,
  EPHEMERAL_SEQUENTIAL: zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL,
} as const;

export const NO_NODE = zookeeper.Exception.NO_NODE;
export const NODE_EXISTS = zookeeper.Exception.NODE_EXISTS;
export const NO_AUTH = zookeeper.Exception.NO_AUTH;

/** Whether `error` is a ZooKeeper error with `code`. */
export function hasCode(error: unknown, code: number): boolean {
  return error instanceof Error && (error as Partial<ZookeeperException>).code === code;
}

/** One ACL entry: permission bits (READ 1, WRITE 2, CREATE 4, DELETE 8, ADMIN 16), scheme and id. */
export interface Acl {
  perms: number;
  scheme: string;
  id: string;
}

/** What bk reads of one znode. */
export interface Znode {
  data: Buffer | undefined;
  stat: RawStat;
  acl: Acl[];
  children: string[];
}

/** A 64-bit stat field as a decimal string. */
export function longOf(value: Buffer): string {
  return value.readBigInt64BE(0).toString();
}

/** Options of {@link connect}. */
export interface ConnectOptions {
  connectString: string;
  /** Authentication added before any request; never logged. */
  auth: { scheme: string; credentials: string }[];
  sessionTimeoutMs: number;
  /** How long to wait for the session. */
  connectTimeoutMs: number;
  signal: AbortSignal;
}

/** A connected session with promise-returning calls. */
export class ZookeeperSession {
  readonly #client: RawClient;

  private constructor(client: RawClient) {
    this.#client = client;
  }

  /** Opens a session; rejects after `connectTimeoutMs`, on authentication failure or on abort. */
  static async open(options: ConnectOptions): Promise<ZookeeperSession> {
    const client = zookeeper.createClient(options.connectString, {
      sessionTimeout: options.sessionTimeoutMs,
      spinDelay: 500,
      retries: 0,
    });
    for (const { scheme, credentials } of options.auth) client.addAuthInfo(scheme, Buffer.from(credentials));
    await new Promise<void>((resolve, reject) => {
      const settle = (error?: Error) => {
        clearTimeout(timer);
        client.removeListener('connected', onConnected);
        client.removeListener('authenticationFailed', onAuthFailed);
        options.signal.removeEventListener('abort', onAbort);
        if (error) {
          client.close();
          reject(error);
        } else resolve();
      };
      const onConnected = () => settle();
      const onAuthFailed = () => settle(new Error('authentication failed'));
      const onAbort = () =>
        settle(options.signal.reason instanceof Error ? options.signal.reason : new Error('aborted'));
      const timer = setTimeout(
        () => settle(new Error(`no session within ${options.connectTimeoutMs} ms`)),
        options.connectTimeoutMs,
      );
      client.once('connected', onConnected);
      client.once('authenticationFailed', onAuthFailed);
      options.signal.addEventListener('abort', onAbort, { once: true });
      client.connect();
    });
    return new ZookeeperSession(client);
  }

  close(): void {
    this.#client.close();
  }

  #call<T>(start: (callback: Callback<T>) => void): Promise<{ result: T; stat: RawStat | undefined }> {
    return new Promise((resolve, reject) => {
      start((error, result, stat) => (error ? reject(error) : resolve({ result, stat })));
    });
  }

  /** Data, stat, ACL and children of `path`; `undefined` when it does not exist (any more). */
  async read(path: string): Promise<Znode | undefined> {
    try {
      const [data, acl, children] = await Promise.all([
        this.#call<Buffer | undefined>((callback) => this.#client.getData(path, callback)),
        this.#call<RawAcl[]>((callback) => this.#client.getACL(path, callback)),
        this.#call<string[]>((callback) => this.#client.getChildren(path, callback)),
      ]);
      return {
        data: data.result,
        stat: data.stat!,
        acl: (acl.result ?? []).map((entry) => ({
          perms: entry.permission,
          scheme: entry.id.scheme,
          id: entry.id.id,
        })),
        children: children.result ?? [],
      };
    } catch (error) {
      if (hasCode(error, NO_NODE)) return undefined;
      throw error;
    }
  }

  /** Whether `path` exists. */
  async exists(path: string): Promise<boolean> {
    const { result } = await this.#call<RawStat | null>((callback) => this.#client.exists(path, callback));
    return result !== null && result !== undefined;
  }

  /**
   * Creates a znode (persistent unless `mode` says otherwise) and resolves with its path;
   * rejects with the server's error (e.g. NODE_EXISTS).
   */
  async create(
    path: string,
    data: Buffer | undefined,
    acl: Acl[],
    mode: number = CREATE_MODES.PERSISTENT,
  ): Promise<string> {
    return (
      await this.#call<string>((callback) => this.#client.create(path, data, toRaw(acl), mode, callback))
    ).result;
  }

  async setData(path: string, data: Buffer | undefined): Promise<void> {
    await this.#call<RawStat>((callback) =>
      this.#client.setData(path, data ?? Buffer.alloc(0), -1, callback),
    );
  }

  async setAcl(path: string, acl: Acl[]): Promise<void> {
    await this.#call<RawStat>((callback) => this.#client.setACL(path, toRaw(acl), -1, callback));
  }

  async getChildren(path: string): Promise<string[]> {
    return (await this.#call<string[]>((callback) => this.#client.getChildren(path, callback))).result ?? [];
  }

  async getData(path: string): Promise<Buffer | undefined> {
    return (await this.#call<Buffer | undefined>((callback) => this.#client.getData(path, callback))).result;
  }

  /** The stat of `path`; `undefined` when it does not exist. */
  async stat(path: string): Promise<RawStat | undefined> {
    const { result } = await this.#call<RawStat | null>((callback) => this.#client.exists(path, callback));
    return result ?? undefined;
  }

  /**
   * Creates and deletes the child `name` of `parent` `pairs` times in one multi transaction
   * (atomic: all or nothing). Each pair raises the number the server gives the parent's next
   * sequential child by one (and its reported `cversion` by two). Rejects with the server's
   * error, e.g. NO_AUTH without CREATE and DELETE on `parent`.
   */
  async churnChild(parent: string, name: string, pairs: number): Promise<void> {
    const path = parent === '/' ? `/${name}` : `${parent}/${name}`;
    const transaction = this.#client.transaction();
    const acl = toRaw(OPEN_ACL);
    for (let index = 0; index < pairs; index += 1) {
      transaction.create(path, undefined, acl, CREATE_MODES.PERSISTENT).remove(path, -1);
    }
    await new Promise<void>((resolve, reject) => {
      transaction.commit((error) => (error ? reject(error) : resolve()));
    });
  }

  async remove(path: string): Promise<void> {
    await this.#call<void>((callback) => this.#client.remove(path, -1, callback));
  }
}

function toRaw(acl: Acl[]): RawAcl[] {
  return acl.map((entry) => new zookeeper.ACL(entry.perms, new zookeeper.Id(entry.scheme, entry.id)));
}

/** `world:anyone` with every permission: ZooKeeper's `OPEN_ACL_UNSAFE`. */
export const OPEN_ACL: Acl[] = [{ perms: 31, scheme: 'world', id: 'anyone' }];
/** Every permission for the authenticated identities of the session: ZooKeeper's `CREATOR_ALL_ACL`. */
export const CREATOR_ALL_ACL: Acl[] = [{ perms: 31, scheme: 'auth', id: '' }];
