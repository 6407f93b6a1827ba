import { randomBytes } from 'node:crypto';
import {
  type BackupContext,
  BkError,
  type ByteStream,
  type Component,
  ComponentError,
  type ComponentInfo,
  ConfigError,
  ConflictError,
  checkComponentConfig,
  checkComponentName,
  checkNestedConfig,
  type Entry,
  isRecord,
  type OperationContext,
  type PreflightContext,
  type PreflightResult,
  type RestoreContext,
  type RestoreReport,
  refuseOlderTarget,
  refuseOtherMajor,
  throwIfAborted,
  toAbortedError,
} from '@bk/core';
import { readServerStatus } from './server-status.ts';
import {
  aclOf,
  dataOf,
  isSystemPath,
  isWithin,
  joinPath,
  normalisePaths,
  parentOf,
  parseRecord,
  toRecord,
  ZNODES_ENTRY,
  type ZnodeRecord,
} from './znode-record.ts';
import {
  type Acl,
  CREATOR_ALL_ACL,
  hasCode,
  NO_AUTH,
  NO_NODE,
  NODE_EXISTS,
  OPEN_ACL,
  type Znode,
  ZookeeperSession,
} from './zookeeper-client.ts';

/** Authentication added to the session (`addAuthInfo`), e.g. `{ scheme: 'digest', credentials: 'user:password' }`. */
export interface ZookeeperAuth {
  scheme: string;
  /** Never logged, recorded or put in an error message. */
  credentials: string;
}

/**
 * Options of a {@link ZookeeperComponent}.
 *
 * @example
 * const options: ZookeeperOptions = {
 *   connectString: '10.0.0.1:2181,10.0.0.2:2181',
 *   paths: ['/app'],
 *   auth: { scheme: 'digest', credentials: process.env.ZK_AUTH! },
 * };
 */
export interface ZookeeperOptions {
  /** The component's name, unique within one backup; default `zookeeper`. */
  name?: string;
  /** `host:port[,host:port…]`, without a chroot suffix (select subtrees with `paths`). */
  connectString: string;
  /**
   * Subtrees to back up, each with its root znode; default `["/"]`: every znode except `/` itself
   * and `/zookeeper`. On restore, only znodes inside these paths are written.
   */
  paths?: string[];
  /** Credentials for `addAuthInfo`, one or several; never logged or recorded. */
  auth?: ZookeeperAuth | ZookeeperAuth[];
  /**
   * Znodes read at the same time while walking the tree; default 8 (1–64). Memory ceiling: about
   * `concurrency` znodes in flight, each at most `jute.maxbuffer` (1 MiB by default) of data.
   */
  concurrency?: number;
  /** Session timeout asked of the server; default 30 000 ms. */
  sessionTimeoutMs?: number;
  /** How long to wait for a session, and for the `srvr` answer; default 15 000 ms. */
  connectTimeoutMs?: number;
}

const CONFIG_FIELDS = [
  'kind',
  'name',
  'connectString',
  'paths',
  'auth',
  'concurrency',
  'sessionTimeoutMs',
  'connectTimeoutMs',
];

const NOT_CAPTURED = [
  'ephemeral znodes (they belong to client sessions, which a restore cannot bring back)',
  '/zookeeper (quotas and the dynamic ensemble config) and the root znode "/" itself (its data and ACL)',
  'stat fields (versions, zxids, ctime, mtime) are recorded for comparison but a restore gets new ones from the server',
  "sequence counters as such: sequential znodes are restored under their exact names; restore then advances each restored parent's counter just past its highest restored sequential child (not to its backed-up value)",
  'the server configuration (zoo.cfg, jaas files, myid), its transaction logs and snapshots, sessions and watches',
];

/** Lines are gathered into chunks of about this size before they are yielded. */
const CHUNK_BYTES = 64 * 1024;

function isPositiveInteger(value: unknown, max = Number.MAX_SAFE_INTEGER): value is number {
  return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= max;
}

