import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import {
  type BackupContext,
  type ByteStream,
  type CommandResult,
  type Component,
  ComponentError,
  type ComponentInfo,
  ConfigError,
  ConflictError,
  checkComponentConfig,
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
  runCommand,
  throwIfAborted,
} from '@bk/core';
import { Etcd3, type IOptions } from 'etcd3';
import { type DroppedLeases, dropLeases } from './drop-leases.ts';
import { assertNoRunningMember } from './running-member.ts';
import { verifySnapshot } from './snapshot.ts';

/** How a snapshot is restored into a new data dir (`etcdutl`/`etcdctl snapshot restore`). */
export interface EtcdRestoreOptions {
  /** Absolute data dir to create; must be missing or empty (or conflict `overwrite`). */
  dataDir: string;
  /** `--name` of the member that will run on the data dir. */
  name?: string;
  /** `--initial-cluster`, e.g. `t2=http://127.0.0.1:2380`. */
  initialCluster?: string;
  /** `--initial-advertise-peer-urls`. */
  initialAdvertisePeerUrls?: string;
  /**
   * `--bump-revision N --mark-compacted`: what Kubernetes needs so watchers and informer caches
   * do not go back in time. Needs `etcdutl` ≥ 3.5 (etcdctl 3.4 has no such flag).
   */
  bumpRevision?: number;
  /** `--mark-compacted`; default true whenever `bumpRevision` is set. */
  markCompacted?: boolean;
  /** Default: `etcdutl` when on PATH, else `etcdctl`. */
  tool?: 'etcdutl' | 'etcdctl';
  /**
   * What becomes of leases and the keys attached to them. `keep` (default) is what
   * `snapshot restore` does: every lease comes back live with its full TTL restarted when the
   * restored member starts, and its keys are deleted when that runs out (a key on a 1-hour lease
   * is gone about an hour after the restored member started, unless a client keeps the lease
   * alive). `drop` keeps those keys, with their values, under no lease, and revokes every lease:
   * the snapshot is rewritten first through a scratch `etcd` on loopback (needs the `etcd`
   * binary on the PATH), since `etcdutl`/`etcdctl snapshot restore` have no option for it.
   */
  leases?: 'keep' | 'drop';
}

/** Options of an {@link EtcdComponent}. */
export interface EtcdOptions {
  /** Default `etcd`. */
  name?: string;
  /**
   * Client URLs. One is chosen for the whole backup: the leader when a member says so, else
   * the first that answers `status` (a snapshot is always taken from one member).
   */
  endpoints: string[];
  /** Passed through to etcd3's `credentials`; never logged or recorded. */
  tls?: IOptions['credentials'];
  /** Passed through to etcd3's `auth`; never logged or recorded. */
  auth?: IOptions['auth'];
  /** Needed to restore a snapshot. */
  restore?: EtcdRestoreOptions;
  /** Key prefixes exported to `keys.jsonl` as well (a logical export, restorable with {@link importKeys}). */
  keyRanges?: string[];
}

/** One line of `keys.jsonl`. */
export interface ExportedKey {
  /** base64 */
  key: string;
  /** base64 */
  value: string;
  createRevision: string;
  modRevision: string;
  /** The ID of the lease the key was attached to (decimal), when it had one. */
  lease?: string;
  /** That lease's granted TTL in seconds, when it was still alive at export. */
  leaseTtl?: number;
}

/** Options of {@link importKeys}. */
export interface ImportKeysOptions {
  /**
   * `drop` (default): every key is put with no lease. `keep`: one new lease is granted per
   * exported lease, with its granted TTL (the timer starts at import), and its keys are put
   * on it; a key whose lease had already expired at export gets no lease.
   */
  leases?: 'keep' | 'drop';
}