function checkAuth(auth: unknown, where: string): ZookeeperAuth[] {
  if (auth === undefined) return [];
  const list = Array.isArray(auth) ? auth : [auth];
  if (list.length === 0) throw new ConfigError(`${where}: "auth" must not be an empty array.`);
  return list.map((item, index) => {
    const field = Array.isArray(auth) ? `auth[${index}]` : 'auth';
    // The values are never quoted: they are credentials.
    if (!isRecord(item))
      throw new ConfigError(`${where}: "${field}" must be an object {scheme, credentials}.`);
    checkNestedConfig(item, field, ['scheme', 'credentials'], where);
    if (typeof item.scheme !== 'string' || !/^[A-Za-z0-9_-]+$/.test(item.scheme)) {
      throw new ConfigError(`${where}: "${field}.scheme" must be an authentication scheme such as "digest".`);
    }
    if (typeof item.credentials !== 'string' || item.credentials === '') {
      throw new ConfigError(`${where}: "${field}.credentials" must be a non-empty string.`);
    }
    return { scheme: item.scheme, credentials: item.credentials };
  });
}

function checkConnectString(value: unknown, where: string): string {
  if (typeof value !== 'string' || value.trim() === '') {
    throw new ConfigError(`${where}: "connectString" must be a non-empty "host:port[,host:port…]" string.`);
  }
  if (value.includes('/')) {
    throw new ConfigError(
      `${where}: "connectString" must not carry a chroot ("host:port/path"); select subtrees with "paths".`,
    );
  }
  for (const part of value.split(',')) {
    if (!/^(\[[0-9A-Fa-f:.]+\]|[^\s:[\]]+)(:\d{1,5})?$/.test(part.trim())) {
      throw new ConfigError(`${where}: "connectString" part ${JSON.stringify(part)} is not "host:port".`);
    }
  }
  return value;
}

/** A znode read (or found gone) by the walk. */
interface Visit {
  path: string;
  znode: Znode | undefined;
}

/**
 * Backs up the ZooKeeper znode tree (data and ACLs of every persistent znode; no ephemeral
 * znodes, no `/zookeeper`) into one entry, `znodes.jsonl`: one JSON object per znode, written
 * parent before child while the tree is walked breadth-first with bounded concurrency. Restore
 * creates parents before children with the original data and ACLs, under a conflict policy.
 *
 * @example
 * import { backup } from '@bk/core';
 * import { zookeeper } from '@bk/zookeeper';
 *
 * await backup({ storage, components: [zookeeper({ connectString: '127.0.0.1:2181', paths: ['/app'] })] });
 */
export class ZookeeperComponent implements Component {
  readonly kind = 'zookeeper' as const;
  readonly name: string;
  /** The options as given, with `name` set; `auth` holds credentials, so do not log them. */
  readonly options: Readonly<ZookeeperOptions>;
  readonly #paths: string[];
  readonly #auth: ZookeeperAuth[];
  readonly #concurrency: number;
  readonly #sessionTimeoutMs: number;
  readonly #connectTimeoutMs: number;

  /**
   * Validates the options; opens no connection.
   *
   * @throws {ConfigError} naming the invalid option (never quoting credentials).
   */
  constructor(options: ZookeeperOptions) {
    if (!isRecord(options)) throw new ConfigError('zookeeper component: the options must be an object.');
    const name = options.name ?? 'zookeeper';
    if (typeof name !== 'string') {
      throw new ConfigError(`zookeeper component: "name" must be a string, got ${JSON.stringify(name)}.`);
    }
    checkComponentName(name);
    const where = `zookeeper component "${name}"`;
    checkConnectString(options.connectString, where);
    this.#paths = options.paths === undefined ? ['/'] : normalisePaths(options.paths, where);
    this.#auth = checkAuth(options.auth, where);
    if (options.concurrency !== undefined && !isPositiveInteger(options.concurrency, 64)) {
      throw new ConfigError(
        `${where}: "concurrency" must be an integer 1–64, got ${JSON.stringify(options.concurrency)}.`,
      );
    }
    for (const field of ['sessionTimeoutMs', 'connectTimeoutMs'] as const) {
      if (options[field] !== undefined && !isPositiveInteger(options[field])) {
        throw new ConfigError(
          `${where}: "${field}" must be a positive integer (milliseconds), got ${JSON.stringify(options[field])}.`,
        );
      }
    }
    this.name = name;
    this.options = { ...options, name };
    this.#concurrency = options.concurrency ?? 8;
    this.#sessionTimeoutMs = options.sessionTimeoutMs ?? 30_000;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 15_000;
  }

  /** The selected subtrees, normalised. */
  get paths(): readonly string[] {
    return this.#paths;
  }

  async #open(signal: AbortSignal): Promise<ZookeeperSession> {
    throwIfAborted(signal);
    try {
      return await ZookeeperSession.open({
        connectString: this.options.connectString,
        auth: this.#auth,
        sessionTimeoutMs: this.#sessionTimeoutMs,
        connectTimeoutMs: this.#connectTimeoutMs,
        signal,
      });
    } catch (error) {
      if (signal.aborted) throw toAbortedError(signal);
      throw new ComponentError(
        this.name,
        `cannot open a session with ${this.options.connectString}: ${(error as Error).message}.`,
        { cause: error, retryable: true },
      );
    }
  }

  /** A ZooKeeper error as a bk error naming the znode and what was done. */
  #fail(error: unknown, action: string, path: string): BkError {
    if (BkError.isInstance(error)) return error;
    if (hasCode(error, NO_AUTH)) {
      return new ComponentError(
        this.name,
        `not authorised to ${action} "${path}"; its ACL does not let this session do it (configure "auth").`,
        { cause: error },
      );
    }
    return new ComponentError(this.name, `cannot ${action} "${path}": ${(error as Error).message}`, {
      cause: error,
    });
  }

  /**
   * Reads the server version, mode and node count (`srvr`, with a timeout) and checks that a
   * session opens (with `auth`) and that every selected path exists.
   *
   * @throws {ComponentError} when no session opens.
   * @throws {ConfigError} when a selected path does not exist.
   */
  async describe(context: OperationContext): Promise<ComponentInfo> {
    throwIfAborted(context.signal);
    const session = await this.#open(context.signal);
    try {
      for (const path of this.#paths) {
        if (
          path !== '/' &&
          !(await session.exists(path).catch((error) => this.#throw(error, 'read', path)))
        ) {
          throw new ConfigError(
            `zookeeper component "${this.name}": the selected path "${path}" does not exist.`,
          );
        }
      }
    } finally {
      session.close();
    }
    const status = await readServerStatus(
      this.options.connectString,
      Math.min(this.#connectTimeoutMs, 10_000),
      context.signal,
    );
    throwIfAborted(context.signal);
    const server: Record<string, unknown> = {};
    if ('failures' in status) server.srvrFailures = status.failures;
    else {
      if (status.build !== undefined) server.build = status.build;
      if (status.mode !== undefined) server.mode = status.mode;
      // Every znode on the server, /zookeeper's and ephemeral ones included.
      if (status.nodeCount !== undefined) server.serverNodeCount = status.nodeCount;
      server.statusFrom = status.server;
    }
    return {
      ...('failures' in status || status.version === undefined ? {} : { version: status.version }),
      capabilities: {
        incremental: false,
        pointInTime: false,
        consistentSnapshot: false,
        restoreIntoExisting: true,
        selectiveRestore: true,
      },
      notCaptured: [...NOT_CAPTURED],
      secrets: {
        captured: [
          {
            kind: 'password-hash',
            what: "digest ACL credentials (user:base64(sha1(user:password))) and whatever znodes hold, e.g. Kafka's SCRAM credentials under /config/users",
            paths: [ZNODES_ENTRY],
          },
        ],
        notCaptured: [
          {
            kind: 'credentials',
            what: 'SASL/JAAS configuration and keytabs, and the TLS keystores: files on each server',
          },
        ],
      },
      details: {
        format: `${ZNODES_ENTRY}: one JSON object per znode {path, data (base64 or null), acl [{perms, scheme, id}], stat fields}, parents before children`,
        entry: ZNODES_ENTRY,
        paths: [...this.#paths],
        ...server,
      },
    };
  }

  #throw(error: unknown, action: string, path: string): never {
    throw this.#fail(error, action, path);
  }

  /** `znodes.jsonl`, of unknown size, streamed while the tree is walked. */
  async *backup(context: BackupContext): AsyncIterable<Entry> {
    throwIfAborted(context.signal);
    yield { path: ZNODES_ENTRY, type: 'file', mode: 0o600, body: this.#dump(context.signal) };
  }

  async *#dump(signal: AbortSignal): ByteStream {
    const session = await this.#open(signal);
    try {
      let pending: string[] = [];
      let size = 0;
      for await (const record of this.#walk(session, signal)) {
        const line = `${JSON.stringify(record)}\n`;
        pending.push(line);
        size += line.length;
        if (size >= CHUNK_BYTES) {
          yield Buffer.from(pending.join(''));
          pending = [];
          size = 0;
        }
      }
      if (pending.length > 0) yield Buffer.from(pending.join(''));
    } finally {
      session.close();
    }
  }

  /**
   * Breadth-first walk from the selected paths: up to `concurrency` znodes are read at a time,
   * results come out in queue order, so every parent comes before its children. Ephemeral
   * znodes, `/zookeeper` and znodes deleted during the walk are left out.
   */
  async *#walk(session: ZookeeperSession, signal: AbortSignal): AsyncGenerator<ZnodeRecord> {
    const queue: string[] = [];
    let head = 0;
    const enqueueChildren = (parent: string, children: string[]) => {
      for (const child of [...children].sort()) {
        const path = joinPath(parent, child);
        if (!isSystemPath(path)) queue.push(path);
      }
    };
    for (const root of this.#paths) {
      if (root !== '/') queue.push(root);
      else {
        const children = await session.getChildren('/').catch((error) => this.#throw(error, 'list', '/'));
        enqueueChildren('/', children);
      }
    }
    const inFlight: Promise<Visit>[] = [];
    try {
      while (head < queue.length || inFlight.length > 0) {
        throwIfAborted(signal);
        while (inFlight.length < this.#concurrency && head < queue.length) {
          const path = queue[head]!;
          head += 1;
          const visit = session.read(path).then(
            (znode) => ({ path, znode }),
            (error: unknown) => this.#throw(error, 'read', path),
          );
          visit.catch(() => {}); // awaited below, in order
          inFlight.push(visit);
        }
        if (head > 4096 && head * 2 > queue.length) {
          queue.splice(0, head);
          head = 0;
        }
        const { path, znode } = await inFlight.shift()!;
        if (!znode || znode.stat.ephemeralOwner.some((byte) => byte !== 0)) continue;
        enqueueChildren(path, znode.children);
        yield toRecord(path, znode);
      }
    } finally {
      await Promise.allSettled(inFlight);
    }
  }

  /**
   * Writes the znodes of `znodes.jsonl` back, parents before children (missing ancestors of a
   * selected path are created empty with ZooKeeper's open ACL). Under `fail` every znode is
   * checked before anything is written; `skip` leaves existing znodes untouched; `overwrite`
   * sets their data and ACL. Znodes that have children get their recorded ACL once the whole
   * tree is written, so a read-only ACL does not stop their children from being created.
   * Before that, the sequence counter of every restored parent of sequential znodes is moved
   * past its highest restored number, so sequential creates (lock and queue recipes) under it
   * do not fail with NODE_EXISTS.
   *
   * @throws {ConflictError} under `fail` when a znode of the backup exists; nothing was written.
   * @throws {ComponentError} on an invalid line or a failing write, naming the znode.
   */
  /**
   * The target's version (`srvr`): a backup restores only into the ZooKeeper major it came from,
   * and not into an older minor (3.5 added container and TTL znodes, which 3.4 cannot create).
   * Forceable. A server that does not answer `srvr` (4lw commands disabled) is not judged.
   */
  async preflight(context: PreflightContext): Promise<PreflightResult> {
    const status = await readServerStatus(
      this.options.connectString,
      Math.min(this.#connectTimeoutMs, 10_000),
      context.signal,
    );
    throwIfAborted(context.signal);
    const targetVersion = 'failures' in status ? undefined : status.version;
    if (targetVersion === undefined) return {};
    const backed = context.component.version;
    const refusal =
      refuseOtherMajor('ZooKeeper', backed, targetVersion) ??
      refuseOlderTarget('ZooKeeper', backed, targetVersion, 'minor');
    return { targetVersion, ...(refusal ? { refusal } : {}) };
  }

  async restore(entries: AsyncIterable<Entry>, context: RestoreContext): Promise<RestoreReport> {
    throwIfAborted(context.signal);
    const recordedPaths = context.component.info.details?.paths;
    const backedUp =
      Array.isArray(recordedPaths) && recordedPaths.every((path) => typeof path === 'string')
        ? (recordedPaths as string[])
        : ['/'];
    const session = await this.#open(context.signal);
    const stats = {
      entries: 0,
      bytes: 0,
      created: 0,
      overwritten: 0,
      unchanged: 0,
      skipped: 0,
      ancestorsCreated: 0,
      countersAdvanced: 0,
      counterIncrements: 0,
    };
    try {
      for await (const entry of entries) {
        throwIfAborted(context.signal);
        if (entry.path !== ZNODES_ENTRY || (entry.type !== undefined && entry.type !== 'file')) {
          for await (const _ of entry.body ?? []) {
            // Not ours: drained so core can check its bytes.
          }
          continue;
        }
        stats.entries += 1;
        const records = this.#records(entry.body ?? (async function* () {})(), backedUp, (bytes) => {
          stats.bytes += bytes;
        });
        await this.#write(session, records, context, stats);
      }
    } finally {
      session.close();
    }
    return {
      entries: stats.entries,
      bytes: stats.bytes,
      skipped: stats.skipped,
      details: {
        created: stats.created,
        overwritten: stats.overwritten,
        unchanged: stats.unchanged,
        skipped: stats.skipped,
        ancestorsCreated: stats.ancestorsCreated,
        countersAdvanced: stats.countersAdvanced,
        counterIncrements: stats.counterIncrements,
      },
    };
  }

  /** The lines of the body as checked records, only those inside the restore selection. */
  async *#records(
    body: ByteStream,
    backedUp: string[],
    count: (bytes: number) => void,
  ): AsyncGenerator<ZnodeRecord> {
    const decoder = new TextDecoder('utf-8', { fatal: true });
    let pending = '';
    let lineNumber = 0;
    const seen = new Set<string>();
    const accept = (line: string): ZnodeRecord | undefined => {
      lineNumber += 1;
      if (line === '') return undefined;
      const record = parseRecord(line, lineNumber, this.name);
      if (isSystemPath(record.path) || !backedUp.some((root) => isWithin(record.path, root))) {
        throw new ComponentError(
          this.name,
          `${ZNODES_ENTRY} line ${lineNumber}: "${record.path}" lies outside the paths that were backed up (${backedUp.join(', ')}); refusing to write it.`,
        );
      }
      if (seen.has(record.path)) {
        throw new ComponentError(
          this.name,
          `${ZNODES_ENTRY} line ${lineNumber}: "${record.path}" appears twice.`,
        );
      }
      seen.add(record.path);
      return this.#paths.some((root) => isWithin(record.path, root)) ? record : undefined;
    };
    for await (const chunk of body) {
      count(chunk.byteLength);
      pending += decoder.decode(chunk, { stream: true });
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        const record = accept(line);
        if (record) yield record;
      }
    }
    pending += decoder.decode();
    const record = accept(pending);
    if (record) yield record;
  }

  async #write(
    session: ZookeeperSession,
    source: AsyncIterable<ZnodeRecord>,
    context: RestoreContext,
    stats: {
      created: number;
      overwritten: number;
      unchanged: number;
      skipped: number;
      ancestorsCreated: number;
      countersAdvanced: number;
      counterIncrements: number;
    },
  ): Promise<void> {
    const { signal, conflict } = context;
    let records: AsyncIterable<ZnodeRecord> | ZnodeRecord[] = source;
    if (conflict === 'fail') {
      // Check first: read every record, then look for the top of each restored subtree. Any
      // existing znode of the backup implies its top exists, as the backup holds every parent.
      const all: ZnodeRecord[] = [];
      for await (const record of source) all.push(record);
      const paths = new Set(all.map((record) => record.path));
      const tops = all.filter((record) => !paths.has(parentOf(record.path))).map((record) => record.path);
      const existing: string[] = [];
      for (let index = 0; index < tops.length; index += this.#concurrency) {
        throwIfAborted(signal);
        const batch = tops.slice(index, index + this.#concurrency);
        const found = await Promise.all(
          batch.map((path) => session.exists(path).catch((error) => this.#throw(error, 'read', path))),
        );
        batch.forEach((path, position) => {
          if (found[position]) existing.push(path);
        });
      }
      if (existing.length > 0) {
        throw new ConflictError(
          existing[0]!,
          `ZooKeeper znode${existing.length > 1 ? 's' : ''} ${existing
            .slice(0, 5)
            .map((path) => `"${path}"`)
            .join(
              ', ',
            )}${existing.length > 5 ? ` and ${existing.length - 5} more` : ''} already exist${existing.length > 1 ? '' : 's'} and the conflict policy is "fail"; nothing was written. Restore with "skip" or "overwrite", or into an empty tree.`,
        );
      }
      records = all;
    }
    const temporaryAcl: Acl[] = this.#auth.length > 0 ? CREATOR_ALL_ACL : OPEN_ACL;
    const known = new Set<string>(['/']);
    const deferred: { path: string; acl: Acl[] }[] = [];
    const counters = new SequenceCounters();
    let failure: unknown;
    try {
      for await (const record of records) {
        throwIfAborted(signal);
        counters.note(record);
        await this.#ensureParent(session, record.path, known, stats);
        const acl = aclOf(record);
        const data = dataOf(record);
        // A znode with children gets a temporary ACL until they are written.
        const later = record.numChildren > 0;
        let exists = false;
        try {
          await session.create(record.path, data, later ? temporaryAcl : acl);
          stats.created += 1;
          if (later) deferred.push({ path: record.path, acl });
        } catch (error) {
          // The server checks the parent's CREATE permission before existence: under a parent
          // this session may not create in, an existing znode answers NO_AUTH.
          exists =
            hasCode(error, NODE_EXISTS) ||
            (hasCode(error, NO_AUTH) && (await session.exists(record.path).catch(() => false)));
          if (!exists) this.#throw(error, 'create', record.path);
        }
        if (exists) {
          if (conflict === 'fail') {
            throw new ConflictError(
              record.path,
              `ZooKeeper znode "${record.path}" was created by someone else during the restore (conflict policy "fail").`,
            );
          }
          if (conflict === 'skip') stats.skipped += 1;
          else if (await this.#overwrite(session, record.path, data, acl, later, deferred))
            stats.overwritten += 1;
          else stats.unchanged += 1;
        }
        known.add(record.path);
      }
      // While restored parents still have their temporary ACL (CREATE and DELETE allowed).
      await this.#advanceCounters(session, counters, signal, stats);
    } catch (error) {
      failure = error;
    }
    // Also after a failure: no znode keeps the temporary ACL longer than needed.
    let aclFailure: unknown;
    for (const { path, acl } of deferred.reverse()) {
      try {
        await session.setAcl(path, acl);
      } catch (error) {
        if (!hasCode(error, NO_NODE)) aclFailure ??= this.#fail(error, 'set the ACL of', path);
      }
    }
    if (failure) throw failure;
    if (aclFailure) throw aclFailure;
  }

  /**
   * Sets the data and ACL of an existing znode to the recorded ones, writing only what differs
   * (so an unchanged read-only znode needs no write permission). Returns whether it wrote.
   */
  async #overwrite(
    session: ZookeeperSession,
    path: string,
    data: Buffer | undefined,
    acl: Acl[],
    later: boolean,
    deferred: { path: string; acl: Acl[] }[],
  ): Promise<boolean> {
    const current = await session.read(path).catch((error) => {
      if (hasCode(error, NO_AUTH)) return undefined; // unreadable: write both
      return this.#throw(error, 'read', path);
    });
    const sameData =
      current !== undefined && (current.data ?? Buffer.alloc(0)).equals(data ?? Buffer.alloc(0));
    const sameAcl = current !== undefined && sameAcls(current.acl, acl);
    if (!sameData) {
      await session.setData(path, data).catch((error) => this.#throw(error, 'set the data of', path));
    }
    if (!sameAcl) {
      if (later) deferred.push({ path, acl });
      else await session.setAcl(path, acl).catch((error) => this.#throw(error, 'set the ACL of', path));
    }
    return !sameData || !sameAcl;
  }

  /**
   * Moves the sequence counter of every parent of restored sequential znodes past the highest
   * restored number, so that the next sequential create under it gets a free name. Only
   * creating a child raises the counter (see {@link sequenceCounter}): it is raised by creating
   * and deleting a scratch child, as many pairs per multi transaction as fit in
   * {@link CHURN_BYTES_PER_MULTI}, each multi atomic, the counter read back after each.
   */
  async #advanceCounters(
    session: ZookeeperSession,
    counters: SequenceCounters,
    signal: AbortSignal,
    stats: { countersAdvanced: number; counterIncrements: number },
  ): Promise<void> {
    const scratch = `.bk-sequence-${randomBytes(6).toString('hex')}`;
    for (const [parent, highest] of counters.needed()) {
      const pairBytes = 2 * Buffer.byteLength(`${parent}/${scratch}`) + 80;
      const pairsPerMulti = Math.max(1, Math.floor(CHURN_BYTES_PER_MULTI / pairBytes));
      let previous: number | undefined;
      for (;;) {
        throwIfAborted(signal);
        const stat = await session.stat(parent).catch((error) => this.#throw(error, 'read', parent));
        if (!stat) break;
        const counter = sequenceCounter(stat.cversion, stat.numChildren);
        const missing = highest + 1 - counter;
        if (missing <= 0) break;
        if (previous !== undefined && counter <= previous) {
          throw new ComponentError(
            this.name,
            `the sequence counter of "${parent}" did not move (${counter}) while it was being advanced past ${highest}; sequential creates under it can fail with NODE_EXISTS.`,
          );
        }
        if (previous === undefined) stats.countersAdvanced += 1;
        previous = counter;
        const pairs = Math.min(missing, pairsPerMulti);
        try {
          await session.churnChild(parent, scratch, pairs);
        } catch (error) {
          if (hasCode(error, NO_AUTH)) {
            throw new ComponentError(
              this.name,
              `cannot advance the sequence counter of "${parent}" past its restored child number ${highest}: this session may not create and delete children there (its ACL needs CREATE and DELETE for this session; configure "auth"). Until it is advanced, sequential creates under it can fail with NODE_EXISTS.`,
              { cause: error },
            );
          }
          this.#throw(error, 'advance the sequence counter of', parent);
        }
        stats.counterIncrements += pairs;
      }
    }
  }

  /** Creates the missing ancestors of `path` (outside the backup: empty, open ACL). */
  async #ensureParent(
    session: ZookeeperSession,
    path: string,
    known: Set<string>,
    stats: { ancestorsCreated: number },
  ): Promise<void> {
    const parent = parentOf(path);
    if (known.has(parent)) return;
    const missing: string[] = [];
    for (let current = parent; !known.has(current); current = parentOf(current)) {
      if (await session.exists(current).catch((error) => this.#throw(error, 'read', current))) {
        known.add(current);
        break;
      }
      missing.unshift(current);
    }
    for (const ancestor of missing) {
      try {
        await session.create(ancestor, undefined, OPEN_ACL);
        stats.ancestorsCreated += 1;
      } catch (error) {
        if (!hasCode(error, NODE_EXISTS)) this.#throw(error, 'create', ancestor);
      }
      known.add(ancestor);
    }
  }
}

/**
 * Bytes of create-and-delete pairs per multi transaction when a sequence counter is advanced:
 * half of ZooKeeper's default 1 MiB request limit (`jute.maxbuffer`). A pair costs about twice
 * the scratch path plus 80 bytes, so about 2 000 pairs under a 100-character path.
 */
const CHURN_BYTES_PER_MULTI = 512 * 1024;
/** ZooKeeper's sequential suffix: the parent's counter as `%010d`. */
const SEQUENCE_SUFFIX = /(\d{10})$/;

/**
 * The number the server gives the next sequential child of a znode with this `cversion` and
 * `numChildren`. ZooKeeper (3.5 and later) keeps a counter of child *creates*, names sequential
 * children after it, and reports `cversion` as `2 × creates − numChildren` (every create has
 * a delete, except for the children still there), so the counter is `(cversion + numChildren) / 2`.
 * Observed on ZooKeeper 3.8: create + delete of one child moves `cversion` by 2 and the next
 * sequential number by 1.
 */
export function sequenceCounter(cversion: number, numChildren: number): number {
  return (cversion + numChildren) / 2;
}

/**
 * The restored parents whose sequence counter must be advanced, and the highest sequential
 * number among their restored children. A child counts as sequential only when its 10-digit
 * suffix is below the parent's counter recorded at backup time: the server numbered it from
 * that counter, so it cannot be above it (a name such as `ts-1795236814` under a parent with few
 * child changes is left alone). Parents not in the backup (such as `/`) have no recorded
 * counter and are left alone too.
 */
class SequenceCounters {
  readonly #recorded = new Map<string, number>();
  readonly #highest = new Map<string, number>();

  note(record: ZnodeRecord): void {
    if (record.numChildren > 0 && Number.isSafeInteger(record.cversion)) {
      this.#recorded.set(record.path, sequenceCounter(record.cversion, record.numChildren));
    }
    const match = SEQUENCE_SUFFIX.exec(record.path);
    if (!match) return;
    const parent = parentOf(record.path);
    const recorded = this.#recorded.get(parent);
    const number = Number(match[1]);
    if (recorded === undefined || number >= recorded || number >= MAX_COUNTER) return;
    if (number > (this.#highest.get(parent) ?? -1)) this.#highest.set(parent, number);
  }

  /** Parent path → highest restored sequential number, in restore order. */
  needed(): Map<string, number> {
    return this.#highest;
  }
}

/** The counter is a signed 32-bit int: past it, sequence numbers wrap and cannot be reached. */
const MAX_COUNTER = 2 ** 31 - 1;

function sameAcls(a: Acl[], b: Acl[]): boolean {
  const key = (acl: Acl[]) =>
    acl
      .map((entry) => `${entry.perms}:${entry.scheme}:${entry.id}`)
      .sort()
      .join('\n');
  return key(a) === key(b);
}

/** Same as `new ZookeeperComponent(options)`. */
export function zookeeper(options: ZookeeperOptions): ZookeeperComponent {
  return new ZookeeperComponent(options);
}

/**
 * Builds the component from the CLI's JSON config
 * (`{ "kind": "zookeeper", "connectString": "127.0.0.1:2181", "paths": ["/app"] }`).
 *
 * @throws {ConfigError} naming an unknown or invalid field.
 */
export function fromConfig(config: Record<string, unknown>): ZookeeperComponent {
  checkComponentConfig(config, 'zookeeper', CONFIG_FIELDS);
  const { kind: _kind, ...options } = config;
  return new ZookeeperComponent(options as unknown as ZookeeperOptions);
}