const NOT_CAPTURED = [
  'leases: a snapshot restore brings every lease back live with its full TTL restarted when the restored member starts, and deletes its keys when that runs out (restore.leases "drop" keeps them under no lease instead)',
  'alarms (NOSPACE, CORRUPT) and member-local settings; a restore makes a new cluster with new member and cluster IDs',
  'TLS certificates and keys of the members (back them up with a files component)',
  'keys.jsonl (when keyRanges is set) has no users, roles or revision history; a leased key records its lease ID and granted TTL only',
];

const CONFIG_FIELDS = ['kind', 'name', 'endpoints', 'tls', 'auth', 'restore', 'keyRanges'];
const RESTORE_FIELDS = [
  'leases',
  'dataDir',
  'name',
  'initialCluster',
  'initialAdvertisePeerUrls',
  'bumpRevision',
  'markCompacted',
  'tool',
];
const PAGE = 500;

/** The first key after every key starting with `prefix` (etcd's `range_end` for a prefix). */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let index = end.length - 1; index >= 0; index -= 1) {
    if (end[index]! < 0xff) {
      end[index] = end[index]! + 1;
      return end.subarray(0, index + 1);
    }
  }
  return Buffer.from([0]); // every key
}

/** Runs etcd's tools with the v3 API selected. */
function run(command: string, args: string[], signal?: AbortSignal): Promise<CommandResult> {
  return runCommand(command, args, { env: { ...process.env, ETCDCTL_API: '3' }, signal });
}

async function onPath(command: string): Promise<boolean> {
  try {
    await run(command, ['version']);
    return true;
  } catch {
    return false;
  }
}

/** Collects a byte stream into a file. */
async function toFile(body: ByteStream, path: string, signal: AbortSignal): Promise<number> {
  let bytes = 0;
  async function* counted() {
    for await (const chunk of body) {
      bytes += chunk.length;
      yield chunk;
    }
  }
  await pipeline(counted(), createWriteStream(path, { mode: 0o600 }), { signal });
  return bytes;
}

async function dirState(path: string): Promise<'missing' | 'empty' | 'full'> {
  try {
    return (await readdir(path)).length === 0 ? 'empty' : 'full';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw error;
  }
}

/**
 * Writes key/values exported to `keys.jsonl` into etcd: plain puts, under no lease unless
 * `leases: 'keep'` grants new ones. Accepts the parsed lines or the raw JSONL bytes. Returns
 * the number of keys written.
 *
 * @example
 * await importKeys(keysJsonlBytes, new Etcd3({ hosts: ['http://127.0.0.1:2379'] }), { leases: 'keep' });
 */
export async function importKeys(
  source: AsyncIterable<ExportedKey> | Iterable<ExportedKey> | ByteStream,
  client: Etcd3,
  options: ImportKeysOptions = {},
): Promise<number> {
  const keep = options.leases === 'keep';
  /** Exported lease ID → the lease granted for it here. */
  const granted = new Map<string, string>();
  let count = 0;
  async function* lines(): AsyncGenerator<ExportedKey> {
    let pending = '';
    const decoder = new TextDecoder();
    for await (const item of source as AsyncIterable<unknown>) {
      if (!(item instanceof Uint8Array)) {
        yield item as ExportedKey;
        continue;
      }
      pending += decoder.decode(item, { stream: true });
      const parts = pending.split('\n');
      pending = parts.pop() ?? '';
      for (const line of parts) if (line.trim() !== '') yield JSON.parse(line) as ExportedKey;
    }
    pending += decoder.decode();
    if (pending.trim() !== '') yield JSON.parse(pending) as ExportedKey;
  }
  for await (const line of lines()) {
    let lease: string | undefined;
    if (keep && line.lease !== undefined && line.leaseTtl !== undefined && line.leaseTtl > 0) {
      lease = granted.get(line.lease);
      if (lease === undefined) {
        lease = (await client.leaseClient.leaseGrant({ TTL: line.leaseTtl })).ID;
        granted.set(line.lease, lease);
      }
    }
    await client.kv.put({
      key: Buffer.from(line.key, 'base64'),
      value: Buffer.from(line.value, 'base64'),
      ...(lease === undefined ? {} : { lease }),
    });
    count += 1;
  }
  return count;
}

/**
 * Backs up etcd v3 through the Maintenance Snapshot API (entry `snapshot.db`, the trailing
 * sha256 checked as it streams), plus an optional logical export of key prefixes
 * (`keys.jsonl`). Restore runs `etcdutl`/`etcdctl snapshot restore` into a new data dir, which
 * makes a new cluster from the snapshot.
 *
 * @example
 * import { backup } from '@bk/core';
 * import { etcd } from '@bk/etcd';
 * await backup({ storage, components: [etcd({ endpoints: ['http://127.0.0.1:2379'] })] });
 */
export class EtcdComponent implements Component {
  readonly kind = 'etcd';
  readonly name: string;
  readonly options: Readonly<EtcdOptions>;
  #endpoint: string | undefined;

  /** @throws {ConfigError} naming the invalid option. */
  constructor(options: EtcdOptions) {
    if (!isRecord(options)) throw new ConfigError('etcd component: the options must be an object.');
    const name = options.name ?? 'etcd';
    const where = `etcd component "${name}"`;
    if (
      !Array.isArray(options.endpoints) ||
      options.endpoints.length === 0 ||
      !options.endpoints.every((endpoint) => typeof endpoint === 'string' && endpoint !== '')
    ) {
      throw new ConfigError(`${where}: "endpoints" must be a non-empty array of client URLs.`);
    }
    if (
      options.keyRanges !== undefined &&
      (!Array.isArray(options.keyRanges) || !options.keyRanges.every((prefix) => typeof prefix === 'string'))
    ) {
      throw new ConfigError(`${where}: "keyRanges" must be an array of key prefixes.`);
    }
    const restore = options.restore;
    if (restore !== undefined) {
      if (!isRecord(restore) || typeof restore.dataDir !== 'string' || !isAbsolute(restore.dataDir)) {
        throw new ConfigError(`${where}: "restore.dataDir" must be an absolute path.`);
      }
      if (restore.leases !== undefined && restore.leases !== 'keep' && restore.leases !== 'drop') {
        throw new ConfigError(`${where}: "restore.leases" must be "keep" or "drop".`);
      }
      if (restore.tool !== undefined && restore.tool !== 'etcdutl' && restore.tool !== 'etcdctl') {
        throw new ConfigError(`${where}: "restore.tool" must be "etcdutl" or "etcdctl".`);
      }
      if (
        restore.bumpRevision !== undefined &&
        (!Number.isSafeInteger(restore.bumpRevision) || restore.bumpRevision < 0)
      ) {
        throw new ConfigError(`${where}: "restore.bumpRevision" must be a non-negative integer.`);
      }
    }
    this.name = name;
    this.options = { ...options, name };
  }

  #client(endpoint: string): Etcd3 {
    return new Etcd3({
      hosts: [endpoint],
      ...(this.options.tls ? { credentials: this.options.tls } : {}),
      ...(this.options.auth ? { auth: this.options.auth } : {}),
    });
  }

  /** The leader when a member's status says which it is, else the first member that answers. */
  async #choose(): Promise<{ endpoint: string; version: string; revision: string; dbSize: string }> {
    const answers: {
      endpoint: string;
      version: string;
      revision: string;
      dbSize: string;
      leader: boolean;
    }[] = [];
    const failures: string[] = [];
    for (const endpoint of this.options.endpoints) {
      const client = this.#client(endpoint);
      try {
        const status = await client.maintenance.status();
        const answer = {
          endpoint,
          version: status.version,
          revision: status.header.revision,
          dbSize: status.dbSize,
          leader: status.leader === status.header.member_id,
        };
        if (answer.leader) return answer;
        answers.push(answer);
      } catch (error) {
        failures.push(`${endpoint}: ${(error as Error).message}`);
      } finally {
        client.close();
      }
    }
    if (answers[0]) return answers[0];
    throw new ComponentError(this.name, `no etcd endpoint answered status (${failures.join('; ')}).`);
  }

  /** Chooses the endpoint for this backup and reads its version. */
  async describe(context: OperationContext): Promise<ComponentInfo> {
    throwIfAborted(context.signal);
    const chosen = await this.#choose();
    this.#endpoint = chosen.endpoint;
    return {
      version: chosen.version,
      capabilities: {
        incremental: false,
        pointInTime: false,
        consistentSnapshot: true,
        restoreIntoExisting: false,
        selectiveRestore: false,
      },
      notCaptured: [...NOT_CAPTURED],
      secrets: {
        captured: [
          {
            kind: 'kubernetes-secrets',
            what: "every key in etcd: a Kubernetes cluster's Secrets (service-account tokens, TLS keys, passwords), unless encrypted at rest",
            paths: ['snapshot.db'],
          },
          {
            kind: 'password-hash',
            what: "etcd's own users' password hashes (when auth is enabled)",
            paths: ['snapshot.db'],
          },
        ],
        notCaptured: [
          {
            kind: 'private-key',
            what: "the members' TLS keys (--key-file, --peer-key-file): files outside etcd; back them up with the node's files",
          },
        ],
      },
      details: {
        format: 'etcd snapshot (bbolt db + sha256 trailer)',
        endpoint: chosen.endpoint,
        revision: chosen.revision,
        dbSize: chosen.dbSize,
        keyRanges: this.options.keyRanges ?? [],
      },
    };
  }

  /** `snapshot.db` from one member, then `keys.jsonl` when `keyRanges` is set. Both of unknown size. */
  async *backup(context: BackupContext): AsyncIterable<Entry> {
    const endpoint = this.#endpoint ?? (await this.#choose()).endpoint;
    this.#endpoint = undefined;
    const client = this.#client(endpoint);
    try {
      yield {
        path: 'snapshot.db',
        type: 'file',
        mode: 0o600,
        body: verifySnapshot(this.#snapshot(client, context)),
      };
      if (this.options.keyRanges && this.options.keyRanges.length > 0) {
        yield { path: 'keys.jsonl', type: 'file', mode: 0o600, body: this.#exportKeys(client, context) };
      }
    } finally {
      client.close();
    }
  }

  async *#snapshot(client: Etcd3, context: BackupContext): AsyncGenerator<Uint8Array> {
    const stream = (await client.maintenance.snapshot()) as unknown as AsyncIterable<{ blob: Buffer }> & {
      cancel?: () => void;
    };
    const abort = () => stream.cancel?.();
    context.signal.addEventListener('abort', abort, { once: true });
    try {
      for await (const response of stream) {
        throwIfAborted(context.signal);
        if (response.blob.length > 0) yield response.blob;
      }
    } finally {
      context.signal.removeEventListener('abort', abort);
    }
  }

  /** Pages through each prefix at one revision (the first page's), one JSON line per key. */
  async *#exportKeys(client: Etcd3, context: BackupContext): AsyncGenerator<Uint8Array> {
    let revision: string | undefined;
    /** Lease ID → granted TTL (0 once expired). */
    const ttls = new Map<string, number>();
    const ttlOf = async (lease: string): Promise<number> => {
      let ttl = ttls.get(lease);
      if (ttl === undefined) {
        const answer = await client.leaseClient.leaseTimeToLive({ ID: lease });
        ttl = Number(answer.TTL) > 0 ? Number(answer.grantedTTL) : 0;
        ttls.set(lease, ttl);
      }
      return ttl;
    };
    for (const prefix of this.options.keyRanges ?? []) {
      const end = prefixEnd(Buffer.from(prefix));
      let from = Buffer.from(prefix);
      for (;;) {
        throwIfAborted(context.signal);
        const page = await client.kv.range({
          key: from,
          range_end: end,
          limit: PAGE,
          ...(revision ? { revision } : {}),
        });
        revision ??= page.header.revision;
        const lines: string[] = [];
        for (const kv of page.kvs) {
          const leased = kv.lease !== undefined && kv.lease !== '0' && kv.lease !== '';
          const ttl = leased ? await ttlOf(kv.lease) : 0;
          lines.push(
            JSON.stringify({
              key: kv.key.toString('base64'),
              value: kv.value.toString('base64'),
              createRevision: kv.create_revision,
              modRevision: kv.mod_revision,
              ...(leased ? { lease: kv.lease } : {}),
              ...(ttl > 0 ? { leaseTtl: ttl } : {}),
            } satisfies ExportedKey),
          );
        }
        if (lines.length > 0) yield Buffer.from(`${lines.join('\n')}\n`);
        if (!page.more || page.kvs.length === 0) break;
        from = Buffer.concat([page.kvs[page.kvs.length - 1]!.key, Buffer.from([0])]);
      }
    }
  }

  /**
   * Restores `snapshot.db` into `restore.dataDir` with `snapshot restore` (via a temp file and a
   * temp dir next to it, renamed into place once the tool succeeded). `keys.jsonl` is not
   * replayed here; use {@link importKeys}.
   *
   * @throws {EtcdMemberRunningError} (`BK_CONFLICT`) when a running member uses `restore.dataDir`,
   *   whatever the policy; checked before anything is written, and again just before the old
   *   data dir is replaced.
   * @throws {ConflictError} when `restore.dataDir` is not empty and the policy is not `overwrite`.
   * @throws {ConfigError} when `bumpRevision` is asked of a tool that lacks it.
   */
  /**
   * The restore tool's version (`etcdutl version`, else `etcdctl version`): a snapshot restores
   * only with a tool of its major version, and not with an older minor (etcd does not downgrade
   * a data dir). Forceable. Nothing to judge without `restore` options (the restore refuses them).
   */
  async preflight(context: PreflightContext): Promise<PreflightResult> {
    const options = this.options.restore;
    if (!options) return {};
    const tool = options.tool ?? ((await onPath('etcdutl')) ? 'etcdutl' : 'etcdctl');
    const result = await run(tool, ['version'], context.signal).catch(() => undefined);
    const targetVersion = /version:\s*v?(\d+\.\d+\.\d+\S*)/.exec(result?.output ?? '')?.[1];
    if (targetVersion === undefined) return {};
    const backed = context.component.version;
    const refusal =
      refuseOtherMajor('etcd', backed, targetVersion) ??
      refuseOlderTarget('etcd', backed, targetVersion, 'minor');
    if (!refusal) return { targetVersion };
    return {
      targetVersion,
      refusal: {
        ...refusal,
        reason: `${refusal.reason} (the restore tool here is ${tool} ${targetVersion}; set "restore.tool")`,
      },
    };
  }

  async restore(entries: AsyncIterable<Entry>, context: RestoreContext): Promise<RestoreReport> {
    const options = this.options.restore;
    if (!options) throw new ConfigError(`etcd component "${this.name}": restoring needs "restore.dataDir".`);
    const target = options.dataDir;
    const state = await dirState(target);
    if (state !== 'missing') await assertNoRunningMember(target);
    if (state === 'full' && context.conflict !== 'overwrite') {
      throw new ConflictError(
        target,
        `etcd data dir "${target}" is not empty; a snapshot restore creates a new data dir (restore with conflict "overwrite" to replace it).`,
      );
    }
    const tool = options.tool ?? ((await onPath('etcdutl')) ? 'etcdutl' : 'etcdctl');
    if (options.bumpRevision !== undefined) {
      const help = await run(tool, ['snapshot', 'restore', '--help']).catch(() => ({ code: 1, output: '' }));
      if (!help.output.includes('--bump-revision')) {
        throw new ConfigError(
          `etcd component "${this.name}": "restore.bumpRevision" needs a tool with --bump-revision (etcdutl ≥ 3.5); "${tool}" has none.`,
        );
      }
    }
    const parent = dirname(target);
    await mkdir(parent, { recursive: true });
    const tag = randomBytes(4).toString('hex');
    const file = join(parent, `.${basename(target)}.bk-${tag}.snapshot.db`);
    const staging = join(parent, `.${basename(target)}.bk-${tag}.restoring`);
    const rewritten = join(parent, `.${basename(target)}.bk-${tag}.no-leases.db`);
    const scratchDir = join(parent, `.${basename(target)}.bk-${tag}.leases`);
    let dropped: DroppedLeases | undefined;
    let entryCount = 0;
    let bytes = 0;
    let restored = false;
    try {
      for await (const entry of entries) {
        throwIfAborted(context.signal);
        entryCount += 1;
        if (entry.path !== 'snapshot.db' || !entry.body) {
          for await (const _ of entry.body ?? []) {
            // keys.jsonl: drained (its bytes are checked by core); replay it with importKeys.
          }
          continue;
        }
        bytes += await toFile(verifySnapshot(entry.body), file, context.signal);
        if (options.leases === 'drop') {
          dropped = await dropLeases(file, rewritten, {
            run: (args) => run(tool, args, context.signal),
            scratchDir,
            component: this.name,
            ...(this.options.auth ? { auth: this.options.auth } : {}),
            signal: context.signal,
          });
        }
        const args = ['snapshot', 'restore', dropped ? rewritten : file, '--data-dir', staging];
        if (options.name) args.push('--name', options.name);
        if (options.initialCluster) args.push('--initial-cluster', options.initialCluster);
        if (options.initialAdvertisePeerUrls) {
          args.push('--initial-advertise-peer-urls', options.initialAdvertisePeerUrls);
        }
        if (options.bumpRevision !== undefined) {
          args.push('--bump-revision', String(options.bumpRevision));
          if (options.markCompacted !== false) args.push('--mark-compacted');
        }
        const result = await run(tool, args, context.signal);
        if (result.code !== 0) {
          throw new ComponentError(this.name, `${tool} snapshot restore failed: ${result.output.trim()}`);
        }
        if (state !== 'missing') {
          // A member may have been started on it while the snapshot was restored.
          await assertNoRunningMember(target);
          await rm(target, { recursive: true, force: true });
        }
        await rename(staging, target);
        restored = true;
      }
    } finally {
      await rm(file, { force: true });
      await rm(rewritten, { force: true });
      await rm(scratchDir, { recursive: true, force: true });
      await rm(staging, { recursive: true, force: true });
    }
    if (!restored) throw new ComponentError(this.name, 'the backup holds no snapshot.db.');
    return {
      entries: entryCount,
      bytes,
      details: {
        tool,
        dataDir: target,
        newCluster: true,
        leases: options.leases ?? 'keep',
        ...(dropped ? { leasesRevoked: dropped.leases, keysDetached: dropped.keys } : {}),
      },
    };
  }
}

/** Same as `new EtcdComponent(options)`. */
export function etcd(options: EtcdOptions): EtcdComponent {
  return new EtcdComponent(options);
}

/**
 * Builds the component from the CLI's JSON config (`{ "kind": "etcd", "endpoints": […] }`).
 *
 * @throws {ConfigError} naming an unknown or invalid field.
 */
export function fromConfig(config: Record<string, unknown>): EtcdComponent {
  const where = checkComponentConfig(config, 'etcd', CONFIG_FIELDS);
  if (isRecord(config.restore)) checkNestedConfig(config.restore, 'restore', RESTORE_FIELDS, where);
  const { kind: _kind, ...options } = config;
  return new EtcdComponent(options as unknown as EtcdOptions);
}
